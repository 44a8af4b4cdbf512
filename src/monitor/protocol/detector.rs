//! Failure detection: one probe round per `probe_interval` over every watched peer.
//!
//! A round sends each watched peer a ping. Peers that have not acked after `probe_timeout` get
//! a second direct ping and `relays` relayed probes (other members ping the peer for us and
//! forward its ack). A peer with no ack by `probe_timeout + relay_timeout` has failed the
//! round; its failure streak grows, and any ack resets it.

use std::collections::BTreeMap;

use super::config::ProtocolConfig;
use super::rng::Rng;
use super::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Ping {
        to: usize,
        nonce: u32,
    },
    PingReq {
        to: usize,
        target: usize,
        nonce: u32,
    },
    /// Forward `target`'s ack to the member that asked us to probe it.
    RelayAck {
        to: usize,
        nonce: u32,
        target: usize,
    },
    /// A round was evaluated: streaks changed.
    RoundEnded,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    pub streak: u32,
    pub last_ack: Option<Millis>,
    acked: bool,
    nonces: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Direct,
    Relay,
}

#[derive(Debug, Clone)]
struct Relay {
    requester: usize,
    their_nonce: u32,
    target: usize,
    expires: Millis,
}

/// At most this many relayed probes are outstanding at once (members are authenticated, but a
/// buggy one should not grow our memory).
const MAX_RELAYS: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct Detector {
    probes: BTreeMap<usize, Probe>,
    round_start: Millis,
    phase: Phase,
    relays: BTreeMap<u32, Relay>,
    next_nonce: u32,
}

impl Detector {
    pub(crate) fn new(watch: &[usize], now: Millis, interval: Millis, rng: &mut Rng) -> Self {
        Detector {
            probes: watch.iter().map(|w| (*w, Probe::default())).collect(),
            // A random phase, so the cluster's rounds do not all fire in the same millisecond.
            round_start: now + rng.below(interval.max(1)),
            phase: Phase::Waiting,
            relays: BTreeMap::new(),
            next_nonce: rng.next_u64() as u32,
        }
    }

    pub(crate) fn probes(&self) -> &BTreeMap<usize, Probe> {
        &self.probes
    }

    pub(crate) fn streak(&self, peer: usize) -> u32 {
        self.probes.get(&peer).map_or(0, |p| p.streak)
    }

    /// When the detector next needs a tick.
    pub(crate) fn deadline(&self, cfg: &ProtocolConfig) -> Millis {
        let phase = match self.phase {
            Phase::Waiting => self.round_start,
            Phase::Direct => self.round_start + cfg.probe_timeout,
            Phase::Relay => self.round_start + cfg.probe_timeout + cfg.relay_timeout,
        };
        self.relays
            .values()
            .map(|r| r.expires)
            .fold(phase, Millis::min)
    }

    fn nonce(&mut self) -> u32 {
        self.next_nonce = self.next_nonce.wrapping_add(1);
        self.next_nonce
    }

    /// Advances the round. `relay_candidates(target)` lists members that may relay a probe to
    /// `target`, best first.
    pub(crate) fn tick(
        &mut self,
        now: Millis,
        cfg: &ProtocolConfig,
        rng: &mut Rng,
        relay_candidates: &dyn Fn(usize) -> Vec<usize>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.relays.retain(|_, r| r.expires > now);
        loop {
            match self.phase {
                Phase::Waiting if now >= self.round_start => {
                    let peers: Vec<usize> = self.probes.keys().copied().collect();
                    for peer in peers {
                        let nonce = self.nonce();
                        let probe = self.probes.get_mut(&peer).expect("watched");
                        probe.acked = false;
                        probe.nonces.clear();
                        probe.nonces.push(nonce);
                        out.push(Action::Ping { to: peer, nonce });
                    }
                    self.phase = Phase::Direct;
                }
                Phase::Direct if now >= self.round_start + cfg.probe_timeout => {
                    let missing: Vec<usize> = self
                        .probes
                        .iter()
                        .filter(|(_, p)| !p.acked)
                        .map(|(k, _)| *k)
                        .collect();
                    for peer in missing {
                        let nonce = self.nonce();
                        self.probes
                            .get_mut(&peer)
                            .expect("watched")
                            .nonces
                            .push(nonce);
                        out.push(Action::Ping { to: peer, nonce });
                        let mut candidates = relay_candidates(peer);
                        // Shuffle the candidates of equal standing so the load spreads.
                        for i in (1..candidates.len()).rev() {
                            let j = rng.below(i as u64 + 1) as usize;
                            candidates.swap(i, j);
                        }
                        for relay in candidates.into_iter().take(cfg.relays) {
                            out.push(Action::PingReq {
                                to: relay,
                                target: peer,
                                nonce,
                            });
                        }
                    }
                    self.phase = Phase::Relay;
                }
                Phase::Relay if now >= self.round_start + cfg.probe_timeout + cfg.relay_timeout => {
                    for probe in self.probes.values_mut() {
                        if probe.acked {
                            probe.streak = 0;
                        } else {
                            probe.streak = probe.streak.saturating_add(1);
                        }
                    }
                    out.push(Action::RoundEnded);
                    self.round_start += cfg.probe_interval;
                    if self.round_start + cfg.probe_interval <= now {
                        // We were not ticked for a while: start afresh rather than in a burst.
                        self.round_start = now;
                    }
                    self.phase = Phase::Waiting;
                }
                _ => break,
            }
        }
        out
    }

