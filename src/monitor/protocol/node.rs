//! [`Node`]: one monitor's protocol state, tying the envelope, the detector, the quorum, the
//! lease and the graduated response together. Feed it datagrams ([`Node::receive`]), the passage
//! of time ([`Node::tick`]) and the ends of steps ([`Node::step_finished`]); act on what it
//! returns.

use std::collections::{BTreeMap, BTreeSet};

use super::auth::{self, Authenticator, DropReason, Keyring, ReplayWindow};
use super::config::{ConfigError, ProtocolConfig};
use super::coordinator::{Fence, Lease, LeaseEvent, Role};
use super::detector::{Action, Detector};
use super::quorum::Quorum;
use super::response::{Outcome, Response};
use super::rng::{fnv1a, Rng};
use super::status::{Counters, LeaseStatus, NodeStatus, PeerState, PeerStatus, VerdictStatus};
use super::wire::{Kind, Message, Stage};
use super::Millis;

/// One recovery step, performed by the daemon (through `playbooks/recovery.rhai`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Take the target out of nginx and alert.
    Drain,
    /// Check the target in the cloud API and power-cycle it once.
    Check,
    /// Fence the target (power off, confirm) and recreate it from its latest snapshot.
    Recover,
    /// The target came back by itself: put it back into nginx.
    Restore,
}

/// A step to perform under `epoch`; check [`Fence::permits`] before every side effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepRequest {
    pub target: String,
    pub step: Step,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// This node's failure streak on `target` reached `failure_streak`.
    Suspected {
        target: String,
    },
    /// A majority of the cluster votes `target` down. `recoverable` is false for the master
    /// without `auto_recover_master`: alert only.
    Verdict {
        target: String,
        voters: Vec<String>,
        recoverable: bool,
    },
    /// `target` answered with a newer incarnation: its verdict is gone.
    Refuted {
        target: String,
    },
    /// A recreated `target` is back.
    Recovered {
        target: String,
    },
    /// This node heard itself suspected and refuted with a new incarnation.
    Refuting {
        incarnation: u64,
    },
    /// This node fails more than half of its watched peers at once: it abstains.
    SelfSuspected,
    SelfCleared,
    /// Half the fleet or more looks down: no steps, alert only.
    MassFailure {
        down: Vec<String>,
    },
    MassFailureOver,
    Coordinator {
        epoch: u64,
    },
    LeaseLost {
        epoch: u64,
    },
    StepDone {
        target: String,
        step: Step,
        epoch: u64,
    },
    StepFailed {
        target: String,
        step: Step,
        error: String,
    },
    /// A datagram was dropped (at most one event per reason per second; the counters count
    /// all). `from` is the claimed sender, untrusted.
    Dropped {
        from: Option<String>,
        reason: DropReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send { to: String, bytes: Vec<u8> },
    Step(StepRequest),
    Event(Event),
}

/// What a restarted monitor needs so it never reuses an incarnation or promises below an epoch
/// it saw. The daemon saves it whenever it changes and passes it to [`Node::restore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PersistedState {
    pub incarnation: u64,
    pub highest_epoch: u64,
}

#[derive(Debug, Default)]
struct Member {
    incarnation: u64,
    abstaining: bool,
    window: ReplayWindow,
}

pub struct Node<A: Authenticator = Keyring> {
    cfg: ProtocolConfig,
    auth: A,
    /// The cluster, sorted: indices travel on the wire.
    names: Vec<String>,
    me: usize,
    fingerprint: u32,
    watch: Vec<usize>,
    master: Option<usize>,
    incarnation: u64,
    seq: u64,
    members: Vec<Member>,
    detector: Detector,
    quorum: Quorum,
    lease: Lease,
    response: Response,
    abstaining: bool,
    my_votes: Vec<(usize, u64)>,
    suspected: BTreeSet<usize>,
    announced: BTreeSet<(usize, u64)>,
    brake: bool,
    rng: Rng,
    counters: Counters,
    last_drop_event: BTreeMap<DropReason, Millis>,
}

impl<A: Authenticator> Node<A> {
    /// A node starting with no saved state. Its incarnation starts at the wall clock, so even a
    /// droplet recreated from an old snapshot comes back newer than it was.
    pub fn new(
        config: ProtocolConfig,
        keys: A,
        now: Millis,
        wall_ms: u64,
    ) -> Result<Self, ConfigError> {
        Self::start(config, keys, None, now, wall_ms)
    }

