//! Turning a plan into infrastructure: the infrastructure SSH key registered, droplets created
//! (or adopted when a tagged one already exists), waited for until active, and destroyed, and
//! the firewalls kept in step. Core code: it knows the cloud client and the project, not Rhai.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::{
    Client, CloudError, DropletCreate, DropletSpec, DropletStatus, Firewall, FirewallRequest,
    ImageRef, InboundRule, OutboundRule, Outcome, Protocol, RuleTarget, SshKey, SshKeyRef,
};
use crate::project::Project;
use crate::state::RequiredDroplet;

/// Every droplet infra makes carries this tag, and one named after the droplet.
pub const INFRA_TAG: &str = "infra";
/// The image droplets start from.
pub const DEFAULT_IMAGE: &str = "debian-12-x64";
/// The firewall for the whole fleet (SSH from the admin, everything between droplets).
pub const FLEET_FIREWALL: &str = "infra-fleet";
/// The firewall that opens HTTP and HTTPS on the master.
pub const MASTER_FIREWALL: &str = "infra-master";
/// Attempts at creating droplets whose create stays ambiguous.
const CREATE_ATTEMPTS: u32 = 4;
/// How long an active droplet's sshd may take to answer.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a new droplet may take to become active.
pub const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("cannot read the infrastructure public key `{path}`: {source}; run `infra init` to make the key pair")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("droplet `{name}` (id {id}) was not active after {secs} s (status {status}); look at it in the control panel, or delete it and orchestrate again")]
    NotActive {
        name: String,
        id: u64,
        secs: u64,
        status: String,
    },
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("stopped (Ctrl-C)")]
    Cancelled,
}

/// A droplet that exists and is active.
#[derive(Debug, Clone)]
pub struct Ready {
    pub name: String,
    pub id: u64,
    pub ip: String,
    pub outcome: Outcome,
}

pub struct Provisioner {
    pub client: Client,
    pub project: Project,
    pub cancel: Arc<AtomicBool>,
    timings: std::sync::Mutex<Timings>,
}

/// Where a run's time went: waiting on the API, and waiting for droplets to boot (the pauses
/// between polls). The rest of a run is infra's own work.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Timings {
    pub api: Duration,
    pub boot_wait: Duration,
}

impl Provisioner {
    pub fn new(client: Client, project: Project, cancel: Arc<AtomicBool>) -> Self {
        Provisioner {
            client,
            project,
            cancel,
            timings: Default::default(),
        }
    }

    pub fn timings(&self) -> Timings {
        *self.timings.lock().expect("timings")
    }

