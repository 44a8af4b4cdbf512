//! Script errors with the playbook's path, line and column and the source line under a caret,
//! and the one helper every native uses to raise an error.

use std::collections::HashMap;
use std::fmt;

use rhai::{Dynamic, EvalAltResult, Position};

use crate::diagnostic::InvalidInput;

/// What went wrong, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The playbook or a module does not compile (exit 2).
    Compile,
    /// A native rejected its input (exit 2).
    BadInput,
    /// The flow failed (exit 1).
    Runtime,
    /// Stopped by Ctrl-C (exit 130).
    Cancelled,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Compile | ErrorKind::BadInput => 2,
            ErrorKind::Runtime => 1,
            ErrorKind::Cancelled => 130,
        }
    }
}

/// Carried inside `ErrorRuntime` so the host can tell bad input from a failed flow.
#[derive(Debug, Clone)]
pub struct NativeFailure {
    pub message: String,
    pub bad_input: bool,
    /// The message names its own file and place (a config problem, a held lock), so the
    /// playbook line that led to it would only be noise.
    pub located: bool,
}

impl fmt::Display for NativeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Raises an error from a native: the position is filled in by Rhai with the call site.
pub fn failure(message: impl Into<String>) -> Box<EvalAltResult> {
    raise(message.into(), false, false)
}

/// Raises an error that is the caller's input's fault (exit code 2).
pub fn bad_input(message: impl Into<String>) -> Box<EvalAltResult> {
    raise(message.into(), true, false)
}

/// Raises an error whose message already says where the problem is (exit code 1, or 2 with
/// `bad_input`).
pub fn located(message: impl Into<String>, bad_input: bool) -> Box<EvalAltResult> {
    raise(message.into(), bad_input, true)
}

/// Raises every problem with the user's files, one `error:` line each (exit code 2).
pub fn invalid(problems: &InvalidInput) -> Box<EvalAltResult> {
    let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
    located(lines.join("\nerror: "), true)
}

fn raise(message: String, bad_input: bool, located: bool) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(NativeFailure {
            message,
            bad_input,
            located,
        }),
        Position::NONE,
    ))
}

#[derive(Debug, Clone)]
pub struct ScriptError {
    pub kind: ErrorKind,
    pub message: String,
    /// The message carries its own location; the playbook position is not shown.
    pub located: bool,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub source_line: Option<String>,
}

impl ScriptError {
    /// Turns a Rhai error into one that points at the innermost file and position.
    /// `sources` maps each source name (playbook or module display path) to its text.
    pub fn from_rhai(err: &EvalAltResult, main: &str, sources: &HashMap<String, String>) -> Self {
        let mut file = main.to_string();
        let mut current = err;
        let mut position = err.position();
        // The last call made from outside stdlib/: where a deliberate error raised inside a
        // library function is reported, like `#[track_caller]`.
        let mut caller: Option<(String, Position)> = None;
        loop {
            match current {
                EvalAltResult::ErrorInModule(path, inner, _) => {
                    file = module_display(path, sources);
                    position = inner.position();
                    current = inner;
                }
                EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
                    if !is_library(&file) {
                        caller = Some((file.clone(), *pos));
                    }
                    if !src.is_empty() {
                        file = module_display(src, sources);
                    }
                    if !inner.position().is_none() {
                        position = inner.position();
                    }
                    current = inner;
                }
                _ => break,
            }
        }
        let deliberate =
            matches!(current, EvalAltResult::ErrorRuntime(d, _) if d.is::<NativeFailure>());
        if deliberate && is_library(&file) {
            if let Some((f, p)) = caller {
                file = f;
                position = p;
            }
        }
        let mut located = false;
        let (kind, message) = match current {
            EvalAltResult::ErrorParsing(p, _) => {
                (ErrorKind::Compile, lowercase_first(&p.to_string()))
            }
            EvalAltResult::ErrorTerminated(..) => {
                (ErrorKind::Cancelled, "stopped (Ctrl-C)".to_string())
            }
            EvalAltResult::ErrorRuntime(d, _) => match d.clone().try_cast::<NativeFailure>() {
                Some(f) => {
                    located = f.located;
                    let kind = if f.bad_input {
                        ErrorKind::BadInput
                    } else {
                        ErrorKind::Runtime
                    };
                    (kind, f.message)
                }
                None => (ErrorKind::Runtime, format!("{d}")),
            },
            EvalAltResult::ErrorModuleNotFound(name, pos) => {
                // Imports are resolved while compiling, before Rhai knows where they were.
                if pos.is_none() {
                    if let Some((f, p)) = find_import(name, &file, sources) {
                        file = f;
                        position = p;
                    }
                }
                (
                    ErrorKind::Compile,
                    format!("module `{name}` not found; modules are imported from `stdlib/` by name, like `import \"args\" as args;`"),
                )
            }
            EvalAltResult::ErrorFunctionNotFound(signature, _) => {
                (ErrorKind::Runtime, describe_missing_function(signature))
            }
            other => {
                // Rhai appends " (line L, position C)"; the position is shown separately.
                let text = other.to_string();
                let suffix = format!(" ({})", other.position());
                let text = text.strip_suffix(&suffix).unwrap_or(&text);
                (ErrorKind::Runtime, lowercase_first(text))
            }
        };
        let mut err = Self::at(kind, message, file, position, sources);
        err.located = located;
        err
    }

    fn at(
        kind: ErrorKind,
        message: String,
        file: String,
        pos: Position,
        sources: &HashMap<String, String>,
    ) -> Self {
        let (line, column) = (pos.line(), pos.position());
        let source_line = line.and_then(|l| {
            sources
                .get(&file)
                .and_then(|text| text.lines().nth(l - 1))
                .map(str::to_string)
        });
        ScriptError {
            kind,
            message,
            located: false,
            file,
            line,
            column,
            source_line,
        }
    }

    pub fn plain(kind: ErrorKind, file: &str, message: impl Into<String>) -> Self {
        ScriptError {
            kind,
            message: message.into(),
            located: false,
            file: file.to_string(),
            line: None,
            column: None,
            source_line: None,
        }
    }
}

