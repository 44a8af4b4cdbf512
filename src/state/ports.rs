//! Hash-based ports: the same project and environment get the same port on every machine and
//! every run (SHA-256, not Rust's randomised `Hash`).

use sha2::{Digest, Sha256};

pub const DEFAULT_PORT_RANGE: u16 = 1000;
pub const BACKEND_BASE_PORT: u16 = 8000;
pub const FRONTEND_BASE_PORT: u16 = 9000;
/// Web services other than `backend` and `frontend` start here unless given a `base_port`.
pub const OTHER_BASE_PORT: u16 = 10000;

/// A short deterministic hash naming resources of one project-environment.
pub fn resource_hash(project: &str, environment: &str) -> String {
    let digest = Sha256::digest(format!("{project}-{environment}").as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `base_port + hash(project, environment) % port_range`.
pub fn hash_based_port(project: &str, environment: &str, base_port: u16, port_range: u16) -> u16 {
    let hash = u32::from_str_radix(&resource_hash(project, environment), 16).expect("hex");
    let range = u32::from(port_range.max(1));
    let offset = (hash % range) as u16;
    base_port.saturating_add(offset)
}

/// The base port of a web service without an explicit one.
pub fn default_base_port(service: &str) -> u16 {
    match service {
        "backend" => BACKEND_BASE_PORT,
        "frontend" => FRONTEND_BASE_PORT,
        _ => OTHER_BASE_PORT,
    }
}

/// The next port after `port` within `[base, base + range)`, wrapping around.
pub fn next_in_range(port: u16, base: u16, range: u16) -> u16 {
    let offset = (port - base + 1) % range.max(1);
    base + offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_stay_in_range_and_are_stable() {
        let p = hash_based_port("hostomatic", "prod", 8000, 1000);
        assert!((8000..9000).contains(&p));
        assert_eq!(p, hash_based_port("hostomatic", "prod", 8000, 1000));
        assert_eq!(next_in_range(8999, 8000, 1000), 8000);
    }
}
