//! A seeded discrete-event network for the long simulations: the same `Node` code, driven
//! directly (no turmoil, no async runtime) so 10^4 node-hours and a thousand fencing scenarios
//! finish in minutes. Datagrams get a latency, may be lost, delayed far beyond the usual or cut
//! by a partition; nodes crash and restart with their saved state; a simulated daemon performs
//! the steps a coordinator asks for against the simulated [`Cloud`], checking the fence before
//! every call as the real daemon does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use infra::monitor::protocol::{
    Authenticator, Event, Millis, Node, Output, PersistedState, ProtocolConfig, Step, StepRequest,
};

use crate::cloud::{Cloud, Op};
use crate::cluster::WALL;

/// SplitMix64, seeded per scenario.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

pub type Factory<A> = Box<dyn Fn(usize, Option<PersistedState>, Millis, u64) -> Node<A>>;

struct Slot<A: Authenticator> {
    node: Option<Node<A>>,
    /// The droplet generation: a recreated droplet is a new generation.
    generation: u64,
    /// Bumped on every crash and restart, so timers of a dead process are ignored.
    life: u64,
    saved: Option<PersistedState>,
    skew: i64,
    minority_since: Option<Millis>,
}

#[derive(Debug)]
enum Item {
    Deliver {
        to: usize,
        bytes: Vec<u8>,
    },
    Tick {
        node: usize,
        life: u64,
    },
    Phase {
        node: usize,
        life: u64,
        step: StepRequest,
        phase: u8,
        generation: u64,
    },
    Boot {
        node: usize,
        generation: u64,
    },
}

pub struct Network {
    pub loss: f64,
    pub latency: (Millis, Millis),
    /// With this probability a datagram is held back up to `long_delay` more.
    pub delay_chance: f64,
    pub long_delay: Millis,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            loss: 0.0,
            latency: (1, 30),
            delay_chance: 0.0,
            long_delay: 0,
        }
    }
}

pub struct Des<A: Authenticator> {
    pub now: Millis,
    slots: Vec<Slot<A>>,
    names: Vec<String>,
    factory: Factory<A>,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    items: BTreeMap<u64, Item>,
    order: u64,
    pub rng: TestRng,
    pub net: Network,
    /// Partition group of each node; datagrams cross only within a group.
    group: Vec<u32>,
    pub cloud: Cloud,
    pub steps: Vec<(Millis, usize, StepRequest)>,
    pub events: Vec<(Millis, usize, Event)>,
    pub datagrams: u64,
    pub bytes: u64,
    majority: usize,
    lease: Millis,
    /// When set, a step the node asks for is performed (else only logged).
    pub perform_steps: bool,
}

impl<A: Authenticator> Des<A> {
    pub fn new(
        names: Vec<String>,
        config: &ProtocolConfig,
        seed: u64,
        net: Network,
        factory: Factory<A>,
    ) -> Self {
        let mut rng = TestRng::new(seed);
        let n = names.len();
        let mut des = Des {
            now: 0,
            slots: Vec::new(),
            factory,
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            order: 0,
            net,
            group: vec![0; n],
            cloud: Cloud::default(),
            steps: Vec::new(),
            events: Vec::new(),
            datagrams: 0,
            bytes: 0,
            majority: n / 2 + 1,
            lease: config.lease,
            perform_steps: true,
            names,
            rng: TestRng::new(0),
        };
        for _ in 0..n {
            // Wall clocks disagree by up to a second.
            let skew = rng.range(0, 2000) as i64 - 1000;
            des.slots.push(Slot {
                node: None,
                generation: 0,
                life: 0,
                saved: None,
                skew,
                minority_since: None,
            });
        }
        des.rng = rng;
        for i in 0..n {
            des.start(i);
        }
        des
    }

    fn wall(&self, i: usize) -> u64 {
        (WALL as i64 + self.now as i64 + self.slots[i].skew) as u64
    }

    fn push(&mut self, at: Millis, item: Item) {
        self.order += 1;
        self.items.insert(self.order, item);
        self.queue.push(Reverse((at, self.order)));
    }

    fn start(&mut self, i: usize) {
        let wall = self.wall(i);
        let node = (self.factory)(i, self.slots[i].saved, self.now, wall);
        let slot = &mut self.slots[i];
        slot.life += 1;
        slot.node = Some(node);
        let life = slot.life;
        let phase = self.rng.range(0, 99);
        self.push(self.now + phase, Item::Tick { node: i, life });
        self.update_sides();
    }

