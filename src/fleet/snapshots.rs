//! Snapshots: infra's own, and those beyond the retention.

use serde_json::Value;

use super::{Fleet, FleetError, INFRA_TAG};
use crate::report::{Change, Reporter};

/// Snapshot names infra gives (`infra-<droplet>-<yyyymmdd-hhmmss>`) start with this.
pub const SNAPSHOT_PREFIX: &str = "infra-";
/// Snapshots kept per droplet unless the spec says otherwise.
pub const DEFAULT_SNAPSHOT_RETENTION: usize = 3;

impl Fleet {
    /// Takes a snapshot of droplet `id` (`name` in the state), named
    /// `infra-<droplet>-<yyyymmdd-hhmmss>`, and waits for it; told (in a dry run: what would
    /// be taken). Returns the snapshot's name.
    pub async fn snapshot(
        &self,
        name: &str,
        id: u64,
        reporter: &Reporter,
    ) -> Result<String, FleetError> {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        let snapshot = format!(
            "{SNAPSHOT_PREFIX}{name}-{}-{}",
            &digits[..8],
            &digits[8..14]
        );
        let change = Change::new(
            "snapshot",
            name,
            Value::Null,
            serde_json::json!({"snapshot": snapshot, "droplet_id": id}),
        );
        if reporter.dry_run() {
            reporter.would(&change, &format!("take snapshot {snapshot} of {name}"));
            return Ok(snapshot);
        }
        let started = std::time::Instant::now();
        let action = crate::cloud::DropletAction::Snapshot {
            name: snapshot.clone(),
        };
        // When the answer to the request is lost, a snapshot more than before says it was taken.
        let before = match self.api(self.client.get_droplet(id)).await {
            Ok(d) => d.snapshot_ids.len(),
            Err(e) => {
                reporter.failed(&change, &e.to_string());
                return Err(e.into());
            }
        };
        let result = self
            .act(id, &action, move |d| d.snapshot_ids.len() > before)
            .await;
        if let Err(e) = result {
            reporter.failed(&change, &e.to_string());
            return Err(e);
        }
        reporter.done(
            &change,
            &format!(
                "took snapshot {snapshot} of {name} in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(snapshot)
    }

    /// infra's snapshots beyond the newest `retention` of each droplet, oldest first. A
    /// snapshot is infra's when it was taken of a droplet infra made (one whose id the state
    /// records in `recorded_ids`, or one tagged `infra`) or carries the `infra` tag itself;
    /// a name is no proof (anyone can call a snapshot `infra-...`), and others are never
    /// touched.
    pub async fn old_snapshots(
        &self,
        retention: usize,
        recorded_ids: &[u64],
    ) -> Result<Vec<crate::cloud::Snapshot>, FleetError> {
        let mut ours: std::collections::HashSet<String> = self
            .api(self.client.list_droplets_by_tag(INFRA_TAG))
            .await?
            .iter()
            .map(|d| d.id.to_string())
            .collect();
        ours.extend(recorded_ids.iter().map(u64::to_string));
        let mut by_droplet: std::collections::BTreeMap<String, Vec<crate::cloud::Snapshot>> =
            Default::default();
        for s in self.api(self.client.list_snapshots()).await? {
            let tagged = s.tags.iter().any(|t| t == INFRA_TAG);
            if tagged || (s.resource_type == "droplet" && ours.contains(&s.resource_id)) {
                by_droplet.entry(s.resource_id.clone()).or_default().push(s);
            }
        }
        let mut old = Vec::new();
        for (_, mut list) in by_droplet {
            // RFC 3339 times sort as text; newest first.
            list.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            old.extend(list.into_iter().skip(retention));
        }
        old.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(old)
    }

    /// Deletes one snapshot, told (in a dry run: what would be deleted).
    /// `snapshot` is what [`Fleet::old_snapshots`] said of it (name, droplet, time).
    pub async fn delete_snapshot(
        &self,
        id: &str,
        snapshot: Value,
        reporter: &Reporter,
    ) -> Result<(), FleetError> {
        let name = snapshot
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let change = Change::new("delete_snapshot", id, snapshot, Value::Null);
        if reporter.dry_run() {
            reporter.would(&change, &format!("delete snapshot {id} ({name})"));
            return Ok(());
        }
        self.check_cancel()?;
        let snapshot_id = crate::cloud::SnapshotId::from(id);
        if let Err(e) = self.api(self.client.delete_snapshot(&snapshot_id)).await {
            reporter.failed(&change, &e.to_string());
            return Err(e.into());
        }
        reporter.done(&change, &format!("deleted snapshot {id} ({name})"));
        Ok(())
    }
}
