//! Droplets brought up (adopted when a droplet with their tags exists, created otherwise,
//! waited for until active and answering SSH) and destroyed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Fleet, FleetError, ACTIVE_TIMEOUT, DEFAULT_IMAGE, INFRA_TAG, SSH_TIMEOUT};
use crate::cloud::{
    create_once, DropletCreate, DropletSpec, DropletStatus, ImageRef, Outcome, SshKey, SshKeyRef,
};
use crate::report::{Change, Reporter};
use crate::state::RequiredDroplet;

/// A droplet that exists and is active.
#[derive(Debug, Clone)]
pub struct Ready {
    pub name: String,
    pub id: u64,
    pub ip: String,
    pub outcome: Outcome,
}

impl Ready {
    /// `created` or `adopted`.
    pub fn how(&self) -> &'static str {
        match self.outcome {
            Outcome::Created => "created",
            Outcome::Adopted => "adopted",
        }
    }
}

impl Fleet {
    fn request(&self, key: &SshKey, name: &str, wanted: &RequiredDroplet) -> DropletCreate {
        let mut spec = DropletSpec::new(wanted.size.clone(), ImageRef::Slug(DEFAULT_IMAGE.into()));
        spec.region = Some(wanted.region.clone());
        spec.ssh_keys = vec![SshKeyRef::Id(key.id)];
        spec.tags = vec![INFRA_TAG.to_string(), name.to_string()];
        DropletCreate {
            name: name.to_string(),
            spec,
        }
    }

