//! Natives that look at or change the cloud: `refresh`, `admin_ip`, `ensure_ssh_key`,
//! `create_droplet`, `destroy_droplet`, `destroy_orphans`, `resize_droplet`,
//! `assign_services`, `ensure_firewall`, `update_admin_ip`, `old_snapshots`,
//! `delete_snapshots`, `cloud_timings`. Thin: the work, its dry run and its reporting are in
//! `crate::fleet` and `crate::report`; a native turns script values into core calls and
//! records in the state what core did, as soon as it is done (a crash leaves true partial
//! state).

use std::collections::HashSet;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::{json, Value};

use super::droplet_names;
use crate::fleet::{Finding, Fleet, FleetError};
use crate::host::error::{bad_input, failure, located};
use crate::host::{store_error, Context};
use crate::plan::{Action, Kind, Plan};
use crate::report::Change;
use crate::state::placement::required_droplets;

/// Takes the state lock before the first change to the cloud, so a second run started at the
/// same time stops (or waits, with `--lock-timeout`) before it registers a key or creates a
/// droplet the first one is creating. A dry run changes nothing and takes no lock.
fn hold_lock(ctx: &Context) -> Result<(), Box<EvalAltResult>> {
    if ctx.dry_run() {
        return Ok(());
    }
    ctx.store()?.lock().map_err(store_error)
}

fn cloud_error(e: FleetError) -> Box<EvalAltResult> {
    match e {
        FleetError::Cancelled => Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from("cancelled"),
            rhai::Position::NONE,
        )),
        other => located(other.to_string(), false),
    }
}

/// Runs a fleet operation to its end and maps its error.
fn run<T>(
    ctx: &Context,
    future: impl std::future::Future<Output = Result<T, FleetError>>,
) -> Result<T, Box<EvalAltResult>> {
    ctx.block_on(future)?.map_err(cloud_error)
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    engine.register_fn("refresh", move || -> Result<Map, Box<EvalAltResult>> {
        refresh(&c)
    });
    let c = ctx.clone();
    engine.register_fn("admin_ip", move || -> Result<String, Box<EvalAltResult>> {
        admin_ip(&c)
    });
    let c = ctx.clone();
    engine.register_fn(
        "ensure_ssh_key",
        move || -> Result<i64, Box<EvalAltResult>> {
            hold_lock(&c)?;
            let fleet = c.fleet()?;
            let key = run(&c, fleet.ensure_key(c.reporter()))?;
            Ok(key.map(|k| k.id as i64).unwrap_or_default())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "create_droplet",
        move |which: Dynamic| -> Result<Map, Box<EvalAltResult>> {
            create(&c, droplet_names(which)?)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "destroy_droplet",
        move |which: Dynamic| -> Result<(), Box<EvalAltResult>> {
            destroy(&c, droplet_names(which)?)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "destroy_orphans",
        move |plan: &mut Plan| -> Result<(), Box<EvalAltResult>> { destroy_orphans(&c, plan) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "resize_droplet",
        move |which: Dynamic| -> Result<(), Box<EvalAltResult>> {
            resize(&c, droplet_names(which)?)
        },
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
            crate::fleet::check_cidr(admin).map_err(bad_input)?;
            ensure_firewall(&c, admin)
        },
    );
}

/// Lists the droplets tagged `infra` and compares them with the state. Outside a dry run,
/// what changed outside infra (address, status, id) is recorded at once. What it found is
/// kept for the next `plan()` of this run. `plan --offline` skips it.
fn refresh(ctx: &Context) -> Result<Map, Box<EvalAltResult>> {
    let mut out = Map::new();
    if ctx.options.offline {
        out.insert("offline".into(), true.into());
        return Ok(out);
    }
    let loaded = ctx.loaded()?;
    let wanted = required_droplets(&loaded.spec);
    let wanted: HashSet<&str> = wanted.keys().map(String::as_str).collect();
    let fleet = ctx.services.fleet.get_or_try_init(|| {
        Fleet::for_project(&ctx.project, ctx.cancel.clone()).map_err(|e| {
            located(
                format!("{e}; with `--offline` infra plans against the recorded state only, without the cloud"),
                true,
            )
        })
    })?;
    let refresh = run(ctx, fleet.refresh(&loaded.runtime.droplets, &wanted))?;
    if !ctx.dry_run() {
        let drift: Vec<&Finding> = refresh
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::Drift { .. }))
            .collect();
        if !drift.is_empty() {
            hold_lock(ctx)?;
            ctx.store()?
                .update(|s| {
                    for f in &drift {
                        if let Finding::Drift { name, after, .. } = f {
                            s.record_seen(name, after.id, after.ip.as_deref(), &after.status)?;
                        }
                    }
                    Ok(())
                })
                .map_err(store_error)?;
            for f in drift {
                if let Finding::Drift {
                    name,
                    before,
                    after,
                } = f
                {
                    let change = Change::new(
                        "refresh_droplet",
                        name,
                        serde_json::to_value(before).expect("serializes"),
                        serde_json::to_value(after).expect("serializes"),
                    );
                    ctx.reporter().done(
                        &change,
                        &format!("droplet {name}: recorded what changed outside infra"),
                    );
                }
            }
        }
    }
    let mut counts = [0i64; 4];
    for f in &refresh.findings {
        counts[match f {
            Finding::Gone { .. } => 0,
            Finding::Drift { .. } => 1,
            Finding::Orphan { .. } => 2,
            Finding::Duplicate { .. } => 3,
        }] += 1;
    }
    for (key, n) in ["gone", "drift", "orphan", "duplicate"]
        .into_iter()
        .zip(counts)
    {
        out.insert(key.into(), n.into());
    }
    crate::deferred_drop::drop_in_background(loaded);
    ctx.services.set_refresh(refresh);
    Ok(out)
}

/// `ADMIN_IP` from the environment, else the address stored by `update-admin-ip`.
fn admin_ip(ctx: &Context) -> Result<String, Box<EvalAltResult>> {
    let cidr = match std::env::var("ADMIN_IP") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => match ctx.store()?.state().admin_ip() {
            Some(stored) => stored,
            None => crate::fleet::sandbox_admin_address(&ctx.project).ok_or_else(|| {
            located("ADMIN_IP is not set: SSH to the droplets is allowed only from the administrator's address; `export ADMIN_IP=203.0.113.100/32` (the address infra runs from, as the droplets see it) or run `infra update-admin-ip CIDR`", true)
            })?,
        },
    };
    crate::fleet::check_cidr(&cidr).map_err(|m| located(format!("ADMIN_IP: {m}"), true))?;
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
    hold_lock(ctx)?;
    let fleet = ctx.fleet()?;
    // Each droplet is recorded as it comes up, so a crash keeps what exists.
    let ready = run(
        ctx,
        fleet.create(&jobs, ctx.reporter(), |ready| {
            let (_, d) = jobs
                .iter()
                .find(|(n, _)| n == &ready.name)
                .expect("a droplet asked for");
            let mut store = ctx.store().map_err(|e| e.to_string())?;
            store
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
                    s.record_seen(&ready.name, ready.id, Some(&ready.ip), "active")
                })
                .map_err(|e| e.to_string())
        }),
    )?;
    for r in ready {
        let mut m = Map::new();
        m.insert("ip".into(), r.ip.clone().into());
        m.insert("id".into(), (r.id as i64).into());
        m.insert("outcome".into(), r.how().into());
        out.insert(r.name.as_str().into(), m.into());
    }
    Ok(out)
}