    /// A node restarting with what a previous run saved.
    pub fn restore(
        config: ProtocolConfig,
        keys: A,
        saved: PersistedState,
        now: Millis,
        wall_ms: u64,
    ) -> Result<Self, ConfigError> {
        Self::start(config, keys, Some(saved), now, wall_ms)
    }

    fn start(
        cfg: ProtocolConfig,
        auth: A,
        saved: Option<PersistedState>,
        now: Millis,
        wall_ms: u64,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut names = cfg.cluster.clone();
        names.sort();
        let index = |n: &String| names.binary_search(n).expect("validated member");
        let me = index(&cfg.me);
        let mut watch: Vec<usize> = cfg.watch.iter().map(index).collect();
        watch.sort();
        watch.dedup();
        let master = cfg.master.as_ref().map(index);
        let fingerprint = fnv1a(names.join("\n").as_bytes()) as u32;
        let mut rng = Rng::new(fnv1a(cfg.me.as_bytes()) ^ wall_ms.rotate_left(17) ^ now);
        let detector = Detector::new(&watch, now, cfg.probe_interval, &mut rng);
        let saved_inc = saved.map_or(0, |s| s.incarnation + 1);
        let highest = saved.map_or(0, |s| s.highest_epoch);
        let lease = Lease::new(me, highest, now, saved.is_some(), &cfg);
        let members = names.iter().map(|_| Member::default()).collect();
        Ok(Node {
            auth,
            me,
            fingerprint,
            watch,
            master,
            incarnation: saved_inc.max(wall_ms),
            // Sequence numbers start at the wall clock x 1024 and count up by one: a restarted
            // node starts above everything it sent before (unless it sent over a million
            // datagrams a second) without saving a counter.
            seq: wall_ms.saturating_mul(1024),
            members,
            detector,
            quorum: Quorum::default(),
            lease,
            response: Response::default(),
            abstaining: false,
            my_votes: Vec::new(),
            suspected: BTreeSet::new(),
            announced: BTreeSet::new(),
            brake: false,
            rng,
            counters: Counters::default(),
            last_drop_event: BTreeMap::new(),
            names,
            cfg,
        })
    }

    pub fn fence(&self) -> Fence {
        self.lease.fence()
    }

    pub fn crash_restart_safe_state(&self) -> PersistedState {
        PersistedState {
            incarnation: self.incarnation,
            highest_epoch: self.lease.highest(),
        }
    }

    pub fn config(&self) -> &ProtocolConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The epoch of the lease this node holds at `now`, if any.
    pub fn lease_epoch(&self, now: Millis) -> Option<u64> {
        self.lease.holding(now)
    }

    /// When [`Node::tick`] next has something to do: the earliest timer after `now` (a probe
    /// phase, a lease renewal, a step falling due), at most one probe interval away. A daemon
    /// may tick more often; ticking less often delays probes and steps.
    pub fn next_deadline(&self, now: Millis) -> Millis {
        // Timers already past are waiting on something else (a lease, a verdict) that only a
        // datagram or a later timer brings: they must not make the caller spin.
        let mut d = now + self.cfg.probe_interval;
        let mut consider = |t: Millis| {
            if t > now && t < d {
                d = t;
            }
        };
        consider(self.detector.deadline(&self.cfg));
        consider(self.lease.deadline());
        if let Some(r) = self.response.deadline(&self.cfg, now) {
            consider(r);
        }
        d
    }

    fn incarnation_of(&self, member: usize) -> u64 {
        if member == self.me {
            self.incarnation
        } else {
            self.members[member].incarnation
        }
    }

    fn name(&self, member: usize) -> String {
        self.names[member].clone()
    }

    fn message(&self, now: Millis, kind: Kind) -> Message {
        Message {
            incarnation: self.incarnation,
            abstaining: self.abstaining,
            highest_epoch: self.lease.seen,
            votes: self.my_votes.clone(),
            progress: self.response.gossip(now),
            kind,
        }
    }

    fn send(&mut self, now: Millis, wall_ms: u64, to: usize, kind: Kind, out: &mut Vec<Output>) {
        let mut body = Vec::with_capacity(128);
        self.message(now, kind).encode(&mut body);
        self.seq += 1;
        let bytes = auth::seal(
            &self.auth,
            self.fingerprint,
            &self.names[self.me],
            to as u64,
            self.seq,
            wall_ms,
            &body,
        );
        self.counters.sent += 1;
        self.counters.bytes_sent += bytes.len() as u64;
        out.push(Output::Send {
            to: self.name(to),
            bytes,
        });
    }

