//! The state compared with the cloud. Every `plan`, `orchestrate`, `status --refresh` and
//! `watch` round lists the droplets tagged `infra` (one paged request) and reconciles what the
//! state records with what exists:
//! - a recorded droplet that no longer exists is [`Finding::Gone`] (orchestrate recreates it);
//! - one whose address, status or id changed outside infra is [`Finding::Drift`] (the state
//!   takes the cloud's values);
//! - a tagged droplet the state does not know and the spec does not want is
//!   [`Finding::Orphan`] (a crashed create the spec has since dropped, an interrupted
//!   scale-down): orchestrate destroys it;
//! - a second droplet under a recorded name is [`Finding::Duplicate`]: the one the state
//!   records is kept, the other destroyed.
//!
//! A tagged droplet that the state does not know but the spec wants is none of these: the
//! next create adopts it.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Fleet, FleetError, INFRA_TAG};
use crate::cloud::{Droplet, DropletStatus};
use crate::name_map::NameMap;
use crate::report::{Change, Reporter};
use crate::state::DropletRecord;

/// What the cloud says of one droplet, as far as the state records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub id: u64,
    pub ip: Option<String>,
    pub status: String,
    pub size: String,
}

impl Seen {
    fn of(d: &Droplet) -> Seen {
        Seen {
            id: d.id,
            ip: d.public_ipv4().map(|ip| ip.to_string()),
            status: status_name(d.status).to_string(),
            size: d.size_slug.clone(),
        }
    }
}

pub fn status_name(status: DropletStatus) -> &'static str {
    match status {
        DropletStatus::New => "new",
        DropletStatus::Active => "active",
        DropletStatus::Off => "off",
        DropletStatus::Archive => "archive",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "lowercase")]
pub enum Finding {
    Gone {
        name: String,
        id: Option<u64>,
        ip: Option<String>,
    },
    Drift {
        name: String,
        before: Recorded,
        after: Seen,
    },
    Orphan {
        name: String,
        droplet: Seen,
    },
    Duplicate {
        name: String,
        droplet: Seen,
        kept: u64,
    },
}

/// What the state recorded of a droplet whose values drifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub id: Option<u64>,
    pub ip: Option<String>,
    pub status: Option<String>,
}

impl Finding {
    pub fn name(&self) -> &str {
        match self {
            Finding::Gone { name, .. }
            | Finding::Drift { name, .. }
            | Finding::Orphan { name, .. }
            | Finding::Duplicate { name, .. } => name,
        }
    }
}

/// The findings of one comparison, in the state's droplet order (then the cloud's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Refresh {
    pub findings: Vec<Finding>,
}

impl Refresh {
    pub fn is_gone(&self, name: &str) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f, Finding::Gone { name: n, .. } if n == name))
    }

    /// Compares the recorded droplets with the `cloud`'s droplets tagged `infra`; `wanted`
    /// are the droplet names the spec asks for.
    pub fn compare(
        recorded: &NameMap<DropletRecord>,
        wanted: &HashSet<&str>,
        cloud: &[Droplet],
    ) -> Refresh {
        let mut findings = Vec::new();
        let mut claimed: HashSet<u64> = HashSet::new();
        for (name, record) in recorded {
            let mut same_name: Vec<&Droplet> = cloud.iter().filter(|d| &d.name == name).collect();
            // The one the state knows by id; else (an id never recorded, or the droplet was
            // replaced under the same name) the oldest of that name.
            same_name.sort_by_key(|d| (Some(d.id) != record.id, d.id));
            let Some(kept) = same_name.first() else {
                findings.push(Finding::Gone {
                    name: name.clone(),
                    id: record.id,
                    ip: record.ip.clone(),
                });
                continue;
            };
            claimed.insert(kept.id);
            let seen = Seen::of(kept);
            let before = Recorded {
                id: record.id,
                ip: record.ip.clone(),
                status: record.status.clone(),
            };
            let drifted = before.id != Some(seen.id)
                || before.ip != seen.ip
                || before.status.as_deref().is_some_and(|s| s != seen.status)
                || (before.status.is_none() && seen.status != "active");
            if drifted {
                findings.push(Finding::Drift {
                    name: name.clone(),
                    before,
                    after: seen,
                });
            }
            for extra in &same_name[1..] {
                claimed.insert(extra.id);
                findings.push(Finding::Duplicate {
                    name: name.clone(),
                    droplet: Seen::of(extra),
                    kept: kept.id,
                });
            }
        }
        for d in cloud {
            if claimed.contains(&d.id) {
                continue;
            }
            if wanted.contains(d.name.as_str()) {
                // Wanted but not recorded: a create that crashed after the request. The
                // first of that name is adopted by the next create; any further is extra.
                let first = cloud
                    .iter()
                    .filter(|o| o.name == d.name && !claimed.contains(&o.id))
                    .map(|o| o.id)
                    .min();
                if first == Some(d.id) {
                    continue;
                }
                findings.push(Finding::Duplicate {
                    name: d.name.clone(),
                    droplet: Seen::of(d),
                    kept: first.expect("this one at least"),
                });
            } else {
                findings.push(Finding::Orphan {
                    name: d.name.clone(),
                    droplet: Seen::of(d),
                });
            }
        }
        Refresh { findings }
    }
}

