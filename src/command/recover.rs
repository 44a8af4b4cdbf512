//! `infra recover DROPLET [--yes]`: the recovery the monitors run, by hand
//! (playbooks/recovery.rhai's `recover`): the droplet drained from nginx, fenced (powered off
//! and confirmed off), made again from its newest snapshot, its services back and healthy,
//! nginx pointed at its new address. Fenced like the monitors' (a second `infra recover` of
//! the same droplet stops, naming the first), checkpointed, and safe to run again; a healthy
//! droplet is left alone. `--dry-run` shows the plan and changes nothing.

use super::{playbook, Env, Outcome};

pub async fn run(env: Env, droplet: String, yes: bool) -> Outcome {
    let opts = playbook::flags(&[("by_hand", true), ("yes", yes)]);
    playbook::builtin(env, "recovery", vec![droplet], opts).await
}
