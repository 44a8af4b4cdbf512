//! Simulations of the monitor protocol (`src/monitor/protocol`): the real protocol code over
//! turmoil's simulated UDP and clock (`latency`), and over a seeded discrete-event network for
//! the long runs (`loss`, `fencing`). Every failure names its seed.

mod cloud;
mod cluster;
mod des;
mod fast_auth;
mod fencing;
mod latency;
mod loss;
mod scenarios;
mod turmoil_net;