    fn broadcast(&mut self, now: Millis, wall_ms: u64, kind: Kind, out: &mut Vec<Output>) {
        for to in 0..self.names.len() {
            if to != self.me {
                self.send(now, wall_ms, to, kind.clone(), out);
            }
        }
    }

    fn drop_datagram(
        &mut self,
        now: Millis,
        reason: DropReason,
        from: Option<String>,
        out: &mut Vec<Output>,
    ) {
        self.counters.dropped(reason);
        let last = self.last_drop_event.get(&reason).copied();
        if last.is_none_or(|t| now >= t + 1000) {
            self.last_drop_event.insert(reason, now);
            // The claimed name is attacker-controlled: keep it short and printable so it cannot
            // forge log lines.
            let from = from.map(|f| {
                f.chars()
                    .take(64)
                    .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                    .collect()
            });
            out.push(Output::Event(Event::Dropped { from, reason }));
        }
    }

    /// One datagram from the network.
    pub fn receive(&mut self, now: Millis, wall_ms: u64, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.counters.bytes_received += bytes.len() as u64;
        let opened = match auth::open(&self.auth, self.fingerprint, bytes) {
            Ok(o) => o,
            Err((reason, from)) => {
                self.drop_datagram(now, reason, from, &mut out);
                return out;
            }
        };
        let from = opened.sender.to_owned();
        let Ok(sender) = self.names.binary_search(&from) else {
            self.drop_datagram(now, DropReason::Forged, Some(from), &mut out);
            return out;
        };
        if sender == self.me {
            self.drop_datagram(now, DropReason::Forged, Some(from), &mut out);
            return out;
        }
        if opened.recipient != self.me as u64 {
            self.drop_datagram(now, DropReason::Misdirected, Some(from), &mut out);
            return out;
        }
        if !auth::fresh(opened.wall_ms, wall_ms, self.cfg.message_window) {
            self.drop_datagram(now, DropReason::Stale, Some(from), &mut out);
            return out;
        }
        let Ok(message) = Message::decode(opened.body, self.names.len()) else {
            self.drop_datagram(now, DropReason::Malformed, Some(from), &mut out);
            return out;
        };
        if !self.members[sender].window.accept(opened.seq) {
            self.drop_datagram(now, DropReason::Replayed, Some(from), &mut out);
            return out;
        }
        self.counters.received += 1;
        self.absorb(now, wall_ms, sender, &message, &mut out);
        match message.kind {
            Kind::Ping { nonce } => self.send(now, wall_ms, sender, Kind::Ack { nonce }, &mut out),
            Kind::Ack { nonce } => {
                if let Some(Action::RelayAck { to, nonce, target }) =
                    self.detector.on_ack(sender, nonce, now)
                {
                    let target_incarnation = self.incarnation_of(target);
                    self.send(
                        now,
                        wall_ms,
                        to,
                        Kind::RelayAck {
                            nonce,
                            target,
                            target_incarnation,
                        },
                        &mut out,
                    );
                }
            }
            Kind::PingReq { nonce, target } => {
                if target != self.me && target != sender {
                    if let Some(Action::Ping { to, nonce }) = self
                        .detector
                        .on_ping_req(sender, nonce, target, now, &self.cfg)
                    {
                        self.send(now, wall_ms, to, Kind::Ping { nonce }, &mut out);
                    }
                }
            }
            Kind::RelayAck {
                nonce,
                target,
                target_incarnation,
            } => {
                if target != self.me {
                    self.observe_incarnation(target, target_incarnation);
                    self.detector.on_relay_ack(target, nonce, now);
                }
            }
            Kind::Prepare { epoch, round } => {
                let mut events = Vec::new();
                let granted = self
                    .lease
                    .on_prepare(sender, epoch, now, &self.cfg, &mut events);
                self.lease_events(events, &mut out);
                self.send(
                    now,
                    wall_ms,
                    sender,
                    Kind::Promise {
                        epoch,
                        round,
                        granted,
                    },
                    &mut out,
                );
            }
            Kind::Promise {
                epoch,
                round,
                granted,
            } => {
                let mut events = Vec::new();
                let majority = self.cfg.majority();
                self.lease.on_promise(
                    sender,
                    epoch,
                    round,
                    granted,
                    majority,
                    &self.cfg,
                    &mut events,
                );
                self.lease_events(events, &mut out);
            }
            Kind::Gossip => {}
        }
        self.evaluate(now, wall_ms, &mut out);
        out
    }

