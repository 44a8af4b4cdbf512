//! The user's project directory: where each file lives, and the embedded defaults that stand in
//! for any file the user has not written.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

static PLAYBOOKS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");
static STDLIB: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/stdlib");
static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static CONFIG: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/config");

/// Every embedded default as (path relative to the project root, contents), in a stable order.
pub fn embedded_defaults() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (prefix, dir) in [
        ("config", &CONFIG),
        ("playbooks", &PLAYBOOKS),
        ("stdlib", &STDLIB),
        ("templates", &TEMPLATES),
    ] {
        collect(prefix, dir, &mut out);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn collect(prefix: &str, dir: &'static Dir<'static>, out: &mut Vec<(String, &'static str)>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.push((format!("{prefix}/{}", file.path().display()), text));
        }
    }
    for sub in dir.dirs() {
        collect(prefix, sub, out);
    }
}

/// The embedded default at `rel` (`playbooks/orchestrate.rhai`), if there is one.
pub fn embedded(rel: &str) -> Option<&'static str> {
    let rel = rel.trim_start_matches("./");
    let (top, rest) = rel.split_once('/')?;
    let dir = match top {
        "playbooks" => &PLAYBOOKS,
        "stdlib" => &STDLIB,
        "templates" => &TEMPLATES,
        "config" => &CONFIG,
        _ => return None,
    };
    dir.get_file(rest).and_then(|f| f.contents_utf8())
}

/// A text file from the project, or the embedded default of the same name.
#[derive(Debug, Clone)]
pub struct Source {
    /// How to name it in messages: the path, or `<embedded>/path`.
    pub display: String,
    /// Where it is on disk, if it is.
    pub path: Option<PathBuf>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config_dir: PathBuf,
}

impl Project {
    /// A project rooted at `root`, its config in `config_dir` (relative to `root` unless
    /// absolute).
    pub fn new(root: &Path, config_dir: &Path) -> Project {
        Project {
            root: root.to_path_buf(),
            config_dir: root.join(config_dir),
        }
    }

    /// How to name a path in messages: relative to the project root where it is inside it.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config_dir.join(name)
    }

    pub fn state_path(&self) -> PathBuf {
        self.config_file("infrastructure.json")
    }

    pub fn deployment_path(&self) -> PathBuf {
        self.config_file("deployment_config.json")
    }

    pub fn email_path(&self) -> PathBuf {
        self.config_file("email_config.json")
    }

    pub fn sms_path(&self) -> PathBuf {
        self.config_file("sms_config.json")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.config_file("known_hosts")
    }

    /// `config/.infra/`: lock, audit log, keys, sandbox state.
    pub fn infra_dir(&self) -> PathBuf {
        self.config_dir.join(".infra")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.infra_dir().join("state.lock")
    }

    pub fn ssh_key_path(&self) -> PathBuf {
        self.infra_dir().join("infrastructure_key")
    }

    /// Reads `rel` (`playbooks/x.rhai`, `stdlib/x.rhai`, `templates/x`) from the project,
    /// falling back to the embedded default when the project has no such file. A file that is
    /// there but cannot be read is an error, not a reason to use the default.
    pub fn source(&self, rel: &str) -> Result<Source, SourceError> {
        let path = self.root.join(rel);
        if let Some(text) = read_text(&path).map_err(|problem| self.unreadable(&path, problem))? {
            return Ok(Source {
                display: self.display(&path),
                path: Some(path),
                text,
            });
        }
        embedded(rel)
            .map(|text| Source {
                display: format!("<embedded>/{rel}"),
                path: None,
                text: text.to_string(),
            })
            .ok_or(SourceError::NotFound)
    }

    /// A playbook named on the command line: a path to a file, or the name of an embedded one
    /// (`playbooks/deploy_uat.rhai`, `deploy_uat.rhai` or `deploy_uat`).
    pub fn playbook(&self, name: &str) -> Result<Source, SourceError> {
        let direct = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            self.root.join(name)
        };
        if let Some(text) =
            read_text(&direct).map_err(|problem| self.unreadable(&direct, problem))?
        {
            return Ok(Source {
                display: self.display(&direct),
                path: Some(direct),
                text,
            });
        }
        let file = name
            .trim_start_matches("./")
            .trim_start_matches("playbooks/");
        let file = if file.ends_with(".rhai") {
            file.to_string()
        } else {
            format!("{file}.rhai")
        };
        if file.contains('/') {
            return Err(SourceError::NotFound);
        }
        self.source(&format!("playbooks/{file}"))
    }

    fn unreadable(&self, path: &Path, problem: ReadProblem) -> SourceError {
        SourceError::Unreadable {
            display: self.display(path),
            problem,
        }
    }
}

/// Why a project file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Neither the project nor the embedded defaults have it.
    NotFound,
    /// Something is at that path, but it cannot be read as text.
    Unreadable {
        display: String,
        problem: ReadProblem,
    },
}

/// What is wrong with a path that exists: each case asks the user for a different fix, so
/// none of them may read as "not found".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadProblem {
    Directory,
    /// A symbolic link whose target does not exist (the target as the link states it).
    BrokenLink(PathBuf),
    /// The first byte that is not valid UTF-8: its offset from the start and its line.
    NotUtf8 {
        offset: usize,
        line: usize,
    },
    /// Any other failure to read (permission denied, an I/O error), in the system's words.
    Io(String),
}

