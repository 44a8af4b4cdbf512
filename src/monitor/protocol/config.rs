//! The protocol's tunables: who is in the cluster, whom this node probes, and every timer.

use super::Millis;

/// The most monitors one cluster may have: member indices travel as one byte.
pub const MAX_CLUSTER: usize = 250;

/// Everything a [`super::Node`] needs to know before it starts. Times are milliseconds.
///
/// With the defaults a crashed peer is voted down after three failed probe rounds
/// (`failure_streak` x `probe_interval`, each round a direct probe, then a second direct probe
/// and two relayed probes), which puts crash -> drain at 3-4 s; at 10% packet loss one round
/// fails with probability ~0.004, so a false verdict needs a majority of voters to see three in
/// a row at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// This monitor's droplet name.
    pub me: String,
    /// Every monitor of the configured cluster, `me` included. Quorums are majorities of this
    /// list, never of the members that happen to be reachable.
    pub cluster: Vec<String>,
    /// The peers this node probes (the `monitored_by` ring, or every peer when N <= 20).
    pub watch: Vec<String>,
    /// The master droplet: verdicts on it raise events only, unless `auto_recover_master`.
    pub master: Option<String>,
    pub auto_recover_master: bool,
    /// One probe round per interval (default 1000).
    pub probe_interval: Millis,
    /// How long a direct probe waits for its ack before a retry and two relayed probes go out
    /// (default 300).
    pub probe_timeout: Millis,
    /// How long the retry and relayed probes get before the round counts as failed (default 400).
    /// `probe_timeout + relay_timeout` must be shorter than `probe_interval`.
    pub relay_timeout: Millis,
    /// How many peers relay a probe on a miss (default 2).
    pub relays: usize,
    /// Failed rounds in a row before this node votes a peer down (default 3).
    pub failure_streak: u32,
    /// A gossiped vote lapses unless its voter repeats it within this time (default 2500).
    pub vote_ttl: Millis,
    /// A promise binds its giver for this long (default 3000).
    pub lease: Millis,
    /// The lease holder renews this often (default 1000); must be well under `lease`.
    pub lease_renew: Millis,
    /// The holder treats its lease as ending this much before its promisers do, to cover clock
    /// rate differences and the daemon's tick granularity (default 500).
    pub lease_margin: Millis,
    /// Drain at the verdict, check-and-power-cycle at +`power_cycle_after` (default 30_000),
    /// recreate at +`recover_after` (default 90_000).
    pub power_cycle_after: Millis,
    pub recover_after: Millis,
    /// A failed step is asked for again after this long (default 5000).
    pub step_retry: Millis,
    /// A step that has not finished after this long is asked for again (default 600_000).
    pub step_timeout: Millis,
    /// Accepted |sender wall clock - my wall clock| (default 30_000).
    pub message_window: Millis,
}

impl ProtocolConfig {
    pub fn new(me: impl Into<String>, cluster: Vec<String>, watch: Vec<String>) -> Self {
        ProtocolConfig {
            me: me.into(),
            cluster,
            watch,
            master: None,
            auto_recover_master: false,
            probe_interval: 1000,
            probe_timeout: 300,
            relay_timeout: 400,
            relays: 2,
            failure_streak: 3,
            vote_ttl: 2500,
            lease: 3000,
            lease_renew: 1000,
            lease_margin: 500,
            power_cycle_after: 30_000,
            recover_after: 90_000,
            step_retry: 5000,
            step_timeout: 600_000,
            message_window: 30_000,
        }
    }

    /// Checks the names and timers; every error says which field is wrong and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: String| Err(ConfigError { field, why });
        if self.cluster.len() > MAX_CLUSTER {
            return bad(
                "cluster",
                format!(
                    "has {} monitors; at most {MAX_CLUSTER} are supported",
                    self.cluster.len()
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.cluster {
            if name.is_empty() || name.len() > 64 {
                return bad(
                    "cluster",
                    format!("name `{name}` must be 1 to 64 bytes long"),
                );
            }
            if !seen.insert(name) {
                return bad(
                    "cluster",
                    format!("lists `{name}` twice; list each monitor once"),
                );
            }
        }
        if !seen.contains(&self.me) {
            return bad(
                "me",
                format!("`{}` is not in `cluster`; add it there", self.me),
            );
        }
        for name in &self.watch {
            if name == &self.me {
                return bad(
                    "watch",
                    format!("lists `{name}` itself; a node does not probe itself"),
                );
            }
            if !seen.contains(name) {
                return bad(
                    "watch",
                    format!("`{name}` is not in `cluster`; add it there or drop it"),
                );
            }
        }
        if let Some(master) = &self.master {
            if !seen.contains(master) {
                return bad("master", format!("`{master}` is not in `cluster`"));
            }
        }
        if self.probe_interval == 0 || self.probe_timeout == 0 || self.relay_timeout == 0 {
            return bad("probe_interval", "probe timers must be above zero".into());
        }
        if self.probe_timeout + self.relay_timeout >= self.probe_interval {
            return bad(
                "relay_timeout",
                format!(
                    "probe_timeout ({}) + relay_timeout ({}) must be below probe_interval ({})",
                    self.probe_timeout, self.relay_timeout, self.probe_interval
                ),
            );
        }
        if self.failure_streak == 0 {
            return bad("failure_streak", "must be at least 1".into());
        }
        if self.vote_ttl <= self.probe_interval {
            return bad(
                "vote_ttl",
                "must exceed probe_interval, or votes lapse between rounds".into(),
            );
        }
        if self.lease_renew == 0 || self.lease_renew * 2 > self.lease {
            return bad(
                "lease_renew",
                "must be above zero and at most half of `lease`".into(),
            );
        }
        if self.lease_margin >= self.lease - self.lease_renew {
            return bad("lease_margin", "must be below `lease - lease_renew`".into());
        }
        if self.recover_after < self.power_cycle_after {
            return bad(
                "recover_after",
                "must not come before `power_cycle_after`".into(),
            );
        }
        if self.message_window == 0 {
            return bad("message_window", "must be above zero".into());
        }
        Ok(())
    }

    /// floor(N/2) + 1 of the configured cluster.
    pub fn majority(&self) -> usize {
        self.cluster.len() / 2 + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("monitor protocol config: `{field}` {why}")]
pub struct ConfigError {
    pub field: &'static str,
    pub why: String,
}