    fn observe_incarnation(&mut self, member: usize, incarnation: u64) {
        if member != self.me && incarnation > self.members[member].incarnation {
            self.members[member].incarnation = incarnation;
        }
    }

    /// The gossip every message carries.
    fn absorb(
        &mut self,
        now: Millis,
        wall_ms: u64,
        sender: usize,
        m: &Message,
        out: &mut Vec<Output>,
    ) {
        self.observe_incarnation(sender, m.incarnation);
        self.members[sender].abstaining = m.abstaining;
        let mut events = Vec::new();
        self.lease.observe(m.highest_epoch, &mut events);
        self.lease_events(events, out);
        let mut refute_above = None;
        for (target, inc) in &m.votes {
            if *target == self.me {
                if *inc >= self.incarnation {
                    refute_above = refute_above.max(Some(*inc));
                }
            } else {
                self.observe_incarnation(*target, *inc);
            }
        }
        let votes = if m.abstaining {
            Vec::new()
        } else {
            m.votes.clone()
        };
        self.quorum
            .replace_votes(sender, &votes, now + self.cfg.vote_ttl);
        for p in &m.progress {
            if p.target == self.me {
                if p.incarnation >= self.incarnation && !matches!(p.stage, Stage::Restored) {
                    refute_above = refute_above.max(Some(p.incarnation));
                }
                continue;
            }
            let current = self.incarnation_of(p.target);
            self.response.merge(p, now, current);
        }
        if let Some(inc) = refute_above {
            self.incarnation = self.incarnation.max(inc) + 1;
            out.push(Output::Event(Event::Refuting {
                incarnation: self.incarnation,
            }));
            self.broadcast(now, wall_ms, Kind::Gossip, out);
        }
    }

    fn lease_events(&mut self, events: Vec<LeaseEvent>, out: &mut Vec<Output>) {
        for e in events {
            out.push(Output::Event(match e {
                LeaseEvent::Acquired(epoch) => Event::Coordinator { epoch },
                LeaseEvent::Lost(epoch) => Event::LeaseLost { epoch },
            }));
        }
    }

    /// Time passes: call every ~100 ms (or at [`Node::next_deadline`]).
    pub fn tick(&mut self, now: Millis, wall_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.quorum.expire(now);
        let actions = {
            let me = self.me;
            let k = self.cfg.failure_streak;
            let streaks: Vec<u32> = (0..self.names.len())
                .map(|m| self.detector.streak(m))
                .collect();
            let abstaining: Vec<bool> = self.members.iter().map(|m| m.abstaining).collect();
            // Relays: members other than us and the target, healthy ones first.
            let candidates = |target: usize| -> Vec<usize> {
                let others = (0..streaks.len()).filter(|m| *m != me && *m != target);
                let mut good: Vec<usize> = others
                    .clone()
                    .filter(|m| streaks[*m] == 0 && !abstaining[*m])
                    .collect();
                if good.len() < 2 {
                    good.extend(
                        others.filter(|m| (streaks[*m] > 0 || abstaining[*m]) && streaks[*m] < k),
                    );
                }
                good
            };
            self.detector
                .tick(now, &self.cfg, &mut self.rng, &candidates)
        };
        for action in actions {
            match action {
                Action::Ping { to, nonce } => {
                    self.send(now, wall_ms, to, Kind::Ping { nonce }, &mut out)
                }
                Action::PingReq { to, target, nonce } => {
                    self.send(now, wall_ms, to, Kind::PingReq { nonce, target }, &mut out)
                }
                Action::RelayAck { .. } => {}
                Action::RoundEnded => self.after_round(now, wall_ms, &mut out),
            }
        }
        let role = self.role();
        let mut events = Vec::new();
        let majority = self.cfg.majority();
        let prepare = self
            .lease
            .tick(now, role, majority, &self.cfg, &mut self.rng, &mut events);
        self.lease_events(events, &mut out);
        if let Some((epoch, round)) = prepare {
            self.broadcast(now, wall_ms, Kind::Prepare { epoch, round }, &mut out);
        }
        self.evaluate(now, wall_ms, &mut out);
        out
    }