fn destroy(ctx: &Context, names: Vec<String>) -> Result<(), Box<EvalAltResult>> {
    if names.is_empty() {
        return Ok(());
    }
    hold_lock(ctx)?;
    let fleet = ctx.fleet()?;
    for name in names {
        let before = ctx
            .store()?
            .state()
            .droplet(&name)
            .map(|d| serde_json::to_value(d).expect("serializes"))
            .unwrap_or(Value::Null);
        run(
            ctx,
            fleet.destroy_reported(&name, before, ctx.reporter(), || {
                let mut store = ctx.store().map_err(|e| e.to_string())?;
                store
                    .update(|s| {
                        s.remove_droplet(&name);
                        Ok(())
                    })
                    .map_err(|e| e.to_string())
            }),
        )?;
    }
    Ok(())
}

/// Destroys the orphans and duplicates `plan` found.
fn destroy_orphans(ctx: &Context, plan: &Plan) -> Result<(), Box<EvalAltResult>> {
    let extras: Vec<(String, u64, Value)> = plan
        .changes
        .iter()
        .filter(|c| c.kind == Kind::Droplet && c.action == Action::Orphan)
        .filter_map(|c| {
            let before = c.before.clone()?;
            Some((c.target.clone(), before.get("id")?.as_u64()?, before))
        })
        .collect();
    if extras.is_empty() {
        return Ok(());
    }
    hold_lock(ctx)?;
    let fleet = ctx.fleet()?;
    run(ctx, fleet.destroy_extras(&extras, ctx.reporter()))
}

/// Resizes each named droplet to the size the spec asks for, one at a time.
fn resize(ctx: &Context, names: Vec<String>) -> Result<(), Box<EvalAltResult>> {
    if names.is_empty() {
        return Ok(());
    }
    let loaded = ctx.loaded()?;
    let wanted = required_droplets(&loaded.spec);
    hold_lock(ctx)?;
    let fleet = ctx.fleet()?;
    for name in names {
        let to = &wanted
            .get(&name)
            .ok_or_else(|| {
                bad_input(format!(
                    "`{name}` is not a droplet the spec asks for; `infra plan` lists them"
                ))
            })?
            .size;
        let record = loaded.runtime.droplets.get(&name).ok_or_else(|| {
            bad_input(format!(
                "droplet `{name}` is not in the state yet: create it first"
            ))
        })?;
        let from = record.size.clone().unwrap_or_default();
        if &from == to {
            continue;
        }
        let id = match (record.id, ctx.dry_run()) {
            (Some(id), _) => id,
            (None, true) => 0,
            (None, false) => {
                return Err(failure(format!(
                    "droplet `{name}` has no recorded id; run `infra orchestrate` so a refresh records it"
                )))
            }
        };
        run(
            ctx,
            fleet.resize_reported(&name, id, &from, to, ctx.reporter(), || {
                let mut store = ctx.store().map_err(|e| e.to_string())?;
                store
                    .update(|s| s.set_droplet_size(&name, to))
                    .map_err(|e| e.to_string())
            }),
        )?;
    }
    Ok(())
}

