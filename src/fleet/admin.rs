//! The administrator's address: the only place SSH to the droplets is allowed from.

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