    /// After each probe round: self-suspicion and this node's votes.
    fn after_round(&mut self, now: Millis, wall_ms: u64, out: &mut Vec<Output>) {
        let k = self.cfg.failure_streak;
        let failing: Vec<usize> = self
            .watch
            .iter()
            .copied()
            .filter(|p| self.detector.streak(*p) >= k)
            .collect();
        for p in &failing {
            if self.suspected.insert(*p) {
                out.push(Output::Event(Event::Suspected {
                    target: self.name(*p),
                }));
            }
        }
        self.suspected.retain(|p| failing.contains(p));
        // More than half (not "half or more"): with three monitors, one crashed peer is half of
        // a survivor's two, and both survivors must still vote.
        let abstain = !self.watch.is_empty() && failing.len() * 2 > self.watch.len();
        if abstain != self.abstaining {
            self.abstaining = abstain;
            out.push(Output::Event(if abstain {
                Event::SelfSuspected
            } else {
                Event::SelfCleared
            }));
        }
        let votes: Vec<(usize, u64)> = if abstain {
            Vec::new()
        } else {
            failing
                .iter()
                .map(|p| (*p, self.incarnation_of(*p)))
                .collect()
        };
        let changed = votes != self.my_votes;
        self.my_votes = votes.clone();
        self.quorum
            .replace_votes(self.me, &votes, now + self.cfg.vote_ttl);
        if changed {
            self.broadcast(now, wall_ms, Kind::Gossip, out);
        }
    }

    fn healthy(&self, m: usize) -> bool {
        if m == self.me {
            return !self.abstaining;
        }
        !self.members[m].abstaining
            && self.detector.streak(m) < self.cfg.failure_streak
            && !self.quorum.verdicts.contains_key(&m)
            && self.quorum.voters(m, self.incarnation_of(m)).is_empty()
    }

    fn role(&self) -> Role {
        if self.abstaining {
            Role::Abstain
        } else if (0..self.me).any(|m| self.healthy(m)) {
            Role::Yield
        } else {
            Role::Candidate
        }
    }

    /// Verdicts, the mass-failure brake and the steps this node asks for.
    fn evaluate(&mut self, now: Millis, wall_ms: u64, out: &mut Vec<Output>) {
        let incs: Vec<u64> = (0..self.names.len())
            .map(|m| self.incarnation_of(m))
            .collect();
        let inc = |m: usize| incs[m];
        for target in self.quorum.clear_refuted(&inc) {
            out.push(Output::Event(Event::Refuted {
                target: self.name(target),
            }));
        }
        for target in self.quorum.reach(now, self.cfg.majority(), &inc) {
            if self.announced.insert((target, incs[target])) {
                let voters = self.quorum.verdicts[&target]
                    .voters
                    .iter()
                    .map(|v| self.name(*v))
                    .collect();
                let recoverable = self.recoverable(target);
                out.push(Output::Event(Event::Verdict {
                    target: self.name(target),
                    voters,
                    recoverable,
                }));
            }
        }
        self.announced.retain(|(t, i)| incs[*t] == *i);
        let down: Vec<usize> = (0..self.names.len())
            .filter(|m| {
                *m != self.me
                    && (self.quorum.verdicts.contains_key(m)
                        || self.detector.streak(*m) >= self.cfg.failure_streak)
            })
            .collect();
        let brake = down.len() * 2 >= self.names.len() && !down.is_empty();
        if brake != self.brake {
            self.brake = brake;
            out.push(Output::Event(if brake {
                Event::MassFailure {
                    down: down.iter().map(|m| self.name(*m)).collect(),
                }
            } else {
                Event::MassFailureOver
            }));
        }
        for target in self.response.collect(now, &inc) {
            out.push(Output::Event(Event::Recovered {
                target: self.name(target),
            }));
        }
        let Some(epoch) = self.lease.holding(now) else {
            return;
        };
        let master = self.master;
        let auto_master = self.cfg.auto_recover_master;
        let recoverable = |t: usize| Some(t) != master || auto_master;
        let steps = self.response.drive(
            now,
            epoch,
            &self.quorum.verdicts,
            &inc,
            &recoverable,
            self.brake,
            &self.cfg,
        );
        if !steps.is_empty() {
            for (target, step) in steps {
                out.push(Output::Step(StepRequest {
                    target: self.name(target),
                    step,
                    epoch,
                }));
            }
            // New records travel at once, so a successor knows the verdict's time.
            self.broadcast(now, wall_ms, Kind::Gossip, out);
        }
    }

    fn recoverable(&self, target: usize) -> bool {
        Some(target) != self.master || self.cfg.auto_recover_master
    }