impl std::fmt::Display for ReadProblem {
    /// What is wrong, after the file's name: "... is a directory, not a file".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::Directory => f.write_str("is a directory, not a file"),
            ReadProblem::BrokenLink(target) => write!(
                f,
                "is a symbolic link to `{}`, which does not exist; point it at a file or remove it",
                target.display()
            ),
            ReadProblem::NotUtf8 { offset, line } => write!(
                f,
                "exists but is not UTF-8 text (the byte at offset {offset}, on line {line}, is not valid UTF-8); save it as UTF-8"
            ),
            ReadProblem::Io(reason) => write!(f, "exists but cannot be read: {reason}"),
        }
    }
}

impl std::fmt::Display for SourceError {
    /// The part after what the file is (`playbook `, `module `): "`x.rhai` is a directory...".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::NotFound => f.write_str("not found"),
            SourceError::Unreadable { display, problem } => write!(f, "`{display}` {problem}"),
        }
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    /// Why the playbook `name` (as the user gave it) cannot be run, and what to do.
    pub fn playbook_message(&self, name: &str) -> String {
        match self {
            SourceError::NotFound => format!(
                "playbook `{name}` not found; give a path to a .rhai file or the name of a bundled playbook (`infra init` writes them to playbooks/)"
            ),
            SourceError::Unreadable {
                problem: ReadProblem::Directory,
                ..
            } => format!("playbook {self}; give a playbook file (.rhai)"),
            SourceError::Unreadable { .. } => format!("playbook {self}"),
        }
    }
}

/// The text of the file at `path`: `Ok(None)` when nothing is there at all, an error when
/// something is there that cannot be read as text.
pub fn read_text(path: &Path) -> Result<Option<String>, ReadProblem> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let meta = match std::fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(m) if matches!(m.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    return Ok(None)
                }
                // Something may be there, behind a directory we may not enter.
                Err(m) => return Err(ReadProblem::Io(io_reason(&m))),
            };
            if meta.file_type().is_symlink() && std::fs::metadata(path).is_err() {
                let target = std::fs::read_link(path).unwrap_or_default();
                return Err(ReadProblem::BrokenLink(target));
            }
            if path.is_dir() {
                return Err(ReadProblem::Directory);
            }
            return Err(ReadProblem::Io(io_reason(&e)));
        }
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ReadProblem::NotUtf8 { offset, line }
    })
}

/// An I/O error in the system's words, lowercase as our messages are ("permission denied
/// (os error 13)").
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_text_tells_missing_from_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        std::fs::write(at("ok.rhai"), "log(\"é\");\n").unwrap();
        std::fs::write(at("latin1.rhai"), b"// ok\n// caf\xe9\n").unwrap();
        std::fs::create_dir(at("dir.rhai")).unwrap();
        std::os::unix::fs::symlink("gone.rhai", at("link.rhai")).unwrap();
        std::os::unix::fs::symlink("ok.rhai", at("good-link.rhai")).unwrap();

        assert_eq!(read_text(&at("ok.rhai")), Ok(Some("log(\"é\");\n".into())));
        assert_eq!(
            read_text(&at("good-link.rhai")),
            Ok(Some("log(\"é\");\n".into()))
        );
        assert_eq!(read_text(&at("nosuch.rhai")), Ok(None));
        assert_eq!(read_text(&at("ok.rhai/below")), Ok(None));
        assert_eq!(
            read_text(&at("latin1.rhai")),
            Err(ReadProblem::NotUtf8 {
                offset: 12,
                line: 2
            })
        );
        assert_eq!(read_text(&at("dir.rhai")), Err(ReadProblem::Directory));
        assert_eq!(
            read_text(&at("link.rhai")),
            Err(ReadProblem::BrokenLink(PathBuf::from("gone.rhai")))
        );
        // Permission denied cannot be set up here: the tests run as root, who reads any file.
        // Any other read failure takes the same path: reading /proc/self/mem from offset 0 is
        // an I/O error on Linux.
        assert_eq!(
            read_text(Path::new("/proc/self/mem")),
            Err(ReadProblem::Io("input/output error (os error 5)".into()))
        );
    }

    #[test]
    fn a_broken_project_file_is_reported_not_replaced_by_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), Path::new("config"));
        std::fs::create_dir(dir.path().join("playbooks")).unwrap();
        std::fs::write(dir.path().join("playbooks/scale.rhai"), b"\xff").unwrap();
        let err = project.playbook("scale").unwrap_err();
        assert_eq!(
            err.playbook_message("scale"),
            "playbook `playbooks/scale.rhai` exists but is not UTF-8 text (the byte at offset 0, on line 1, is not valid UTF-8); save it as UTF-8"
        );
        std::fs::remove_file(dir.path().join("playbooks/scale.rhai")).unwrap();
        assert_eq!(
            project.playbook("scale").unwrap().display,
            "<embedded>/playbooks/scale.rhai"
        );
        assert_eq!(
            project.playbook("nosuch").unwrap_err(),
            SourceError::NotFound
        );
    }
}
