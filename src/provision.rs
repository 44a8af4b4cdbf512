//! Turning a plan into infrastructure: the infrastructure SSH key registered, droplets created
//! (or adopted when a tagged one already exists), waited for until active, and destroyed, and
//! the firewalls kept in step. Core code: it knows the cloud client and the project, not Rhai.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::{
    Client, CloudError, Droplet, DropletCreate, DropletSpec, DropletStatus, Firewall,
    FirewallRequest, ImageRef, InboundRule, Outcome, OutboundRule, Protocol, RuleTarget, SshKey,
    SshKeyRef,
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
    #[error("droplet `{name}` is active but has no public IPv4 address")]
    NoAddress { name: String },
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
}

impl Provisioner {
    pub fn new(client: Client, project: Project, cancel: Arc<AtomicBool>) -> Self {
        Provisioner {
            client,
            project,
            cancel,
        }
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
        Ok(self.client.ensure_ssh_key("infra", &public).await?)
    }

    /// Creates `name` (or adopts the tagged droplet of that name) and waits until it is
    /// active with a public address.
    pub async fn create(
        &self,
        key: &SshKey,
        name: &str,
        wanted: &RequiredDroplet,
    ) -> Result<Ready, ProvisionError> {
        self.check_cancel()?;
        let mut spec = DropletSpec::new(wanted.size.clone(), ImageRef::Slug(DEFAULT_IMAGE.into()));
        spec.region = Some(wanted.region.clone());
        spec.ssh_keys = vec![SshKeyRef::Id(key.id)];
        spec.tags = vec![INFRA_TAG.to_string(), name.to_string()];
        let request = DropletCreate {
            name: name.to_string(),
            spec,
        };
        let (droplet, outcome) = self.client.ensure_droplet(&request, INFRA_TAG).await?;
        let droplet = self.wait_active(droplet).await?;
        let ip = droplet
            .public_ipv4()
            .ok_or_else(|| ProvisionError::NoAddress { name: name.into() })?;
        Ok(Ready {
            name: name.to_string(),
            id: droplet.id,
            ip: ip.to_string(),
            outcome,
        })
    }

    async fn wait_active(&self, mut droplet: Droplet) -> Result<Droplet, ProvisionError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        while droplet.status != DropletStatus::Active || droplet.public_ipv4().is_none() {
            self.check_cancel()?;
            if started.elapsed() > ACTIVE_TIMEOUT {
                return Err(ProvisionError::NotActive {
                    name: droplet.name.clone(),
                    id: droplet.id,
                    secs: ACTIVE_TIMEOUT.as_secs(),
                    status: format!("{:?}", droplet.status).to_lowercase(),
                });
            }
            tokio::time::sleep(delay).await;
            // Poll gently: a new droplet takes seconds on the sandbox, about a minute on
            // DigitalOcean, and every poll counts against the rate limit.
            delay = (delay * 2).min(Duration::from_secs(5));
            droplet = self.client.get_droplet(droplet.id).await?;
        }
        Ok(droplet)
    }

    /// Deletes the tagged droplet `name`; `false` when there was none.
    pub async fn destroy(&self, name: &str) -> Result<bool, ProvisionError> {
        self.check_cancel()?;
        match self.client.find_tagged_droplet(name, INFRA_TAG).await? {
            Some(droplet) => {
                self.client.delete_droplet(droplet.id).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The fleet's firewalls as they should be; returns what changed (empty when nothing).
    pub async fn ensure_firewalls(
        &self,
        admin_cidr: &str,
        master_id: Option<u64>,
    ) -> Result<Vec<String>, ProvisionError> {
        let existing = self.client.list_firewalls().await?;
        let mut changed = Vec::new();
        for wanted in wanted_firewalls(admin_cidr, master_id) {
            match existing.iter().find(|f| f.name == wanted.name) {
                None => {
                    self.client.create_firewall(&wanted).await?;
                    changed.push(format!("created firewall `{}`", wanted.name));
                }
                Some(have) if !same_firewall(have, &wanted) => {
                    self.client.update_firewall(&have.id, &wanted).await?;
                    changed.push(format!("updated firewall `{}`", wanted.name));
                }
                Some(_) => {}
            }
        }
        Ok(changed)
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
            ports: if protocol == Protocol::Icmp { "0" } else { "1-65535" }.into(),
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
            inbound_rules: vec![tcp("80", everywhere.clone()), tcp("443", everywhere.clone())],
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
        Err(format!("`{cidr}` is not an IPv4 address or CIDR; use one like 203.0.113.100/32"))
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
    let state = crate::sandbox::store::Store::new(paths.state()).load().ok()??;
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
        for s in self.client.list_snapshots().await? {
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