    /// Brings every droplet in `wanted` up: adopts those that already exist with the `infra`
    /// tag, creates the rest (concurrently), then polls the whole fleet with one request per
    /// round until each is active, sending each to `ready` as it comes up so its record can be
    /// saved at once. After an ambiguous create (the answer was lost) the fleet is listed
    /// again before the missing ones are tried once more: a droplet is never made twice.
    pub async fn bring_up(
        &self,
        key: &SshKey,
        wanted: &[(String, RequiredDroplet)],
        ready: tokio::sync::mpsc::UnboundedSender<Ready>,
    ) -> Result<(), FleetError> {
        self.check_cancel()?;
        // One listing serves every droplet's first look; a droplet looks again by itself only
        // after an ambiguous create.
        let existing = self
            .api(self.client.list_droplets_by_tag(INFRA_TAG))
            .await?;
        let mut ids: HashMap<String, (u64, Outcome)> = HashMap::new();
        let mut creates = tokio::task::JoinSet::new();
        for (name, d) in wanted {
            if let Some(found) = existing.iter().find(|e| &e.name == name) {
                ids.insert(name.clone(), (found.id, Outcome::Adopted));
                continue;
            }
            let client = self.client.clone();
            let request = self.request(key, name, d);
            creates.spawn(async move {
                let mut looked = false;
                let result = create_once(
                    &format!("droplet `{}`", request.name),
                    || {
                        let first = !std::mem::replace(&mut looked, true);
                        let (client, name) = (client.clone(), request.name.clone());
                        async move {
                            if first {
                                return Ok(None);
                            }
                            client.find_tagged_droplet(&name, INFRA_TAG).await
                        }
                    },
                    || {
                        let (client, request) = (client.clone(), request.clone());
                        async move { Ok(client.create_droplet(&request).await?.droplet) }
                    },
                )
                .await;
                (request.name, result)
            });
        }
        let creating = Instant::now();
        while let Some(joined) = creates.join_next().await {
            let (name, result) = joined.expect("create task");
            let (droplet, outcome) = result?;
            ids.insert(name, (droplet.id, outcome));
        }
        self.timings.lock().expect("timings").api += creating.elapsed();

        // One listing per round for all of them, gently spaced: a new droplet takes seconds
        // on the sandbox and about a minute on DigitalOcean, and every poll counts against
        // the rate limit.
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        let mut waiting: HashMap<u64, (String, Outcome)> = ids
            .into_iter()
            .map(|(name, (id, outcome))| (id, (name, outcome)))
            .collect();
        // Each active droplet is handed on only once its sshd answers with a key that is
        // pinned (first time) or matches the pin: SSH waits run alongside the polling.
        let connector = Arc::new(crate::remote::Connector::for_project(&self.project)?);
        let mut ssh = tokio::task::JoinSet::new();
        let mut first = true;
        while !waiting.is_empty() {
            self.check_cancel()?;
            let fleet = if first {
                // Adopted droplets are often active already: look before sleeping.
                first = false;
                self.api(self.client.list_droplets_by_tag(INFRA_TAG))
                    .await?
            } else {
                self.pause(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                self.api(self.client.list_droplets_by_tag(INFRA_TAG))
                    .await?
            };
            for droplet in fleet {
                let up = droplet.status == DropletStatus::Active && droplet.public_ipv4().is_some();
                if let (true, Some((name, outcome))) = (up, waiting.get(&droplet.id)) {
                    let ip = droplet.public_ipv4().expect("checked");
                    let done = Ready {
                        name: name.clone(),
                        id: droplet.id,
                        ip: ip.to_string(),
                        outcome: *outcome,
                    };
                    // A droplet made just now has new host keys: a pin left under its name
                    // (by a droplet deleted outside infra) is stale. An adopted one must match.
                    if *outcome == Outcome::Created {
                        crate::remote::KnownHosts::for_project(&self.project).forget(name)?;
                    }
                    let (connector, cancel, ready) =
                        (connector.clone(), self.cancel.clone(), ready.clone());
                    ssh.spawn(async move {
                        let host =
                            crate::remote::Host::new(done.name.clone(), std::net::IpAddr::V4(ip));
                        let deadline = std::time::Instant::now() + SSH_TIMEOUT;
                        let session =
                            crate::remote::wait_for_ssh(&connector, &host, deadline, &cancel)
                                .await?;
                        session.close().await;
                        let _ = ready.send(done);
                        Ok::<(), FleetError>(())
                    });
                    waiting.remove(&droplet.id);
                }
            }
            if started.elapsed() > ACTIVE_TIMEOUT {
                let (id, (name, _)) = waiting.iter().next().expect("some are waiting");
                return Err(FleetError::NotActive {
                    name: name.clone(),
                    id: *id,
                    secs: ACTIVE_TIMEOUT.as_secs(),
                    status: "not active".into(),
                });
            }
        }
        let waited = Instant::now();
        while let Some(joined) = ssh.join_next().await {
            joined.expect("ssh wait task")?;
        }
        self.timings.lock().expect("timings").boot_wait += waited.elapsed();
        Ok(())
    }

    /// Deletes the tagged droplet `name`; `false` when there was none.
    pub async fn destroy(&self, name: &str) -> Result<bool, FleetError> {
        self.check_cancel()?;
        let existed = match self
            .api(self.client.find_tagged_droplet(name, INFRA_TAG))
            .await?
        {
            Some(droplet) => {
                self.api(self.client.delete_droplet(droplet.id)).await?;
                true
            }
            None => false,
        };
        // A droplet made again under this name has new host keys: let it be pinned afresh.
        crate::remote::KnownHosts::for_project(&self.project).forget(name)?;
        Ok(existed)
    }

    /// Brings `jobs` up (see [`Fleet::bring_up`]), telling each droplet as it comes up and
    /// handing it to `record` at once, so the state keeps what exists even if the run dies
    /// right after. In a dry run it tells what would be created and changes nothing.
    pub async fn create(
        self: &Arc<Self>,
        jobs: &[(String, RequiredDroplet)],
        reporter: &Reporter,
        mut record: impl FnMut(&Ready) -> Result<(), String>,
    ) -> Result<Vec<Ready>, FleetError> {
        let change = |name: &str, d: &RequiredDroplet, ready: Option<&Ready>| {
            let mut after = json!({"size": d.size, "region": d.region, "role": d.role});
            if let Some(p) = &d.project {
                after["project"] = json!(p);
            }
            if let Some(r) = ready {
                after["id"] = json!(r.id);
                after["ip"] = json!(r.ip);
            }
            Change::new("create_droplet", name, Value::Null, after)
        };
        if reporter.dry_run() {
            for (name, d) in jobs {
                reporter.would(
                    &change(name, d, None),
                    &format!(
                        "create droplet `{name}` ({}, {}, {})",
                        d.size, d.region, d.role
                    ),
                );
            }
            return Ok(Vec::new());
        }
        self.check_not_shut_out().await?;
        let key = self
            .ensure_key(reporter)
            .await?
            .expect("registered outside a dry run");
        for (name, _) in jobs {
            reporter.progress(
                "droplet_creating",
                name,
                "creating (or adopting the tagged droplet)",
                json!({}),
            );
        }
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let (fleet, key, jobs) = (self.clone(), key.clone(), jobs.to_vec());
            tokio::spawn(async move { fleet.bring_up(&key, &jobs, tx).await })
        };
        let mut up = Vec::new();
        while let Some(ready) = rx.recv().await {
            let (_, d) = jobs
                .iter()
                .find(|(n, _)| n == &ready.name)
                .expect("a droplet asked for");
            if let Err(e) = record(&ready) {
                task.abort();
                return Err(FleetError::Record(e));
            }
            let how = ready.how();
            let secs = started.elapsed().as_secs_f64();
            reporter.done(
                &change(&ready.name, d, Some(&ready)),
                &format!(
                    "droplet {}: active at {} ({how}, {secs:.1} s)",
                    ready.name, ready.ip
                ),
            );
            up.push(ready);
        }
        match task.await {
            Ok(Ok(())) => Ok(up),
            Ok(Err(e)) => {
                for (name, d) in jobs {
                    if !up.iter().any(|r| &r.name == name) {
                        reporter.failed(&change(name, d, None), &e.to_string());
                    }
                }
                Err(e)
            }
            Err(e) => Err(FleetError::Record(format!("the droplet task failed: {e}"))),
        }
    }

    /// Destroys the tagged droplet `name` (told, and handed to `record` so the state forgets
    /// it); in a dry run tells what would be destroyed.
    pub async fn destroy_reported(
        &self,
        name: &str,
        before: Value,
        reporter: &Reporter,
        record: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), FleetError> {
        let change = Change::new("destroy_droplet", name, before, Value::Null);
        if reporter.dry_run() {
            reporter.would(&change, &format!("destroy droplet `{name}`"));
            return Ok(());
        }
        let existed = match self.destroy(name).await {
            Ok(existed) => existed,
            Err(e) => {
                reporter.failed(&change, &e.to_string());
                return Err(e);
            }
        };
        record().map_err(FleetError::Record)?;
        let what = if existed { "destroyed" } else { "already gone" };
        reporter.done(&change, &format!("droplet {name}: {what}"));
        Ok(())
    }
}
