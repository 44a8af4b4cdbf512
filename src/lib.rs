//! infra: a personal-cloud orchestrator.
//!
//! The binary in `main.rs` is a thin shell over this library. Core modules (`state`, `config`,
//! `plan`, `cloud`, ...) know nothing of Rhai; `host` adapts them for playbooks.

pub mod atomic_file;
pub mod audit;
pub mod balancer;
pub mod cli;
pub mod cloud;
pub mod command;
pub mod config;
pub mod deferred_drop;
pub mod deploy;
pub mod diagnostic;
pub mod document;
pub mod fleet;
pub mod health;
pub mod host;
pub mod keypair;
pub mod logging;
pub mod monitor;
pub mod name_map;
pub mod notify;
pub mod output;
pub mod plan;
pub mod platform;
pub mod project;
pub mod recovery;
pub mod remote;
pub mod report;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod state;
pub mod table;
pub mod template;
pub mod timestamp;
