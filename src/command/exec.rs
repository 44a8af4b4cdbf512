//! `infra exec TARGET -- COMMAND`: one command on many droplets at once, Ansible's ad-hoc
//! `command` module without the inventory: the targets come from the state. Each droplet's
//! output is printed prefixed by its name (one JSON object per droplet with `--json`), and
//! the command fails if any droplet failed, naming each.

use std::net::IpAddr;

use super::{Env, Failure, Outcome};
use crate::remote::{run_everywhere, Connector, Host, Pool};
use crate::state::State;

pub async fn run(env: &Env, target: &str, parallel: usize, command: &str) -> Outcome {
    if parallel == 0 {
        return Err(Failure::input("--parallel must be at least 1"));
    }
    let path = env.project.state_path();
    let state = State::load(&path, &env.project.display(&path))?;
    let droplets = state
        .select_droplets(target)
        .map_err(|e| Failure::input(e.to_string()))?;
    let mut hosts = Vec::new();
    for (name, d) in &droplets {
        let ip: IpAddr =
            d.ip.as_deref()
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| {
                    Failure::flow(format!(
                        "droplet `{name}` has no address in the state yet; run `infra orchestrate`"
                    ))
                })?;
        hosts.push(Host::new(name.clone(), ip));
    }
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    if env.options.dry_run {
        crate::output::line(&format!(
            "[dry-run] would run `{command}` on {}",
            names.join(", ")
        ));
        return Ok(());
    }
    let connector =
        Connector::for_project(&env.project).map_err(|e| Failure::flow(e.to_string()))?;
    let pool = Pool::new(connector);
    let results = run_everywhere(&pool, &hosts, command, parallel).await;
    pool.close().await;
    for r in &results {
        if env.options.json {
            let (status, stdout, stderr, error) = match &r.outcome {
                Ok(out) => (Some(out.status), out.stdout_text(), out.stderr_text(), None),
                Err(e) => (None, String::new(), String::new(), Some(e.to_string())),
            };
            let line = serde_json::json!({
                "droplet": r.host.name,
                "ip": r.host.ip.to_string(),
                "ok": r.success(),
                "status": status,
                "stdout": stdout,
                "stderr": stderr,
                "error": error,
            });
            crate::output::line(&line.to_string());
        } else {
            crate::output::text(&r.prefixed());
        }
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| Some(format!("{} ({})", r.host.name, r.failure()?)))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::flow(format!(
            "{} of {} droplets failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        )))
    }
}
