//! The administrator's address: the only place SSH to the droplets is allowed from.

use super::{Fleet, FleetError, FLEET_FIREWALL};
use crate::cloud::Protocol;
use crate::project::Project;

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

/// Whether `cidr` (or a plain address) holds `address` (a `/32` or a plain address).
pub fn cidr_contains(cidr: &str, address: &str) -> bool {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (ip, bits) = s.split_once('/').unwrap_or((s, "32"));
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        Some((u32::from(ip), bits))
    };
    match (parse(cidr), parse(address)) {
        (Some((net, bits)), Some((ip, _))) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            net & mask == ip & mask
        }
        _ => false,
    }
}

impl Fleet {
    /// Where this machine's address as the droplets see it is known (the sandbox), checks that
    /// the fleet's firewall lets it in: new droplets get that firewall, and waiting for their
    /// SSH would otherwise run out only after minutes.
    pub async fn check_not_shut_out(&self) -> Result<(), FleetError> {
        let Some(seen_as) = sandbox_admin_address(&self.project) else {
            return Ok(());
        };
        let firewalls = self.api(self.client.list_firewalls()).await?;
        let Some(fleet) = firewalls.iter().find(|f| f.name == FLEET_FIREWALL) else {
            return Ok(());
        };
        let allowed: Vec<&str> = fleet
            .inbound_rules
            .iter()
            .filter(|r| r.protocol == Protocol::Tcp && r.ports == "22")
            .flat_map(|r| r.sources.addresses.iter().map(String::as_str))
            .collect();
        if allowed.iter().any(|cidr| cidr_contains(cidr, &seen_as)) {
            return Ok(());
        }
        Err(FleetError::ShutOut {
            allowed: allowed.join(", "),
            seen_as,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::cidr_contains;

    #[test]
    fn cidrs_hold_their_addresses() {
        assert!(cidr_contains("10.0.0.0/8", "10.2.3.4/32"));
        assert!(cidr_contains("203.0.113.7/32", "203.0.113.7"));
        assert!(cidr_contains("0.0.0.0/0", "198.51.100.1/32"));
        assert!(!cidr_contains("198.51.100.7/32", "10.224.0.1/32"));
        assert!(!cidr_contains("not a cidr", "10.0.0.1"));
    }
}