    /// Awaits an API call, counting its time.
    async fn api<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let start = Instant::now();
        let result = call.await;
        self.timings.lock().expect("timings").api += start.elapsed();
        result
    }

    /// Waits for droplets, counting the time.
    async fn pause(&self, how_long: Duration) {
        let start = Instant::now();
        tokio::time::sleep(how_long).await;
        self.timings.lock().expect("timings").boot_wait += start.elapsed();
    }

    fn check_cancel(&self) -> Result<(), ProvisionError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(ProvisionError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The project's public key, registered with the account (found by its key material).
    pub async fn ensure_key(&self) -> Result<SshKey, ProvisionError> {
        let path = crate::keypair::public_path(&self.project.ssh_key_path());
        let public = std::fs::read_to_string(&path).map_err(|source| ProvisionError::Key {
            path: self.project.display(&path),
            source,
        })?;
        Ok(self
            .api(self.client.ensure_ssh_key("infra", &public))
            .await?)
    }

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
    ) -> Result<(), ProvisionError> {
        use std::collections::HashMap;
        let mut ids: HashMap<String, (u64, Outcome)> = HashMap::new();
        let mut attempt = 0;
        loop {
            self.check_cancel()?;
            let existing = self
                .api(self.client.list_droplets_by_tag(INFRA_TAG))
                .await?;
            for (name, _) in wanted {
                if !ids.contains_key(name) {
                    if let Some(d) = existing.iter().find(|d| &d.name == name) {
                        ids.insert(name.clone(), (d.id, Outcome::Adopted));
                    }
                }
            }
            let missing: Vec<&(String, RequiredDroplet)> = wanted
                .iter()
                .filter(|(n, _)| !ids.contains_key(n))
                .collect();
            if missing.is_empty() {
                break;
            }
            attempt += 1;
            let mut creates = tokio::task::JoinSet::new();
            for (name, d) in missing {
                let client = self.client.clone();
                let request = self.request(key, name, d);
                creates.spawn(async move {
                    (request.name.clone(), client.create_droplet(&request).await)
                });
            }
            let mut ambiguous = false;
            let creating = Instant::now();
            while let Some(joined) = creates.join_next().await {
                let (name, result) = joined.expect("create task");
                match result {
                    Ok(created) => {
                        ids.insert(name, (created.droplet.id, Outcome::Created));
                    }
                    Err(e) if e.is_ambiguous() && attempt < CREATE_ATTEMPTS => {
                        tracing::warn!("creating droplet `{name}` may or may not have worked ({e}); looking for it before trying again");
                        ambiguous = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.timings.lock().expect("timings").api += creating.elapsed();
            if !ambiguous {
                break;
            }
            self.pause(Duration::from_millis(250 * u64::from(attempt)))
                .await;
        }

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
                        Ok::<(), ProvisionError>(())
                    });
                    waiting.remove(&droplet.id);
                }
            }
            if started.elapsed() > ACTIVE_TIMEOUT {
                let (id, (name, _)) = waiting.iter().next().expect("some are waiting");
                return Err(ProvisionError::NotActive {
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
    pub async fn destroy(&self, name: &str) -> Result<bool, ProvisionError> {
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

    /// The fleet's firewalls as they should be; returns what changed (empty when nothing).
    pub async fn ensure_firewalls(
        &self,
        admin_cidr: &str,
        master_id: Option<u64>,
    ) -> Result<Vec<String>, ProvisionError> {
        let existing = self.api(self.client.list_firewalls()).await?;
        let mut changed = Vec::new();
        for wanted in wanted_firewalls(admin_cidr, master_id) {
            match existing.iter().find(|f| f.name == wanted.name) {
                None => {
                    self.create_firewall(&wanted).await?;
                    changed.push(format!("created firewall `{}`", wanted.name));
                }
                Some(have) if !same_firewall(have, &wanted) => {
                    self.api(self.client.update_firewall(&have.id, &wanted))
                        .await?;
                    changed.push(format!("updated firewall `{}`", wanted.name));
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    }

    /// Creates the firewall `wanted`; after an ambiguous answer (a 5xx once the request may
    /// have arrived) it looks for it by name, and updates the one found, before trying again.
    async fn create_firewall(&self, wanted: &FirewallRequest) -> Result<(), ProvisionError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.api(self.client.create_firewall(wanted)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_ambiguous() && attempt < 4 => {
                    tracing::warn!("creating firewall `{}` may or may not have worked ({e}); looking for it before trying again", wanted.name);
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                    let existing = self.api(self.client.list_firewalls()).await?;
                    if let Some(have) = existing.iter().find(|f| f.name == wanted.name) {
                        if !same_firewall(have, wanted) {
                            self.api(self.client.update_firewall(&have.id, wanted))
                                .await?;
                        }
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn tcp(ports: &str, sources: RuleTarget) -> InboundRule {
    InboundRule {
        protocol: Protocol::Tcp,
        ports: ports.into(),
        sources,
    }
}

fn addresses(list: &[&str]) -> RuleTarget {
    RuleTarget {
        addresses: list.iter().map(|a| a.to_string()).collect(),
        ..RuleTarget::default()
    }
}

fn tagged(tag: &str) -> RuleTarget {
    RuleTarget {
        tags: vec![tag.to_string()],
        ..RuleTarget::default()
    }
}

/// SSH only from the admin; every port between the fleet's droplets (app ports reach web
/// droplets from the master's load balancer and from each other); HTTP and HTTPS on the
/// master from anywhere. Outbound is open (image builds, package installs).
pub fn wanted_firewalls(admin_cidr: &str, master_id: Option<u64>) -> Vec<FirewallRequest> {
    let everywhere = addresses(&["0.0.0.0/0", "::/0"]);
    let outbound = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp]
        .into_iter()
        .map(|protocol| OutboundRule {
            protocol,
            ports: if protocol == Protocol::Icmp {
                "0"
            } else {
                "1-65535"
            }
            .into(),
            destinations: everywhere.clone(),
        })
        .collect::<Vec<_>>();
    let fleet = FirewallRequest {
        name: FLEET_FIREWALL.into(),
        inbound_rules: vec![
            tcp("22", addresses(&[admin_cidr])),
            tcp("1-65535", tagged(INFRA_TAG)),
            InboundRule {
                protocol: Protocol::Icmp,
                ports: "0".into(),
                sources: tagged(INFRA_TAG),
            },
        ],
        outbound_rules: outbound.clone(),
        droplet_ids: Vec::new(),
        tags: vec![INFRA_TAG.into()],
    };
    let mut out = vec![fleet];
    if let Some(id) = master_id {
        out.push(FirewallRequest {
            name: MASTER_FIREWALL.into(),
            inbound_rules: vec![
                tcp("80", everywhere.clone()),
                tcp("443", everywhere.clone()),
            ],
            outbound_rules: outbound,
            droplet_ids: vec![id],
            tags: Vec::new(),
        });
    }
    out
}

fn same_firewall(have: &Firewall, wanted: &FirewallRequest) -> bool {
    let mut a = have.to_request();
    let mut b = wanted.clone();
    for r in [&mut a, &mut b] {
        r.droplet_ids.sort_unstable();
        r.tags.sort();
    }
    a.inbound_rules == b.inbound_rules
        && a.outbound_rules == b.outbound_rules
        && a.droplet_ids == b.droplet_ids
        && a.tags == b.tags
}

/// Checks an IPv4 CIDR (`203.0.113.100/32`) or address.
pub fn check_cidr(cidr: &str) -> Result<(), String> {
    let (ip, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let ok = ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{cidr}` is not an IPv4 address or CIDR; use one like 203.0.113.100/32"
        ))
    }
}

/// The address this machine has on the project's sandbox network: where the droplets see SSH
/// come from, so the administrator's address when the cloud is the sandbox. `None` when infra
/// talks to DigitalOcean (`DO_TOKEN` set) or no sandbox runs.
pub fn sandbox_admin_address(project: &Project) -> Option<String> {
    if std::env::var_os("DO_TOKEN").is_some() {
        return None;
    }
    crate::sandbox::client_env(project)?;
    let paths = crate::sandbox::Paths::of(project);
    let state = crate::sandbox::store::Store::new(paths.state())
        .load()
        .ok()??;
    Some(format!("{}/32", state.network?.gateway))
}

/// Snapshot names infra gives (`infra-<droplet>-<yyyymmdd-hhmmss>`) start with this.
pub const SNAPSHOT_PREFIX: &str = "infra-";
/// Snapshots kept per droplet unless the spec says otherwise.
pub const DEFAULT_SNAPSHOT_RETENTION: usize = 3;

impl Provisioner {
    /// infra's snapshots beyond the newest `retention` of each droplet, oldest first. A
    /// snapshot is infra's when infra named it or it is of a droplet tagged `infra`; others
    /// are never touched.
    pub async fn old_snapshots(
        &self,
        retention: usize,
    ) -> Result<Vec<crate::cloud::Snapshot>, ProvisionError> {
        let ours: std::collections::HashSet<String> = self
            .client
            .list_droplets_by_tag(INFRA_TAG)
            .await?
            .iter()
            .map(|d| d.id.to_string())
            .collect();
        let mut by_droplet: std::collections::BTreeMap<String, Vec<crate::cloud::Snapshot>> =
            Default::default();
        for s in self.api(self.client.list_snapshots()).await? {
            if s.name.starts_with(SNAPSHOT_PREFIX) || ours.contains(&s.resource_id) {
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
}
