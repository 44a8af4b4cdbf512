//! Reading typed fields out of JSON while collecting every problem with its path.
//!
//! Config and state loaders are written as "parse, don't validate": they walk the JSON with a
//! [`Checker`], which returns typed values and records what was wrong and where, so one pass
//! yields both the model and the full list of problems.

use serde_json::{Map, Value};

use crate::diagnostic::{Problem, Problems};

pub struct Checker<'a> {
    pub file: &'a str,
    pub problems: Problems,
}

/// A short description of a JSON value for "found ..." in messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => {
            let cut: String = s.chars().take(37).collect();
            format!("\"{cut}...\"")
        }
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `a.b` joined with `.`; keys that are not plain identifiers are quoted.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A JSON path that is only spelled out when a problem needs it: checking a large, valid
/// state file then builds no path strings at all.
pub trait PathArg {
    fn render(&self) -> String;
}

impl PathArg for str {
    fn render(&self) -> String {
        self.to_string()
    }
}

impl PathArg for String {
    fn render(&self) -> String {
        self.clone()
    }
}

/// `parent.key`, joined on demand.
pub struct Field<'a, P: ?Sized + PathArg>(pub &'a P, pub &'a str);

impl<P: ?Sized + PathArg> PathArg for Field<'_, P> {
    fn render(&self) -> String {
        join(&self.0.render(), self.1)
    }
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a str) -> Self {
        Checker {
            file,
            problems: Problems::new(),
        }
    }

    pub fn error(&mut self, path: &(impl PathArg + ?Sized), message: impl Into<String>) {
        self.problems
            .push(Problem::at_path(self.file, &path.render(), message));
    }

    pub fn expected(&mut self, path: &(impl PathArg + ?Sized), what: &str, found: &Value) {
        self.error(path, format!("expected {what}, found {}", describe(found)));
    }

    pub fn object<'v>(
        &mut self,
        path: &(impl PathArg + ?Sized),
        value: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.expected(path, "an object", other);
                None
            }
        }
    }

    /// An optional object field: missing or null gives `None` without a problem.
    pub fn opt_object<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
    ) -> Option<&'v Map<String, Value>> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.object(&Field(path, key), v),
        }
    }

    pub fn string(
        &mut self,
        path: &(impl PathArg + ?Sized),
        value: &Value,
        example: &str,
    ) -> Option<String> {
        match value {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::String(_) => {
                self.error(
                    path,
                    format!("must not be empty; expected a string like {example}"),
                );
                None
            }
            other => {
                self.expected(path, &format!("a string like {example}"), other);
                None
            }
        }
    }

    pub fn req_string(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
        example: &str,
    ) -> Option<String> {
        match map.get(key) {
            None => {
                self.error(
                    &Field(path, key),
                    format!("missing; add a string like {example}"),
                );
                None
            }
            Some(v) => self.string(&Field(path, key), v, example),
        }
    }

    pub fn opt_string(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
        example: &str,
    ) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.string(&Field(path, key), v, example),
        }
    }

    pub fn integer(
        &mut self,
        path: &(impl PathArg + ?Sized),
        value: &Value,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let what = format!("a whole number from {min} to {max}");
                self.expected(path, &what, value);
                None
            }
        }
    }

    pub fn req_integer(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match map.get(key) {
            None => {
                self.error(
                    &Field(path, key),
                    format!("missing; add a whole number from {min} to {max}"),
                );
                None
            }
            Some(v) => self.integer(&Field(path, key), v, min, max),
        }
    }

    pub fn opt_integer(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.integer(&Field(path, key), v, min, max),
        }
    }

    pub fn opt_bool(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        key: &str,
    ) -> Option<bool> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.expected(&Field(path, key), "true or false", other);
                None
            }
        }
    }

    /// A list of strings, each checked by `item` (which returns an error message or `None`);
    /// duplicates are reported.
    pub fn string_list(
        &mut self,
        path: &(impl PathArg + ?Sized),
        value: &Value,
        example: &str,
        item: impl Fn(&str) -> Option<String>,
    ) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.expected(path, &format!("a list of strings like {example}"), value);
            return None;
        };
        let item_path = |i| index(&path.render(), i);
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            match v {
                Value::String(s) => {
                    if let Some(message) = item(s) {
                        self.error(&item_path(i), message);
                        ok = false;
                    } else if out.contains(s) {
                        self.error(
                            &item_path(i),
                            format!("`{s}` is listed twice; list each once"),
                        );
                        ok = false;
                    } else {
                        out.push(s.clone());
                    }
                }
                other => {
                    self.expected(&item_path(i), "a string", other);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub fn one_of(
        &mut self,
        path: &(impl PathArg + ?Sized),
        value: &Value,
        allowed: &[&str],
    ) -> Option<String> {
        match value {
            Value::String(s) if allowed.contains(&s.as_str()) => Some(s.clone()),
            other => {
                let list = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.expected(path, &format!("one of {list}"), other);
                None
            }
        }
    }
}

/// Checks a name used as a hostname (droplets) or in one (projects): RFC 1123 label, lowercase.
pub fn hostname_problem(name: &str, what: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then(|| {
        format!(
            "`{name}` is not a valid {what}; use lowercase letters, digits and hyphens (at most 63, not starting or ending with a hyphen)"
        )
    })
}

/// Checks an identifier such as a service, secret or environment name: lowercase letters,
/// digits and underscores, starting with a letter.
pub fn identifier_problem(name: &str, what: &str) -> Option<String> {
    let valid = name.len() <= 40
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (!valid).then(|| {
        format!(
            "`{name}` is not a valid {what}; use lowercase letters, digits and underscores, starting with a letter (at most 40)"
        )
    })
}

/// Keys under this prefix belong to the user (notes, their own tools): infra keeps them on save
/// and never reports them.
pub const USER_KEY_PREFIX: &str = "x-";

impl Checker<'_> {
    /// Reports each key of `map` that is not in `known`, naming the nearest known key when one
    /// is close, as Terraform does for an unknown argument. A user's `x-` keys are left alone,
    /// and so are the keys in `reported_elsewhere` (a check of their own says what is wrong).
    /// Unknown keys are only reported: the document keeps them on save.
    pub fn unknown_keys(
        &mut self,
        map: &Map<String, Value>,
        path: &(impl PathArg + ?Sized),
        known: &[&str],
        reported_elsewhere: &[&str],
    ) {
        for key in map.keys() {
            let key = key.as_str();
            if known.contains(&key)
                || reported_elsewhere.contains(&key)
                || key.starts_with(USER_KEY_PREFIX)
            {
                continue;
            }
            let message = match nearest(key, known.iter().copied()) {
                Some(near) => format!("unknown key `{key}`; did you mean `{near}`?"),
                None => format!(
                    "unknown key `{key}`; infra does not use it: remove it, or start a key of your own with `{USER_KEY_PREFIX}`"
                ),
            };
            self.error(&Field(path, key), message);
        }
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely
/// misspelling: at most a third of the word's length (and at least 1), as compilers suggest
/// names. Case is ignored, so `Environments` finds `environments`.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance with adjacent transpositions counted as one edit (optimal string
/// alignment), over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back for transpositions, the previous one, the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits_and_transpositions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("enviroments", "environments"), 1);
        assert_eq!(edit_distance("evnironments", "environments"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("size", "size"), 0);
    }

    #[test]
    fn nearest_names_only_a_close_candidate() {
        let known = ["environments", "web_droplets", "web_droplet_spec", "region"];
        assert_eq!(nearest("enviroments", known), Some("environments"));
        assert_eq!(nearest("Environments", known), Some("environments"));
        assert_eq!(nearest("web_droplet", known), Some("web_droplets"));
        assert_eq!(nearest("regoin", known), Some("region"));
        assert_eq!(nearest("colour", known), None);
        assert_eq!(nearest("x", known), None);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_nearest_and_user_keys_left_alone() {
        let value: Value = serde_json::json!({
            "size": "s-1vcpu-1gb",
            "regoin": "lon1",
            "colour": "blue",
            "x-owner": "me",
            "password": "reported by another check"
        });
        let mut c = Checker::new("f.json");
        c.unknown_keys(
            value.as_object().unwrap(),
            "droplets.web",
            &["size", "region", "role"],
            &["password"],
        );
        let lines: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "f.json: droplets.web.regoin: unknown key `regoin`; did you mean `region`?",
                "f.json: droplets.web.colour: unknown key `colour`; infra does not use it: remove it, or start a key of your own with `x-`",
            ]
        );
    }
}
