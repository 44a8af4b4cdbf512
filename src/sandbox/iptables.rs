//! Cloud firewalls enforced inside the droplets, with iptables.
//!
//! DigitalOcean's semantics, for inbound traffic: a droplet in no firewall accepts everything;
//! a droplet in one or more firewalls accepts only what one of their inbound rules allows
//! (plus loopback and replies to its own connections), and drops the rest. The rules live in
//! one chain, `INFRA-FIREWALL`, jumped to first from `INPUT`; it is rebuilt whole on each
//! change and after each boot (a container's netfilter rules do not survive a power cycle).
//! IPv6 sources and outbound rules are stored and answered but not enforced.

use std::net::Ipv4Addr;

use crate::cloud::{InboundRule, Protocol, RuleTarget};

const CHAIN: &str = "INFRA-FIREWALL";

/// Whether `ports` is a port, a range `low-high`, or `0`/`all` for every port.
pub fn valid_ports(ports: &str) -> bool {
    dport(ports).is_ok()
}

/// The `--dport` value for `ports`, `None` for all ports.
fn dport(ports: &str) -> Result<Option<String>, ()> {
    let ports = ports.trim();
    if ports.is_empty() || ports == "0" || ports.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or(());
    match ports.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(());
            }
            Ok(Some(format!("{low}:{high}")))
        }
        None => Ok(Some(port(ports)?.to_string())),
    }
}

/// The IPv4 sources a rule allows; `None` means anywhere.
fn sources(
    target: &RuleTarget,
    resolve: &dyn Fn(&RuleTarget) -> Vec<Ipv4Addr>,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for address in &target.addresses {
        let address = address.trim();
        if address == "0.0.0.0/0" || address == "0.0.0.0" {
            return None;
        }
        let ip = address.split('/').next().unwrap_or("");
        if ip.parse::<Ipv4Addr>().is_ok() {
            out.push(address.to_owned());
        }
    }
    out.extend(resolve(target).into_iter().map(|ip| ip.to_string()));
    Some(out)
}

/// The shell script that makes a droplet enforce `rules`, or lifts every rule when the droplet
/// is in no firewall (`None`). `resolve` turns a target's droplet ids and tags into addresses.
pub fn script(
    rules: Option<&[InboundRule]>,
    resolve: &dyn Fn(&RuleTarget) -> Vec<Ipv4Addr>,
) -> String {
    let Some(rules) = rules else {
        return format!(
            "iptables -w -D INPUT -j {CHAIN} 2>/dev/null; iptables -w -F {CHAIN} 2>/dev/null; \
             iptables -w -X {CHAIN} 2>/dev/null; true\n"
        );
    };
    let mut lines = vec![
        "set -e".to_owned(),
        format!("iptables -w -N {CHAIN} 2>/dev/null || iptables -w -F {CHAIN}"),
        format!("iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}"),
        format!("iptables -w -A {CHAIN} -i lo -j RETURN"),
        format!("iptables -w -A {CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"),
    ];
    for rule in rules {
        let protocol = match rule.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        };
        let port = match (rule.protocol, dport(&rule.ports)) {
            (Protocol::Icmp, _) | (_, Ok(None)) => String::new(),
            (_, Ok(Some(p))) => format!(" --dport {p}"),
            // Rejected when the rule was stored; an unreadable one allows nothing.
            (_, Err(())) => continue,
        };
        match sources(&rule.sources, resolve) {
            None => lines.push(format!(
                "iptables -w -A {CHAIN} -p {protocol}{port} -j RETURN"
            )),
            Some(list) => lines.extend(list.iter().map(|source| {
                format!("iptables -w -A {CHAIN} -p {protocol}{port} -s {source} -j RETURN")
            })),
        }
    }
    lines.push(format!("iptables -w -A {CHAIN} -j DROP"));
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: Protocol, ports: &str, addresses: &[&str], tags: &[&str]) -> InboundRule {
        InboundRule {
            protocol,
            ports: ports.into(),
            sources: RuleTarget {
                addresses: addresses.iter().map(|s| s.to_string()).collect(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                ..RuleTarget::default()
            },
        }
    }

    #[test]
    fn rules_become_one_chain_that_drops_the_rest() {
        let rules = [
            rule(Protocol::Tcp, "22", &["203.0.113.7/32", "::/0"], &[]),
            rule(Protocol::Tcp, "8000-9000", &["0.0.0.0/0"], &[]),
            rule(Protocol::Tcp, "80", &[], &["web"]),
            rule(Protocol::Icmp, "0", &["0.0.0.0/0", "::/0"], &[]),
        ];
        let resolve = |target: &RuleTarget| {
            if target.tags.iter().any(|t| t == "web") {
                vec![Ipv4Addr::new(10, 0, 0, 11)]
            } else {
                vec![]
            }
        };
        let script = script(Some(&rules), &resolve);
        let chain: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("iptables -w -A"))
            .collect();
        assert_eq!(
            chain,
            [
                "iptables -w -A INFRA-FIREWALL -i lo -j RETURN",
                "iptables -w -A INFRA-FIREWALL -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
                "iptables -w -A INFRA-FIREWALL -p tcp --dport 22 -s 203.0.113.7/32 -j RETURN",
                "iptables -w -A INFRA-FIREWALL -p tcp --dport 8000:9000 -j RETURN",
                "iptables -w -A INFRA-FIREWALL -p tcp --dport 80 -s 10.0.0.11 -j RETURN",
                "iptables -w -A INFRA-FIREWALL -p icmp -j RETURN",
                "iptables -w -A INFRA-FIREWALL -j DROP",
            ]
        );
    }

    #[test]
    fn ports_are_checked() {
        for good in ["22", "0", "all", "8000-9000", "1-65535"] {
            assert!(valid_ports(good), "{good}");
        }
        for bad in ["x", "0-1", "9000-8000", "70000", "22,80"] {
            assert!(!valid_ports(bad), "{bad}");
        }
        assert!(script(None, &|_| vec![]).contains("-X INFRA-FIREWALL"));
    }
}
