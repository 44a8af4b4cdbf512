//! Natives that change the cloud: `ensure_ssh_key`, `create_droplet`, `destroy_droplet`,
//! `assign_services`, `ensure_firewall`, `admin_ip`. Each honours `--dry-run` (reports, does
//! nothing), records what it did in the state as soon as it is done (a crash leaves true
//! partial state) and in the audit log.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::report_dry_run;
use crate::host::error::{bad_input, failure, located};
use crate::host::{store_error, Context};
use crate::provision::{ProvisionError, Ready};
use crate::state::placement::{monitoring_ring, required_droplets};

fn names(value: Dynamic) -> Result<Vec<String>, Box<EvalAltResult>> {
    if value.is_string() {
        return Ok(vec![value.into_string().expect("string")]);
    }
    let list = value
        .try_cast::<Array>()
        .ok_or_else(|| bad_input("expected a droplet name or a list of droplet names"))?;
    list.into_iter()
        .map(|v| {
            v.into_string()
                .map_err(|t| bad_input(format!("droplet names are strings, not {t}")))
        })
        .collect()
}

/// Takes the state lock before the first change to the cloud, so a second run started at the
/// same time stops (or waits, with `--lock-timeout`) before it registers a key or creates a
/// droplet the first one is creating.
fn hold_lock(ctx: &Context) -> Result<(), Box<EvalAltResult>> {
    ctx.store()?.lock().map_err(store_error)
}

fn cloud_error(e: ProvisionError) -> Box<EvalAltResult> {
    match e {
        ProvisionError::Cancelled => Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from("cancelled"),
            rhai::Position::NONE,
        )),
        other => located(other.to_string(), false),
    }
}

