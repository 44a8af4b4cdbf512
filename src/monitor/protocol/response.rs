//! The graduated response to a verdict: drain at once, check (and power-cycle once) at
//! `power_cycle_after`, recreate at `recover_after`, restore a drained target that comes back.
//!
//! Progress is a record per target (the incarnation the verdict was about, when it was reached,
//! the last completed stage and its epoch), gossiped by every node so a new coordinator resumes
//! where the old one stopped. Only the lease holder asks for steps, one at a time per target.

use std::collections::BTreeMap;

use super::config::ProtocolConfig;
use super::quorum::Verdict;
use super::wire::{Progress, Stage};
use super::{Millis, Step};

/// Records that are finished (restored, or superseded by a newer incarnation) are gossiped this
/// long so every node hears, then dropped.
const LINGER: Millis = 30_000;
/// At most this many records travel in one datagram.
pub(crate) const MAX_GOSSIPED: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub incarnation: u64,
    pub since: Millis,
    pub stage: Stage,
    pub epoch: u64,
    finished_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    step: Step,
    epoch: u64,
    at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done {
        stage: Stage,
    },
    Failed {
        retry_at: Millis,
    },
    /// A failure of a run that a newer request already replaced.
    Superseded,
    Unknown,
}

#[derive(Debug, Default)]
pub(crate) struct Response {
    pub records: BTreeMap<usize, Record>,
    pending: BTreeMap<usize, Pending>,
    retry_at: BTreeMap<usize, Millis>,
}

fn stage_after(step: Step) -> Stage {
    match step {
        Step::Drain => Stage::Drained,
        Step::Check => Stage::Checked,
        Step::Recover => Stage::Recovered,
        Step::Restore => Stage::Restored,
    }
}

impl Response {
    /// Folds in a gossiped record. Records about an incarnation the target has since left are
    /// kept only if they may still need a restore.
    pub(crate) fn merge(&mut self, p: &Progress, now: Millis, current_incarnation: u64) {
        if p.incarnation < current_incarnation
            && !matches!(p.stage, Stage::Drained | Stage::Checked)
        {
            return;
        }
        let since = now.saturating_sub(p.age);
        match self.records.get_mut(&p.target) {
            None => {
                self.records.insert(
                    p.target,
                    Record {
                        incarnation: p.incarnation,
                        since,
                        stage: p.stage,
                        epoch: p.epoch,
                        finished_at: (p.stage == Stage::Restored).then_some(now),
                    },
                );
            }
            Some(r) => {
                if (p.incarnation, p.stage) > (r.incarnation, r.stage) {
                    if p.incarnation > r.incarnation {
                        r.since = since;
                    }
                    r.incarnation = p.incarnation;
                    r.stage = p.stage;
                    r.epoch = p.epoch;
                    if p.stage == Stage::Restored {
                        r.finished_at = Some(now);
                    }
                } else if (p.incarnation, p.stage) == (r.incarnation, r.stage) {
                    r.since = r.since.min(since);
                    r.epoch = r.epoch.max(p.epoch);
                }
            }
        }
    }

    pub(crate) fn gossip(&self, now: Millis) -> Vec<Progress> {
        let mut list: Vec<Progress> = self
            .records
            .iter()
            .map(|(target, r)| Progress {
                target: *target,
                incarnation: r.incarnation,
                age: now.saturating_sub(r.since),
                stage: r.stage,
                epoch: r.epoch,
            })
            .collect();
        // Newest first when there are too many to carry.
        list.sort_by_key(|p| p.age);
        list.truncate(MAX_GOSSIPED);
        list
    }