/// Records every service where the spec places it, drops those it no longer has, and sets
/// who monitors whom among the droplets that exist.
fn assign_services(ctx: &Context) -> Result<(), Box<EvalAltResult>> {
    let loaded = ctx.loaded()?;
    let mut store = ctx.store()?;
    let before = to_services_value(&store.state().all_projects());
    let after = if ctx.dry_run() {
        // Not even in memory: the droplets a dry run would create are not in the state, and
        // assignments to them would make it invalid for the steps after.
        let mut next = store.state().clone();
        next.assign_services(&loaded.spec, &loaded.services);
        to_services_value(&next.all_projects())
    } else {
        store
            .update(|s| {
                s.assign_services(&loaded.spec, &loaded.services);
                Ok(())
            })
            .map_err(store_error)?;
        to_services_value(&store.state().all_projects())
    };
    drop(store);
    if before != after {
        let change = Change::new("assign_services", "projects", before, after);
        ctx.reporter().change(
            &change,
            "record every service's droplets and ports in the state",
            "recorded every service's droplets and ports in the state",
        );
    }
    Ok(())
}

fn to_services_value(projects: &crate::name_map::NameMap<crate::state::ServiceMap>) -> Value {
    serde_json::to_value(projects).expect("serializes")
}

fn ensure_firewall(ctx: &Context, admin: &str) -> Result<(), Box<EvalAltResult>> {
    let (master, probe) = {
        let store = ctx.store()?;
        let state = store.state();
        let master = state.master_droplet();
        let master_id = master.as_ref().and_then(|(name, _)| state.droplet_id(name));
        // SSH is tried on the master after a change, else on any droplet with an address.
        let probe = master
            .into_iter()
            .chain(state.droplets())
            .find_map(|(name, d)| Some((name, d.ip?.parse::<std::net::Ipv4Addr>().ok()?)));
        (master_id, probe)
    };
    hold_lock(ctx)?;
    let fleet = ctx.fleet()?;
    let probe = probe.as_ref().map(|(name, ip)| (name.as_str(), *ip));
    run(
        ctx,
        fleet.ensure_firewalls(admin, master, probe, ctx.reporter()),
    )
}

pub fn register_maintenance(engine: &mut Engine, ctx: &Arc<Context>) {
    // Where this run's time went: the API, waiting for droplets, and infra's own work.
    let c = ctx.clone();
    engine.register_fn("cloud_timings", move || -> Map {
        let total = c.started.elapsed();
        let t = c.fleet_if_used().map(|p| p.timings()).unwrap_or_default();
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
            crate::fleet::check_cidr(cidr).map_err(bad_input)?;
            let old = c.store()?.state().admin_ip();
            c.store()?
                .update(|s| {
                    s.set_admin_ip(cidr);
                    Ok(())
                })
                .map_err(store_error)?;
            let change = Change::new(
                "update_admin_ip",
                "admin_ip",
                old.map(Value::from).unwrap_or(Value::Null),
                json!(cidr),
            );
            c.reporter().change(
                &change,
                &format!("store {cidr} as the administrator's address"),
                &format!("stored {cidr} as the administrator's address"),
            );
            Ok(())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "old_snapshots",
        move || -> Result<Array, Box<EvalAltResult>> {
            let loaded = c.loaded()?;
            let retention = loaded
                .spec
                .snapshot_retention
                .map(|n| n as usize)
                .unwrap_or(crate::fleet::DEFAULT_SNAPSHOT_RETENTION);
            let recorded: Vec<u64> = loaded
                .runtime
                .droplets
                .values()
                .filter_map(|d| d.id)
                .collect();
            let fleet = c.fleet()?;
            let old = run(&c, fleet.old_snapshots(retention, &recorded))?;
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
            // Under the state lock: two cleanups at once would race on the same snapshots.
            hold_lock(&c)?;
            let fleet = c.fleet()?;
            for item in list {
                let value: Value = super::from_dynamic(&item, "the maps old_snapshots() returns")?;
                let id = value
                    .get("id")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| bad_input("a snapshot without an `id`"))?;
                run(&c, fleet.delete_snapshot(&id, value, c.reporter()))?;
            }
            Ok(())
        },
    );
}
