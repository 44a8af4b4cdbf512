//! `infra sandbox up | down | status | image`: the local DigitalOcean-compatible cloud.

use super::{Env, Failure, Outcome};
use crate::cli::SandboxAction;
use crate::sandbox::daemon::{self, SandboxError};
use crate::sandbox::spares::MAX_SPARES;
use crate::sandbox::Faults;
use crate::table::Table;

pub async fn run(env: &Env, action: SandboxAction) -> Outcome {
    if env.options.dry_run {
        refuse_dry_run(&action)?;
    }
    match action {
        SandboxAction::Up {
            fail_rate,
            latency_ms,
            spares,
            records_only,
        } => up(env, fail_rate, latency_ms, spares, records_only).await,
        SandboxAction::Down => down(env).await,
        SandboxAction::Status => status(env).await,
        SandboxAction::Image => {
            let tag = daemon::build_image(&mut progress).await.map_err(failure)?;
            println!("{tag}");
            Ok(())
        }
        SandboxAction::Serve {
            port,
            fail_rate,
            latency_ms,
            spares,
            records_only,
        } => {
            let faults = Faults::new(fail_rate, latency_ms).map_err(Failure::input)?;
            check_spares(spares)?;
            daemon::serve(&env.project, port, faults, spares, records_only)
                .await
                .map_err(failure)
        }
    }
}

/// `up`, `down` and `image` change this machine, not a cloud, and have nothing to plan: rather
/// than pretend, they refuse `--dry-run` (and say what shows the same without changing it).
fn refuse_dry_run(action: &SandboxAction) -> Outcome {
    let (name, instead) = match action {
        SandboxAction::Up { .. } => (
            "up",
            "`infra sandbox status` shows whether one runs; run `infra sandbox up` without `--dry-run` to start it",
        ),
        SandboxAction::Down => (
            "down",
            "`infra sandbox status` lists the droplets `down` would remove; run `infra sandbox down` without `--dry-run` to remove them",
        ),
        SandboxAction::Image => (
            "image",
            "run `infra sandbox image` without `--dry-run` to build the droplet image",
        ),
        SandboxAction::Status | SandboxAction::Serve { .. } => return Ok(()),
    };
    Err(Failure::input(format!(
        "`infra sandbox {name}` has no dry run: it changes this machine, not a cloud; {instead}"
    )))
}

fn progress(line: &str) {
    eprintln!("sandbox: {line}");
}

fn failure(e: SandboxError) -> Failure {
    Failure::flow(e.to_string())
}

fn check_spares(spares: usize) -> Outcome {
    if spares > MAX_SPARES {
        return Err(Failure::input(format!(
            "`--spares` can be at most {MAX_SPARES}, not {spares}"
        )));
    }
    Ok(())
}

async fn up(
    env: &Env,
    fail_rate: f64,
    latency_ms: u64,
    spares: usize,
    records_only: bool,
) -> Outcome {
    let faults = Faults::new(fail_rate, latency_ms).map_err(Failure::input)?;
    check_spares(spares)?;
    let (info, already) = daemon::up(&env.project, faults, spares, records_only, &mut progress)
        .await
        .map_err(failure)?;
    let paths = daemon::Paths::of(&env.project);
    let env_file = env.project.display(&paths.env());
    // Absolute: the variables that name it are used from any directory.
    let ca = paths.ca();
    let ca = std::path::absolute(&ca).unwrap_or(ca).display().to_string();
    if env.options.json {
        let value = serde_json::json!({
            "url": info.url,
            "pid": info.pid,
            "already_running": already,
            "spares": info.spares,
            "env_file": env_file,
            "ca_file": ca,
            "DO_API_URL": info.url,
            "DO_TOKEN": info.token,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serializable")
        );
        return Ok(());
    }
    if already {
        eprintln!(
            "sandbox: already running at {} (pid {})",
            info.url, info.pid
        );
        if info.faults != faults {
            eprintln!(
                "sandbox: it keeps its fault settings (fail rate {}, latency {} ms); `infra sandbox down` first to change them",
                info.faults.fail_rate, info.faults.latency_ms
            );
        }
        if info.spares != spares {
            eprintln!(
                "sandbox: it keeps {} spare droplet(s); `infra sandbox down` first to change that",
                info.spares
            );
        }
    } else {
        eprintln!("sandbox: running at {} (pid {})", info.url, info.pid);
    }
    eprintln!("sandbox: infra commands in this project use it by themselves (its URL and token are in {env_file})");
    eprintln!("sandbox: it serves HTTPS with a certificate signed by this project's own CA, {ca}; other tools must trust that CA:");
    eprintln!("sandbox:   requests-based clients (python-digitalocean, pydo): export REQUESTS_CA_BUNDLE={ca}");
    eprintln!("sandbox:   (python-digitalocean also needs DIGITALOCEAN_END_POINT=$DO_API_URL/v2/ and DIGITALOCEAN_ACCESS_TOKEN=$DO_TOKEN)");
    eprintln!("sandbox:   other OpenSSL-based clients: export SSL_CERT_FILE={ca}");
    eprintln!("sandbox:   curl: curl --cacert {ca} -H \"Authorization: Bearer $DO_TOKEN\" $DO_API_URL/v2/account");
    eprintln!("sandbox: the variables for other tools:");
    println!("{}", info.exports());
    Ok(())
}

async fn down(env: &Env) -> Outcome {
    let removed = daemon::down(&env.project).await.map_err(failure)?;
    if env.options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&removed).expect("serializable")
        );
        return Ok(());
    }
    if !removed.server_stopped && removed.docker_objects.is_empty() && !removed.files {
        println!("sandbox: nothing to remove");
        return Ok(());
    }
    if removed.server_stopped {
        println!("sandbox: server stopped");
    }
    if !removed.docker_objects.is_empty() {
        println!("sandbox: removed {}", summarize(&removed.docker_objects));
    }
    if removed.files {
        println!("sandbox: state removed");
    }
    Ok(())
}

/// `3 containers, 1 image, 1 network`.
fn summarize(objects: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for object in objects {
        let kind = object.split_whitespace().next().unwrap_or("object");
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn status(env: &Env) -> Outcome {
    let status = daemon::status(&env.project).await.map_err(failure)?;
    if env.options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("serializable")
        );
        return Ok(());
    }
    match (&status.url, status.pid) {
        (Some(url), Some(pid)) => {
            println!("sandbox: running at {url} (pid {pid})");
            if let Some(ca) = &status.ca_file {
                println!("ca: {}", env.project.display(ca));
            }
        }
        _ => println!("sandbox: not running (`infra sandbox up` starts it)"),
    }
    if let Some(spares) = status.spares {
        println!(
            "spares: {} of {} ready{}",
            spares.ready,
            spares.target,
            if spares.booting > 0 {
                format!(", {} booting", spares.booting)
            } else {
                String::new()
            }
        );
    }
    if status.droplets.is_empty() {
        println!("droplets: none");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "STATUS", "IP", "TAGS"]);
    for d in &status.droplets {
        table.row(vec![
            d.id.to_string(),
            d.name.clone(),
            d.status.clone(),
            d.ip.clone().unwrap_or_else(|| "-".into()),
            d.tags.join(","),
        ]);
    }
    println!("droplets:");
    print!("{}", table.render(2));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_objects_are_counted_by_kind() {
        let objects = [
            "container a".to_string(),
            "container b".to_string(),
            "image c".to_string(),
            "network d".to_string(),
        ];
        assert_eq!(summarize(&objects), "2 containers, 1 image, 1 network");
    }
}