    pub fn alive(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    pub fn node(&self, i: usize) -> Option<&Node<A>> {
        self.slots[i].node.as_ref()
    }

    pub fn generation(&self, i: usize) -> u64 {
        self.slots[i].generation
    }

    /// The process dies (the droplet stays, powered on but silent).
    pub fn crash(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.node.take().is_some() {
            slot.life += 1;
            self.cloud.failed.insert((i, slot.generation));
        }
        self.update_sides();
    }

    /// The same droplet's monitor starts again with its saved state.
    pub fn restart(&mut self, i: usize) {
        if !self.alive(i) {
            self.start(i);
        }
    }

    /// Splits the cluster: `groups[i]` is node i's side.
    pub fn partition(&mut self, groups: Vec<u32>) {
        self.group = groups;
        self.update_sides();
        // A node cut off from the majority is a failure the protocol may legitimately recover.
        for i in 0..self.slots.len() {
            if self.slots[i].minority_since.is_some() {
                self.cloud.failed.insert((i, self.slots[i].generation));
            }
        }
    }

    pub fn heal(&mut self) {
        self.partition(vec![0; self.slots.len()]);
    }

    fn update_sides(&mut self) {
        let n = self.slots.len();
        for i in 0..n {
            let alive_in_side = (0..n)
                .filter(|j| self.group[*j] == self.group[i] && self.slots[*j].node.is_some())
                .count();
            let minority = self.slots[i].node.is_some() && alive_in_side < self.majority;
            let slot = &mut self.slots[i];
            slot.minority_since = if minority {
                slot.minority_since.or(Some(self.now))
            } else {
                None
            };
        }
    }

    /// Runs until `until`.
    pub fn run_until(&mut self, until: Millis) {
        while let Some(Reverse((at, order))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let item = self.items.remove(&order).expect("queued item");
            self.handle(item);
        }
        self.now = until;
    }

    fn handle(&mut self, item: Item) {
        match item {
            Item::Deliver { to, bytes } => {
                let wall = self.wall(to);
                let now = self.now;
                if let Some(node) = self.slots[to].node.as_mut() {
                    let out = node.receive(now, wall, &bytes);
                    self.outputs(to, out);
                }
            }
            Item::Tick { node: i, life } => {
                if self.slots[i].life != life {
                    return;
                }
                let wall = self.wall(i);
                let now = self.now;
                let node = self.slots[i].node.as_mut().expect("alive");
                let out = node.tick(now, wall);
                // The daemon ticks every 100 ms; ticking earlier when the node has a deadline
                // sooner keeps the simulation exact, and skipping idle ticks keeps it fast.
                let next = node.next_deadline(now).min(now + 100);
                self.outputs(i, out);
                self.push(next, Item::Tick { node: i, life });
            }
            Item::Phase {
                node,
                life,
                step,
                phase,
                generation,
            } => self.phase(node, life, step, phase, generation),
            Item::Boot { node, generation } => {
                // A recreated droplet: a fresh monitor with no saved state.
                let slot = &mut self.slots[node];
                if slot.generation < generation {
                    // A new droplet gets a new address, on the side most of the fleet is on.
                    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
                    for g in &self.group {
                        *sizes.entry(*g).or_insert(0) += 1;
                    }
                    let main = sizes
                        .iter()
                        .max_by_key(|(g, n)| (**n, Reverse(**g)))
                        .map_or(0, |(g, _)| *g);
                    self.group[node] = main;
                    let slot = &mut self.slots[node];
                    slot.generation = generation;
                    slot.saved = None;
                    slot.node = None;
                    slot.life += 1;
                    self.start(node);
                }
            }
        }
    }

    fn outputs(&mut self, from: usize, outputs: Vec<Output>) {
        if let Some(node) = &self.slots[from].node {
            self.slots[from].saved = Some(node.crash_restart_safe_state());
        }
        for o in outputs {
            match o {
                Output::Send { to, bytes } => {
                    self.datagrams += 1;
                    self.bytes += bytes.len() as u64;
                    let to = self.names.binary_search(&to).expect("a member");
                    if self.group[to] != self.group[from] || self.rng.chance(self.net.loss) {
                        continue;
                    }
                    let mut delay = self.rng.range(self.net.latency.0, self.net.latency.1);
                    if self.rng.chance(self.net.delay_chance) {
                        delay += self.rng.range(0, self.net.long_delay);
                    }
                    self.push(self.now + delay, Item::Deliver { to, bytes });
                }
                Output::Step(step) => {
                    self.steps.push((self.now, from, step.clone()));
                    if self.perform_steps {
                        let life = self.slots[from].life;
                        let target = self.names.binary_search(&step.target).expect("a member");
                        let generation = self.slots[target].generation;
                        let d = self.rng.range(20, 400);
                        self.push(
                            self.now + d,
                            Item::Phase {
                                node: from,
                                life,
                                step,
                                phase: 0,
                                generation,
                            },
                        );
                    }
                }
                Output::Event(e) => self.events.push((self.now, from, e)),
            }
        }
    }

    /// One phase of a step, performed by node `i`'s daemon: check the fence, call the cloud.
    fn phase(&mut self, i: usize, life: u64, step: StepRequest, phase: u8, generation: u64) {
        if self.slots[i].life != life {
            return; // the daemon died with its monitor
        }
        let target = self.names.binary_search(&step.target).expect("a member");
        let fence = self.slots[i].node.as_ref().expect("alive").fence();
        let finish = |des: &mut Self, result: Result<(), String>| {
            let wall = des.wall(i);
            let now = des.now;
            let out = des.slots[i]
                .node
                .as_mut()
                .expect("alive")
                .step_finished(now, wall, &step, result);
            des.outputs(i, out);
        };
        if !fence.permits(step.epoch) {
            return finish(
                self,
                Err(format!("fenced: epoch {} no longer held", step.epoch)),
            );
        }
        let minority = self.slots[i].minority_since;
        let beyond = minority.is_some_and(|s| self.now > s + self.lease);
        let now = self.now;
        let call = |des: &mut Self, op: Op, generation: u64| {
            des.cloud.call(
                now,
                i,
                step.epoch,
                op,
                target,
                generation,
                minority.is_some(),
                beyond,
            )
        };
        let next = |des: &mut Self, phase: u8, lo: u64, hi: u64| {
            let d = des.rng.range(lo, hi);
            des.push(
                des.now + d,
                Item::Phase {
                    node: i,
                    life,
                    step: step.clone(),
                    phase,
                    generation,
                },
            );
        };
        match (step.step, phase) {
            (Step::Drain | Step::Restore, _) => {
                let op = if step.step == Step::Drain {
                    Op::Drain
                } else {
                    Op::Restore
                };
                let ok = call(self, op, generation);
                finish(
                    self,
                    if ok {
                        Ok(())
                    } else {
                        Err("refused: stale epoch".into())
                    },
                );
            }
            (Step::Check, 0) => {
                if !call(self, Op::PowerCycle, generation) {
                    return finish(self, Err("refused: stale epoch".into()));
                }
                next(self, 1, 500, 3000);
            }
            (Step::Check, _) => finish(self, Ok(())),
            (Step::Recover, 0) => {
                // Fence the old droplet: power it off (its monitor dies with it).
                if !call(self, Op::PowerOff, generation) {
                    return finish(self, Err("refused: stale epoch".into()));
                }
                if self.slots[target].generation == generation && self.slots[target].node.is_some()
                {
                    self.slots[target].node = None;
                    self.slots[target].life += 1;
                    self.update_sides();
                }
                next(self, 1, 200, 2000);
            }
            (Step::Recover, 1) => {
                if !call(self, Op::List, generation) {
                    return finish(self, Err("refused: stale epoch".into()));
                }
                if self.cloud.replaced(target, generation) {
                    next(self, 3, 100, 500); // adopt the replacement another run created
                } else {
                    next(self, 2, 1000, 5000); // create from the snapshot: takes a while
                }
            }
            (Step::Recover, 2) => {
                if !call(self, Op::Create, generation) {
                    return finish(self, Err("refused: stale epoch".into()));
                }
                let boot = self.rng.range(2000, 6000);
                self.push(
                    self.now + boot,
                    Item::Boot {
                        node: target,
                        generation: generation + 1,
                    },
                );
                next(self, 3, 500, 2000);
            }
            (Step::Recover, _) => finish(self, Ok(())),
        }
    }
}
