//! The code a release is built from: `repo` at `branch` (any git URL or a local path), checked
//! out into `config/.infra/checkouts/<project>` and fetched again on the next deploy; or a
//! working tree taken as it is (`--local`), uncommitted changes included.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::DeployError;

/// A tree to build from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub dir: PathBuf,
    /// The full commit id of HEAD.
    pub commit: String,
    /// Uncommitted changes (tracked or untracked) in a `--local` tree.
    pub dirty: bool,
    #[serde(default)]
    pub branch: Option<String>,
}

/// `git` with `args` in `dir`; its standard output, or an error with what git said.
fn git(dir: Option<&Path>, args: &[&str], what: &str) -> Result<String, DeployError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    // Never wait for a password prompt: a deploy is not interactive.
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    let output = command.output().map_err(|e| DeployError::Checkout {
        message: format!("cannot run git ({e}); install git (apt-get install git)"),
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_string());
    }
    let stderr = redact(&String::from_utf8_lossy(&output.stderr));
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(DeployError::Checkout {
        message: format!("{what} failed: {}", tail.join("\n")),
    })
}

/// A URL with its password or token taken out (`https://user:secret@host` -> `https://user:***@host`).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match (word.find("://"), word.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let user_info = &word[scheme + 3..at];
                let user = user_info.split(':').next().unwrap_or("");
                out.push_str(&word[..scheme + 3]);
                if user_info.contains(':') {
                    out.push_str(user);
                    out.push_str(":***");
                } else {
                    out.push_str("***");
                }
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

/// `repo` as git should see it: a relative local path is taken from the project's root (where
/// infra runs), not from the checkout directory.
fn resolve_repo(repo: &str, root: &Path) -> String {
    let looks_local = !repo.contains("://") && !repo.contains('@') && !repo.starts_with("file:");
    if looks_local && Path::new(repo).is_relative() {
        return root.join(repo).display().to_string();
    }
    repo.to_string()
}

/// Fetches `branch` of `repo` into `dir` (cloning the first time) and checks it out exactly,
/// with nothing left over from an earlier checkout.
pub fn checkout(repo: &str, branch: &str, root: &Path, dir: &Path) -> Result<Source, DeployError> {
    let url = resolve_repo(repo, root);
    let shown = redact(repo);
    let reusable = dir.join(".git").is_dir()
        && git(Some(dir), &["remote", "get-url", "origin"], "git remote").ok() == Some(url.clone());
    if !reusable {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| DeployError::Checkout {
                message: format!("cannot clear {}: {e}", dir.display()),
            })?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DeployError::Checkout {
                message: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        git(
            None,
            &["init", "--quiet", &dir.display().to_string()],
            "git init",
        )?;
        git(
            Some(dir),
            &["remote", "add", "origin", &url],
            "git remote add",
        )?;
    }
    git(
        Some(dir),
        &["fetch", "--quiet", "--depth", "1", "origin", branch],
        &format!("fetching branch `{branch}` of {shown}"),
    )?;
    git(
        Some(dir),
        &["checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"],
        "git checkout",
    )?;
    git(Some(dir), &["clean", "-ffdxq"], "git clean")?;
    let commit = git(Some(dir), &["rev-parse", "HEAD"], "git rev-parse")?;
    Ok(Source {
        dir: dir.to_path_buf(),
        commit,
        dirty: false,
        branch: Some(branch.to_string()),
    })
}

/// The working tree at `dir` as it is; dirty when anything differs from HEAD (untracked files
/// included, since the build sees them).
pub fn local(dir: &Path) -> Result<Source, DeployError> {
    if !dir.is_dir() {
        return Err(DeployError::Checkout {
            message: format!(
                "--project-path {} is not a directory; give the path of the project's working tree",
                dir.display()
            ),
        });
    }
    let commit = git(Some(dir), &["rev-parse", "HEAD"], "reading HEAD").map_err(|_| {
        DeployError::Checkout {
            message: format!(
                "{} is not a git working tree with a commit; releases are named after a commit, so `git init` and commit first",
                dir.display()
            ),
        }
    })?;
    let status = git(
        Some(dir),
        &["status", "--porcelain", "--untracked-files=normal"],
        "git status",
    )?;
    let branch = git(
        Some(dir),
        &["symbolic-ref", "--quiet", "--short", "HEAD"],
        "git",
    )
    .ok()
    .filter(|b| !b.is_empty());
    Ok(Source {
        dir: dir.to_path_buf(),
        commit,
        dirty: !status.is_empty(),
        branch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact("fatal: https://me:s3cret@github.com/x.git not found"),
            "fatal: https://me:***@github.com/x.git not found"
        );
        assert_eq!(
            redact("https://tok3n@github.com/x.git"),
            "https://***@github.com/x.git"
        );
        assert_eq!(
            redact("git@github.com:me/app.git"),
            "git@github.com:me/app.git"
        );
    }

    #[test]
    fn relative_repos_are_taken_from_the_project_root() {
        let root = Path::new("/work/p");
        assert_eq!(resolve_repo("../app", root), "/work/p/../app");
        assert_eq!(resolve_repo("/srv/app", root), "/srv/app");
        assert_eq!(
            resolve_repo("git@github.com:me/app.git", root),
            "git@github.com:me/app.git"
        );
        assert_eq!(
            resolve_repo("https://github.com/me/app.git", root),
            "https://github.com/me/app.git"
        );
    }
}