    /// The steps to ask for now, under the lease `epoch`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn drive(
        &mut self,
        now: Millis,
        epoch: u64,
        verdicts: &BTreeMap<usize, Verdict>,
        incarnation_of: &dyn Fn(usize) -> u64,
        recoverable: &dyn Fn(usize) -> bool,
        brake: bool,
        cfg: &ProtocolConfig,
    ) -> Vec<(usize, Step)> {
        for (target, v) in verdicts {
            if !recoverable(*target) {
                continue;
            }
            let fresh = Record {
                incarnation: v.incarnation,
                since: v.since,
                stage: Stage::Verdict,
                epoch,
                finished_at: None,
            };
            match self.records.get_mut(target) {
                Some(r) if r.incarnation >= v.incarnation => {}
                Some(r) if matches!(r.stage, Stage::Drained | Stage::Checked) => {
                    // An older verdict's drain still stands: keep the progress, move it forward.
                    r.incarnation = v.incarnation;
                    r.since = r.since.min(v.since);
                }
                _ => {
                    self.records.insert(*target, fresh);
                }
            }
        }
        let mut steps = Vec::new();
        for (target, r) in &self.records {
            if let Some(p) = self.pending.get(target) {
                if p.epoch == epoch && now < p.at + cfg.step_timeout {
                    continue;
                }
            }
            if self.retry_at.get(target).is_some_and(|t| now < *t) {
                continue;
            }
            let returned = incarnation_of(*target) > r.incarnation;
            let step = if returned {
                match r.stage {
                    Stage::Drained | Stage::Checked => Some(Step::Restore),
                    _ => None,
                }
            } else if brake
                || verdicts
                    .get(target)
                    .is_none_or(|v| v.incarnation != r.incarnation)
            {
                None
            } else {
                match r.stage {
                    Stage::Verdict => Some(Step::Drain),
                    Stage::Drained if now >= r.since + cfg.power_cycle_after => Some(Step::Check),
                    Stage::Checked if now >= r.since + cfg.recover_after => Some(Step::Recover),
                    _ => None,
                }
            };
            if let Some(step) = step {
                steps.push((*target, step));
            }
        }
        for (target, step) in &steps {
            self.pending.insert(
                *target,
                Pending {
                    step: *step,
                    epoch,
                    at: now,
                },
            );
            self.retry_at.remove(target);
        }
        steps
    }

    /// The daemon reports a step's end. Only the report of the request still pending (same
    /// step, same epoch) clears it: a run under an older epoch that ends late must not let the
    /// step be asked for again while the current run goes on.
    pub(crate) fn finished(
        &mut self,
        target: usize,
        step: Step,
        ok: bool,
        epoch: u64,
        now: Millis,
        cfg: &ProtocolConfig,
    ) -> Outcome {
        let current = self
            .pending
            .get(&target)
            .is_some_and(|p| p.step == step && p.epoch == epoch);
        if current {
            self.pending.remove(&target);
        }
        let Some(r) = self.records.get_mut(&target) else {
            return Outcome::Unknown;
        };
        if !ok {
            if !current {
                return Outcome::Superseded;
            }
            let retry_at = now + cfg.step_retry;
            self.retry_at.insert(target, retry_at);
            return Outcome::Failed { retry_at };
        }
        // Work done under any epoch is done: checkpoint it.
        let stage = stage_after(step);
        if stage > r.stage {
            r.stage = stage;
            r.epoch = epoch;
            if stage == Stage::Restored {
                r.finished_at = Some(now);
            }
        }
        Outcome::Done { stage: r.stage }
    }

    /// Drops finished records; returns the targets whose recovery ended with the target back.
    pub(crate) fn collect(
        &mut self,
        now: Millis,
        incarnation_of: &dyn Fn(usize) -> u64,
    ) -> Vec<usize> {
        let mut back = Vec::new();
        for (target, r) in self.records.iter_mut() {
            let returned = incarnation_of(*target) > r.incarnation;
            if returned
                && r.finished_at.is_none()
                && matches!(r.stage, Stage::Verdict | Stage::Recovered)
            {
                r.finished_at = Some(now);
                if r.stage == Stage::Recovered {
                    back.push(*target);
                }
            }
        }
        self.records
            .retain(|_, r| r.finished_at.is_none_or(|at| now < at + LINGER));
        let records = &self.records;
        self.pending.retain(|t, _| records.contains_key(t));
        self.retry_at.retain(|t, _| records.contains_key(t));
        back
    }

    /// The earliest of this table's timers after `now`.
    pub(crate) fn deadline(&self, cfg: &ProtocolConfig, now: Millis) -> Option<Millis> {
        let mut d: Option<Millis> = None;
        let mut at = |t: Millis| {
            if t > now {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        for (target, r) in &self.records {
            match r.stage {
                Stage::Drained => at(r.since + cfg.power_cycle_after),
                Stage::Checked => at(r.since + cfg.recover_after),
                _ => {}
            }
            if let Some(t) = self.retry_at.get(target) {
                at(*t);
            }
            if let Some(p) = self.pending.get(target) {
                at(p.at + cfg.step_timeout);
            }
            if let Some(f) = r.finished_at {
                at(f + LINGER);
            }
        }
        d
    }
}
