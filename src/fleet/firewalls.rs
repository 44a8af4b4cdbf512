//! The fleet's firewalls: SSH only from the administrator, everything between droplets, HTTP
//! and HTTPS on the master.

use std::time::Duration;

use serde_json::Value;

use super::{Fleet, FleetError, FLEET_FIREWALL, INFRA_TAG, MASTER_FIREWALL};
use crate::report::{Change, Reporter};

/// How long SSH may take to answer after a firewall change before infra says it is shut out.
const SSH_CHECK: Duration = Duration::from_secs(15);
use crate::cloud::{
    create_once, Firewall, FirewallRequest, InboundRule, OutboundRule, Outcome, Protocol,
    RuleTarget,
};

impl Fleet {
    /// The fleet's firewalls as they should be, each change told (in a dry run: what would
    /// change). After a change, SSH from here is tried on `probe` (a droplet of the fleet): a
    /// firewall that shuts the administrator out is said at once, not found later as every
    /// SSH wait running out.
    pub async fn ensure_firewalls(
        &self,
        admin_cidr: &str,
        master_id: Option<u64>,
        probe: Option<(&str, std::net::Ipv4Addr)>,
        reporter: &Reporter,
    ) -> Result<(), FleetError> {
        let existing = self.api(self.client.list_firewalls()).await?;
        let mut changed = false;
        for wanted in wanted_firewalls(admin_cidr, master_id) {
            let have = existing.iter().find(|f| f.name == wanted.name);
            if have.is_some_and(|have| same_firewall(have, &wanted)) {
                continue;
            }
            let before = have
                .map(|h| serde_json::to_value(h.to_request()).expect("serializes"))
                .unwrap_or(Value::Null);
            let after = serde_json::to_value(&wanted).expect("serializes");
            let (kind, verb) = if have.is_some() {
                ("update_firewall", "update")
            } else {
                ("create_firewall", "create")
            };
            let change = Change::new(kind, &wanted.name, before, after);
            let ssh = format!("SSH only from {admin_cidr}");
            if reporter.dry_run() {
                reporter.would(
                    &change,
                    &format!("{verb} firewall `{}` ({ssh})", wanted.name),
                );
                continue;
            }
            let result = match have {
                None => self.create_firewall(&wanted).await,
                Some(have) => self
                    .api(self.client.update_firewall(&have.id, &wanted))
                    .await
                    .map(|_| ())
                    .map_err(FleetError::from),
            };
            if let Err(e) = result {
                reporter.failed(&change, &e.to_string());
                return Err(e);
            }
            reporter.done(
                &change,
                &format!("{verb}d firewall `{}` ({ssh})", wanted.name),
            );
            changed = true;
        }
        if let (true, Some((name, ip))) = (changed, probe) {
            self.check_ssh_after_firewall(admin_cidr, name, ip).await?;
        }
        Ok(())
    }

    /// Tries SSH to `name` for a short while; when it does not answer, names the address SSH
    /// is allowed from, where it is known the address the droplets see this machine as, and
    /// how to change it.
    async fn check_ssh_after_firewall(
        &self,
        admin_cidr: &str,
        name: &str,
        ip: std::net::Ipv4Addr,
    ) -> Result<(), FleetError> {
        let connector = crate::remote::Connector::for_project(&self.project)?;
        let host = crate::remote::Host::new(name, std::net::IpAddr::V4(ip));
        let deadline = std::time::Instant::now() + SSH_CHECK;
        match crate::remote::wait_for_ssh(&connector, &host, deadline, &self.cancel).await {
            Ok(session) => {
                session.close().await;
                Ok(())
            }
            Err(crate::remote::RemoteError::Cancelled { .. }) => Err(FleetError::Cancelled),
            Err(e) => Err(FleetError::LockedOut {
                admin: admin_cidr.to_string(),
                droplet: name.to_string(),
                ip: ip.to_string(),
                seen_as: super::sandbox_admin_address(&self.project),
                cause: e.to_string(),
            }),
        }
    }

    /// Creates the firewall `wanted`; after an ambiguous answer (a 5xx once the request may
    /// have arrived) it looks for it by name, and updates the one found, before trying again.
    async fn create_firewall(&self, wanted: &FirewallRequest) -> Result<(), FleetError> {
        // The caller has just listed the firewalls: the first look is that listing.
        let mut looked = false;
        let (have, outcome) = create_once(
            &format!("firewall `{}`", wanted.name),
            || {
                let first = !std::mem::replace(&mut looked, true);
                async move {
                    if first {
                        return Ok(None);
                    }
                    let existing = self.api(self.client.list_firewalls()).await?;
                    Ok(existing.into_iter().find(|f| f.name == wanted.name))
                }
            },
            || self.api(self.client.create_firewall(wanted)),
        )
        .await?;
        if outcome == Outcome::Adopted && !same_firewall(&have, wanted) {
            self.api(self.client.update_firewall(&have.id, wanted))
                .await?;
        }
        Ok(())
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