/// Prints one line of progress (or one JSON event with `--json`).
fn progress(ctx: &Context, event: &str, droplet: &str, text: &str, extra: serde_json::Value) {
    if ctx.options.json {
        let mut value = serde_json::json!({"event": event, "droplet": droplet});
        if let (Some(map), serde_json::Value::Object(more)) = (value.as_object_mut(), extra) {
            map.extend(more);
        }
        println!("{value}");
    } else {
        println!("droplet {droplet}: {text}");
    }
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn("admin_ip", move || -> Result<String, Box<EvalAltResult>> {
        admin_ip(&c)
    });
    let c = ctx.clone();
    engine.register_fn(
        "ensure_ssh_key",
        move || -> Result<i64, Box<EvalAltResult>> {
            if c.dry_run() {
                report_dry_run("register the infrastructure SSH key with the account");
                return Ok(0);
            }
            hold_lock(&c)?;
            let p = c.provisioner()?;
            let key = c.block_on(p.ensure_key())?.map_err(cloud_error)?;
            Ok(key.id as i64)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "create_droplet",
        move |which: Dynamic| -> Result<Map, Box<EvalAltResult>> { create(&c, names(which)?) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "destroy_droplet",
        move |which: Dynamic| -> Result<(), Box<EvalAltResult>> { destroy(&c, names(which)?) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "assign_services",
        move || -> Result<(), Box<EvalAltResult>> { assign_services(&c) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "ensure_firewall",
        move || -> Result<(), Box<EvalAltResult>> {
            let admin = admin_ip(&c)?;
            ensure_firewall(&c, &admin)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "ensure_firewall",
        move |admin: &str| -> Result<(), Box<EvalAltResult>> {
            crate::provision::check_cidr(admin).map_err(bad_input)?;
            ensure_firewall(&c, admin)
        },
    );
}

/// `ADMIN_IP` from the environment, else the address stored by `update-admin-ip`.
fn admin_ip(ctx: &Context) -> Result<String, Box<EvalAltResult>> {
    let cidr = match std::env::var("ADMIN_IP") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => match ctx.store()?.state().admin_ip() {
            Some(stored) => stored,
            None => crate::provision::sandbox_admin_address(&ctx.project).ok_or_else(|| {
            located("ADMIN_IP is not set: SSH to the droplets is allowed only from the administrator's address; `export ADMIN_IP=203.0.113.100/32` (the address infra runs from, as the droplets see it) or run `infra update-admin-ip CIDR`", true)
            })?,
        },
    };
    crate::provision::check_cidr(&cidr).map_err(|m| located(format!("ADMIN_IP: {m}"), true))?;
    Ok(cidr)
}

fn create(ctx: &Context, names: Vec<String>) -> Result<Map, Box<EvalAltResult>> {
    let mut out = Map::new();
    if names.is_empty() {
        return Ok(out);
    }
    let loaded = ctx.loaded()?;
    let wanted = required_droplets(&loaded.spec);
    let mut jobs = Vec::new();
    for name in &names {
        let spec = wanted.get(name).ok_or_else(|| {
            bad_input(format!(
                "`{name}` is not a droplet the spec asks for; `infra plan` lists them"
            ))
        })?;
        jobs.push((name.clone(), spec.clone()));
    }
    if ctx.dry_run() {
        for (name, d) in &jobs {
            report_dry_run(&format!(
                "create droplet `{name}` ({}, {}, {})",
                d.size, d.region, d.role
            ));
        }
        return Ok(out);
    }
    hold_lock(ctx)?;
    let p = ctx.provisioner()?;
    let key = ctx.block_on(p.ensure_key())?.map_err(cloud_error)?;
    for (name, _) in &jobs {
        progress(
            ctx,
            "droplet_creating",
            name,
            "creating (or adopting the tagged droplet)",
            serde_json::json!({}),
        );
    }
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let (p, key, jobs) = (p.clone(), key.clone(), jobs.clone());
        ctx.spawn(async move { p.bring_up(&key, &jobs, tx).await })?
    };
    // Each droplet is recorded as it comes up, so a crash keeps what exists.
    while let Some(ready) = ctx.block_on(rx.recv())? {
        let d = &jobs
            .iter()
            .find(|(n, _)| n == &ready.name)
            .expect("a droplet asked for")
            .1;
        record_droplet(ctx, &ready, d)?;
        let secs = started.elapsed().as_secs_f64();
        let how = match ready.outcome {
            crate::cloud::Outcome::Created => "created",
            crate::cloud::Outcome::Adopted => "adopted",
        };
        progress(
            ctx,
            "droplet_ready",
            &ready.name,
            &format!("active at {} ({how}, {secs:.1} s)", ready.ip),
            serde_json::json!({"ip": ready.ip, "id": ready.id, "outcome": how, "seconds": secs}),
        );
        ctx.audit(
            "create_droplet",
            &ready.name,
            &format!("{how}, {}", ready.ip),
        );
        let mut m = Map::new();
        m.insert("ip".into(), ready.ip.clone().into());
        m.insert("id".into(), (ready.id as i64).into());
        m.insert("outcome".into(), how.into());
        out.insert(ready.name.as_str().into(), m.into());
    }
    match ctx.block_on(task)? {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            for (name, _) in &jobs {
                if !out.contains_key(name.as_str()) {
                    ctx.audit("create_droplet", name, &format!("failed: {e}"));
                }
            }
            return Err(cloud_error(e));
        }
        Err(e) => return Err(failure(format!("the droplet task failed: {e}"))),
    }
    Ok(out)
}

/// Writes a ready droplet into the state at once, so a crash after this point keeps it.
fn record_droplet(
    ctx: &Context,
    ready: &Ready,
    d: &crate::state::RequiredDroplet,
) -> Result<(), Box<EvalAltResult>> {
    ctx.store()?
        .update(|s| {
            let monitors = s
                .droplet(&ready.name)
                .map(|r| r.monitors)
                .unwrap_or_default();
            s.add_droplet(
                &ready.name,
                Some(&ready.ip),
                &d.size,
                &d.region,
                &d.role,
                &monitors,
                d.project.as_deref(),
            );
            s.set_droplet_id(&ready.name, ready.id)
        })
        .map_err(store_error)
}

fn destroy(ctx: &Context, names: Vec<String>) -> Result<(), Box<EvalAltResult>> {
    if names.is_empty() {
        return Ok(());
    }
    if ctx.dry_run() {
        for name in &names {
            report_dry_run(&format!("destroy droplet `{name}`"));
        }
        return Ok(());
    }
    hold_lock(ctx)?;
    let p = ctx.provisioner()?;
    for name in names {
        let existed = ctx.block_on(p.destroy(&name))?.map_err(cloud_error)?;
        ctx.store()?
            .update(|s| {
                s.remove_droplet(&name);
                Ok(())
            })
            .map_err(store_error)?;
        let what = if existed { "destroyed" } else { "already gone" };
        progress(
            ctx,
            "droplet_destroyed",
            &name,
            what,
            serde_json::json!({"existed": existed}),
        );
        ctx.audit("destroy_droplet", &name, what);
    }
    Ok(())
}

/// Records every service where the spec places it, drops those it no longer has, and sets
/// who monitors whom among the droplets that exist.
fn assign_services(ctx: &Context) -> Result<(), Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    let dry_run = ctx.dry_run();
    let mut store = ctx.store()?;
    let result = store.update(|s| {
        let runtime = s.runtime();
        for (key, services) in &runtime.projects {
            for service in services.keys() {
                if loaded
                    .services
                    .get(key)
                    .and_then(|m| m.get(service))
                    .is_none()
                {
                    s.remove_project_service(key, service);
                }
            }
        }
        for (key, services) in &loaded.services {
            for (service, record) in services {
                s.add_project_service(key, service, record);
            }
        }
        let wanted = required_droplets(&loaded.spec);
        s.order_droplets(&wanted.keys().map(String::as_str).collect::<Vec<_>>());
        let droplets = s.droplets();
        let ring = monitoring_ring(droplets.keys());
        for (name, d) in droplets {
            let monitors = ring.get(&name).cloned().unwrap_or_default();
            if monitors != d.monitors {
                s.add_droplet(
                    &name,
                    d.ip.as_deref(),
                    d.size.as_deref().unwrap_or_default(),
                    d.region.as_deref().unwrap_or_default(),
                    &d.role,
                    &monitors,
                    d.project.as_deref(),
                );
            }
        }
        Ok(())
    });
    drop(store);
    result.map_err(store_error)?;
    if dry_run {
        report_dry_run("record every service's droplets and ports in the state");
    } else {
        ctx.audit("assign_services", "projects", "recorded");
    }
    Ok(())
}

fn ensure_firewall(ctx: &Context, admin: &str) -> Result<(), Box<EvalAltResult>> {
    let master = {
        let store = ctx.store()?;
        let state = store.state();
        state
            .master_droplet()
            .and_then(|(name, _)| state.droplet_id(&name))
    };
    if ctx.dry_run() {
        report_dry_run(&format!("make the firewalls allow SSH only from {admin}"));
        return Ok(());
    }
    hold_lock(ctx)?;
    let p = ctx.provisioner()?;
    let changed = ctx
        .block_on(p.ensure_firewalls(admin, master))?
        .map_err(cloud_error)?;
    for change in &changed {
        println!("{change}");
        ctx.audit("ensure_firewall", change, "done");
    }
    Ok(())
}

pub fn register_maintenance(engine: &mut Engine, ctx: &Arc<Context>) {
    // Where this run's time went: the API, waiting for droplets, and infra's own work.
    let c = ctx.clone();
    engine.register_fn("cloud_timings", move || -> Map {
        let total = c.started.elapsed();
        let t = c
            .provisioner_if_used()
            .map(|p| p.timings())
            .unwrap_or_default();
        let own = total.saturating_sub(t.api + t.boot_wait);
        let ms = |d: std::time::Duration| Dynamic::from((d.as_secs_f64() * 1000.0).round() as i64);
        let mut m = Map::new();
        m.insert("total_ms".into(), ms(total));
        m.insert("api_ms".into(), ms(t.api));
        m.insert("boot_wait_ms".into(), ms(t.boot_wait));
        m.insert("own_ms".into(), ms(own));
        m
    });
    let c = ctx.clone();
    engine.register_fn(
        "update_admin_ip",
        move |cidr: &str| -> Result<(), Box<EvalAltResult>> {
            crate::provision::check_cidr(cidr).map_err(bad_input)?;
            let old = c.store()?.state().admin_ip();
            c.store()?
                .update(|s| {
                    s.set_admin_ip(cidr);
                    Ok(())
                })
                .map_err(store_error)?;
            if c.dry_run() {
                report_dry_run(&format!("store {cidr} as the administrator's address"));
            } else {
                c.audit(
                    "update_admin_ip",
                    cidr,
                    &format!("was {}", old.as_deref().unwrap_or("unset")),
                );
            }
            Ok(())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "old_snapshots",
        move || -> Result<Array, Box<EvalAltResult>> {
            let retention = c
                .loaded()?
                .spec
                .snapshot_retention
                .map(|n| n as usize)
                .unwrap_or(crate::provision::DEFAULT_SNAPSHOT_RETENTION);
            let p = c.provisioner()?;
            let old = c
                .block_on(p.old_snapshots(retention))?
                .map_err(cloud_error)?;
            Ok(old
                .into_iter()
                .map(|s| {
                    let mut m = Map::new();
                    m.insert("id".into(), s.id.to_string().into());
                    m.insert("name".into(), s.name.into());
                    m.insert("droplet".into(), s.resource_id.into());
                    m.insert("created_at".into(), s.created_at.into());
                    m.into()
                })
                .collect())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "delete_snapshots",
        move |list: Array| -> Result<(), Box<EvalAltResult>> {
            let p = c.provisioner()?;
            for item in list {
                let map = item.try_cast::<Map>().ok_or_else(|| {
                    bad_input("delete_snapshots takes the maps old_snapshots() returns")
                })?;
                let id = map
                    .get("id")
                    .and_then(|v| v.clone().into_string().ok())
                    .ok_or_else(|| bad_input("a snapshot without an `id`"))?;
                if c.dry_run() {
                    report_dry_run(&format!("delete snapshot {id}"));
                    continue;
                }
                let snapshot_id = crate::cloud::SnapshotId::from(id.as_str());
                c.block_on(p.client.delete_snapshot(&snapshot_id))?
                    .map_err(|e| cloud_error(e.into()))?;
                println!("deleted snapshot {id}");
                c.audit("delete_snapshot", &id, "deleted");
            }
            Ok(())
        },
    );
}
