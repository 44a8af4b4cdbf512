//! Redis on the master, for the workers' queues: one `redis-server` per project-environment
//! that uses it, so environments never see each other's jobs.
//!
//! - Who gets one: a project-environment (on `docker` or `podman`) with a worker that names
//!   `queues`, or a service that lists the secret `redis_password`.
//! - Port: `hash_based_port(project, env, 6400, 1000)` (6400-7399, the same SHA-256 scheme as
//!   the services' ports); a clash with an earlier project-environment (in the spec's order
//!   of projects, then environments) moves to the next free port in the range.
//! - Password: `<PROJECT>_<ENV>_REDIS_PASSWORD`, required before anything changes. It goes in
//!   `/etc/infra/redis/<project-env>.conf` (0600, uploaded on standard input), never on a
//!   command line or in a log.
//! - Bound to loopback and to the master's address in the state (the one the fleet reaches the
//!   master's registry at); the fleet firewall (src/fleet/firewalls.rs) lets every port
//!   between droplets tagged `infra` in and, on the master, only 80 and 443 from elsewhere, so
//!   only the fleet reaches it. The address is marked optional (`-addr`): a master restored
//!   with another address still starts its Redis on loopback until the next deploy.
//! - Data: `/var/lib/infra/redis/<project-env>/` (append-only file), so queues survive a
//!   restart, a power cycle and a snapshot.
//! - Kept running by systemd where there is one (`infra-redis-<project-env>.service`), else by
//!   a boot hook in /etc/infra/boot.d/.
//! - Services get `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD` and `REDIS_URL` in their env
//!   files (a key their `environment` sets itself is left as they set it).

use indexmap::IndexMap;

use crate::config::deployment::ProjectDeployment;
use crate::config::Loaded;
use crate::platform::Platform;
use crate::remote::shell_quote;
use crate::state::placement::project_env;
use crate::state::ports::{hash_based_port, next_in_range};
use crate::state::ServiceMap;
use crate::template::Secret;

pub const REDIS_BASE_PORT: u16 = 6400;
pub const REDIS_PORT_RANGE: u16 = 1000;
pub const REDIS_CONFIG_DIR: &str = "/etc/infra/redis";
pub const REDIS_DATA_DIR: &str = "/var/lib/infra/redis";
/// The secret (as services name secrets) that holds a project-environment's Redis password.
pub const REDIS_PASSWORD_SECRET: &str = "redis_password";

/// Whether a project-environment's placed services use Redis.
pub fn uses_redis(deployment: &ProjectDeployment, placed: &ServiceMap) -> bool {
    deployment
        .services
        .iter()
        .filter(|(name, _)| placed.contains_key(*name))
        .any(|(_, s)| !s.queues.is_empty() || s.secrets.iter().any(|x| x == REDIS_PASSWORD_SECRET))
}

/// The Redis port of every project-environment that uses Redis, by `<project>-<env>`.
pub fn redis_ports(loaded: &Loaded) -> IndexMap<String, u16> {
    let mut users = Vec::new();
    for (project, spec) in &loaded.spec.projects {
        let platform = Platform::parse(&loaded.deployment.platform_of(project));
        if !matches!(platform, Some(Platform::Docker | Platform::Podman)) {
            continue;
        }
        let deployment = loaded.deployment.project(project);
        for environment in &spec.environments {
            let placed = loaded.services.get(&project_env(project, environment));
            if placed.is_some_and(|placed| uses_redis(&deployment, placed)) {
                users.push((project.as_str(), environment.as_str()));
            }
        }
    }
    assign_ports(users)
}

/// Ports for `(project, environment)` pairs in this order: each its hash-based port, or the
/// next free one in the range after a clash with an earlier pair.
pub fn assign_ports<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> IndexMap<String, u16> {
    let mut out: IndexMap<String, u16> = IndexMap::new();
    for (project, environment) in pairs {
        let mut port = hash_based_port(project, environment, REDIS_BASE_PORT, REDIS_PORT_RANGE);
        // At most a thousand project-environments on one master: the range has room.
        while out.values().any(|p| *p == port) {
            port = next_in_range(port, REDIS_BASE_PORT, REDIS_PORT_RANGE);
        }
        out.insert(project_env(project, environment), port);
    }
    out
}

