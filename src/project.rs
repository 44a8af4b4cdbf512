//! The user's project directory: where each file lives, and the embedded defaults that stand in
//! for any file the user has not written.

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
    /// falling back to the embedded default.
    pub fn source(&self, rel: &str) -> Option<Source> {
        let path = self.root.join(rel);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Some(Source {
                display: self.display(&path),
                path: Some(path),
                text,
            });
        }
        embedded(rel).map(|text| Source {
            display: format!("<embedded>/{rel}"),
            path: None,
            text: text.to_string(),
        })
    }

    /// A playbook named on the command line: a path to a file, or the name of an embedded one
    /// (`playbooks/deploy_uat.rhai`, `deploy_uat.rhai` or `deploy_uat`).
    pub fn playbook(&self, name: &str) -> Option<Source> {
        let direct = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            self.root.join(name)
        };
        if let Ok(text) = std::fs::read_to_string(&direct) {
            return Some(Source {
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
            return None;
        }
        self.source(&format!("playbooks/{file}"))
    }
}
