//! The checkpoint of one droplet's recovery, `config/.infra/recovery/<droplet>.json`: the
//! highest fencing epoch seen, and the open incident (its id, the droplet as it was, the steps
//! done with what they did, the droplets created), so a re-run resumes where the last one
//! stopped and never repeats a step that finished. Written atomically after every step.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fleet::replace::SnapshotImage;
use crate::project::Project;

/// A droplet as the cloud had it: id and public address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub id: u64,
    pub ip: String,
}

/// What the replacement is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageChoice {
    /// The newest snapshot infra took of the droplet: its containers come with it.
    Snapshot(SnapshotImage),
    /// No snapshot: the base image, bootstrapped and deployed afresh.
    Base { slug: String },
}

/// One finished step and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// RFC 3339, UTC.
    pub at: String,
    /// The fencing epoch it ran under.
    pub epoch: u64,
    #[serde(default)]
    pub result: Value,
}

/// One outage of one droplet, from the first step to the restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `<droplet>-<yyyymmdd-hhmmss>`; the replacement is tagged `infra-recovery-<id>`.
    pub id: String,
    pub started: String,
    /// The droplet as the state recorded it when the incident began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Placed>,
    /// Power-cycled once already (the monitors' check step never does it twice).
    #[serde(default)]
    pub power_cycled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageChoice>,
    /// Every droplet id a create of this incident returned, kept or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Placed>,
    /// By step name, in the order they finished.
    #[serde(default)]
    pub steps: IndexMap<String, StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

impl Incident {
    pub fn new(droplet: &str, original: Option<Placed>) -> Incident {
        let now = std::time::SystemTime::now();
        Incident {
            id: format!("{droplet}-{}", crate::timestamp::compact(now)),
            started: humantime::format_rfc3339_seconds(now).to_string(),
            original,
            power_cycled: false,
            image: None,
            created: Vec::new(),
            replacement: None,
            steps: IndexMap::new(),
            finished: None,
        }
    }

    /// The tag a replacement made in this incident carries, to be found again (adopted) by a
    /// re-run instead of made twice.
    pub fn tag(&self) -> String {
        format!("infra-recovery-{}", self.id)
    }

    pub fn done(&self, step: &str) -> Option<&StepRecord> {
        self.steps.get(step)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub droplet: String,
    /// The highest fencing epoch any recovery of this droplet ran under: a side effect under
    /// a lower one is refused.
    #[serde(default)]
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// The last incident that ended, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Incident>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the recovery checkpoint {path}: {reason}; move it away only once no recovery of this droplet runs (it holds what the last run did)")]
    Read { path: String, reason: String },
    #[error("cannot write the recovery checkpoint {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn recovery_dir(project: &Project) -> PathBuf {
    project.infra_dir().join("recovery")
}

pub fn checkpoint_path(project: &Project, droplet: &str) -> PathBuf {
    recovery_dir(project).join(format!("{droplet}.json"))
}

impl Checkpoint {
    /// The checkpoint at `path`; an empty one for `droplet` when there is none.
    pub fn load(path: &Path, droplet: &str) -> Result<Checkpoint, CheckpointError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoint {
                    droplet: droplet.to_string(),
                    ..Default::default()
                })
            }
            Err(e) => {
                return Err(CheckpointError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| CheckpointError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let write = |source| CheckpointError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let mut text = serde_json::to_string_pretty(self).expect("checkpoint serializes");
        text.push('\n');
        crate::atomic_file::write(path, text.as_bytes()).map_err(write)
    }

    /// The open incident, begun now (with `original`) when there is none.
    pub fn open(&mut self, original: impl FnOnce() -> Option<Placed>) -> &mut Incident {
        if self.incident.is_none() {
            self.incident = Some(Incident::new(&self.droplet, original()));
        }
        self.incident.as_mut().expect("just opened")
    }

    /// Records `step` as done under `epoch` with `result`.
    pub fn record(&mut self, step: &str, epoch: u64, result: Value) {
        let incident = self.open(|| None);
        incident.steps.insert(
            step.to_string(),
            StepRecord {
                at: crate::deploy::releases::now_rfc3339(),
                epoch,
                result,
            },
        );
    }

    /// Ends the open incident (kept as `last`).
    pub fn close(&mut self) {
        if let Some(mut incident) = self.incident.take() {
            incident.finished = Some(crate::deploy::releases::now_rfc3339());
            self.last = Some(incident);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_checkpoint_survives_a_save_and_keeps_what_each_step_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery/shop-web1.json");
        let mut ck = Checkpoint::load(&path, "shop-web1").unwrap();
        assert_eq!(ck.epoch, 0);
        assert!(ck.incident.is_none());
        let id = ck
            .open(|| {
                Some(Placed {
                    id: 7,
                    ip: "10.0.0.7".into(),
                })
            })
            .id
            .clone();
        assert!(id.starts_with("shop-web1-"), "{id}");
        ck.epoch = 3;
        ck.record("drain", 3, json!({"sole": []}));
        ck.save(&path).unwrap();

        let mut again = Checkpoint::load(&path, "shop-web1").unwrap();
        assert_eq!(again, ck);
        let incident = again.open(|| panic!("the incident is open already"));
        assert_eq!(incident.id, id);
        assert_eq!(incident.original.as_ref().map(|p| p.id), Some(7));
        assert_eq!(incident.done("drain").map(|s| s.epoch), Some(3));
        assert!(incident.done("fence").is_none());
        assert_eq!(incident.tag(), format!("infra-recovery-{id}"));

        again.close();
        assert!(again.incident.is_none());
        assert_eq!(
            again.last.as_ref().map(|i| i.id.as_str()),
            Some(id.as_str())
        );
        assert!(again.last.as_ref().unwrap().finished.is_some());
    }

    #[test]
    fn a_damaged_checkpoint_is_named_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web1.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = Checkpoint::load(&path, "web1").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "cannot read the recovery checkpoint {}",
                path.display()
            )),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }
}
