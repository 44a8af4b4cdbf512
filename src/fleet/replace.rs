//! What recovering a droplet asks of the cloud: its power turned off and confirmed off, one
//! power cycle, the newest snapshot infra took of it, a replacement made from that snapshot (or
//! adopted, when one carrying the incident's tag exists already), and droplets deleted by id.
//! The order and the bookkeeping are `crate::recovery`'s; this is only the cloud's half.

use std::time::{Duration, Instant};

use super::{Fleet, FleetError, ACTIVE_TIMEOUT, SNAPSHOT_PREFIX};
use crate::cloud::{create_once, Droplet, DropletAction, DropletCreate, DropletStatus, Outcome};

/// How long a power off may take to show as `off`.
const OFF_TIMEOUT: Duration = Duration::from_secs(300);

/// A snapshot a droplet can be made from again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotImage {
    pub id: u64,
    pub name: String,
    pub created_at: String,
}

/// Whether `snapshot` is one infra took of droplet `name`: `infra-<name>-<yyyymmdd>-<hhmmss>`.
pub fn is_snapshot_of(snapshot: &str, name: &str) -> bool {
    let Some(stamp) = snapshot
        .strip_prefix(SNAPSHOT_PREFIX)
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 15
        && bytes[8] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

impl Fleet {
    /// Set by Ctrl-C: long waits outside the fleet (SSH to a new droplet) stop on it too.
    pub fn cancel_flag(&self) -> &std::sync::atomic::AtomicBool {
        &self.cancel
    }

    /// The droplet with `id`, or `None` when the cloud no longer has it.
    pub async fn droplet_by_id(&self, id: u64) -> Result<Option<Droplet>, FleetError> {
        match self.api(self.client.get_droplet(id)).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Droplets carrying `tag`.
    pub async fn droplets_tagged(&self, tag: &str) -> Result<Vec<Droplet>, FleetError> {
        self.check_cancel()?;
        Ok(self.api(self.client.list_droplets_by_tag(tag)).await?)
    }

    /// Powers droplet `id` off (hard, like pulling the plug) and polls the cloud until it says
    /// `off`. Returns `false` when it was off (or gone) already.
    pub async fn power_off_confirmed(&self, id: u64) -> Result<bool, FleetError> {
        let Some(droplet) = self.droplet_by_id(id).await? else {
            return Ok(false);
        };
        if droplet.status == DropletStatus::Off {
            return Ok(false);
        }
        self.act(id, &DropletAction::PowerOff, |d| {
            d.status == DropletStatus::Off
        })
        .await?;
        // The action finishing is the cloud's word; the droplet's own status is the proof.
        let started = Instant::now();
        loop {
            match self.droplet_by_id(id).await? {
                None => return Ok(true),
                Some(d) if d.status == DropletStatus::Off => return Ok(true),
                Some(d) if started.elapsed() > OFF_TIMEOUT => {
                    return Err(FleetError::NotActive {
                        name: d.name,
                        id,
                        secs: OFF_TIMEOUT.as_secs(),
                        status: format!("{:?} after a power off", d.status).to_lowercase(),
                    })
                }
                Some(_) => self.pause(Duration::from_millis(500)).await,
            }
        }
    }

    /// One hard power cycle of droplet `id`, waited for.
    pub async fn power_cycle(&self, id: u64) -> Result<(), FleetError> {
        self.act(id, &DropletAction::PowerCycle, |d| {
            d.status == DropletStatus::Active
        })
        .await
    }

    /// The newest snapshot infra took of droplet `name` (by its name), if any.
    pub async fn latest_snapshot(&self, name: &str) -> Result<Option<SnapshotImage>, FleetError> {
        self.check_cancel()?;
        let mut ours: Vec<SnapshotImage> = self
            .api(self.client.list_snapshots())
            .await?
            .into_iter()
            .filter(|s| s.resource_type == "droplet" && is_snapshot_of(&s.name, name))
            .filter_map(|s| {
                Some(SnapshotImage {
                    id: s.id.as_number()?,
                    name: s.name,
                    created_at: s.created_at,
                })
            })
            .collect();
        // RFC 3339 times sort as text; the name's stamp breaks ties.
        ours.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
        Ok(ours.pop())
    }

    /// The droplet `request` describes, made once: `tag` (which `request` carries) finds one
    /// an earlier attempt made, and an ambiguous create looks for it before trying again.
    pub async fn create_tagged(
        &self,
        request: &DropletCreate,
        tag: &str,
        not: &[u64],
    ) -> Result<(Droplet, Outcome), FleetError> {
        self.check_cancel()?;
        let what = format!("droplet `{}`", request.name);
        let found = create_once(
            &what,
            || async {
                Ok(self
                    .client
                    .list_droplets_by_tag(tag)
                    .await?
                    .into_iter()
                    .filter(|d| !not.contains(&d.id))
                    .min_by_key(|d| d.id))
            },
            || async { Ok(self.client.create_droplet(request).await?.droplet) },
        );
        Ok(self.api(found).await?)
    }

    /// Waits until droplet `id` is active with a public address.
    pub async fn wait_active(&self, id: u64) -> Result<(Droplet, String), FleetError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            self.check_cancel()?;
            let droplet = self.api(self.client.get_droplet(id)).await?;
            if droplet.status == DropletStatus::Active {
                if let Some(ip) = droplet.public_ipv4() {
                    let ip = ip.to_string();
                    return Ok((droplet, ip));
                }
            }
            if started.elapsed() > ACTIVE_TIMEOUT {
                return Err(FleetError::NotActive {
                    name: droplet.name,
                    id,
                    secs: ACTIVE_TIMEOUT.as_secs(),
                    status: format!("{:?}", droplet.status).to_lowercase(),
                });
            }
            self.pause(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Deletes droplet `id`; `false` when it was gone already.
    pub async fn delete_by_id(&self, id: u64) -> Result<bool, FleetError> {
        self.check_cancel()?;
        match self.api(self.client.delete_droplet(id)).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_snapshot_of;

    #[test]
    fn only_infra_snapshot_names_of_that_droplet_count() {
        assert!(is_snapshot_of(
            "infra-shop-web1-20261202-141500",
            "shop-web1"
        ));
        assert!(!is_snapshot_of(
            "infra-shop-web10-20261202-141500",
            "shop-web1"
        ));
        assert!(!is_snapshot_of("infra-shop-web1-latest", "shop-web1"));
        assert!(!is_snapshot_of("shop-web1-20261202-141500", "shop-web1"));
        assert!(!is_snapshot_of(
            "infra-shop-web1-20261202141500x",
            "shop-web1"
        ));
    }
}
