//! The audit log, `config/.infra/audit.log`: one JSON line for every change infra makes (when,
//! who, which command, what action on which target, and how it ended). Never a secret: callers
//! pass names and addresses, not values.

use std::io::Write;
use std::time::SystemTime;

use serde::Serialize;

use crate::project::Project;

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    user: String,
    command: &'a str,
    action: &'a str,
    target: &'a str,
    result: &'a str,
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

/// Appends one entry. A log that cannot be written is reported, never fatal: the change it
/// records has already happened.
pub fn record(project: &Project, command: &str, action: &str, target: &str, result: &str) {
    let entry = Entry {
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        user: user(),
        command,
        action,
        target,
        result,
    };
    let path = project.infra_dir().join("audit.log");
    let line = serde_json::to_string(&entry).expect("entry serializes");
    let written = std::fs::create_dir_all(project.infra_dir()).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // One write per line, so concurrent writers never interleave within a line.
        file.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!("cannot append to {}: {e}", project.display(&path));
    }
}
