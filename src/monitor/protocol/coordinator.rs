//! One coordinator at a time: leases on epochs promised by a majority of the cluster.
//!
//! A candidate (the lowest-named healthy voter, as its own view tells it) proposes epoch
//! `highest seen + 1` to every member. A member promises when it has not promised a higher or
//! equal epoch to someone else and holds no live promise to another member; a promise binds it
//! for `lease` from the moment it receives the request. With promises from a majority (itself
//! included) the candidate holds the lease until `request sent + lease - lease_margin`: strictly
//! before any promiser is free again, so two leases never overlap. The holder renews every
//! `lease_renew` with the same epoch. Epochs of acquired leases only grow (any two majorities
//! share a member, and a member never promises below what it promised before), so side effects
//! carrying the epoch can be refused below the highest seen. The highest acquired epoch is
//! gossiped on every message; seeing one above ours ends our lease at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::config::ProtocolConfig;
use super::rng::Rng;
use super::Millis;

/// Lets the code that performs a step check, just before each side effect, that this node
/// still holds the lease for the step's epoch. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicU64>);

impl Fence {
    /// True only while this node holds the lease for exactly `epoch` and has seen no higher
    /// acquired epoch.
    pub fn permits(&self, epoch: u64) -> bool {
        epoch != 0 && self.0.load(Ordering::SeqCst) == epoch
    }

    fn set(&self, epoch: u64) {
        self.0.store(epoch, Ordering::SeqCst);
    }
}

