//! One line of documentation for every native a playbook can call: what `infra init` writes
//! into the Rhai definitions (definitions/infra.d.rhai) above each signature, so an editor shows
//! it, and what a test holds every registered native to.

/// `(name, documentation)`; overloads share one entry.
pub const NATIVES: &[(&str, &str)] = &[
    // core
    ("log", "log(message): an informational line on standard error."),
    ("warn", "warn(message): a warning on standard error."),
    ("fail", "fail(message): stops the run with exit code 1 and this message."),
    ("bad_input", "bad_input(message): stops the run with exit code 2 (the input was wrong)."),
    ("env", "env(name) / env(name, default): an environment variable; infra's secrets (DO_TOKEN, every configured secret variable) are refused."),
    ("dry_run", "dry_run(): whether this run only tells what it would do (--dry-run)."),
    ("offline", "offline(): whether this run may not call the cloud (`plan --offline`)."),
    ("json_output", "json_output(): whether output is JSON events (--json)."),
    ("confirm", "confirm(question, flag): asks at a terminal; elsewhere false unless the flag (e.g. --yes) was given."),
    ("emit", "emit(event_map, text): one JSON event with --json, else the text line."),
    ("to_json", "to_json(value): the value as JSON text."),
    ("parse_json", "parse_json(text): JSON text as a script value."),
    ("sleep", "sleep(seconds): waits, stopping early on Ctrl-C."),
    // state
    ("spec", "spec(): infrastructure_spec as a map."),
    ("state", "state(): the whole state file as a map."),
    ("droplets", "droplets(): the recorded droplets by name; plan.droplets(action): the names a plan creates/updates/replaces/deletes."),
    ("droplet", "droplet(name): one recorded droplet (ip, role, project, size, ...), or ()."),
    ("droplets_by_role", "droplets_by_role(role): recorded droplets with that role."),
    ("droplets_by_project", "droplets_by_project(project): recorded droplets of a project."),
    ("master_droplet", "master_droplet(): the master's name, or ()."),
    ("web_droplets", "web_droplets(): recorded web droplets."),
    ("projects", "projects(): every project-environment with its services."),
    ("project_services", "project_services(project_env): the services of `hostomatic-uat`."),
    ("services_on_droplet", "services_on_droplet(droplet): full names of the services placed on it."),
    ("load_balancer_targets", "load_balancer_targets(project_env, service): `ip:port` of each droplet the service is placed on."),
    ("monitored_by", "monitored_by(droplet): the droplets that watch it."),
    ("required_droplets", "required_droplets(): the droplets the spec asks for."),
    ("summary", "summary(): counts of droplets, services and project-environments; plan.summary: the plan's counts."),
    ("validate_state", "validate_state(): problems the state file has, as lines."),
    ("lock_state", "lock_state(): holds the state lock for the rest of the run."),
    ("required_services", "required_services(): services as the spec and deployment config place them."),
    ("heartbeat_config", "heartbeat_config(): the monitor's heartbeat settings."),
    ("update_heartbeat_config", "update_heartbeat_config(map): changes the heartbeat settings in the state."),
    ("service_name", "service_name(project_env, service): `hostomatic-uat-backend`."),
    ("project_env", "project_env(project, environment): `hostomatic-uat`."),
    ("resource_hash", "resource_hash(project, environment): the stable hash ports are made from."),
    ("hash_port", "hash_port(project, environment, base [, range]): the service port a project-environment gets."),
    ("add_project_spec", "add_project_spec(name, environments, web_droplets, size): adds a project to the spec."),
    ("remove_project_spec", "remove_project_spec(name): removes a project from the spec."),
    ("scale_project_spec", "scale_project_spec(name, web_droplets): sets a project's number of web droplets in the spec."),
    // plan
    ("plan", "plan() / plan(force): the changes that make the cloud match the spec."),
    ("show_plan", "show_plan(plan): prints the plan (a JSON object with --json)."),
    ("is_empty", "plan.is_empty(): whether the plan changes nothing."),
    ("to_string", "plan.to_string(): the plan as text."),
    // cloud
    ("refresh", "refresh(): compares the state with the cloud (gone, drifted, orphaned, duplicate droplets) for the next plan()."),
    ("admin_ip", "admin_ip(): the address SSH is allowed from (ADMIN_IP, or this machine's)."),
    ("ensure_ssh_key", "ensure_ssh_key(): registers the project's SSH key with the cloud; its id."),
    ("create_droplet", "create_droplet(names): creates the droplets (or adopts tagged ones) and records them as each comes up."),
    ("destroy_droplet", "destroy_droplet(names): destroys the droplets and forgets them."),
    ("destroy_orphans", "destroy_orphans(plan): destroys tagged droplets nobody records or wants, and duplicates."),
    ("resize_droplet", "resize_droplet(names): resizes to the spec's size (power off, resize, power on)."),
    ("assign_services", "assign_services(): records service placement on the droplets that exist."),
    ("ensure_firewall", "ensure_firewall(): the fleet's firewalls (SSH from the admin only; HTTP on the master)."),
    ("update_admin_ip", "update_admin_ip(cidr): lets SSH in from this address instead."),
    ("old_snapshots", "old_snapshots(retention): infra's snapshots beyond the newest `retention` per droplet."),
    ("delete_snapshots", "delete_snapshots(list): deletes those snapshots."),
    ("cloud_timings", "cloud_timings(): time spent waiting on the API and on droplets this run."),
    ("snapshot", "snapshot(droplet or [droplets]): takes a snapshot `infra-<droplet>-<yyyymmdd-hhmmss>` of each, all at once, and waits for them; the names by droplet."),
    // remote
    ("ssh", "ssh(droplet, command): runs a shell command on one droplet; #{status, stdout, stderr, ok}."),
    ("ssh_all", "ssh_all(droplets_or_target, command): the command on many droplets at once (a list, `all`, a role or a project); fails naming each droplet that failed."),
    // templates
    ("render_template", "render_template(name, context): renders templates/<name> with a map."),
    ("template_context", "template_context(name, request): the context infra would render a template with."),
    // notify
    ("send_alert", "send_alert(#{kind: \"failure\"|\"recovery\", droplet, incident, error, ...}): emails and texts the alert once per event; per channel: sent, suppressed, skipped or failed."),
    // deploy
    ("check_secrets", "check_secrets(project, env): stops (exit 2) naming every unset secret variable (HOSTOMATIC_UAT_DB_PASSWORD) before anything changes; takes the deploy lock."),
    ("checkout", "checkout(project, env, #{branch, local, project_path}): the code to build (repo at branch, or the working tree with local); #{dir, commit, dirty, branch, release}."),
    ("current_release", "current_release(project, env): the release the last finished deploy made current, or ()."),
    ("build_image", "build_image(project, env, source): builds every service's image here; a list of #{service, local_tag, image_id}."),
    ("bootstrap", "bootstrap(project, env): makes the droplets ready for deploys (engine; nginx and registry on the master), installing only what is missing."),
    ("push_image", "push_image(project, env, source, images): pushes through an SSH tunnel to the master's registry (only missing layers); the release, recorded."),
    ("promote_release", "promote_release(project, from_env, to_env): to_env's release of from_env's current images, same digests, retagged; nothing built."),
    ("find_release", "find_release(project, env, name): a release by name, or the one before the current (name \"\")."),
    ("services_of", "services_of(project, env): the services in rollout order (web first); #{name, type, singleton}."),
    ("pull_images", "pull_images(project, env, release): every droplet pulls the release's images it will run, all at once, before anything is replaced."),
    ("deploy_service", "deploy_service(project, env, service, release, batch): rolls one service out: web beside the old, health gate, nginx moved, drain, old stopped; workers replaced (singletons stopped first)."),
    ("deploy_kubernetes", "deploy_kubernetes(project, env, release): applies the manifests and Secrets with kubectl to `kubernetes_context` and waits for the rollouts."),
    ("render_nginx", "render_nginx(): renders nginx.conf from the live targets, checks it with `nginx -t` on the master and reloads; the previous config stays if the check fails. \"unchanged\", \"reloaded\" or \"started\"."),
    ("check_health", "check_health(project, env): every live web container answers its health_path with 2xx; #{\"service@droplet\": status}."),
    ("finish_release", "finish_release(project, env, release): makes the release current, removes images beyond release_retention from the droplets, copies the history to the master."),
    ("snapshot_after_deploy", "snapshot_after_deploy(project, env): whether deploys end with snapshots (default: prod only)."),
    ("project_droplets", "project_droplets(project, env): the droplets the project-environment's services run on."),
    ("platform_of", "platform_of(project): docker, podman or kubernetes."),
    ("share_state", "share_state(): copies the state file to every droplet's monitor (where one runs), which restarts with it: after a recovery, all monitors probe the new address. The droplets that took it."),
    ("install_monitors", "install_monitors() or install_monitors(droplet or [droplets]): puts the self-healing monitor on droplets (binary, configs, playbooks, keys, secrets 0600, a supervisor) and starts it; droplets already up to date are left alone. [{droplet, outcome, binary_uploaded}]."),
    // recovery
    ("inspect_droplet", "inspect_droplet(droplet): looks without changing anything: the cloud's status, SSH, each service; #{cloud, locked, answers, services, healthy, drained, incident, fenced, power_cycled}."),
    ("check_droplet", "check_droplet(droplet): inspect_droplet, and a droplet that is off or does not answer is power-cycled, once per incident."),
    ("drain_droplet", "drain_droplet(droplet): nginx stops routing to it (kept out of every render until restored); #{drained, newly, sole}: upstreams it was the only target of answer 502."),
    ("restore_droplet", "restore_droplet(droplet): nginx routes to it again, at the address the state has, and the incident is closed; whether it was drained."),
    ("fence_droplet", "fence_droplet(droplet): powers it off and waits until the cloud confirms it is off, before anything replaces it."),
    ("recreate_droplet", "recreate_droplet(droplet): a fenced droplet's replacement from its newest snapshot (or the base image), adopted by the incident's tag if a run made it already; the state gets its id and address, the original is destroyed; #{id, ip, outcome, image}."),
    ("start_services", "start_services(droplet): its containers running and healthy: started, or deployed again from the master's registry when missing; one #{service, how, release} each."),
    ("recovery_incident", "recovery_incident(droplet): the open recovery incident from the checkpoint (#{id, done, ...}), or ()."),
    ("auto_recover_master", "auto_recover_master(): whether the monitors may rebuild the master by themselves (infrastructure_spec.auto_recover_master)."),
];