    /// The daemon finished (or failed) `request`, a step this node asked for. Success is
    /// checkpointed and gossiped at once, so a new coordinator does not repeat it.
    pub fn step_finished(
        &mut self,
        now: Millis,
        wall_ms: u64,
        request: &StepRequest,
        outcome: Result<(), String>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let Ok(t) = self.names.binary_search(&request.target) else {
            return out;
        };
        let (target, step, epoch) = (request.target.clone(), request.step, request.epoch);
        match self
            .response
            .finished(t, step, outcome.is_ok(), epoch, now, &self.cfg)
        {
            Outcome::Done { .. } => {
                out.push(Output::Event(Event::StepDone {
                    target,
                    step,
                    epoch,
                }));
                self.broadcast(now, wall_ms, Kind::Gossip, &mut out);
            }
            Outcome::Failed { .. } | Outcome::Superseded => {
                let error = outcome.err().unwrap_or_default();
                out.push(Output::Event(Event::StepFailed {
                    target,
                    step,
                    error,
                }));
            }
            Outcome::Unknown => {}
        }
        self.evaluate(now, wall_ms, &mut out);
        out
    }

    pub fn status(&self, now: Millis) -> NodeStatus {
        let k = self.cfg.failure_streak;
        let peers = (0..self.names.len())
            .filter(|m| *m != self.me)
            .map(|m| {
                let inc = self.incarnation_of(m);
                let state = if self.quorum.verdicts.contains_key(&m) {
                    PeerState::Down
                } else if self.detector.streak(m) >= k || !self.quorum.voters(m, inc).is_empty() {
                    PeerState::Suspect
                } else {
                    PeerState::Alive
                };
                let probe = self.detector.probes().get(&m);
                PeerStatus {
                    name: self.name(m),
                    state,
                    incarnation: inc,
                    last_ack_ms_ago: probe
                        .and_then(|p| p.last_ack)
                        .map(|t| now.saturating_sub(t)),
                    streak: self.detector.streak(m),
                    abstaining: self.members[m].abstaining,
                    watched: probe.is_some(),
                }
            })
            .collect();
        let mut verdicts: Vec<VerdictStatus> = self
            .quorum
            .verdicts
            .iter()
            .map(|(t, v)| VerdictStatus {
                target: self.name(*t),
                since_ms_ago: now.saturating_sub(v.since),
                voters: v.voters.iter().map(|m| self.name(*m)).collect(),
                stage: self
                    .response
                    .records
                    .get(t)
                    .map_or(Stage::Verdict, |r| r.stage),
            })
            .collect();
        for (t, r) in &self.response.records {
            if !self.quorum.verdicts.contains_key(t) && r.stage != Stage::Restored {
                verdicts.push(VerdictStatus {
                    target: self.name(*t),
                    since_ms_ago: now.saturating_sub(r.since),
                    voters: Vec::new(),
                    stage: r.stage,
                });
            }
        }
        NodeStatus {
            me: self.name(self.me),
            incarnation: self.incarnation,
            abstaining: self.abstaining,
            coordinator: self.lease.coordinator(now).map(|m| self.name(m)),
            epoch: self.lease.highest(),
            lease: self.lease.holding(now).map(|epoch| LeaseStatus {
                epoch,
                remaining_ms: self.lease.until().saturating_sub(now),
            }),
            mass_failure: self.brake,
            peers,
            verdicts,
            counters: self.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web{i}")).collect()
    }

    /// N nodes with real keys, each watching every peer.
    fn cluster(n: usize) -> Vec<Node> {
        let names = names(n);
        let keys: Vec<_> = names.iter().map(|_| Keyring::generate()).collect();
        let publics: BTreeMap<String, _> = names
            .iter()
            .zip(&keys)
            .map(|(n, k)| (n.clone(), k.verifying_key()))
            .collect();
        names
            .iter()
            .zip(keys)
            .map(|(me, key)| {
                let watch = names.iter().filter(|n| *n != me).cloned().collect();
                let cfg = ProtocolConfig::new(me.clone(), names.clone(), watch);
                Node::new(cfg, Keyring::new(me.clone(), key, publics.clone()), 0, WALL).unwrap()
            })
            .collect()
    }

    const WALL: u64 = 1_800_000_000_000;

    fn sends(out: &[Output]) -> Vec<(String, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, bytes } => Some((to.clone(), bytes.clone())),
                _ => None,
            })
            .collect()
    }

    /// A datagram from node 0 to node 1.
    fn datagram(nodes: &mut [Node]) -> Vec<u8> {
        let out = nodes[0].tick(2000, WALL);
        sends(&out)
            .into_iter()
            .find(|(to, _)| to == "web1")
            .expect("a ping to web1")
            .1
    }

    #[test]
    fn a_replayed_datagram_is_dropped_and_counted() {
        let mut nodes = cluster(3);
        let d = datagram(&mut nodes);
        assert!(
            !sends(&nodes[1].receive(2001, WALL, &d)).is_empty(),
            "answered once"
        );
        let out = nodes[1].receive(2002, WALL, &d);
        assert!(sends(&out).is_empty());
        assert!(out.contains(&Output::Event(Event::Dropped {
            from: Some("web0".into()),
            reason: DropReason::Replayed
        })));
        let c = nodes[1].counters();
        assert_eq!((c.received, c.dropped_replayed), (1, 1));
    }

    #[test]
    fn a_tampered_datagram_is_dropped_whatever_byte_changes() {
        let mut nodes = cluster(3);
        let d = datagram(&mut nodes);
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x01;
            assert!(
                sends(&nodes[1].receive(2001, WALL, &t)).is_empty(),
                "byte {i}"
            );
        }
        let c = nodes[1].counters().clone();
        assert_eq!(c.received, 0);
        assert_eq!(c.dropped_total(), d.len() as u64);
        assert!(c.dropped_tampered > 0);
        // The untouched original is still accepted: nothing above burnt its sequence number.
        assert!(!sends(&nodes[1].receive(2002, WALL, &d)).is_empty());
    }

    #[test]
    fn forged_datagrams_are_dropped_unknown_sender_or_wrong_key() {
        let mut nodes = cluster(3);
        // An outsider with its own key, claiming to be web0, and one naming itself.
        let names = names(3);
        let outsider = Keyring::generate();
        let mut sent = BTreeMap::new();
        for claimed in ["web0", "mallory"] {
            let cfg = ProtocolConfig::new(
                claimed,
                {
                    let mut c = names.clone();
                    if claimed == "mallory" {
                        c[2] = "mallory".into();
                    }
                    c
                },
                vec!["web1".into()],
            );
            let keyring = Keyring::new(claimed, outsider.clone(), BTreeMap::new());
            let mut forger = Node::new(cfg, keyring, 0, WALL).unwrap();
            for (to, bytes) in sends(&forger.tick(2000, WALL)) {
                if to == "web1" {
                    assert!(sends(&nodes[1].receive(2001, WALL, &bytes)).is_empty());
                    *sent.entry(claimed).or_insert(0) += 1;
                }
            }
        }
        let c = nodes[1].counters();
        assert_eq!(c.received, 0);
        assert_eq!(
            c.dropped_tampered, sent["web0"],
            "web0's name with the wrong key"
        );
        assert_eq!(
            c.dropped_forged, sent["mallory"],
            "a sender we hold no key for"
        );
        // web0's own datagram reflected back at it.
        let d = datagram(&mut nodes);
        nodes[0].receive(2001, WALL, &d);
        assert_eq!(nodes[0].counters().dropped_forged, 1);
    }

    #[test]
    fn a_stale_datagram_is_dropped() {
        let mut nodes = cluster(3);
        let d = datagram(&mut nodes);
        let window = nodes[1].config().message_window;
        nodes[1].receive(2001, WALL + window + 1, &d);
        nodes[1].receive(2001, WALL - window - 1, &d);
        assert_eq!(nodes[1].counters().dropped_stale, 2);
        assert!(!sends(&nodes[1].receive(2001, WALL + window, &d)).is_empty());
    }

    /// Runs the cluster in lock step with instant delivery; `down` nodes neither send nor
    /// receive. Returns every output with its time and node.
    fn run(
        nodes: &mut [Node],
        from: Millis,
        to: Millis,
        down: &[usize],
    ) -> Vec<(Millis, usize, Output)> {
        let mut log = Vec::new();
        let index: BTreeMap<String, usize> =
            (0..nodes.len()).map(|i| (format!("web{i}"), i)).collect();
        let mut t = from;
        while t < to {
            let mut queue: Vec<(usize, Vec<u8>)> = Vec::new();
            for (i, node) in nodes.iter_mut().enumerate() {
                if down.contains(&i) {
                    continue;
                }
                for o in node.tick(t, WALL + t) {
                    if let Output::Send { to, bytes } = &o {
                        queue.push((index[to], bytes.clone()));
                    }
                    log.push((t, i, o));
                }
            }
            while let Some((i, bytes)) = queue.pop() {
                if down.contains(&i) {
                    continue;
                }
                for o in nodes[i].receive(t, WALL + t, &bytes) {
                    if let Output::Send { to, bytes } = &o {
                        queue.push((index[to], bytes.clone()));
                    }
                    log.push((t, i, o));
                }
            }
            t += 50;
        }
        log
    }

    #[test]
    fn a_crashed_peer_is_drained_once_by_the_lease_holder_and_the_others_stay_quiet() {
        let mut nodes = cluster(3);
        let log = run(&mut nodes, 0, 10_000, &[]);
        assert!(
            !log.iter().any(|(_, _, o)| matches!(o, Output::Step(_))),
            "no step while healthy"
        );
        assert!(nodes[0].lease_epoch(10_000).is_some(), "web0 coordinates");
        let log = run(&mut nodes, 10_000, 20_000, &[2]);
        let steps: Vec<_> = log
            .iter()
            .filter_map(|(t, i, o)| match o {
                Output::Step(s) => Some((*t, *i, s.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), 1, "{steps:?}");
        let (t, i, step) = &steps[0];
        assert_eq!(
            (*i, step.target.as_str(), step.step),
            (0, "web2", Step::Drain)
        );
        assert!(*t <= 10_000 + 4_500, "drained at {t}");
        assert!(nodes[0].fence().permits(step.epoch));
    }

    #[test]
    fn a_suspected_node_that_answers_refutes_and_is_restored() {
        let mut nodes = cluster(3);
        run(&mut nodes, 0, 5_000, &[]);
        let before = nodes[2].crash_restart_safe_state().incarnation;
        // web2 is cut off long enough to be drained, then comes back.
        let log = run(&mut nodes, 5_000, 12_000, &[2]);
        assert!(log
            .iter()
            .any(|(_, _, o)| matches!(o, Output::Step(s) if s.step == Step::Drain)));
        let epoch = nodes[0].lease_epoch(12_000).unwrap();
        let drain = StepRequest {
            target: "web2".into(),
            step: Step::Drain,
            epoch,
        };
        nodes[0].step_finished(12_000, WALL + 12_000, &drain, Ok(()));
        let log = run(&mut nodes, 12_000, 16_000, &[]);
        assert!(nodes[2].crash_restart_safe_state().incarnation > before);
        assert!(log
            .iter()
            .any(|(_, i, o)| *i == 2 && matches!(o, Output::Event(Event::Refuting { .. }))));
        assert!(log.iter().any(|(_, i, o)| *i == 0
            && matches!(o, Output::Event(Event::Refuted { target }) if target == "web2")));
        let restore = log.iter().find_map(|(_, i, o)| match o {
            Output::Step(s) if *i == 0 && s.step == Step::Restore => Some(s.clone()),
            _ => None,
        });
        assert_eq!(
            restore,
            Some(StepRequest {
                target: "web2".into(),
                step: Step::Restore,
                epoch
            })
        );
        assert!(!log
            .iter()
            .any(|(_, _, o)| matches!(o, Output::Step(s) if s.step == Step::Check)));
    }

    #[test]
    fn an_isolated_node_abstains_and_never_coordinates() {
        let mut nodes = cluster(5);
        run(&mut nodes, 0, 5_000, &[]);
        // Only web0 keeps running: from its side every peer is silent.
        let log = run(&mut nodes, 5_000, 15_000, &[1, 2, 3, 4]);
        assert!(log
            .iter()
            .any(|(_, i, o)| *i == 0 && matches!(o, Output::Event(Event::SelfSuspected))));
        assert!(!log.iter().any(|(_, _, o)| matches!(o, Output::Step(_))));
        assert_eq!(nodes[0].lease_epoch(15_000), None);
        assert!(nodes[0].status(15_000).abstaining);
    }

    #[test]
    fn datagrams_stay_small_at_twenty_nodes() {
        let mut nodes = cluster(20);
        run(&mut nodes, 0, 5_000, &[]);
        let log = run(&mut nodes, 5_000, 12_000, &[3, 7, 11, 15, 19]);
        let largest = log
            .iter()
            .filter_map(|(_, _, o)| match o {
                Output::Send { bytes, .. } => Some(bytes.len()),
                _ => None,
            })
            .max()
            .unwrap();
        assert!(largest < 1200, "{largest} bytes");
    }
}
