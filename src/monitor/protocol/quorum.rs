//! Votes and verdicts. A voter's vote on a target lasts while the voter keeps repeating it (every
//! message carries the sender's complete vote list, which replaces the previous one) and lapses
//! after `vote_ttl` without a repeat. A verdict needs votes from a majority of the configured
//! cluster, at the target's current incarnation.

use std::collections::{BTreeMap, BTreeSet};

use super::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vote {
    incarnation: u64,
    expires: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub incarnation: u64,
    pub since: Millis,
    pub voters: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Quorum {
    /// target -> voter -> vote
    votes: BTreeMap<usize, BTreeMap<usize, Vote>>,
    pub verdicts: BTreeMap<usize, Verdict>,
}

impl Quorum {
    /// `voter`'s complete current vote list.
    pub(crate) fn replace_votes(&mut self, voter: usize, list: &[(usize, u64)], expires: Millis) {
        for by_voter in self.votes.values_mut() {
            by_voter.remove(&voter);
        }
        for (target, incarnation) in list {
            if *target == voter {
                continue;
            }
            self.votes.entry(*target).or_default().insert(
                voter,
                Vote {
                    incarnation: *incarnation,
                    expires,
                },
            );
        }
        self.votes.retain(|_, v| !v.is_empty());
    }

    pub(crate) fn expire(&mut self, now: Millis) {
        for by_voter in self.votes.values_mut() {
            by_voter.retain(|_, v| v.expires > now);
        }
        self.votes.retain(|_, v| !v.is_empty());
    }

    /// Voters with a live vote on `target` at `incarnation` or later.
    pub(crate) fn voters(&self, target: usize, incarnation: u64) -> Vec<usize> {
        self.votes.get(&target).map_or_else(Vec::new, |by_voter| {
            by_voter
                .iter()
                .filter(|(_, v)| v.incarnation >= incarnation)
                .map(|(voter, _)| *voter)
                .collect()
        })
    }

    pub(crate) fn targets(&self) -> BTreeSet<usize> {
        self.votes.keys().copied().collect()
    }

    /// Records verdicts newly reached; returns them.
    pub(crate) fn reach(
        &mut self,
        now: Millis,
        majority: usize,
        incarnation_of: &dyn Fn(usize) -> u64,
    ) -> Vec<usize> {
        let mut new = Vec::new();
        for target in self.targets() {
            let incarnation = incarnation_of(target);
            let voters = self.voters(target, incarnation);
            if voters.len() < majority {
                continue;
            }
            match self.verdicts.get_mut(&target) {
                Some(v) if v.incarnation >= incarnation => v.voters = voters,
                _ => {
                    self.verdicts.insert(
                        target,
                        Verdict {
                            incarnation,
                            since: now,
                            voters,
                        },
                    );
                    new.push(target);
                }
            }
        }
        new
    }

    /// Drops verdicts whose target has since come back with a newer incarnation; returns them.
    pub(crate) fn clear_refuted(&mut self, incarnation_of: &dyn Fn(usize) -> u64) -> Vec<usize> {
        let refuted: Vec<usize> = self
            .verdicts
            .iter()
            .filter(|(t, v)| incarnation_of(**t) > v.incarnation)
            .map(|(t, _)| *t)
            .collect();
        for t in &refuted {
            self.verdicts.remove(t);
        }
        refuted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_needs_a_majority_of_the_configured_cluster_at_the_current_incarnation() {
        let mut q = Quorum::default();
        let inc = |_: usize| 5;
        // Cluster of 5: majority 3. Two voters are not enough even if only two are reachable.
        q.replace_votes(1, &[(4, 5)], 100);
        q.replace_votes(2, &[(4, 5)], 100);
        assert!(q.reach(10, 3, &inc).is_empty());
        // A vote about an older incarnation does not count.
        q.replace_votes(3, &[(4, 4)], 100);
        assert!(q.reach(10, 3, &inc).is_empty());
        q.replace_votes(3, &[(4, 5)], 100);
        assert_eq!(q.reach(10, 3, &inc), vec![4]);
        assert_eq!(q.verdicts[&4].voters, vec![1, 2, 3]);
        // The target refutes: the verdict goes.
        assert_eq!(q.clear_refuted(&|_| 6), vec![4]);
    }

    #[test]
    fn votes_lapse_unless_repeated_and_a_new_list_replaces_the_old() {
        let mut q = Quorum::default();
        q.replace_votes(1, &[(4, 5), (3, 1)], 100);
        q.replace_votes(1, &[(3, 1)], 100);
        assert!(q.voters(4, 5).is_empty());
        assert_eq!(q.voters(3, 1), vec![1]);
        q.expire(100);
        assert!(q.voters(3, 1).is_empty());
    }
}
