//! `Host`: a droplet as Remote sees it, its name (for messages and pins) and its address.

use std::fmt;
use std::net::IpAddr;

/// A droplet to reach over SSH. The name is what `config/known_hosts` pins a key under and what
/// messages call it; it may be empty for an address known by nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    pub name: String,
    pub ip: IpAddr,
}

impl Host {
    pub fn new(name: impl Into<String>, ip: IpAddr) -> Host {
        Host {
            name: name.into(),
            ip,
        }
    }
}

/// `` `web1` (10.0.0.2) ``, or `` `10.0.0.2` `` for a host without a name.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "`{}`", self.ip)
        } else {
            write!(f, "`{}` ({})", self.name, self.ip)
        }
    }
}
