//! Before the first deploy to a droplet: the container engine (and on the master nginx and the
//! registry) installed with apt where missing and started where stopped, the master's registry
//! trusted over the private network, the env file directory made. Where all of that is there
//! (the sandbox's droplet image, or a second deploy) nothing changes. Without systemd (the
//! sandbox) what was started gets a hook in /etc/infra/boot.d/, which the droplet's init runs at
//! boot, so a power cycle or a restore from snapshot brings it back. A project-environment
//! whose workers use queues also gets its Redis on the master (see [`super::redis`]).

use serde_json::{json, Value};

use super::registry::{Registry, REGISTRY_PORT};
use super::{DeployError, Deployer};
use crate::platform::{Platform, ENV_DIR};
use crate::remote::{Host, Session};
use crate::report::Change;

/// Shell helpers every bootstrap script starts with. A line `changed: ...` is a change made.
const PRELUDE: &str = r#"set -e
export DEBIAN_FRONTEND=noninteractive
updated=
install() {
  if [ -z "$updated" ]; then apt-get update -qq >/dev/null; updated=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  echo "changed: installed $*"
}
has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
# start NAME COMMAND...: through systemd where it runs, else as a plain background process.
start() {
  name=$1; shift
  if has_systemd; then
    systemctl enable --now "$name" >/dev/null 2>&1 || systemctl start "$name"
  else
    setsid "$@" </dev/null >>"/var/log/$name.log" 2>&1 &
  fi
  echo "changed: started $name"
}
# boot_hook FILE LINE: what the droplet's init runs at boot where no systemd restarts services.
boot_hook() {
  has_systemd && return 0
  mkdir -p /etc/infra/boot.d
  [ -f "/etc/infra/boot.d/$1" ] && return 0
  printf '#!/bin/sh\n%s\n' "$2" >"/etc/infra/boot.d/$1"
  chmod 755 "/etc/infra/boot.d/$1"
  echo "changed: boot hook $1"
}
wait_for() {
  i=0
  until sh -c "$1" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 120 ]; then echo "$2" >&2; exit 1; fi
    sleep 0.5
  done
}
"#;

/// The script for one droplet.
pub fn script(platform: Platform, master: bool) -> String {
    let mut s = String::from(PRELUDE);
    s.push_str(&format!("mkdir -p {ENV_DIR} && chmod 700 {ENV_DIR}\n"));
    match platform {
        Platform::Podman => s.push_str(
            // The droplet's init starts podman's `unless-stopped` containers at boot (podman
            // has no daemon to do it).
            // Under systemd, podman-restart.service does it.
            r#"command -v podman >/dev/null 2>&1 || install podman
if has_systemd && ! systemctl is-enabled podman-restart.service >/dev/null 2>&1; then
  systemctl enable podman-restart.service >/dev/null 2>&1 && echo "changed: enabled podman-restart"
fi
"#,
        ),
        _ => s.push_str(
            r#"command -v docker >/dev/null 2>&1 || install docker.io
if ! docker info >/dev/null 2>&1; then
  pidof dockerd >/dev/null 2>&1 || start docker dockerd
  wait_for 'docker info' "the Docker Engine did not start; see /var/log/docker.log"
fi
"#,
        ),
    }
    if master {
        s.push_str(&format!(
            r#"command -v nginx >/dev/null 2>&1 || install nginx-light
command -v docker-registry >/dev/null 2>&1 || install docker-registry
if ! curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{REGISTRY_PORT}/v2/; then
  pidof docker-registry >/dev/null 2>&1 || start docker-registry docker-registry serve /etc/docker/registry/config.yml
  wait_for 'curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{REGISTRY_PORT}/v2/' "the registry did not start; see /var/log/docker-registry.log"
fi
boot_hook 10-registry 'pidof docker-registry >/dev/null || setsid docker-registry serve /etc/docker/registry/config.yml </dev/null >>/var/log/docker-registry.log 2>&1 &'
boot_hook 30-nginx 'pidof nginx >/dev/null || nginx'
"#
        ));
    }
    s
}

/// The script that makes the master run `place`'s Redis with the config already uploaded to
/// [`RedisPlace::config_path`](super::redis::RedisPlace::config_path); `changed`: that config
/// was just replaced, so a running server is restarted to take it.
pub fn redis_script(place: &super::redis::RedisPlace, changed: bool) -> String {
    let mut s = String::from(PRELUDE);
    s.push_str(&place.script(changed));
    s
}

