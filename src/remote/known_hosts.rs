//! `KnownHosts`: `config/known_hosts`, the droplets' pinned SSH host keys in OpenSSH's format
//! (`name,ip key-type base64`, one line per droplet, so `ssh -o UserKnownHostsFile=...` reads it
//! too). A droplet's key is pinned the first time infra connects to it (trust on first use) and
//! enforced on every connection after that.
//!
//! A pin belongs to the droplet's name, not its address: the cloud hands a deleted droplet's
//! address to the next droplet it creates, which is a different host with a different key. So a
//! host with a name is looked up by name, and pinning it takes its address off any other name's
//! line. A host without a name is looked up by address.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::{HashAlg, PublicKey};

use super::error::HostKeyChange;
use super::{Host, RemoteError};
use crate::project::Project;

/// Serialises read-modify-write of known_hosts files within this process (a pool verifies many
/// hosts at once); the write itself is atomic, so readers never see half a file.
static UPDATE: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

/// What [`KnownHosts::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The host had no pin; its key is pinned now.
    Pinned,
    /// The key is the pinned one.
    Matched,
}

struct Line {
    /// 1-based, as editors count.
    number: usize,
    text: String,
    entry: Option<Entry>,
}

struct Entry {
    hosts: Vec<String>,
    key: PublicKey,
    /// `key-type base64`, without a comment.
    key_text: String,
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The project's `config/known_hosts`.
    pub fn for_project(project: &Project) -> KnownHosts {
        KnownHosts::new(project.known_hosts_path())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key`, offered by `host`, against its pin, pinning it if the host has none.
    pub fn verify(&self, host: &Host, key: &PublicKey) -> Result<HostKeyCheck, RemoteError> {
        let _update = UPDATE.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = self.load()?;
        let ip = host.ip.to_string();
        let label = if host.name.is_empty() {
            &ip
        } else {
            &host.name
        };
        let matching: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].hosts().contains(label))
            .collect();
        if let Some(&first) = matching.first() {
            let same = matching.iter().copied().find(|&i| {
                lines[i]
                    .key()
                    .is_some_and(|k| k.key_data() == key.key_data())
            });
            let Some(i) = same else {
                let pinned = lines[first].key().expect("a matching line has a key");
                return Err(RemoteError::HostKeyChanged {
                    host: host.clone(),
                    change: Box::new(HostKeyChange {
                        known_hosts: self.path.clone(),
                        line: lines[first].number,
                        pinned: fingerprint(pinned),
                        offered: fingerprint(key),
                    }),
                });
            };
            // The droplet may have a new address (power cycled, or restored): record it, so the
            // file stays true for OpenSSH too.
            if !host.name.is_empty() && !lines[i].hosts().contains(&ip) {
                let key = lines[i].key().expect("a matching line has a key").clone();
                release_address(&mut lines, &ip);
                let pinned = self.line(0, host, key)?;
                if let Some(line) = lines.iter_mut().find(|l| l.hosts().contains(label)) {
                    *line = Line {
                        number: line.number,
                        ..pinned
                    };
                }
                self.store(&lines)?;
            }
            return Ok(HostKeyCheck::Matched);
        }
        if !host.name.is_empty() {
            release_address(&mut lines, &ip);
        }
        lines.push(self.line(0, host, key.clone())?);
        self.store(&lines)?;
        tracing::info!(
            "pinned the SSH host key of {host}: {} in `{}`",
            fingerprint(key),
            self.path.display()
        );
        Ok(HostKeyCheck::Pinned)
    }

    /// Drops the pin of the droplet `name` (it was recreated on purpose, so its next key is
    /// pinned afresh). Returns how many lines were removed.
    pub fn forget(&self, name: &str) -> Result<usize, RemoteError> {
        let _update = UPDATE.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = self.load()?;
        let before = lines.len();
        lines.retain(|l| !l.hosts().iter().any(|h| h == name));
        let removed = before - lines.len();
        if removed > 0 {
            self.store(&lines)?;
            tracing::info!(
                "forgot the SSH host key of `{name}` in `{}`",
                self.path.display()
            );
        }
        Ok(removed)
    }

    /// The key pinned for `host` (looked up as [`KnownHosts::verify`] does), if any.
    pub fn pinned(&self, host: &Host) -> Result<Option<PublicKey>, RemoteError> {
        let ip = host.ip.to_string();
        let label = if host.name.is_empty() {
            &ip
        } else {
            &host.name
        };
        Ok(self
            .load()?
            .into_iter()
            .find(|l| l.hosts().contains(label))
            .and_then(|l| l.entry.map(|e| e.key)))
    }

    /// The line that pins `key` for `host`.
    fn line(&self, number: usize, host: &Host, key: PublicKey) -> Result<Line, RemoteError> {
        let hosts = if host.name.is_empty() {
            vec![host.ip.to_string()]
        } else {
            vec![host.name.clone(), host.ip.to_string()]
        };
        // Without the comment: a host key's comment is the server's business.
        let key_text = PublicKey::new(key.key_data().clone(), "")
            .to_openssh()
            .map_err(|e| RemoteError::KnownHostsWrite {
                path: self.path.clone(),
                reason: format!("cannot encode the host key of {host}: {e}"),
            })?
            .trim_end()
            .to_owned();
        let entry = Entry {
            hosts,
            key,
            key_text,
        };
        Ok(Line {
            number,
            text: entry.render(),
            entry: Some(entry),
        })
    }

    fn load(&self) -> Result<Vec<Line>, RemoteError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(RemoteError::KnownHostsRead {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        text.lines()
            .enumerate()
            .map(|(i, text)| {
                let entry = parse(text).map_err(|reason| RemoteError::KnownHostsInvalid {
                    path: self.path.clone(),
                    line: i + 1,
                    reason,
                })?;
                Ok(Line {
                    number: i + 1,
                    text: text.to_owned(),
                    entry,
                })
            })
            .collect()
    }

    fn store(&self, lines: &[Line]) -> Result<(), RemoteError> {
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        let write_error = |e: std::io::Error| RemoteError::KnownHostsWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        crate::atomic_file::write(&self.path, text.as_bytes()).map_err(write_error)
    }
}

impl Line {
    fn hosts(&self) -> &[String] {
        self.entry.as_ref().map_or(&[], |e| &e.hosts)
    }

    fn key(&self) -> Option<&PublicKey> {
        self.entry.as_ref().map(|e| &e.key)
    }
}

impl Entry {
    fn render(&self) -> String {
        format!("{} {}", self.hosts.join(","), self.key_text)
    }
}

/// Takes `ip` off every line: it belongs to the host being pinned now. A line left with no host
/// goes.
fn release_address(lines: &mut Vec<Line>, ip: &str) {
    lines.retain_mut(|line| {
        let Some(entry) = line.entry.as_mut() else {
            return true;
        };
        if !entry.hosts.iter().any(|h| h == ip) {
            return true;
        }
        entry.hosts.retain(|h| h != ip);
        line.text = entry.render();
        !entry.hosts.is_empty()
    });
}

/// A line's entry; `None` for blank lines, comments, and what infra does not use but leaves in
/// place (hashed host names, `@cert-authority` and `@revoked` markers).
fn parse(text: &str) -> Result<Option<Entry>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') || text.starts_with('@') || text.starts_with('|') {
        return Ok(None);
    }
    let Some((hosts, key)) = text.split_once(char::is_whitespace) else {
        return Err("expected `name,ip key-type base64`".into());
    };
    let mut fields = key.split_whitespace();
    let key_text = match (fields.next(), fields.next()) {
        (Some(kind), Some(base64)) => format!("{kind} {base64}"),
        _ => return Err("expected `name,ip key-type base64`".into()),
    };
    let key = PublicKey::from_openssh(&key_text)
        .map_err(|e| format!("cannot read the key ({e}); expected `name,ip key-type base64`"))?;
    Ok(Some(Entry {
        hosts: hosts.split(',').map(str::to_owned).collect(),
        key,
        key_text,
    }))
}

/// `SHA256:...`, as `ssh-keygen -l` and OpenSSH's warnings show a key.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBcI20HvMX3amnzGzgEPQjBQfa9EpGh7V0Dw6ORyJ2nc";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXw2FNHUqLdRq6945sFgUZ7d0pYIEN4bwLWUGdHz5cH";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn host(name: &str, ip: &str) -> Host {
        Host::new(name, ip.parse().unwrap())
    }

    fn file() -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownHosts::new(dir.path().join("config/known_hosts"));
        (dir, known)
    }

    #[test]
    fn pins_on_first_use_then_enforces() {
        let (_dir, known) = file();
        let web1 = host("web1", "10.0.0.2");
        assert_eq!(
            known.verify(&web1, &key(KEY_A)).unwrap(),
            HostKeyCheck::Pinned
        );
        assert_eq!(
            std::fs::read_to_string(known.path()).unwrap(),
            format!("web1,10.0.0.2 {KEY_A}\n")
        );
        assert_eq!(
            known.verify(&web1, &key(KEY_A)).unwrap(),
            HostKeyCheck::Matched
        );
        let error = known.verify(&web1, &key(KEY_B)).unwrap_err();
        let message = error.to_string();
        assert!(matches!(&error, RemoteError::HostKeyChanged { change, .. } if change.line == 1));
        assert!(message.contains("`web1` (10.0.0.2)"), "{message}");
        assert!(message.contains(&fingerprint(&key(KEY_A))), "{message}");
        assert!(message.contains(&fingerprint(&key(KEY_B))), "{message}");
        assert!(message.contains("remove line 1"), "{message}");
    }

    #[test]
    fn forget_lets_a_recreated_droplet_pin_again() {
        let (_dir, known) = file();
        let web1 = host("web1", "10.0.0.2");
        known
            .verify(&host("web2", "10.0.0.3"), &key(KEY_B))
            .unwrap();
        known.verify(&web1, &key(KEY_A)).unwrap();
        assert_eq!(known.forget("web1").unwrap(), 1);
        assert_eq!(known.forget("web1").unwrap(), 0);
        assert_eq!(
            known.verify(&web1, &key(KEY_B)).unwrap(),
            HostKeyCheck::Pinned
        );
        assert_eq!(
            std::fs::read_to_string(known.path()).unwrap(),
            format!("web2,10.0.0.3 {KEY_B}\nweb1,10.0.0.2 {KEY_B}\n")
        );
    }

    #[test]
    fn an_address_moves_to_the_droplet_that_has_it_now() {
        let (_dir, known) = file();
        known.verify(&host("old", "10.0.0.2"), &key(KEY_A)).unwrap();
        // A new droplet got the deleted one's address: a new host, not a changed key.
        assert_eq!(
            known.verify(&host("new", "10.0.0.2"), &key(KEY_B)).unwrap(),
            HostKeyCheck::Pinned
        );
        // `old` came back at another address with its own key.
        assert_eq!(
            known.verify(&host("old", "10.0.0.9"), &key(KEY_A)).unwrap(),
            HostKeyCheck::Matched
        );
        assert_eq!(
            std::fs::read_to_string(known.path()).unwrap(),
            format!("old,10.0.0.9 {KEY_A}\nnew,10.0.0.2 {KEY_B}\n")
        );
        // A host known only by its address is looked up by it.
        let bare = host("", "10.0.0.2");
        assert_eq!(
            known.verify(&bare, &key(KEY_B)).unwrap(),
            HostKeyCheck::Matched
        );
        assert!(known.verify(&bare, &key(KEY_A)).is_err());
    }

    #[test]
    fn comments_and_foreign_lines_are_kept_and_bad_lines_named() {
        let (_dir, known) = file();
        std::fs::create_dir_all(known.path().parent().unwrap()).unwrap();
        let kept = format!("# pinned by infra\n|1|abc=|def= {KEY_B}\n\n");
        std::fs::write(known.path(), &kept).unwrap();
        known
            .verify(&host("web1", "10.0.0.2"), &key(KEY_A))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(known.path()).unwrap(),
            format!("{kept}web1,10.0.0.2 {KEY_A}\n")
        );
        std::fs::write(known.path(), "web1,10.0.0.2 ssh-ed25519 not-base64\n").unwrap();
        let message = known
            .verify(&host("web1", "10.0.0.2"), &key(KEY_A))
            .unwrap_err()
            .to_string();
        assert!(message.contains("known_hosts` line 1:"), "{message}");
    }
}
