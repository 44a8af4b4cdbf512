//! The sandbox cloud: a local server that speaks the part of DigitalOcean's API v2 infra uses
//! (the contract in `tests/fixtures/digitalocean/openapi-subset.yaml`), whose droplets are real
//! hosts. `infra sandbox up` starts it in the background, over HTTPS with a CA of the project's
//! own ([`tls`]); the same [`crate::cloud::Client`] that talks to DigitalOcean talks to it,
//! pointed there by `DO_API_URL` and `DO_TOKEN`.
//!
//! - A droplet is a Docker container of the droplet image (Debian 12 with sshd, its own Docker
//!   Engine, nginx, git and curl; built locally on first use, see [`image`]), with its own
//!   address on the sandbox's bridge network, its name as hostname, and root login with the
//!   account keys it was created with only ([`backend`]).
//! - A droplet's container gets its size's CPUs and memory (capped at the machine's), and a
//!   `resize` of a droplet that is off changes them ([`backend::Limits`]).
//! - Actions have real effects: power off/on stop and start the container; a snapshot commits
//!   its disk to an image, and a droplet created from the snapshot's id starts from that image;
//!   delete removes the container; firewalls are enforced inside the droplets with iptables
//!   ([`firewalls`], [`iptables`]); reserved IPs are extra addresses that move between droplets.
//! - Its records survive a restart of the server ([`store`]); `infra sandbox down` removes the
//!   server, every Docker object it made (found by label) and its files ([`daemon`]).
//! - Creates are fast because the server keeps spare droplets booted: a create from a base
//!   image turns a spare into the droplet, indistinguishable from one booted on demand
//!   ([`spares`]).
//! - Faults can be injected for reliability tests: a share of 429s and 500s, and latency
//!   ([`faults`]).
//!
//! Not a security boundary: droplets run with nearly every privilege, so that they can run
//! their own container engine. They are test hosts on the user's own machine.

pub mod account;
pub mod api;
pub mod backend;
pub mod catalog;
pub mod daemon;
pub mod droplet_view;
pub mod droplets;
pub mod faults;
pub mod firewalls;
pub mod image;
pub mod iptables;
pub mod reserved_ips;
pub mod server;
pub mod shared;
pub mod snapshots;
pub mod spare_pool;
pub mod spares;
pub mod store;
pub mod tags;
pub mod tls;
mod worker;

pub use daemon::{client_env, Paths, ServerInfo};
pub use faults::Faults;