/// Where `import "name"` is written: the playbook first, then the modules.
fn find_import(
    name: &str,
    main: &str,
    sources: &HashMap<String, String>,
) -> Option<(String, Position)> {
    let needle = format!("\"{name}\"");
    let mut files: Vec<&String> = sources.keys().collect();
    files.sort_by_key(|f| (f.as_str() != main, f.as_str()));
    for file in files {
        for (i, line) in sources[file].lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let (Some(at), true) = (code.find(&needle), code.contains("import")) {
                return Some((file.clone(), Position::new(i as u16 + 1, at as u16 + 1)));
            }
        }
    }
    None
}

/// Rhai's "function not found: f (&str | ImmutableString | String, i64)" in plain words.
fn describe_missing_function(signature: &str) -> String {
    let Some((name, args)) = signature.split_once(" (") else {
        return format!(
            "there is no function `{signature}`; check its name (natives are listed in README.md)"
        );
    };
    let args = args.trim_end_matches(')');
    let args: Vec<&str> = args
        .split(", ")
        .filter(|a| !a.is_empty())
        .map(|a| match a.trim() {
            "&str | ImmutableString | String" | "ImmutableString" | "String" | "&str" => "string",
            "i64" => "integer",
            "f64" => "float",
            "bool" => "bool",
            "char" => "character",
            "Array" => "array",
            "Map" => "map",
            "()" => "()",
            other => other,
        })
        .collect();
    format!(
        "no function `{name}` takes ({}); check the number and types of its arguments",
        args.join(", ")
    )
}

/// Whether a source is a stdlib module rather than a playbook.
fn is_library(display: &str) -> bool {
    display.starts_with("stdlib/")
        || display.starts_with("<embedded>/stdlib/")
        || display.contains("/stdlib/")
}

fn module_display(name: &str, sources: &HashMap<String, String>) -> String {
    if sources.contains_key(name) {
        return name.to_string();
    }
    let suffix = format!("stdlib/{}.rhai", name.trim_end_matches(".rhai"));
    sources
        .keys()
        .find(|k| k.ends_with(&suffix))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        // Keep acronyms and names (`ARGS`) as they are.
        Some(c) if c.is_uppercase() && !chars.next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().collect::<String>() + &s[c.len_utf8()..]
        }
        _ => s.to_string(),
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.located {
            return f.write_str(&self.message);
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{}:{}: {}", self.file, line, column, self.message)?;
                // Bad input is about the arguments, not the playbook's code: no snippet.
                if let (Some(src), false) = (&self.source_line, self.kind == ErrorKind::BadInput) {
                    writeln!(f)?;
                    let gutter = line.to_string().len();
                    writeln!(f, "{:gutter$} |", "")?;
                    writeln!(f, "{line} | {src}")?;
                    // Columns count characters; tabs keep their width in the caret line.
                    let pad: String = src
                        .chars()
                        .take(column.saturating_sub(1))
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    write!(f, "{:gutter$} | {pad}^", "")?;
                }
                Ok(())
            }
            (Some(line), None) => write!(f, "{}:{}: {}", self.file, line, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScriptError {}
