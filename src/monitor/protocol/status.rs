//! What a node reports about itself for `infra status`: its view of every peer, the verdicts
//! and recoveries it knows, its lease and its traffic counters.

use super::wire::Stage;
use super::DropReason;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub dropped_forged: u64,
    pub dropped_tampered: u64,
    pub dropped_replayed: u64,
    pub dropped_misdirected: u64,
    pub dropped_stale: u64,
    pub dropped_foreign: u64,
    pub dropped_malformed: u64,
}

impl Counters {
    pub(crate) fn dropped(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Forged => &mut self.dropped_forged,
            DropReason::Tampered => &mut self.dropped_tampered,
            DropReason::Replayed => &mut self.dropped_replayed,
            DropReason::Misdirected => &mut self.dropped_misdirected,
            DropReason::Stale => &mut self.dropped_stale,
            DropReason::Foreign => &mut self.dropped_foreign,
            DropReason::Malformed => &mut self.dropped_malformed,
        };
        *c += 1;
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_forged
            + self.dropped_tampered
            + self.dropped_replayed
            + self.dropped_misdirected
            + self.dropped_stale
            + self.dropped_foreign
            + self.dropped_malformed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Alive,
    /// This node or another voter votes it down, short of a verdict.
    Suspect,
    /// A majority of the cluster votes it down.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub state: PeerState,
    pub incarnation: u64,
    /// Only for peers this node probes.
    pub last_ack_ms_ago: Option<u64>,
    pub streak: u32,
    pub abstaining: bool,
    pub watched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerdictStatus {
    pub target: String,
    pub since_ms_ago: u64,
    pub voters: Vec<String>,
    pub stage: Stage,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseStatus {
    pub epoch: u64,
    pub remaining_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub me: String,
    pub incarnation: u64,
    pub abstaining: bool,
    /// Whom this node believes coordinates (itself while it holds the lease).
    pub coordinator: Option<String>,
    /// The highest epoch this node has seen.
    pub epoch: u64,
    /// Set while this node holds the lease.
    pub lease: Option<LeaseStatus>,
    pub mass_failure: bool,
    pub peers: Vec<PeerStatus>,
    pub verdicts: Vec<VerdictStatus>,
    pub counters: Counters,
}
