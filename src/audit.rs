//! The audit log, `config/.infra/audit.log`: one JSON line for every change infra makes (when,
//! who, which command, what kind of change to which target, before and after, and how it
//! ended). Written only by [`crate::report::Reporter`]. Never a secret: changes carry names,
//! addresses and sizes, not values.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    user: String,
    command: &'a str,
    kind: &'a str,
    target: &'a str,
    before: &'a Value,
    after: &'a Value,
    result: &'a str,
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

/// Where the entries go, and the command they are recorded under.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pub path: PathBuf,
    pub display: String,
    pub command: String,
}

impl AuditLog {
    /// Appends one entry. A log that cannot be written is reported, never fatal: the change
    /// it records has already happened.
    pub fn record(&self, kind: &str, target: &str, before: &Value, after: &Value, result: &str) {
        let entry = Entry {
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            user: user(),
            command: &self.command,
            kind,
            target,
            before,
            after,
            result,
        };
        let line = serde_json::to_string(&entry).expect("entry serializes");
        let dir = self.path.parent().map(PathBuf::from).unwrap_or_default();
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            // One write per line, so concurrent writers never interleave within a line.
            file.write_all(format!("{line}\n").as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!("cannot append to {}: {e}", self.display);
        }
    }
}
