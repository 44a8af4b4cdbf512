//! Releases of one project-environment: what was built from which commit, the image digests,
//! and which container of which release runs on each droplet. Kept in
//! `config/.infra/releases/<project>-<env>.json` (written atomically, under the deploy lock),
//! and copied to the master after each deploy so the monitor can redeploy a release without
//! the machine that built it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::project::Project;

/// One service's image in a release: the repository in the registry and its manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `hostomatic-backend`: one repository per project and service, shared by environments,
    /// so prod's tag of UAT's image is the same manifest.
    pub repository: String,
    /// `sha256:...`: the manifest digest droplets pull by.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// `uat-20261202-065000-abc1234`.
    pub name: String,
    /// The full commit id the images were built from.
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Built from a working tree with uncommitted changes.
    #[serde(default)]
    pub dirty: bool,
    /// RFC 3339, UTC: when the release was made.
    pub created: String,
    /// The release of another environment whose images this one deploys (prod from UAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// By service name.
    pub images: IndexMap<String, ImageRecord>,
    /// When it last went live; none for a release that never finished a deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<String>,
}

/// The container of one service on one droplet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveContainer {
    pub release: String,
    pub container: String,
    /// The droplet port nginx sends the service's traffic to (web services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    /// The release every service runs after the last deploy that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Oldest first.
    #[serde(default)]
    pub releases: Vec<ReleaseRecord>,
    /// Service -> droplet -> its container, as the droplets run them now (updated as a rollout
    /// goes, so an interrupted one leaves the truth).
    #[serde(default)]
    pub live: IndexMap<String, IndexMap<String, LiveContainer>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleasesError {
    #[error("cannot read {path}: {reason}; move it away to start the release history afresh")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn releases_dir(project: &Project) -> PathBuf {
    project.infra_dir().join("releases")
}

pub fn releases_path(project: &Project, project_env: &str) -> PathBuf {
    releases_dir(project).join(format!("{project_env}.json"))
}

impl Releases {
    /// The releases of `project_env`; none yet when the file does not exist.
    pub fn load(path: &Path) -> Result<Releases, ReleasesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Releases::default()),
            Err(e) => {
                return Err(ReleasesError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| ReleasesError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), ReleasesError> {
        let write = |source| ReleasesError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let mut text = serde_json::to_string_pretty(self).expect("releases serialize");
        text.push('\n');
        crate::atomic_file::write(path, text.as_bytes()).map_err(write)
    }

    pub fn find(&self, name: &str) -> Option<&ReleaseRecord> {
        self.releases.iter().find(|r| r.name == name)
    }

    pub fn current_release(&self) -> Option<&ReleaseRecord> {
        self.current.as_deref().and_then(|name| self.find(name))
    }

    /// Adds `release`, or replaces the one of the same name.
    pub fn record(&mut self, release: ReleaseRecord) {
        match self.releases.iter_mut().find(|r| r.name == release.name) {
            Some(existing) => *existing = release,
            None => self.releases.push(release),
        }
    }

    /// The release that went live before the current one: what `rollback` goes back to.
    pub fn previous(&self) -> Option<&ReleaseRecord> {
        let current = self.current.as_deref()?;
        let deployed: Vec<&ReleaseRecord> = self
            .releases
            .iter()
            .filter(|r| r.deployed.is_some() && r.name != current)
            .collect();
        deployed
            .into_iter()
            .max_by(|a, b| a.deployed.cmp(&b.deployed))
    }

    /// Releases whose images may leave the droplets: all but the newest `keep` and whatever
    /// runs now.
    pub fn beyond_retention(&self, keep: usize) -> Vec<&ReleaseRecord> {
        let running: std::collections::HashSet<&str> = self
            .live
            .values()
            .flat_map(|by_droplet| by_droplet.values().map(|c| c.release.as_str()))
            .chain(self.current.as_deref())
            .collect();
        let count = self.releases.len();
        self.releases
            .iter()
            .take(count.saturating_sub(keep))
            .filter(|r| !running.contains(r.name.as_str()))
            .collect()
    }

    /// Which release runs each service on each droplet, as `service@droplet -> release`.
    pub fn live_releases(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (service, by_droplet) in &self.live {
            for (droplet, c) in by_droplet {
                out.push((service.clone(), droplet.clone(), c.release.clone()));
            }
        }
        out
    }
}

/// `uat-20261202-065000-abc1234`, with `-dirty` for a working tree with uncommitted changes.
pub fn release_name(environment: &str, at: SystemTime, commit: &str, dirty: bool) -> String {
    let short: String = commit.chars().take(7).collect();
    format!(
        "{environment}-{}-{short}{}",
        crate::timestamp::compact(at),
        if dirty { "-dirty" } else { "" }
    )
}

/// RFC 3339, UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn release(name: &str, deployed: Option<&str>) -> ReleaseRecord {
        ReleaseRecord {
            name: name.into(),
            commit: "abc".into(),
            branch: None,
            dirty: false,
            created: "2026-01-01T00:00:00Z".into(),
            promoted_from: None,
            images: IndexMap::new(),
            deployed: deployed.map(str::to_string),
        }
    }

    #[test]
    fn release_names_carry_the_time_and_the_short_commit() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_194_228); // 2026-12-02T06:50:28Z
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            release_name("uat", at, commit, false),
            "uat-20261202-065028-0123456"
        );
        assert_eq!(
            release_name("prod", at, commit, true),
            "prod-20261202-065028-0123456-dirty"
        );
    }

    #[test]
    fn previous_is_the_last_deployed_before_the_current_one() {
        let mut r = Releases::default();
        r.record(release("a", Some("2026-01-01T00:00:01Z")));
        r.record(release("b", Some("2026-01-01T00:00:02Z")));
        r.record(release("c", None));
        r.current = Some("b".into());
        assert_eq!(r.previous().map(|x| x.name.as_str()), Some("a"));
        // After a rollback to a, the previous one is b.
        r.record(release("a", Some("2026-01-01T00:00:03Z")));
        r.current = Some("a".into());
        assert_eq!(r.previous().map(|x| x.name.as_str()), Some("b"));
    }

    #[test]
    fn retention_keeps_the_newest_and_whatever_runs() {
        let mut r = Releases::default();
        for name in ["r1", "r2", "r3", "r4"] {
            r.record(release(name, Some("2026-01-01T00:00:00Z")));
        }
        r.current = Some("r4".into());
        r.live.entry("backend".into()).or_default().insert(
            "web1".into(),
            LiveContainer {
                release: "r1".into(),
                container: "x".into(),
                port: None,
                digest: "sha256:1".into(),
            },
        );
        let old: Vec<&str> = r
            .beyond_retention(2)
            .iter()
            .map(|x| x.name.as_str())
            .collect();
        assert_eq!(old, vec!["r2"]);
    }
}
