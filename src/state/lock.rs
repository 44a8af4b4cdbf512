//! One writer at a time: an exclusive advisory lock on `config/.infra/state.lock`, holding the
//! holder's pid, host, command and start time so a second writer can say who has it.
//!
//! The kernel drops an `flock` when its process dies, so a lock file whose holder is gone is
//! free to take; finding the previous holder's details in it then means it was stale.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the state is locked by pid {} on {} (`{}`) since {}; wait for it to finish, or retry with `--lock-timeout SECONDS`", .0.pid, .0.host, .0.command, .0.since)]
    Held(Holder),
    #[error("the state is locked by another process (lock file `{0}`); wait for it to finish")]
    HeldUnknown(String),
    #[error("cannot open lock file `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    /// Set when the lock file still named a holder that had died.
    pub stale: Option<Holder>,
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl StateLock {
    /// Takes the lock, waiting up to `timeout` for another holder to let go.
    pub fn acquire(path: &Path, command: &str, timeout: Duration) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(match read_holder(&mut file) {
                            Some(holder) => LockError::Held(holder),
                            None => LockError::HeldUnknown(path.display().to_string()),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let stale = read_holder(&mut file);
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let text = serde_json::to_string(&holder).expect("holder serializes");
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StateLock {
            file,
            path: path.to_path_buf(),
            stale,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // An empty lock file means "free"; the flock itself goes with the descriptor.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
