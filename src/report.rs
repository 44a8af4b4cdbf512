//! The one way infra tells what it does. Every change is a [`Change`] (`kind`, `target`,
//! `before`, `after`): in a dry run it is printed as what would be done; when applied it is
//! printed and appended to the audit log; with `--json` each is one JSON object per line.
//! Progress on long work (a droplet booting, a step's timing) goes through here too, so a
//! person and a program read the same run. Core code reports; natives never print.

use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::AuditLog;
use crate::output;

/// One change to the cloud, a droplet or the state.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: String,
    pub target: String,
    pub before: Value,
    pub after: Value,
}

impl Change {
    pub fn new(kind: &str, target: &str, before: Value, after: Value) -> Change {
        Change {
            kind: kind.to_string(),
            target: target.to_string(),
            before,
            after,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Reporter {
    json: bool,
    dry_run: bool,
    audit: AuditLog,
}

impl Reporter {
    pub fn new(audit: AuditLog, json: bool, dry_run: bool) -> Reporter {
        Reporter {
            json,
            dry_run,
            audit,
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// A change this dry run does not make: `[dry-run] would {what}`.
    pub fn would(&self, change: &Change, what: &str) {
        if self.json {
            self.event("change", change, json!({"dry_run": true}));
        } else {
            output::line(&format!("[dry-run] would {what}"));
        }
    }

    /// A change made: told, and recorded in the audit log.
    pub fn done(&self, change: &Change, text: &str) {
        self.audit(change, "done");
        if self.json {
            self.event("change", change, json!({}));
        } else {
            output::line(text);
        }
    }

    /// A change to infra's own files (the spec, a config) made: recorded in the audit log and
    /// logged on standard error, so standard output stays the plan or the result.
    pub fn saved(&self, change: &Change, text: &str) {
        self.audit(change, "done");
        if self.json {
            self.event("change", change, json!({}));
        } else {
            tracing::info!("{text}: saved");
        }
    }

    /// A change that was attempted and failed: recorded in the audit log (the error itself
    /// reaches the user as the run's error).
    pub fn failed(&self, change: &Change, error: &str) {
        self.audit(change, &format!("failed: {error}"));
    }

    /// A change of kind `kind`, told as `would` in a dry run and `done` otherwise.
    pub fn change(&self, change: &Change, would: &str, done: &str) {
        if self.dry_run {
            self.would(change, would);
        } else {
            self.done(change, done);
        }
    }

    /// Progress on long work: `{target}: {text}` for people, `{"event": event, "target":
    /// target, ...extra}` with `--json`.
    pub fn progress(&self, event: &str, target: &str, text: &str, extra: Value) {
        if self.json {
            let mut value = json!({"event": event, "target": target});
            if let (Some(map), Value::Object(more)) = (value.as_object_mut(), extra) {
                map.extend(more);
            }
            output::line(&value.to_string());
        } else {
            output::line(&format!("{target}: {text}"));
        }
    }

    fn audit(&self, change: &Change, result: &str) {
        self.audit.record(
            &change.kind,
            &change.target,
            &change.before,
            &change.after,
            result,
        );
    }

    fn event(&self, event: &str, change: &Change, extra: Value) {
        let mut value = json!({
            "event": event,
            "kind": change.kind,
            "target": change.target,
            "before": change.before,
            "after": change.after,
        });
        if let (Some(map), Value::Object(more)) = (value.as_object_mut(), extra) {
            map.extend(more);
        }
        output::line(&value.to_string());
    }
}