/// `daemon.json` with `registry` among its insecure registries (plain HTTP over the private
/// network); `None` when it is there already.
pub fn trust_in_daemon_json(current: &str, registry: &str) -> Result<Option<String>, String> {
    let mut value: Value = if current.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(current).map_err(|e| {
            format!("/etc/docker/daemon.json is not valid JSON ({e}); fix it by hand")
        })?
    };
    let Some(map) = value.as_object_mut() else {
        return Err("/etc/docker/daemon.json is not a JSON object; fix it by hand".into());
    };
    let list = map
        .entry("insecure-registries")
        .or_insert_with(|| json!([]));
    let Some(items) = list.as_array_mut() else {
        return Err("`insecure-registries` in /etc/docker/daemon.json is not a list".into());
    };
    if items.iter().any(|v| v.as_str() == Some(registry)) {
        return Ok(None);
    }
    items.push(json!(registry));
    let mut text = serde_json::to_string_pretty(&value).expect("json");
    text.push('\n');
    Ok(Some(text))
}

fn podman_trust(registry: &str) -> String {
    format!("# infra: the master's registry, reached over the private network\n[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n")
}

impl Deployer {
    /// Makes every droplet of the project-environment (and the master) ready for deploys,
    /// telling each change; nothing to do is told once per droplet in a dry run only.
    pub async fn bootstrap(&self) -> Result<(), DeployError> {
        if self.platform == Platform::Kubernetes {
            return Ok(());
        }
        let master = self.master()?;
        let mut hosts = self.droplets()?;
        let uses_master = matches!(self.registry, Registry::Master { .. });
        if uses_master && !hosts.iter().any(|h| h.name == master.name) {
            hosts.insert(0, master.clone());
        }
        if self.dry_run {
            for h in &hosts {
                let change = Change::new(
                    "bootstrap",
                    &h.name,
                    Value::Null,
                    json!({"platform": self.platform.name()}),
                );
                self.reporter.would(
                    &change,
                    &format!(
                        "make sure {} has {}{} (installing only what is missing)",
                        h.name,
                        self.platform.cli(),
                        if h.name == master.name {
                            ", nginx and the registry"
                        } else {
                            ""
                        }
                    ),
                );
            }
            if let Some(place) = self.redis_place()? {
                let change = Change::new(
                    "bootstrap_redis",
                    &master.name,
                    Value::Null,
                    json!({"project_env": place.project_env, "port": place.port}),
                );
                self.reporter.would(
                    &change,
                    &format!(
                        "make sure {} runs Redis for {} on port {} (password from {})",
                        master.name,
                        place.project_env,
                        place.port,
                        crate::template::secret_env_name(
                            &self.name,
                            &self.environment,
                            super::redis::REDIS_PASSWORD_SECRET
                        )
                    ),
                );
            }
            return Ok(());
        }
        // The Redis password is checked before any droplet is touched.
        let redis = self.redis_with_password()?;
        let registry = self.registry.host_prefix();
        let results = self
            .pool
            .fan_out(&hosts, hosts.len(), |session| {
                let is_master = session.host().name == master.name;
                let registry = registry.clone();
                async move {
                    self.bootstrap_one(
                        &session,
                        is_master,
                        uses_master.then_some(registry.as_str()),
                    )
                    .await
                }
            })
            .await;
        for (host, result) in results {
            match result {
                Ok(changes) => {
                    for what in changes {
                        let change = Change::new(
                            "bootstrap",
                            &host.name,
                            Value::Null,
                            json!({"change": what}),
                        );
                        self.reporter
                            .done(&change, &format!("{}: {what}", host.name));
                    }
                }
                Err(e) => {
                    return Err(DeployError::Droplet {
                        droplet: host.name.clone(),
                        message: format!("cannot make it ready for deploys: {e}"),
                    })
                }
            }
        }
        if let Some((place, password)) = redis {
            let session = self.pool.session(&master).await?;
            let changes = self.bootstrap_redis(&session, &place, &password).await?;
            for what in changes {
                let change = Change::new(
                    "bootstrap_redis",
                    &master.name,
                    Value::Null,
                    json!({"project_env": place.project_env, "port": place.port, "change": what}),
                );
                self.reporter
                    .done(&change, &format!("{}: {what}", master.name));
            }
        }
        Ok(())
    }

    /// The project-environment's Redis on the master: its config (with the password) uploaded
    /// on standard input where it differs, then installed, started or restarted as needed.
    async fn bootstrap_redis(
        &self,
        session: &Session,
        place: &super::redis::RedisPlace,
        password: &crate::template::Secret,
    ) -> Result<Vec<String>, DeployError> {
        let path = place.config_path();
        let wanted = place.config_file(password);
        // Compared here, never printed: the file holds the password.
        let have = session
            .exec(&format!(
                "cat {} 2>/dev/null",
                crate::remote::shell_quote(&path)
            ))
            .await?
            .stdout_text();
        let changed = have != wanted;
        let mut changes = Vec::new();
        if changed {
            session
                .run(&format!(
                    "mkdir -p {dir} && chmod 700 {dir}",
                    dir = super::redis::REDIS_CONFIG_DIR
                ))
                .await?;
            session.upload(&path, wanted.as_bytes(), 0o600).await?;
            changes.push(format!("wrote {path} (0600)"));
        }
        let script = redis_script(place, changed && !have.is_empty());
        let out = session
            .exec_with(&script, None, std::time::Duration::from_secs(900))
            .await?;
        if !out.success() {
            return Err(droplet_error(
                session.host(),
                &format!("starting Redis for {}", place.project_env),
                &out,
            ));
        }
        changes.extend(
            out.stdout_text()
                .lines()
                .filter_map(|l| l.strip_prefix("changed: ").map(str::to_string)),
        );
        Ok(changes)
    }