/// The documentation of `name`, if it has one.
pub fn doc(name: &str) -> Option<&'static str> {
    NATIVES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// The engine's definitions with each native's documentation above its signatures.
pub fn annotate(definitions: &str) -> String {
    let mut out = String::with_capacity(definitions.len() * 2);
    let mut documented = std::collections::HashSet::new();
    for line in definitions.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("fn ") {
            let name = rest.split('(').next().unwrap_or("");
            if let Some(text) = doc(name) {
                if documented.insert(name.to_string()) {
                    out.push_str(&format!("/// {text}\n"));
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Context, Host, RunOptions};
    use std::sync::Arc;

    #[test]
    fn every_native_is_documented_and_every_documented_native_exists() {
        let dir = std::env::temp_dir().join(format!("infra-docs-test-{}", std::process::id()));
        let project = crate::project::Project::new(&dir, std::path::Path::new("config"));
        let options = RunOptions {
            dry_run: true,
            json: false,
            offline: false,
            command: "test".into(),
            lock_timeout: std::time::Duration::ZERO,
        };
        let host = Host::new(Arc::new(Context::new(project, options, Arc::default())));
        let names = host.native_names();
        let undocumented: Vec<&String> = names.iter().filter(|n| doc(n).is_none()).collect();
        assert!(
            undocumented.is_empty(),
            "natives without documentation: {undocumented:?}"
        );
        let unknown: Vec<&str> = NATIVES
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !names.iter().any(|x| x == n))
            .collect();
        assert!(
            unknown.is_empty(),
            "documented but not registered: {unknown:?}"
        );
        let definitions = host.definitions();
        assert!(
            definitions.contains(&format!(
                "/// {}\nfn deploy_service(",
                doc("deploy_service").unwrap()
            )),
            "{definitions}"
        );
    }
}
