//! `infra releases PROJECT ENV`: a project-environment's releases, newest first: when each was
//! made and from which commit, its image digests, which is current, and which runs where.

use super::{Env, Failure, Outcome};
use crate::deploy::releases::{releases_path, Releases};
use crate::deploy::ship::{short, short_digest};
use crate::state::placement::project_env;
use crate::table::Table;

pub fn run(env: &Env, project: &str, environment: &str) -> Outcome {
    let key = project_env(project, environment);
    let path = releases_path(&env.project, &key);
    let releases = Releases::load(&path).map_err(|e| Failure::flow(e.to_string()))?;
    if env.options.json {
        let value = serde_json::json!({
            "project": project,
            "environment": environment,
            "current": releases.current,
            "releases": releases.releases.iter().rev().collect::<Vec<_>>(),
            "live": releases.live,
        });
        println!("{value}");
        return Ok(());
    }
    if releases.releases.is_empty() {
        println!("{key}: no releases yet (`infra deploy-{environment} {project}` makes one)");
        return Ok(());
    }
    let mut t = Table::new(&["", "RELEASE", "COMMIT", "CREATED", "DEPLOYED", "IMAGES"]);
    for r in releases.releases.iter().rev() {
        let current = releases.current.as_deref() == Some(r.name.as_str());
        let mut commit = short(&r.commit).to_string();
        if r.dirty {
            commit.push_str(" (dirty)");
        }
        let images: Vec<String> = r
            .images
            .iter()
            .map(|(service, image)| format!("{service} {}", short_digest(&image.digest)))
            .collect();
        t.row(vec![
            if current { "*".into() } else { String::new() },
            match &r.promoted_from {
                Some(from) => format!("{} (from {from})", r.name),
                None => r.name.clone(),
            },
            commit,
            r.created.clone(),
            r.deployed.clone().unwrap_or_else(|| "-".into()),
            images.join(", "),
        ]);
    }
    print!("{}", t.render(0));
    if !releases.live.is_empty() {
        println!("\nRunning now:");
        for (service, droplet, release) in releases.live_releases() {
            println!("  {key}-{service} on {droplet}: {release}");
        }
    }
    println!("\n* current. `infra rollback {project} {environment} [RELEASE]` goes back without a build.");
    Ok(())
}
