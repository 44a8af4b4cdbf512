//! Natives of the deploy flows (playbooks/deploy_uat.rhai, deploy_prod.rhai, rollback.rhai and
//! stdlib/deploy.rhai): `check_secrets`, `checkout`, `build_image`, `bootstrap`, `push_image`,
//! `promote_release`, `find_release`, `current_release`, `services_of`, `pull_images`,
//! `deploy_service`, `deploy_kubernetes`,
//! `render_nginx`, `check_health`, `finish_release`, `snapshot`, `snapshot_after_deploy`,
//! `project_droplets`, `platform_of`. Thin: the work is in `crate::deploy`.
//!
//! The first deploy native of a run for a project-environment takes its deploy lock (not in a
//! dry run), held until the run ends: a second deploy of it stops (or waits with
//! `--lock-timeout`) with the holder named.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::json;

use super::{droplet_names, from_dynamic, to_dynamic};
use crate::deploy::checkout::{self, Source};
use crate::deploy::ship::BuiltImage;
use crate::deploy::{DeployError, Deployer, ReleaseRecord};
use crate::host::error::{bad_input, failure, located};
use crate::host::Context;

fn deploy_error(e: DeployError) -> Box<EvalAltResult> {
    located(e.to_string(), e.is_input())
}

/// The deployer of `project`'s `environment`, with its deploy lock held.
fn deployer(
    ctx: &Context,
    project: &str,
    environment: &str,
) -> Result<Deployer, Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    let pool = ctx.ssh_pool()?;
    let d = Deployer::new(
        ctx.project.clone(),
        loaded,
        pool,
        ctx.reporter().clone(),
        ctx.dry_run(),
        &ctx.options.command,
        project,
        environment,
    )
    .map_err(deploy_error)?;
    if !ctx.dry_run() {
        ctx.services
            .hold_deploy_lock(&d.project_env, || {
                crate::deploy::lock::acquire(
                    &ctx.project,
                    &d.project_env,
                    &ctx.options.command,
                    ctx.options.lock_timeout,
                )
            })
            .map_err(deploy_error)?;
    }
    Ok(d)
}

fn run<T>(
    ctx: &Context,
    future: impl std::future::Future<Output = Result<T, DeployError>>,
) -> Result<T, Box<EvalAltResult>> {
    ctx.block_on(future)?.map_err(deploy_error)
}

fn release_of(value: &Dynamic) -> Result<ReleaseRecord, Box<EvalAltResult>> {
    from_dynamic(
        value,
        "a release (what push_image, promote_release or find_release return)",
    )
}