/// Where one project-environment's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPlace {
    pub project_env: String,
    /// The master's address, as services reach it.
    pub host: String,
    pub port: u16,
}

impl RedisPlace {
    pub fn config_path(&self) -> String {
        format!("{REDIS_CONFIG_DIR}/{}.conf", self.project_env)
    }

    pub fn data_dir(&self) -> String {
        format!("{REDIS_DATA_DIR}/{}", self.project_env)
    }

    fn pidfile(&self) -> String {
        format!("/run/infra-redis-{}.pid", self.project_env)
    }

    fn unit(&self) -> String {
        format!("infra-redis-{}", self.project_env)
    }

    /// `redis-server`'s config: holds the password, so it is only ever uploaded (0600).
    pub fn config_file(&self, password: &Secret) -> String {
        format!(
            "# {pe}: written by infra (src/deploy/redis.rs); edits are replaced on the next deploy\n\
             bind 127.0.0.1 -{host}\n\
             port {port}\n\
             protected-mode yes\n\
             requirepass {password}\n\
             dir {dir}\n\
             appendonly yes\n\
             appendfsync everysec\n\
             pidfile {pidfile}\n\
             logfile /var/log/{unit}.log\n\
             daemonize yes\n",
            pe = self.project_env,
            host = self.host,
            port = self.port,
            password = password.expose(),
            dir = self.data_dir(),
            pidfile = self.pidfile(),
            unit = self.unit(),
        )
    }

    /// Installs redis-server where missing and makes sure this project-environment's runs
    /// with the config at [`Self::config_path`] (uploaded before): started when it is not,
    /// restarted when `$changed` is `1` (the config was just replaced). A line `changed: ...`
    /// is a change made (the bootstrap script's convention).
    pub fn script(&self, changed: bool) -> String {
        let config = shell_quote(&self.config_path());
        let pidfile = shell_quote(&self.pidfile());
        let unit = self.unit();
        let port = self.port;
        let data = shell_quote(&self.data_dir());
        format!(
            r#"command -v redis-server >/dev/null 2>&1 || install redis-server
mkdir -p {data} && chmod 700 {data}
running() {{ [ -f {pidfile} ] && kill -0 "$(cat {pidfile})" 2>/dev/null; }}
if has_systemd; then
  if [ ! -f /etc/systemd/system/{unit}.service ]; then
    printf '[Unit]\nDescription=Redis for {pe} (infra)\nAfter=network.target\n\n[Service]\nExecStart=/usr/bin/redis-server {config} --daemonize no\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n' >/etc/systemd/system/{unit}.service
    systemctl daemon-reload
  fi
  if {restart} && systemctl is-active --quiet {unit}; then systemctl restart {unit}; echo "changed: restarted {unit} with its new config"; fi
  systemctl is-active --quiet {unit} || start {unit}
else
  if {restart} && running; then kill "$(cat {pidfile})"; i=0; while running; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done; echo "changed: stopped {unit} to start it with its new config"; fi
  if ! running; then redis-server {config} && echo "changed: started {unit} on port {port}"; fi
  boot_hook 40-{unit} 'if ! {{ [ -f {pidfile} ] && kill -0 "$(cat {pidfile})" 2>/dev/null; }}; then redis-server {config}; fi'
fi
wait_for 'redis-cli -h 127.0.0.1 -p {port} ping 2>&1 | grep -q -e PONG -e NOAUTH' "Redis for {pe} did not answer on port {port}; see /var/log/{unit}.log"
"#,
            pe = self.project_env,
            restart = if changed { "true" } else { "false" },
        )
    }