    async fn bootstrap_one(
        &self,
        session: &Session,
        master: bool,
        registry: Option<&str>,
    ) -> Result<Vec<String>, DeployError> {
        let out = session
            .exec_with(
                &script(self.platform, master),
                None,
                std::time::Duration::from_secs(900),
            )
            .await?;
        if !out.success() {
            return Err(droplet_error(session.host(), "the bootstrap script", &out));
        }
        let mut changes: Vec<String> = out
            .stdout_text()
            .lines()
            .filter_map(|l| l.strip_prefix("changed: ").map(str::to_string))
            .collect();
        if let Some(registry) = registry {
            if let Some(change) = self.trust_registry(session, registry).await? {
                changes.push(change);
            }
        }
        Ok(changes)
    }

    /// The droplet's engine pulls from the master's registry over plain HTTP (the private
    /// network; the registry is not reachable from outside the fleet).
    async fn trust_registry(
        &self,
        session: &Session,
        registry: &str,
    ) -> Result<Option<String>, DeployError> {
        let host = session.host();
        match self.platform {
            Platform::Podman => {
                let path = "/etc/containers/registries.conf.d/50-infra-registry.conf";
                let wanted = podman_trust(registry);
                let have = session.exec(&format!("cat {path} 2>/dev/null")).await?;
                if have.stdout_text() == wanted {
                    return Ok(None);
                }
                session
                    .run("mkdir -p /etc/containers/registries.conf.d")
                    .await?;
                session.upload(path, wanted.as_bytes(), 0o644).await?;
                Ok(Some(format!("trusts the registry {registry}")))
            }
            _ => {
                let have = session
                    .exec("cat /etc/docker/daemon.json 2>/dev/null")
                    .await?
                    .stdout_text();
                let Some(text) = trust_in_daemon_json(&have, registry).map_err(|message| {
                    DeployError::Droplet {
                        droplet: host.name.clone(),
                        message,
                    }
                })?
                else {
                    return Ok(None);
                };
                session.run("mkdir -p /etc/docker").await?;
                session
                    .upload("/etc/docker/daemon.json", text.as_bytes(), 0o644)
                    .await?;
                // insecure-registries is one of the settings dockerd reloads on SIGHUP: no
                // restart, so running containers are not touched.
                let reload = format!(
                    "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then systemctl reload docker; else kill -HUP $(pidof dockerd); fi; \
                     i=0; until docker info --format '{{{{json .RegistryConfig.IndexConfigs}}}}' | grep -q '\"{registry}\"'; do i=$((i+1)); [ $i -gt 40 ] && exit 1; sleep 0.25; done"
                );
                let out = session.exec(&reload).await?;
                if !out.success() {
                    return Err(droplet_error(
                        host,
                        "reloading dockerd to trust the master's registry",
                        &out,
                    ));
                }
                Ok(Some(format!("trusts the registry {registry}")))
            }
        }
    }
}

/// A failed remote step, with the last lines it wrote.
pub fn droplet_error(host: &Host, what: &str, out: &crate::remote::ExecOutput) -> DeployError {
    let text = format!("{}{}", out.stdout_text(), out.stderr_text());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    DeployError::Droplet {
        droplet: host.name.clone(),
        message: format!(
            "{what} failed ({}):\n{}",
            out.describe_status(),
            lines[lines.len().saturating_sub(12)..].join("\n")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_json_keeps_its_settings_and_gains_the_registry_once() {
        let have = r#"{ "storage-driver": "vfs" }"#;
        let text = trust_in_daemon_json(have, "10.0.0.2:5000")
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["storage-driver"], "vfs");
        assert_eq!(value["insecure-registries"], json!(["10.0.0.2:5000"]));
        assert_eq!(trust_in_daemon_json(&text, "10.0.0.2:5000").unwrap(), None);
        assert!(trust_in_daemon_json("", "r:5000").unwrap().is_some());
        assert!(trust_in_daemon_json("[1]", "r:5000").is_err());
    }

    #[test]
    fn the_master_gets_nginx_and_the_registry_and_others_do_not() {
        let master = script(Platform::Docker, true);
        assert!(master.contains("install nginx-light"));
        assert!(master.contains("docker-registry serve"));
        let web = script(Platform::Podman, false);
        assert!(!web.contains("nginx"));
        assert!(web.contains("install podman"));
    }
}
