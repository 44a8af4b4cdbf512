//! The monitor's protocol, sans IO: peer probing, signed gossip, quorum verdicts, coordinator
//! leases and the graduated response, as pure logic. Time comes in as arguments (a monotonic
//! clock for timers, the wall clock only to date and check envelopes), datagrams come in as
//! bytes and go out as [`Output::Send`]. The daemon drives a [`Node`] with a real UDP socket
//! and clock; the simulation tests drive the very same code over turmoil's network and clock.

mod auth;
mod config;
mod coordinator;
mod detector;
mod node;
mod quorum;
mod response;
mod rng;
mod status;
mod wire;

pub use auth::{
    hex, load_public, load_secret, save_public, save_secret, unhex, Authenticator, DropReason,
    KeyFileError, Keyring, Verification, REPLAY_WINDOW,
};
pub use config::{ConfigError, ProtocolConfig, MAX_CLUSTER};
pub use coordinator::Fence;
pub use node::{Event, Node, Output, PersistedState, Step, StepRequest};
pub use status::{Counters, LeaseStatus, NodeStatus, PeerState, PeerStatus, VerdictStatus};
pub use wire::Stage;

/// Monotonic milliseconds from an arbitrary origin.
pub type Millis = u64;
