//! A simulated cloud for the fencing simulations. It records every call as (time, node, epoch,
//! operation, target), refuses any call whose epoch is below the highest it has seen (what the
//! real recovery does with its epoch tags), and models recovery the way `recovery.rhai` does
//! it: power the failed droplet off, list droplets tagged as its replacement and adopt one if it
//! exists, else create one. Listing and creating are separate calls, so two executors that
//! were not fenced apart could both create.

use std::collections::{BTreeMap, BTreeSet};

use infra::monitor::protocol::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Drain,
    PowerCycle,
    PowerOff,
    List,
    Create,
    Restore,
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // read through `Debug` in failure messages
pub struct Call {
    pub at: Millis,
    pub node: usize,
    pub epoch: u64,
    pub op: Op,
    pub target: usize,
    /// The droplet generation the call is about (for `Create`, the one it replaces).
    pub generation: u64,
    pub accepted: bool,
    /// The caller's side of the network had no majority of live monitors at the time.
    pub minority: bool,
    /// ... and had had none for longer than a lease: the protocol must never allow that.
    pub minority_beyond_lease: bool,
}

#[derive(Debug, Default)]
pub struct Cloud {
    pub highest: u64,
    pub calls: Vec<Call>,
    /// Replaced generation -> replacements created for it.
    pub replacements: BTreeMap<(usize, u64), u32>,
    /// Generations the harness broke (crashed, or cut off from the majority).
    pub failed: BTreeSet<(usize, u64)>,
}

impl Cloud {
    /// Records a call; returns whether it was accepted.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        at: Millis,
        node: usize,
        epoch: u64,
        op: Op,
        target: usize,
        generation: u64,
        minority: bool,
        minority_beyond_lease: bool,
    ) -> bool {
        let accepted = epoch >= self.highest;
        if accepted {
            self.highest = epoch;
            if op == Op::Create {
                *self.replacements.entry((target, generation)).or_insert(0) += 1;
            }
        }
        self.calls.push(Call {
            at,
            node,
            epoch,
            op,
            target,
            generation,
            accepted,
            minority,
            minority_beyond_lease,
        });
        accepted
    }

    pub fn replaced(&self, target: usize, generation: u64) -> bool {
        self.replacements.contains_key(&(target, generation))
    }

    /// Everything that must never happen, as readable lines.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for ((target, generation), n) in &self.replacements {
            if *n > 1 {
                v.push(format!(
                    "web{target:02} generation {generation} was recreated {n} times"
                ));
            }
            if !self.failed.contains(&(*target, *generation)) {
                v.push(format!(
                    "web{target:02} generation {generation} was recreated but never failed"
                ));
            }
        }
        for c in &self.calls {
            if c.accepted && c.minority_beyond_lease {
                v.push(format!("accepted call from a minority: {c:?}"));
            }
        }
        v
    }
}