impl Fleet {
    /// Lists the droplets tagged `infra` (one paged request) and compares them with the state.
    pub async fn refresh(
        &self,
        recorded: &NameMap<DropletRecord>,
        wanted: &HashSet<&str>,
    ) -> Result<Refresh, FleetError> {
        let cloud = self
            .api(self.client.list_droplets_by_tag(INFRA_TAG))
            .await?;
        Ok(Refresh::compare(recorded, wanted, &cloud))
    }

    /// Destroys the orphans and duplicates in `extras` (name, id, what the refresh saw),
    /// each only if it is still tagged `infra` under that name: a droplet is never destroyed
    /// on an old listing's word. Told as it goes; in a dry run, what would be destroyed.
    pub async fn destroy_extras(
        &self,
        extras: &[(String, u64, Value)],
        reporter: &Reporter,
    ) -> Result<(), FleetError> {
        if extras.is_empty() {
            return Ok(());
        }
        let describe = |name: &str, id: u64, seen: &Value| match seen.get("duplicate_of") {
            Some(kept) => format!("duplicate droplet `{name}` (id {id}; id {kept} is kept)"),
            None => format!("orphan droplet `{name}` (id {id})"),
        };
        if reporter.dry_run() {
            for (name, id, seen) in extras {
                let change = Change::new("destroy_droplet", name, seen.clone(), Value::Null);
                reporter.would(&change, &format!("destroy {}", describe(name, *id, seen)));
            }
            return Ok(());
        }
        self.check_cancel()?;
        let cloud = self
            .api(self.client.list_droplets_by_tag(INFRA_TAG))
            .await?;
        for (name, id, seen) in extras {
            let change = Change::new("destroy_droplet", name, seen.clone(), Value::Null);
            if !cloud.iter().any(|d| d.id == *id && &d.name == name) {
                reporter.progress(
                    "droplet_gone",
                    name,
                    &format!("{} is already gone", describe(name, *id, seen)),
                    json!({"id": id}),
                );
                continue;
            }
            if let Err(e) = self.api(self.client.delete_droplet(*id)).await {
                reporter.failed(&change, &e.to_string());
                return Err(e.into());
            }
            reporter.done(&change, &format!("destroyed {}", describe(name, *id, seen)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn droplet(id: u64, name: &str, ip: &str, status: &str) -> Droplet {
        let mut value: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/digitalocean/examples/droplet_get_response.json"
        ))
        .expect("example");
        let d = value.get_mut("droplet").expect("droplet");
        d["id"] = serde_json::json!(id);
        d["name"] = serde_json::json!(name);
        d["status"] = serde_json::json!(status);
        d["networks"]["v4"] = serde_json::json!([
            {"ip_address": ip, "netmask": "255.255.240.0", "gateway": "10.0.0.1", "type": "public"}
        ]);
        serde_json::from_value(d.clone()).expect("a droplet")
    }

    fn record(id: Option<u64>, ip: &str) -> DropletRecord {
        DropletRecord {
            id,
            ip: Some(ip.into()),
            status: Some("active".into()),
            size: Some("s-1vcpu-1gb".into()),
            region: Some("nyc3".into()),
            role: "web".into(),
            project: Some("shop".into()),
            monitors: vec![],
        }
    }

    fn recorded(list: &[(&str, DropletRecord)]) -> NameMap<DropletRecord> {
        list.iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect()
    }

    #[test]
    fn a_fleet_that_matches_has_no_findings() {
        let state = recorded(&[("shop-web1", record(Some(1), "203.0.113.1"))]);
        let cloud = [droplet(1, "shop-web1", "203.0.113.1", "active")];
        let wanted = HashSet::from(["shop-web1"]);
        assert_eq!(Refresh::compare(&state, &wanted, &cloud).findings, vec![]);
    }

    #[test]
    fn gone_drift_orphan_and_duplicates_are_told_apart() {
        let state = recorded(&[
            ("shop-web1", record(Some(1), "203.0.113.1")),
            ("shop-web2", record(Some(2), "203.0.113.2")),
            ("shop-web3", record(Some(3), "203.0.113.3")),
        ]);
        let cloud = [
            droplet(1, "shop-web1", "203.0.113.9", "off"),
            droplet(3, "shop-web3", "203.0.113.3", "active"),
            droplet(7, "shop-web3", "203.0.113.7", "active"),
            droplet(8, "shop-web4", "203.0.113.8", "active"),
            droplet(9, "shop-web5", "203.0.113.5", "active"),
        ];
        // shop-web5 is wanted (a crashed create): adopted, not an orphan.
        let wanted = HashSet::from(["shop-web1", "shop-web2", "shop-web3", "shop-web5"]);
        let refresh = Refresh::compare(&state, &wanted, &cloud);
        let kinds: Vec<(&str, String)> = refresh
            .findings
            .iter()
            .map(|f| {
                let kind = match f {
                    Finding::Gone { .. } => "gone",
                    Finding::Drift { .. } => "drift",
                    Finding::Orphan { .. } => "orphan",
                    Finding::Duplicate { .. } => "duplicate",
                };
                (kind, f.name().to_string())
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("drift", "shop-web1".to_string()),
                ("gone", "shop-web2".to_string()),
                ("duplicate", "shop-web3".to_string()),
                ("orphan", "shop-web4".to_string()),
            ]
        );
        let Finding::Duplicate { droplet, kept, .. } = &refresh.findings[2] else {
            panic!("a duplicate")
        };
        assert_eq!((droplet.id, *kept), (7, 3));
        let Finding::Drift { after, .. } = &refresh.findings[0] else {
            panic!("drift")
        };
        assert_eq!(after.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(after.status, "off");
    }

    #[test]
    fn the_recorded_id_wins_over_an_older_droplet_of_the_same_name() {
        let state = recorded(&[("shop-web1", record(Some(5), "203.0.113.5"))]);
        let cloud = [
            droplet(4, "shop-web1", "203.0.113.4", "active"),
            droplet(5, "shop-web1", "203.0.113.5", "active"),
        ];
        let wanted = HashSet::from(["shop-web1"]);
        let refresh = Refresh::compare(&state, &wanted, &cloud);
        assert_eq!(refresh.findings.len(), 1, "{refresh:?}");
        assert!(matches!(
            &refresh.findings[0],
            Finding::Duplicate { droplet, kept: 5, .. } if droplet.id == 4
        ));
    }

    #[test]
    fn two_unrecorded_droplets_of_a_wanted_name_keep_the_oldest() {
        let state = recorded(&[]);
        let cloud = [
            droplet(12, "shop-web1", "203.0.113.12", "active"),
            droplet(11, "shop-web1", "203.0.113.11", "active"),
        ];
        let wanted = HashSet::from(["shop-web1"]);
        let refresh = Refresh::compare(&state, &wanted, &cloud);
        assert!(matches!(
            refresh.findings.as_slice(),
            [Finding::Duplicate { droplet, kept: 11, .. }] if droplet.id == 12
        ));
    }
}