    /// An ack from `from` echoing `nonce`: our own probe, or one we relay for someone else.
    pub(crate) fn on_ack(&mut self, from: usize, nonce: u32, now: Millis) -> Option<Action> {
        if let Some(relay) = self.relays.get(&nonce) {
            if relay.target == from {
                let relay = self.relays.remove(&nonce).expect("present");
                return Some(Action::RelayAck {
                    to: relay.requester,
                    nonce: relay.their_nonce,
                    target: relay.target,
                });
            }
        }
        self.acked(from, nonce, now);
        None
    }

    /// `target`'s ack, forwarded by a relay.
    pub(crate) fn on_relay_ack(&mut self, target: usize, nonce: u32, now: Millis) {
        self.acked(target, nonce, now);
    }

    fn acked(&mut self, peer: usize, nonce: u32, now: Millis) {
        if let Some(probe) = self.probes.get_mut(&peer) {
            if probe.nonces.contains(&nonce) {
                probe.acked = true;
                probe.last_ack = Some(now);
            }
        }
    }

    /// `requester` asks us to probe `target`: returns the ping to send.
    pub(crate) fn on_ping_req(
        &mut self,
        requester: usize,
        their_nonce: u32,
        target: usize,
        now: Millis,
        cfg: &ProtocolConfig,
    ) -> Option<Action> {
        if self.relays.len() >= MAX_RELAYS {
            return None;
        }
        let nonce = self.nonce();
        self.relays.insert(
            nonce,
            Relay {
                requester,
                their_nonce,
                target,
                expires: now + cfg.relay_timeout,
            },
        );
        Some(Action::Ping { to: target, nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProtocolConfig {
        ProtocolConfig::new(
            "a",
            vec!["a".into(), "b".into(), "c".into()],
            vec!["b".into()],
        )
    }

    #[test]
    fn a_silent_peer_gets_a_retry_and_relays_then_a_streak() {
        let cfg = cfg();
        let mut rng = Rng::new(1);
        let mut d = Detector::new(&[1], 0, cfg.probe_interval, &mut rng);
        let start = d.round_start;
        let relays = |_: usize| vec![2];
        let out = d.tick(start, &cfg, &mut rng, &relays);
        assert!(matches!(out[..], [Action::Ping { to: 1, .. }]));
        let out = d.tick(start + cfg.probe_timeout, &cfg, &mut rng, &relays);
        assert!(matches!(
            out[..],
            [
                Action::Ping { to: 1, .. },
                Action::PingReq {
                    to: 2,
                    target: 1,
                    ..
                }
            ]
        ));
        let out = d.tick(start + 900, &cfg, &mut rng, &relays);
        assert_eq!(out, vec![Action::RoundEnded]);
        assert_eq!(d.streak(1), 1);
        // Next round: the relayed ack arrives, the streak resets.
        let out = d.tick(start + 1000, &cfg, &mut rng, &relays);
        let Action::Ping { nonce, .. } = out[0] else {
            panic!("{out:?}")
        };
        d.tick(start + 1300, &cfg, &mut rng, &relays);
        d.on_relay_ack(1, nonce, start + 1400);
        d.tick(start + 1700, &cfg, &mut rng, &relays);
        assert_eq!(d.streak(1), 0);
    }

    #[test]
    fn a_relay_forwards_only_the_target_s_ack() {
        let cfg = cfg();
        let mut rng = Rng::new(2);
        let mut d = Detector::new(&[1], 0, cfg.probe_interval, &mut rng);
        let Some(Action::Ping { to: 2, nonce }) = d.on_ping_req(1, 99, 2, 0, &cfg) else {
            panic!()
        };
        assert_eq!(
            d.on_ack(1, nonce, 1),
            None,
            "wrong member echoing the nonce"
        );
        assert_eq!(
            d.on_ack(2, nonce, 1),
            Some(Action::RelayAck {
                to: 1,
                nonce: 99,
                target: 2
            })
        );
        assert_eq!(d.on_ack(2, nonce, 1), None, "forwarded once");
    }
}