/// What this node may do about the lease, decided from its view of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The lowest-named healthy voter: propose and renew.
    Candidate,
    /// A lower-named healthy voter exists: do not propose or renew (a held lease runs out).
    Yield,
    /// Self-suspected: give up any lease now.
    Abstain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grant {
    holder: usize,
    epoch: u64,
    until: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseEvent {
    Acquired(u64),
    Lost(u64),
}

#[derive(Debug)]
pub(crate) struct Lease {
    me: usize,
    /// Highest acquired epoch seen (ours or gossiped).
    pub seen: u64,
    /// Highest epoch this node has promised, and to whom.
    promised: u64,
    promised_to: Option<usize>,
    grant: Option<Grant>,
    /// After a restart nothing is promised for one lease length: the promise a previous run
    /// made may still bind.
    blocked_until: Millis,
    /// The epoch this node proposes or holds.
    mine: Option<u64>,
    acquired: bool,
    /// Round (our clock at sending) -> members that promised in it.
    rounds: BTreeMap<Millis, BTreeSet<usize>>,
    until: Millis,
    next_prepare: Millis,
    fence: Fence,
}

impl Lease {
    pub(crate) fn new(
        me: usize,
        highest: u64,
        now: Millis,
        restarted: bool,
        cfg: &ProtocolConfig,
    ) -> Self {
        Lease {
            me,
            seen: highest,
            promised: highest,
            promised_to: None,
            grant: None,
            blocked_until: if restarted { now + cfg.lease } else { now },
            mine: None,
            acquired: false,
            rounds: BTreeMap::new(),
            until: 0,
            next_prepare: now,
            fence: Fence::default(),
        }
    }

    pub(crate) fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The highest epoch this node has seen in any form (persisted across restarts).
    pub(crate) fn highest(&self) -> u64 {
        self.seen.max(self.promised)
    }

    /// The epoch of the lease this node holds at `now`.
    pub(crate) fn holding(&self, now: Millis) -> Option<u64> {
        self.mine.filter(|_| self.acquired && now < self.until)
    }

    pub(crate) fn until(&self) -> Millis {
        self.until
    }

    /// Whom this node believes coordinates: itself while holding, else whom it promised to.
    pub(crate) fn coordinator(&self, now: Millis) -> Option<usize> {
        if self.holding(now).is_some() {
            return Some(self.me);
        }
        self.grant.filter(|g| g.until > now).map(|g| g.holder)
    }

    pub(crate) fn deadline(&self) -> Millis {
        let mut d = self.next_prepare;
        if self.acquired {
            d = d.min(self.until);
        }
        d
    }

    fn lose(&mut self, events: &mut Vec<LeaseEvent>) {
        if let Some(epoch) = self.mine.take() {
            if self.acquired {
                events.push(LeaseEvent::Lost(epoch));
            }
        }
        self.acquired = false;
        self.until = 0;
        self.rounds.clear();
        self.fence.set(0);
    }

    /// A gossiped acquired epoch.
    pub(crate) fn observe(&mut self, epoch: u64, events: &mut Vec<LeaseEvent>) {
        if epoch > self.seen {
            self.seen = epoch;
        }
        if self.mine.is_some_and(|mine| epoch > mine) {
            self.lose(events);
        }
    }

    /// Whether this node may promise `epoch` to `from` now.
    fn may_promise(&self, from: usize, epoch: u64, now: Millis) -> bool {
        if now < self.blocked_until {
            return false;
        }
        if self
            .grant
            .is_some_and(|g| g.until > now && g.holder != from)
        {
            return false;
        }
        let floor = self.seen.max(self.promised);
        epoch > floor
            || (epoch == self.promised && epoch >= self.seen && self.promised_to == Some(from))
    }

    fn promise(&mut self, from: usize, epoch: u64, now: Millis, cfg: &ProtocolConfig) {
        self.promised = epoch;
        self.promised_to = Some(from);
        self.grant = Some(Grant {
            holder: from,
            epoch,
            until: now + cfg.lease,
        });
    }

    /// A member asks us for `epoch`; returns whether we promise.
    pub(crate) fn on_prepare(
        &mut self,
        from: usize,
        epoch: u64,
        now: Millis,
        cfg: &ProtocolConfig,
        events: &mut Vec<LeaseEvent>,
    ) -> bool {
        if !self.may_promise(from, epoch, now) {
            return false;
        }
        self.promise(from, epoch, now, cfg);
        // Promising someone else a higher epoch ends whatever we were proposing.
        if self.mine.is_some_and(|mine| epoch > mine) {
            self.lose(events);
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_promise(
        &mut self,
        from: usize,
        epoch: u64,
        round: Millis,
        granted: bool,
        majority: usize,
        cfg: &ProtocolConfig,
        events: &mut Vec<LeaseEvent>,
    ) {
        if !granted || self.mine != Some(epoch) {
            return;
        }
        let Some(promisers) = self.rounds.get_mut(&round) else {
            return;
        };
        promisers.insert(from);
        self.count(round, majority, cfg, events);
    }

    fn count(
        &mut self,
        round: Millis,
        majority: usize,
        cfg: &ProtocolConfig,
        events: &mut Vec<LeaseEvent>,
    ) {
        let Some(epoch) = self.mine else { return };
        if self.rounds.get(&round).map_or(0, BTreeSet::len) < majority {
            return;
        }
        let until = round + cfg.lease - cfg.lease_margin;
        if until > self.until {
            self.until = until;
        }
        if !self.acquired {
            self.acquired = true;
            self.seen = self.seen.max(epoch);
            self.fence.set(epoch);
            events.push(LeaseEvent::Acquired(epoch));
        }
    }

    /// Expires, proposes or renews. Returns the Prepare to broadcast, if any.
    pub(crate) fn tick(
        &mut self,
        now: Millis,
        role: Role,
        majority: usize,
        cfg: &ProtocolConfig,
        rng: &mut Rng,
        events: &mut Vec<LeaseEvent>,
    ) -> Option<(u64, Millis)> {
        if self.acquired && now >= self.until {
            self.lose(events);
        }
        self.rounds.retain(|r, _| r + cfg.lease > now);
        if self.mine.is_some() && !self.acquired && self.rounds.is_empty() {
            // The proposal got no majority within a lease length: give it up.
            self.mine = None;
        }
        match role {
            Role::Abstain => {
                self.lose(events);
                return None;
            }
            Role::Yield => return None,
            Role::Candidate => {}
        }
        if now < self.next_prepare {
            return None;
        }
        let epoch = match self.mine {
            Some(epoch) if self.acquired => epoch,
            _ => {
                let epoch = self.seen.max(self.promised) + 1;
                if !self.may_promise(self.me, epoch, now) {
                    // We still owe someone else a promise: wait until it runs out.
                    self.next_prepare = self.grant.map_or(now + cfg.lease_renew, |g| g.until);
                    return None;
                }
                self.mine = Some(epoch);
                self.acquired = false;
                self.rounds.clear();
                epoch
            }
        };
        if !self.may_promise(self.me, epoch, now) {
            self.lose(events);
            return None;
        }
        self.promise(self.me, epoch, now, cfg);
        self.rounds.insert(now, BTreeSet::from([self.me]));
        // Jitter keeps two would-be candidates from colliding round after round.
        self.next_prepare = now + cfg.lease_renew - rng.below(cfg.lease_renew / 4 + 1);
        self.count(now, majority, cfg, events);
        Some((epoch, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProtocolConfig {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        ProtocolConfig::new("a", names.clone(), names[1..].to_vec())
    }

    #[test]
    fn a_majority_of_promises_gives_a_lease_and_a_fence_a_higher_epoch_revokes() {
        let cfg = cfg();
        let mut rng = Rng::new(3);
        let mut ev = Vec::new();
        let mut a = Lease::new(0, 0, 0, false, &cfg);
        let fence = a.fence();
        let (epoch, round) = a
            .tick(0, Role::Candidate, 2, &cfg, &mut rng, &mut ev)
            .unwrap();
        assert_eq!(epoch, 1);
        assert!(!fence.permits(1));
        a.on_promise(1, epoch, round, true, 2, &cfg, &mut ev);
        assert_eq!(ev, vec![LeaseEvent::Acquired(1)]);
        assert!(fence.permits(1) && !fence.permits(2));
        assert_eq!(a.holding(10), Some(1));
        a.observe(2, &mut ev);
        assert!(!fence.permits(1));
        assert_eq!(ev.last(), Some(&LeaseEvent::Lost(1)));
    }

    #[test]
    fn a_promiser_binds_itself_for_a_lease_and_never_goes_below_what_it_promised() {
        let cfg = cfg();
        let mut ev = Vec::new();
        let mut c = Lease::new(2, 0, 0, false, &cfg);
        assert!(c.on_prepare(0, 1, 0, &cfg, &mut ev));
        assert!(
            c.on_prepare(0, 1, 1000, &cfg, &mut ev),
            "renewal by the same holder"
        );
        assert!(
            !c.on_prepare(1, 2, 1500, &cfg, &mut ev),
            "a's promise still binds"
        );
        assert!(
            c.on_prepare(1, 2, 4000, &cfg, &mut ev),
            "a's promise ran out"
        );
        assert!(
            !c.on_prepare(0, 1, 8000, &cfg, &mut ev),
            "below what was promised"
        );
        let mut restarted = Lease::new(2, 2, 0, true, &cfg);
        assert!(
            !restarted.on_prepare(0, 3, 100, &cfg, &mut ev),
            "quiet after a restart"
        );
        assert!(restarted.on_prepare(0, 3, cfg.lease, &cfg, &mut ev));
    }

    #[test]
    fn the_holder_s_lease_ends_before_any_promise_it_got() {
        let cfg = cfg();
        let mut rng = Rng::new(4);
        let mut ev = Vec::new();
        let mut a = Lease::new(0, 0, 0, false, &cfg);
        let (epoch, round) = a
            .tick(100, Role::Candidate, 2, &cfg, &mut rng, &mut ev)
            .unwrap();
        a.on_promise(1, epoch, round, true, 2, &cfg, &mut ev);
        // b received the request at 100 or later, so it is bound until 100 + lease at least.
        assert!(a.until() < 100 + cfg.lease);
        a.tick(a.until(), Role::Yield, 2, &cfg, &mut rng, &mut ev);
        assert_eq!(a.holding(a.until()), None);
        assert_eq!(ev.last(), Some(&LeaseEvent::Lost(1)));
    }
}
