//! The config files beside the state: deployment, email and SMS, and the checks that span
//! files (`validate_all_configs`).

pub mod deployment;
pub mod email;
pub mod placement;
pub mod sms;

use crate::name_map::NameMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::diagnostic::{InvalidInput, Problem, Problems};
use crate::document::Document;
use crate::project::Project;
use crate::schema::{join, Checker};
use crate::state::{Runtime, ServiceMap, Spec, State};
use deployment::DeploymentConfig;
use email::EmailConfig;
use placement::required_services;
use sms::SmsConfig;

/// Everything read from `config/`, valid.
pub struct Loaded {
    /// Shared, not copied: a large state is read once per run.
    pub state: Arc<State>,
    pub spec: Spec,
    pub runtime: Runtime,
    pub deployment: DeploymentConfig,
    pub email: EmailConfig,
    pub sms: SmsConfig,
    /// Services as the spec and deployment config place them.
    pub services: NameMap<ServiceMap>,
}

/// What `infra validate` reports about each file.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub present: bool,
}

/// Reads one optional config file: `None` when it does not exist.
fn read_optional(
    project: &Project,
    path: &std::path::Path,
    problems: &mut Problems,
) -> Option<Value> {
    match Document::read_optional(path, &project.display(path)) {
        Ok(doc) => doc.map(|doc| doc.value),
        Err(p) => {
            problems.push(p);
            None
        }
    }
}

/// Reads and checks every config file; all problems are collected.
///
/// Services for a project the spec does not list are a problem for `infra validate`
/// (`strict`), but only a warning when planning: they change nothing that is placed, and a
/// dry-run `remove-project` leaves them in the file while the spec no longer has the project.
pub fn load_with_problems(
    project: &Project,
    state: impl Into<Arc<State>>,
    strict: bool,
) -> (Loaded, Problems, Vec<FileReport>) {
    let state: Arc<State> = state.into();
    let mut problems = Problems::new();
    let dpath = project.deployment_path();
    let ddisplay = project.display(&dpath);
    // The deployment config is read and checked on another core while the state is checked:
    // neither needs the other until placement.
    let (checked, (read_problems, mut c, deployment)) = std::thread::scope(|scope| {
        let deployment = scope.spawn(|| {
            let mut read_problems = Problems::new();
            let mut c = Checker::new(&ddisplay);
            let deployment = match read_optional(project, &dpath, &mut read_problems) {
                Some(v) => {
                    let deployment = DeploymentConfig::check(&mut c, &v);
                    crate::deferred_drop::drop_in_background(v);
                    deployment
                }
                None => DeploymentConfig::default(),
            };
            (read_problems, c, deployment)
        });
        let checked = state.check();
        (
            checked,
            deployment.join().expect("deployment config thread"),
        )
    });
    problems.extend(checked.problems);
    problems.extend(read_problems);
    let mut reports = vec![FileReport {
        file: state.display().to_string(),
        present: true,
    }];
    reports.push(FileReport {
        file: ddisplay.clone(),
        present: dpath.exists(),
    });
    // Against the project names as written, so a project whose entry has a problem of its own
    // is not also reported as unknown; and only when the state file was read and its shape up
    // to `infrastructure_spec.projects` is right (else that is the one problem to report).
    let spec = state.value().get("infrastructure_spec");
    let spec_projects = spec.and_then(|s| s.get("projects"));
    let comparable = state.document().original().is_some()
        && state.value().is_object()
        && spec.is_none_or(Value::is_object)
        && spec_projects.is_none_or(Value::is_object);
    for name in deployment.projects.keys() {
        let known = spec_projects.is_some_and(|p| p.get(name).is_some());
        if !known && comparable {
            let message = format!(
                "services for unknown project `{name}`; add it to infrastructure_spec.projects in {} or remove this entry",
                state.display()
            );
            if strict {
                c.error(&join("projects", name), message);
            } else {
                tracing::warn!("{ddisplay}: {}: {message}", join("projects", name));
            }
        }
    }
    let services = required_services(&checked.spec, &deployment, &checked.runtime, &mut c);
    problems.extend(c.problems);

    let epath = project.email_path();
    let edisplay = project.display(&epath);
    let mut c = Checker::new(&edisplay);
    let email = match read_optional(project, &epath, &mut problems) {
        Some(v) => EmailConfig::check(&mut c, &v),
        None => EmailConfig::default(),
    };
    problems.extend(c.problems);
    reports.push(FileReport {
        file: edisplay,
        present: epath.exists(),
    });

    let spath = project.sms_path();
    let sdisplay = project.display(&spath);
    let mut c = Checker::new(&sdisplay);
    let sms = match read_optional(project, &spath, &mut problems) {
        Some(v) => SmsConfig::check(&mut c, &v),
        None => SmsConfig::default(),
    };
    problems.extend(c.problems);
    reports.push(FileReport {
        file: sdisplay,
        present: spath.exists(),
    });

    let loaded = Loaded {
        state,
        spec: checked.spec,
        runtime: checked.runtime,
        deployment,
        email,
        sms,
        services,
    };
    (loaded, problems, reports)
}

/// Checks the sizes and regions the spec asks for against those the cloud offers (`infra
/// validate`). Only values that are well-formed slugs get here; an implied master is not
/// written by the user, so its default size is not theirs to fix.
pub fn check_catalog(loaded: &Loaded, catalog: &crate::cloud::catalog::Catalog) -> Problems {
    let mut c = Checker::new(loaded.state.display());
    let written = loaded
        .state
        .value()
        .get("infrastructure_spec")
        .and_then(|s| s.get("droplets"));
    let dpath = "infrastructure_spec.droplets";
    for (name, droplet) in &loaded.spec.droplets {
        if written.and_then(|d| d.get(name)).is_none() {
            continue;
        }
        let path = join(dpath, name);
        if let Some(message) = catalog.size_problem(&droplet.size) {
            c.error(&join(&path, "size"), message);
        }
        if let Some(message) = catalog.region_problem(&droplet.region) {
            c.error(&join(&path, "region"), message);
        }
    }
    for (name, project) in &loaded.spec.projects {
        let path = join("infrastructure_spec.projects", name);
        if let Some(message) = catalog.size_problem(&project.web_droplet_spec) {
            c.error(&join(&path, "web_droplet_spec"), message);
        }
        if let Some(message) = project
            .region
            .as_deref()
            .and_then(|r| catalog.region_problem(r))
        {
            c.error(&join(&path, "region"), message);
        }
    }
    c.problems
}

/// Reads every config file, failing with all problems if any.
pub fn load(project: &Project, state: impl Into<Arc<State>>) -> Result<Loaded, InvalidInput> {
    let (loaded, problems, _) = load_with_problems(project, state, false);
    problems.into_result().map(|()| loaded)
}

/// Removes a project's entry from deployment_config.json, keeping the rest of the file as it
/// was written. Returns whether there was one. Callers hold the state lock.
pub fn remove_project_deployment(
    project: &Project,
    name: &str,
    dry_run: bool,
) -> Result<bool, Problem> {
    let path = project.deployment_path();
    let display = project.display(&path);
    let Some(mut doc) = Document::read_optional(&path, &display)? else {
        return Ok(false);
    };
    let removed = doc
        .value
        .get_mut("projects")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.shift_remove(name))
        .is_some();
    if removed && !dry_run {
        crate::atomic_file::write(&path, doc.render().as_bytes())
            .map_err(|e| Problem::at_path(&display, "", format!("cannot write: {e}")))?;
    }
    Ok(removed)
}