    /// The variables a service of this project-environment gets, without the password.
    pub fn variables(&self) -> [(&'static str, String); 2] {
        [
            ("REDIS_HOST", self.host.clone()),
            ("REDIS_PORT", self.port.to_string()),
        ]
    }

    /// `redis://:<password>@host:port/0`: a secret, like the password.
    pub fn url(&self, password: &Secret) -> Secret {
        Secret::new(format!(
            "redis://:{}@{}:{}/0",
            percent_encode(password.expose()),
            self.host,
            self.port
        ))
    }
}

/// A password as a URL's userinfo: everything but unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> RedisPlace {
        RedisPlace {
            project_env: "shop-prod".into(),
            host: "10.0.0.2".into(),
            port: 6512,
        }
    }

    #[test]
    fn the_config_binds_loopback_and_the_master_and_keeps_data_on_disk() {
        let config = place().config_file(&Secret::new("s3cret"));
        assert!(config.contains("bind 127.0.0.1 -10.0.0.2\n"));
        assert!(config.contains("port 6512\n"));
        assert!(config.contains("requirepass s3cret\n"));
        assert!(config.contains("dir /var/lib/infra/redis/shop-prod\n"));
        assert!(config.contains("appendonly yes\n"));
        assert_eq!(place().config_path(), "/etc/infra/redis/shop-prod.conf");
    }

    #[test]
    fn the_script_never_holds_the_password() {
        let script = place().script(true);
        assert!(!script.contains("s3cret"));
        assert!(!script.contains("requirepass"));
        assert!(script.contains("redis-server /etc/infra/redis/shop-prod.conf"));
        assert!(script.contains("boot_hook 40-infra-redis-shop-prod"));
        assert!(script.contains("install redis-server"));
    }

    #[test]
    fn ports_are_stable_in_range_and_a_clash_moves_the_later_one() {
        let ports = assign_ports([("shop", "prod"), ("shop", "uat")]);
        let prod = ports["shop-prod"];
        assert!((REDIS_BASE_PORT..REDIS_BASE_PORT + REDIS_PORT_RANGE).contains(&prod));
        assert_eq!(
            prod,
            hash_based_port("shop", "prod", REDIS_BASE_PORT, REDIS_PORT_RANGE)
        );
        assert_eq!(assign_ports([("shop", "prod")])["shop-prod"], prod);
        // A project whose hash lands on shop-prod's port takes the next one after it.
        let clash = (0..100_000)
            .map(|i| format!("p{i}"))
            .find(|p| hash_based_port(p, "prod", REDIS_BASE_PORT, REDIS_PORT_RANGE) == prod)
            .expect("a clashing name among 100000");
        let ports = assign_ports([("shop", "prod"), (clash.as_str(), "prod")]);
        assert_eq!(ports["shop-prod"], prod);
        assert_eq!(
            ports[&format!("{clash}-prod")],
            next_in_range(prod, REDIS_BASE_PORT, REDIS_PORT_RANGE)
        );
    }

    #[test]
    fn only_project_environments_with_queues_or_the_redis_secret_use_redis() {
        use crate::config::deployment::DeploymentConfig;
        use crate::schema::Checker;
        use crate::state::runtime::{ServiceKind, ServiceRecord};
        let config = serde_json::json!({"projects": {
            "queued": {"services": {"jobs": {"type": "worker", "containerfile_path": "j/Dockerfile", "command": "run", "queues": ["mail"]}}},
            "secret": {"services": {"web": {"containerfile_path": "w/Dockerfile", "secrets": ["redis_password"]}}},
            "plain": {"services": {"web": {"containerfile_path": "w/Dockerfile"}}}
        }});
        let mut c = Checker::new("deployment_config.json");
        let config = DeploymentConfig::check(&mut c, &config);
        assert!(c.problems.is_empty());
        let placed = |service: &str| {
            let mut map = ServiceMap::default();
            map.insert(
                service.to_string(),
                ServiceRecord {
                    kind: ServiceKind::Web,
                    port: None,
                    assigned_droplets: vec!["d".into()],
                },
            );
            map
        };
        assert!(uses_redis(&config.project("queued"), &placed("jobs")));
        assert!(uses_redis(&config.project("secret"), &placed("web")));
        assert!(!uses_redis(&config.project("plain"), &placed("web")));
        // A service that is not placed does not count.
        assert!(!uses_redis(&config.project("queued"), &placed("other")));
    }

    #[test]
    fn the_url_encodes_the_password() {
        let url = place().url(&Secret::new("a b@c"));
        assert_eq!(url.expose(), "redis://:a%20b%40c@10.0.0.2:6512/0");
        assert!(!format!("{url:?}").contains("a b"));
    }
}
