//! Duplicate suppression: which alert went out on which channel and when, kept in one small
//! JSON file so that a restarted monitor does not send the same alert again.
//!
//! An alert is known by its key (kind, droplet and incident, see [`super::Alert::key`]). Only a
//! channel that delivered is recorded: a channel that failed is tried again on the next call.
//! An entry lasts until its expiry (the suppression window after the first delivery, or the
//! end of a heartbeat's interval) and is then forgotten, so a lasting problem is reported again
//! once per window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file within the directory given to [`Ledger::open`].
pub const FILE: &str = "alerts-sent.json";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot {action} {}: {source}; check the directory's permissions", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid alert ledger ({cause}); remove it (at worst the alerts it records are sent once more)", path.display())]
    Corrupt { path: PathBuf, cause: String },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    /// Channel (`email`, `sms`) -> when it delivered, in seconds since the Unix epoch.
    sent: BTreeMap<String, u64>,
    /// When the entry is forgotten, in seconds since the Unix epoch.
    expires: u64,
}

/// The alerts sent, by key, persisted in `<dir>/alerts-sent.json`.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

pub(crate) fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Ledger {
    /// The ledger in `dir` (created when missing); an empty one if the file does not exist.
    pub fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        let path = dir.join(FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
                path: path.clone(),
                cause: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(LedgerError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        Ok(Ledger { path, entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When `channel` delivered the alert `key`, if that is still within the entry's life.
    pub fn sent_at(&self, key: &str, channel: &str, now: SystemTime) -> Option<SystemTime> {
        let entry = self.entries.get(key)?;
        if entry.expires <= seconds(now) {
            return None;
        }
        entry
            .sent
            .get(channel)
            .map(|&s| UNIX_EPOCH + Duration::from_secs(s))
    }

    /// Records that `channel` delivered `key` at `now`; the entry lives at least until
    /// `expires`. Expired entries are dropped and the file is rewritten atomically.
    pub fn record(
        &mut self,
        key: &str,
        channel: &str,
        now: SystemTime,
        expires: SystemTime,
    ) -> Result<(), LedgerError> {
        let now_s = seconds(now);
        self.entries.retain(|_, e| e.expires > now_s);
        let entry = self.entries.entry(key.to_string()).or_default();
        entry.sent.insert(channel.to_string(), now_s);
        entry.expires = entry.expires.max(seconds(expires));
        self.save()
    }

    fn save(&self) -> Result<(), LedgerError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let text = serde_json::to_string_pretty(&self.entries).expect("the ledger serializes");
        crate::atomic_file::write(&self.path, text.as_bytes()).map_err(|source| LedgerError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_recorded_channel_is_remembered_until_expiry_and_across_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ledger = Ledger::open(dir.path()).expect("opens");
        assert_eq!(ledger.sent_at("failure/web1/7", "email", at(100)), None);
        ledger
            .record("failure/web1/7", "email", at(100), at(400))
            .expect("records");
        assert_eq!(
            ledger.sent_at("failure/web1/7", "email", at(200)),
            Some(at(100))
        );
        assert_eq!(ledger.sent_at("failure/web1/7", "sms", at(200)), None);
        assert_eq!(ledger.sent_at("failure/web1/8", "email", at(200)), None);

        let reopened = Ledger::open(dir.path()).expect("reopens");
        assert_eq!(
            reopened.sent_at("failure/web1/7", "email", at(399)),
            Some(at(100))
        );
        assert_eq!(reopened.sent_at("failure/web1/7", "email", at(400)), None);
    }

    #[test]
    fn expired_entries_are_dropped_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ledger = Ledger::open(dir.path()).expect("opens");
        ledger.record("a", "email", at(0), at(10)).expect("records");
        ledger
            .record("b", "email", at(20), at(30))
            .expect("records");
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("file");
        assert!(!text.contains("\"a\""), "{text}");
        assert!(text.contains("\"b\""), "{text}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE), "{nope").expect("write");
        let err = Ledger::open(dir.path()).expect_err("corrupt");
        let text = err.to_string();
        assert!(
            text.contains("alerts-sent.json is not a valid alert ledger"),
            "{text}"
        );
        assert!(text.contains("remove it"), "{text}");
    }
}