fn option_string(options: &Map, key: &str) -> Option<String> {
    options
        .get(key)
        .filter(|v| !v.is_unit())
        .map(|v| v.to_string())
        .filter(|s| !s.is_empty())
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn(
        "check_secrets",
        move |project: &str, environment: &str| -> Result<(), Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            d.secrets().map(|_| ()).map_err(deploy_error)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "checkout",
        move |project: &str, environment: &str, options: Map| -> Result<Map, Box<EvalAltResult>> {
            checkout_native(&c, project, environment, &options)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "build_image",
        move |project: &str, environment: &str, source: Map| -> Result<Array, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let (source, release) = source_of(&source)?;
            let built = d.build_images(&source, &release).map_err(deploy_error)?;
            built.iter().map(to_dynamic).collect()
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "bootstrap",
        move |project: &str, environment: &str| -> Result<(), Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            run(&c, d.bootstrap())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "push_image",
        move |project: &str,
              environment: &str,
              source: Map,
              images: Array|
              -> Result<Dynamic, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let (source, release) = source_of(&source)?;
            let built: Vec<BuiltImage> = images
                .iter()
                .map(|v| from_dynamic(v, "an image that build_image returned"))
                .collect::<Result<_, _>>()?;
            let pushed = run(&c, d.push_images(&release, &source, &built))?;
            match pushed {
                Some(record) => to_dynamic(&record),
                // A dry run pushes nothing: the release as it would be, without digests.
                None => to_dynamic(&json!({
                    "name": release,
                    "commit": source.commit,
                    "dirty": source.dirty,
                    "created": crate::deploy::releases::now_rfc3339(),
                    "images": built.iter().map(|b| (b.service.clone(), json!({
                        "repository": d.repository(&b.service),
                        "digest": "sha256:(made by the build)",
                    }))).collect::<serde_json::Map<_, _>>(),
                })),
            }
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "promote_release",
        move |project: &str, from: &str, to: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let source = deployer(&c, project, from)?;
            let d = deployer(&c, project, to)?;
            let record = run(&c, d.promote(&source))?;
            to_dynamic(&record)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "find_release",
        move |project: &str, environment: &str, name: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let releases = d.releases().map_err(deploy_error)?;
            let found = if name.is_empty() {
                releases.previous().ok_or_else(|| {
                    bad_input(format!(
                        "`{}` has no earlier release to roll back to; `infra releases {project} {environment}` lists them",
                        d.project_env
                    ))
                })?
            } else {
                releases.find(name).ok_or_else(|| {
                    let known: Vec<&str> = releases.releases.iter().map(|r| r.name.as_str()).collect();
                    bad_input(format!(
                        "`{}` has no release `{name}`; it has {}",
                        d.project_env,
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ))
                })?
            };
            to_dynamic(found)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "current_release",
        move |project: &str, environment: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let releases = d.releases().map_err(deploy_error)?;
            match releases.current_release() {
                Some(r) => to_dynamic(r),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "services_of",
        move |project: &str, environment: &str| -> Result<Array, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let mut out = Array::new();
            let mut seen = std::collections::HashSet::new();
            for t in d.targets().map_err(deploy_error)? {
                if seen.insert(t.service.clone()) {
                    out.push(to_dynamic(&json!({
                        "name": t.service,
                        "type": t.kind,
                        "singleton": t.config.singleton,
                    }))?);
                }
            }
            Ok(out)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "deploy_service",
        move |project: &str,
              environment: &str,
              service: &str,
              release: Dynamic,
              batch: i64|
              -> Result<Dynamic, Box<EvalAltResult>> {
            if batch < 1 {
                return Err(bad_input(format!("batch must be at least 1, not {batch}")));
            }
            let d = deployer(&c, project, environment)?;
            let release = release_of(&release)?;
            let outcome = run(&c, d.deploy_service(service, &release, batch as usize))?;
            to_dynamic(&outcome)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "pull_images",
        move |project: &str,
              environment: &str,
              release: Dynamic|
              -> Result<(), Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let release = release_of(&release)?;
            run(&c, d.pull_release(&release))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "deploy_kubernetes",
        move |project: &str,
              environment: &str,
              release: Dynamic|
              -> Result<(), Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let release = release_of(&release)?;
            run(&c, d.deploy_kubernetes(&release))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "render_nginx",
        move || -> Result<String, Box<EvalAltResult>> {
            let loaded = c.loaded()?;
            let pool = c.ssh_pool()?;
            let applied = run(
                &c,
                crate::deploy::rollout::render_nginx_for(
                    &c.project,
                    &loaded,
                    &pool,
                    c.reporter(),
                    c.dry_run(),
                    &c.options.command,
                ),
            )?;
            Ok(format!("{applied:?}").to_lowercase())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "check_health",
        move |project: &str, environment: &str| -> Result<Map, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let checked = run(&c, d.check_health())?;
            let mut out = Map::new();
            for (at, status) in checked {
                out.insert(at.into(), status.into());
            }
            Ok(out)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "finish_release",
        move |project: &str,
              environment: &str,
              release: Dynamic|
              -> Result<(), Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            let release = release_of(&release)?;
            run(&c, d.finish(&release))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "snapshot_after_deploy",
        move |project: &str, environment: &str| -> Result<bool, Box<EvalAltResult>> {
            let loaded = c.loaded()?;
            Ok(loaded
                .deployment
                .project(project)
                .snapshot_after_deploy(environment))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "project_droplets",
        move |project: &str, environment: &str| -> Result<Array, Box<EvalAltResult>> {
            let d = deployer(&c, project, environment)?;
            Ok(d.droplets()
                .map_err(deploy_error)?
                .into_iter()
                .map(|h| Dynamic::from(h.name))
                .collect())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "platform_of",
        move |project: &str| -> Result<String, Box<EvalAltResult>> {
            Ok(c.loaded()?.deployment.platform_of(project))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "snapshot",
        move |droplets: Dynamic| -> Result<Map, Box<EvalAltResult>> { snapshot(&c, droplets) },
    );
}

/// `checkout(project, env, #{branch, local, project_path})`: the source and its release name.
fn checkout_native(
    ctx: &Context,
    project: &str,
    environment: &str,
    options: &Map,
) -> Result<Map, Box<EvalAltResult>> {
    let d = deployer(ctx, project, environment)?;
    let local = options
        .get("local")
        .is_some_and(|v| v.as_bool().unwrap_or(false) || v.to_string() == "true");
    let path = option_string(options, "project_path");
    let started = std::time::Instant::now();
    let source: Source = if local {
        let dir = path.ok_or_else(|| {
            bad_input("--local needs --project-path DIR: the working tree to deploy")
        })?;
        let dir = ctx.project.root.join(dir);
        checkout::local(&dir).map_err(deploy_error)?
    } else {
        if path.is_some() {
            return Err(bad_input(
                "--project-path goes with --local (deploy that working tree as it is); without --local the code comes from `repo` in deployment_config.json",
            ));
        }
        let repo = d.deployment.repo.clone().ok_or_else(|| {
            bad_input(format!(
                "projects.{project}.repo is not set in deployment_config.json: set it to the project's git URL or path, or deploy a working tree with --local --project-path DIR"
            ))
        })?;
        let branch =
            option_string(options, "branch").unwrap_or_else(|| d.deployment.branch.clone());
        let dir = ctx.project.infra_dir().join("checkouts").join(project);
        checkout::checkout(&repo, &branch, &ctx.project.root, &dir).map_err(deploy_error)?
    };
    let release = d.release_name_for(&source);
    ctx.reporter().progress(
        "checkout",
        project,
        &format!(
            "checked out {}{} in {:.1} s: release {release}",
            crate::deploy::ship::short(&source.commit),
            if source.dirty { " with uncommitted changes" } else { "" },
            started.elapsed().as_secs_f64()
        ),
        json!({"commit": source.commit, "release": release, "seconds": started.elapsed().as_secs_f64()}),
    );
    let mut map = to_dynamic(&source)?
        .try_cast::<Map>()
        .ok_or_else(|| failure("a source is a map"))?;
    map.insert("release".into(), release.into());
    Ok(map)
}

fn source_of(map: &Map) -> Result<(Source, String), Box<EvalAltResult>> {
    let source: Source = from_dynamic(
        &Dynamic::from(map.clone()),
        "a source (what checkout returns)",
    )?;
    let release = option_string(map, "release")
        .ok_or_else(|| bad_input("the source has no `release`: pass what checkout returned"))?;
    Ok((source, release))
}

/// `snapshot(droplet)` or `snapshot([droplets])`: a snapshot of each droplet's disk,
/// `infra-<droplet>-<time>`, all taken at once; the names by droplet.
fn snapshot(ctx: &Context, droplets: Dynamic) -> Result<Map, Box<EvalAltResult>> {
    let names = droplet_names(droplets)?;
    let mut targets = Vec::new();
    {
        let store = ctx.store()?;
        for name in &names {
            let record = store
                .state()
                .droplet(name)
                .ok_or_else(|| bad_input(format!("no droplet `{name}` in the state")))?;
            let id = record.id.ok_or_else(|| {
                failure(format!(
                    "droplet `{name}` has no cloud id in the state yet; run `infra orchestrate`"
                ))
            })?;
            targets.push((name.clone(), id));
        }
    }
    let fleet = ctx.fleet()?;
    let reporter = ctx.reporter();
    let results = ctx.block_on(futures_util::future::join_all(
        targets
            .iter()
            .map(|(name, id)| fleet.snapshot(name, *id, reporter)),
    ))?;
    let mut out = Map::new();
    for ((name, _), result) in targets.iter().zip(results) {
        let taken = result.map_err(|e| located(e.to_string(), false))?;
        out.insert(name.as_str().into(), taken.into());
    }
    Ok(out)
}
