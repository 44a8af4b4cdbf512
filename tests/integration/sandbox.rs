//! The sandbox cloud for real: `infra sandbox up` in a temp project, droplets that are Docker
//! containers answering SSH, and every answer held against the DigitalOcean contract.
//!
//! These tests need Docker (and, the first time on a machine, debootstrap to build the droplet
//! image; `.ci/prepare-sandbox` builds it once). Without Docker they fail saying to run it,
//! unless `INFRA_SKIP_DOCKER_TESTS=1` skips them (and counts them). Each test runs its own
//! sandbox with two or three droplets, and `infra sandbox down` always runs at the end.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use infra::cloud::*;

use crate::harness::{Output, Test};
use crate::openapi::{report, Options, Spec};

/// Longest a droplet may take to become active, or an action to complete.
pub(crate) const BOOT: Duration = Duration::from_secs(120);

/// A running sandbox in its own project; `infra sandbox down` when dropped.
pub(crate) struct Sandbox {
    pub(crate) test: Test,
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) key: PathBuf,
    /// Its CA certificate, the only one its clients trust.
    pub(crate) ca: PathBuf,
}

impl Sandbox {
    /// Registers the project's public key with the account (as `infra`).
    pub(crate) async fn register_key(&self, client: &Client) -> SshKey {
        client
            .create_ssh_key(&SshKeyCreate {
                name: "infra".into(),
                public_key: self.public_key(),
            })
            .await
            .unwrap()
    }

    /// `None` when the tools are missing and the test is skipped.
    pub(crate) fn up(args: &[&str]) -> Option<Sandbox> {
        if !crate::harness::docker_tests_can_run() {
            return None;
        }
        let test = Test::init();
        let mut command = vec!["sandbox", "up"];
        command.extend(args);
        let out = test.infra(&command);
        assert_eq!(out.code, 0, "`infra sandbox up` failed:\n{}", out.stderr);
        let exports = out.stdout.trim();
        let url = field(exports, "DO_API_URL=");
        let token = field(exports, "DO_TOKEN=");
        assert!(url.starts_with("https://127.0.0.1:"), "{exports}");
        // The client finds the sandbox by itself through this file.
        // And the droplets' monitors through its last line: the same port on the droplets'
        // gateway.
        let env = test.read("config/.infra/sandbox/env");
        let port = url.rsplit(':').next().unwrap();
        let (ours, droplets) = env
            .split_once("DO_API_URL_FROM_DROPLETS=https://")
            .unwrap_or_else(|| panic!("no address for the droplets in:\n{env}"));
        assert_eq!(ours, format!("DO_API_URL={url}\nDO_TOKEN={token}\n"));
        let gateway = droplets
            .trim_end()
            .strip_suffix(&format!(":{port}"))
            .unwrap_or_else(|| panic!("not the same port: {droplets}"));
        assert!(gateway.parse::<std::net::Ipv4Addr>().is_ok(), "{droplets}");
        // Other tools are told how to trust the CA.
        let ca = test.path().join("config/.infra/sandbox/ca.pem");
        for advice in [
            format!("REQUESTS_CA_BUNDLE={}", ca.display()),
            format!("SSL_CERT_FILE={}", ca.display()),
            format!("curl --cacert {}", ca.display()),
        ] {
            assert!(out.stderr.contains(&advice), "{advice} in:\n{}", out.stderr);
        }
        let key = test.path().join("config/.infra/infrastructure_key");
        Some(Sandbox {
            test,
            url,
            token,
            key,
            ca,
        })
    }

    /// An HTTP client that trusts the sandbox's CA (and nothing else).
    pub(crate) fn http(&self) -> reqwest::Client {
        let ca = std::fs::read(&self.ca).unwrap();
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap()
    }

    /// infra's client for `url` (the sandbox's, maybe after a restart), trusting its CA.
    pub(crate) fn client_at(&self, url: &str, retry: RetryPolicy) -> Client {
        let ca = std::fs::read(&self.ca).unwrap();
        Client::trusting(url, Token::new(self.token.clone()).unwrap(), retry, &ca).unwrap()
    }

    fn infra(&self, args: &[&str]) -> Output {
        self.test.infra(args)
    }

    pub(crate) fn client(&self) -> Client {
        self.client_at(&self.url, RetryPolicy::default())
    }

    pub(crate) fn public_key(&self) -> String {
        std::fs::read_to_string(infra::keypair::public_path(&self.key)).unwrap()
    }

    fn sandbox_id(&self) -> String {
        let info = self.test.json("config/.infra/sandbox/server.json");
        info["sandbox_id"].as_str().unwrap().to_owned()
    }

    /// Runs `command` as root on `ip` with the project's key.
    pub(crate) fn ssh(&self, ip: &str, command: &str) -> Result<String, String> {
        ssh(&self.key, ip, command)
    }

    /// Waits for the droplet's own Docker Engine, which starts just after its sshd (a droplet
    /// is active as soon as sshd answers).
    async fn wait_engine(&self, ip: &str) {
        wait_for(&format!("the engine on {ip}"), BOOT, || async {
            self.ssh(ip, "docker info --format '{{.Driver}}'")
                .ok()
                .filter(|driver| driver == "vfs")
        })
        .await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = self.test.infra(["sandbox", "down"]);
        if out.code != 0 {
            eprintln!("`infra sandbox down` failed:\n{}", out.stderr);
        }
    }
}

fn field(exports: &str, name: &str) -> String {
    exports
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in `{exports}`"))
        .to_owned()
}

fn ssh(key: &Path, ip: &str, command: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            &format!("root@{ip}"),
            command,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Polls `check` until it gives a value, failing the test after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "gave up waiting for {what} after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn wait_active(client: &Client, id: u64) -> Droplet {
    wait_for(&format!("droplet {id} to be active"), BOOT, || async {
        let droplet = client.get_droplet(id).await.unwrap();
        (droplet.status == DropletStatus::Active).then_some(droplet)
    })
    .await
}

pub(crate) async fn act(client: &Client, droplet: u64, action: DropletAction) -> Action {
    let started = client.droplet_action(droplet, &action).await.unwrap();
    client
        .wait_for_action(started.id, Duration::from_millis(250), BOOT)
        .await
        .unwrap_or_else(|e| panic!("{action:?} on droplet {droplet}: {e}"))
}

pub(crate) fn spec(image: ImageRef, key: u64, tags: &[&str]) -> DropletSpec {
    let mut spec = DropletSpec::new("s-1vcpu-1gb", image);
    spec.region = Some("lon1".into());
    spec.ssh_keys = vec![SshKeyRef::Id(key)];
    spec.tags = tags.iter().map(|t| t.to_string()).collect();
    spec
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// Droplets are hosts: SSH with the registered key, their own hostname and container engine;
/// a snapshot carries a file to a new droplet; power off and on; firewalls; a restarted server
/// keeps everything; delete and `down` leave nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_droplets_are_real_hosts() {
    // No spares: every droplet here boots on demand (the spares' own test is below).
    let Some(sandbox) = Sandbox::up(&["--spares", "0"]) else {
        return;
    };
    let client = sandbox.client();
    let key = sandbox.register_key(&client).await;

    let created = client
        .create_droplets(&DropletMultiCreate {
            names: vec!["host-a".into(), "host-b".into()],
            spec: spec("debian-12-x64".into(), key.id, &["infra"]),
        })
        .await
        .unwrap();
    assert_eq!(created.droplets.len(), 2);
    assert!(created
        .droplets
        .iter()
        .all(|d| d.status == DropletStatus::New));
    let a = wait_active(&client, created.droplets[0].id).await;
    let b = wait_active(&client, created.droplets[1].id).await;
    let ip_a = a.public_ipv4().unwrap().to_string();
    let ip_b = b.public_ipv4().unwrap().to_string();
    assert_ne!(ip_a, ip_b);

    // Their own hostnames and their own container engines.
    assert_eq!(sandbox.ssh(&ip_a, "hostname").unwrap(), "host-a");
    assert_eq!(sandbox.ssh(&ip_b, "hostname").unwrap(), "host-b");
    sandbox.wait_engine(&ip_a).await;
    sandbox.wait_engine(&ip_b).await;
    sandbox
        .ssh(
            &ip_a,
            "mkdir -p /tmp/bb && cp /bin/busybox /tmp/bb/ && tar -C /tmp/bb -c . | docker import - busybox:local >/dev/null \
             && docker run -d --name only-on-a busybox:local /busybox sleep 600 >/dev/null \
             && echo written-on-a >/root/marker",
        )
        .unwrap();
    let names = "docker ps -a --format '{{.Names}}'";
    assert_eq!(sandbox.ssh(&ip_a, names).unwrap(), "only-on-a");
    assert_eq!(sandbox.ssh(&ip_b, names).unwrap(), "");
    // Only the registered key logs in: the key file holds exactly it.
    assert_eq!(
        sandbox
            .ssh(&ip_a, "cat /root/.ssh/authorized_keys")
            .unwrap(),
        sandbox.public_key().trim()
    );

    // A snapshot carries the disk to a new droplet, with its own hostname and host keys.
    act(
        &client,
        a.id,
        DropletAction::Snapshot {
            name: "host-a-snap".into(),
        },
    )
    .await;
    let snapshots = client.list_droplet_snapshots(a.id).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].name, "host-a-snap");
    let from_snapshot = client
        .create_droplet(&DropletCreate {
            name: "host-c".into(),
            spec: spec(
                ImageRef::Id(snapshots[0].id),
                key.id,
                &["infra", "restored"],
            ),
        })
        .await
        .unwrap();
    let c = wait_active(&client, from_snapshot.droplet.id).await;
    assert_eq!(c.image.id, snapshots[0].id);
    let ip_c = c.public_ipv4().unwrap().to_string();
    assert_eq!(
        sandbox.ssh(&ip_c, "cat /root/marker").unwrap(),
        "written-on-a"
    );
    assert_eq!(sandbox.ssh(&ip_c, "hostname").unwrap(), "host-c");
    sandbox.wait_engine(&ip_c).await;
    assert_eq!(sandbox.ssh(&ip_c, names).unwrap(), "only-on-a");
    let host_key = "cat /etc/ssh/ssh_host_ed25519_key.pub";
    assert_ne!(
        sandbox.ssh(&ip_a, host_key).unwrap(),
        sandbox.ssh(&ip_c, host_key).unwrap()
    );

    // Power off: SSH stops answering; power on: it answers again, at the same address.
    act(&client, b.id, DropletAction::PowerOff).await;
    assert_eq!(
        client.get_droplet(b.id).await.unwrap().status,
        DropletStatus::Off
    );
    assert!(sandbox.ssh(&ip_b, "true").is_err());
    act(&client, b.id, DropletAction::PowerOn).await;
    let b = wait_active(&client, b.id).await;
    assert_eq!(b.public_ipv4().unwrap().to_string(), ip_b);
    assert_eq!(sandbox.ssh(&ip_b, "hostname").unwrap(), "host-b");

    // A firewall's SSH rule is enforced on its droplets.
    let gateway = c.networks.v4[0].gateway.clone().unwrap();
    let mut rules = FirewallRequest {
        name: "admin-only".into(),
        inbound_rules: vec![InboundRule {
            protocol: Protocol::Tcp,
            ports: "22".into(),
            sources: RuleTarget {
                addresses: vec!["203.0.113.7/32".into()],
                ..RuleTarget::default()
            },
        }],
        outbound_rules: vec![],
        droplet_ids: vec![],
        tags: vec!["restored".into()],
    };
    let firewall = client.create_firewall(&rules).await.unwrap();
    assert!(
        sandbox.ssh(&ip_c, "true").is_err(),
        "the firewall let SSH in"
    );
    assert_eq!(sandbox.ssh(&ip_a, "hostname").unwrap(), "host-a");
    rules.inbound_rules[0].sources.addresses = vec![format!("{gateway}/32")];
    client.update_firewall(&firewall.id, &rules).await.unwrap();
    assert_eq!(sandbox.ssh(&ip_c, "hostname").unwrap(), "host-c");

    // Tags filter lists.
    let restored = client.list_droplets(Some("restored")).await.unwrap();
    assert_eq!(
        restored.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![c.id]
    );

    // A restarted server keeps its droplets, token and rules.
    let pid = sandbox.test.json("config/.infra/sandbox/server.json")["pid"]
        .as_u64()
        .unwrap();
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    wait_for("the server to stop", Duration::from_secs(15), || async {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    let again = sandbox.infra(&["sandbox", "up", "--spares", "0"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(field(&again.stdout, "DO_TOKEN="), sandbox.token);
    let client = sandbox.client_at(&field(&again.stdout, "DO_API_URL="), RetryPolicy::default());
    let listed = client.list_droplets(None).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["host-a", "host-b", "host-c"]
    );
    wait_active(&client, c.id).await;
    assert_eq!(sandbox.ssh(&ip_c, "hostname").unwrap(), "host-c");
    client.delete_firewall(&firewall.id).await.unwrap();

    let status = sandbox.infra(&["sandbox", "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["running"], json!(true));
    assert_eq!(status["droplets"].as_array().unwrap().len(), 3);

    // Delete: gone from lists and from Docker.
    client.delete_droplet(c.id).await.unwrap();
    let listed = client.list_droplets(None).await.unwrap();
    assert!(listed.iter().all(|d| d.id != c.id));
    assert!(client.get_droplet(c.id).await.unwrap_err().is_not_found());
    let sandbox_id = sandbox.sandbox_id();
    let label = format!("label=infra.sandbox={sandbox_id}");
    assert_eq!(
        docker_lines(&["ps", "-a", "-q", "--filter", &label]).len(),
        2
    );

    // Down removes every container, snapshot image and network it made, and its files.
    let down = sandbox.infra(&["sandbox", "down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains("server stopped"), "{}", down.stdout);
    for kind in [
        &["ps", "-a", "-q", "--filter", &label][..],
        &["images", "-a", "-q", "--filter", &label][..],
        &["network", "ls", "-q", "--filter", &label][..],
    ] {
        assert_eq!(docker_lines(kind), Vec::<String>::new(), "docker {kind:?}");
    }
    // All but the CA, which the next sandbox of the project serves with again.
    let left: BTreeSet<String> =
        std::fs::read_dir(sandbox.test.path().join("config/.infra/sandbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(left, BTreeSet::from(["ca-key.pem".into(), "ca.pem".into()]));
}

// ---------------------------------------------------------------------------------------------

impl Sandbox {
    /// `GET /sandbox/spares`: `{"target": .., "ready": .., "booting": ..}`.
    async fn spares(&self, url: &str) -> Value {
        let answer: Value = self
            .http()
            .get(format!("{url}/sandbox/spares"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["spares"].clone()
    }

    /// Waits until `ready` spares are ready; the spares' containers, by id (droplets made
    /// from spares keep the spares' container names: not theirs).
    async fn wait_spares(&self, url: &str, ready: u64) -> BTreeSet<String> {
        wait_for(&format!("{ready} ready spares"), BOOT, || async {
            (self.spares(url).await["ready"] == json!(ready)).then_some(())
        })
        .await;
        let prefix = format!("infra-sbx-{}-spare-", self.sandbox_id());
        let droplets: Vec<String> = self.test.json("config/.infra/sandbox/state.json")["droplets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["container"].as_str().unwrap().to_owned())
            .collect();
        docker_lines(&[
            "ps",
            "--no-trunc",
            "--filter",
            &format!("name={prefix}"),
            "--format",
            "{{.ID}} {{.Names}}",
        ])
        .into_iter()
        .filter_map(|line| {
            let (id, name) = line.split_once(' ')?;
            (!droplets.iter().any(|d| d == name)).then(|| id.to_owned())
        })
        .collect()
    }

    /// The name of droplet `id`'s container, as the sandbox's state records it.
    fn container_of(&self, id: u64) -> String {
        self.test.json("config/.infra/sandbox/state.json")["droplets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == json!(id))
            .and_then(|d| d["container"].as_str())
            .unwrap()
            .to_owned()
    }
}

/// `docker inspect --format FORMAT container`, trimmed.
fn inspect(container: &str, format: &str) -> String {
    docker_lines(&["inspect", "--format", format, container]).join("\n")
}

/// A droplet made from a spare is a droplet like any other: its own hostname (which a power
/// cycle keeps), its own host keys (the spare's, which nobody saw: none shared with another
/// droplet, kept by a power cycle), exactly the requested authorized keys, the spare's
/// address; snapshot, power cycle and delete work on it. Spares are not droplets to the API, are refilled after a take,
/// survive a restart of the server, and `down` removes them.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_droplets_from_spares_are_ordinary_droplets() {
    let Some(sandbox) = Sandbox::up(&["--spares", "2"]) else {
        return;
    };
    let server = sandbox.test.json("config/.infra/sandbox/server.json");
    assert_eq!(server["spares"], json!(2), "{server}");
    let client = sandbox.client();
    let key = sandbox.register_key(&client).await;
    // A second account key, not asked for: it must not reach the droplets.
    client
        .create_ssh_key(&SshKeyCreate {
            name: "other".into(),
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBC+Y9vCMVPM7rJSlpdh9hh/3Lb3cwNEp9T6uiCur8B3 other@example".into(),
        })
        .await
        .unwrap();

    let spares = sandbox.wait_spares(&sandbox.url, 2).await;
    assert_eq!(spares.len(), 2, "{spares:?}");
    // Spares are no droplets.
    assert!(client.list_droplets(None).await.unwrap().is_empty());
    let status = sandbox.infra(&["sandbox", "status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["droplets"], json!([]));
    assert_eq!(status["spares"]["ready"], json!(2), "{status}");
    let host_key = "cat /etc/ssh/ssh_host_ed25519_key.pub";
    let mut spare_keys = BTreeSet::new();
    let mut spare_ips = BTreeSet::new();
    for spare in &spares {
        spare_keys.insert(docker_lines(&["exec", spare, "sh", "-c", host_key]).join(""));
        spare_keys.insert(
            docker_lines(&["exec", spare, "cat", "/etc/ssh/ssh_host_rsa_key.pub"]).join(""),
        );
        spare_ips.insert(inspect(
            spare,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        ));
    }

    let created = client
        .create_droplets(&DropletMultiCreate {
            names: vec!["pool-a".into(), "pool-b".into()],
            spec: spec("debian-12-x64".into(), key.id, &["pool"]),
        })
        .await
        .unwrap();
    let a = wait_active(&client, created.droplets[0].id).await;
    let b = wait_active(&client, created.droplets[1].id).await;
    let sandbox_id = sandbox.sandbox_id();
    let container = |id: u64| sandbox.container_of(id);
    // Both came from the spares: the same containers, at the spares' addresses.
    for droplet in [&a, &b] {
        let id = inspect(&container(droplet.id), "{{.Id}}");
        assert!(spares.contains(&id), "droplet {} is no spare", droplet.name);
        let ip = droplet.public_ipv4().unwrap().to_string();
        assert!(spare_ips.contains(&ip), "{ip} is none of {spare_ips:?}");
    }
    // Handed over through the spares' directories, by their own inits: no `docker exec`.
    // (The server logs each take just after the droplet turns active.)
    for droplet in [&a, &b] {
        let start = format!("droplet {} active in ", droplet.id);
        wait_for(&format!("{start}... from spare"), BOOT, || async {
            let log = sandbox.test.read("config/.infra/sandbox/server.log");
            log.lines()
                .any(|l| l.contains(&start) && l.contains("from spare"))
                .then_some(())
        })
        .await;
    }
    let log = sandbox.test.read("config/.infra/sandbox/server.log");
    assert!(!log.contains("by docker exec"), "{log}");
    let ip_a = a.public_ipv4().unwrap().to_string();
    let ip_b = b.public_ipv4().unwrap().to_string();
    assert_ne!(ip_a, ip_b);
    assert_eq!(a.tags, ["pool"]);

    for (droplet, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        let name = &droplet.name;
        assert_eq!(sandbox.ssh(ip, "hostname").unwrap(), *name);
        assert_eq!(sandbox.ssh(ip, "cat /etc/hostname").unwrap(), *name);
        assert_eq!(
            sandbox
                .ssh(ip, &format!("grep -w {name} /etc/hosts | cut -f1"))
                .unwrap(),
            *ip
        );
        assert_eq!(
            sandbox.ssh(ip, "cat /etc/infra-droplet-id").unwrap(),
            droplet.id.to_string()
        );
        assert_eq!(
            sandbox.ssh(ip, "cat /root/.ssh/authorized_keys").unwrap(),
            sandbox.public_key().trim()
        );
        // The host keys sshd shows are the droplet's: those its spare made at its own boot,
        // which nobody saw (the sandbox keeps them rather than making new ones for the droplet).
        let shown = Command::new("ssh-keyscan")
            .args(["-t", "ed25519", ip])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        let key = sandbox.ssh(ip, host_key).unwrap();
        let key_body = key.split_whitespace().nth(1).unwrap().to_owned();
        assert!(shown.contains(&key_body), "sshd shows {shown}, not {key}");
        assert!(spare_keys.contains(&key), "{name} has no spare's host key");
        let rsa = sandbox
            .ssh(ip, "cat /etc/ssh/ssh_host_rsa_key.pub")
            .unwrap();
        assert!(spare_keys.contains(&rsa), "{name} has no spare's RSA key");
    }
    // Two droplets from spares have different host keys.
    let rsa_key = "cat /etc/ssh/ssh_host_rsa_key.pub";
    let key_a = sandbox.ssh(&ip_a, host_key).unwrap();
    let rsa_a = sandbox.ssh(&ip_a, rsa_key).unwrap();
    assert_ne!(key_a, sandbox.ssh(&ip_b, host_key).unwrap());
    assert_ne!(rsa_a, sandbox.ssh(&ip_b, rsa_key).unwrap());

    // The pool refills with new spares; the API still shows two droplets.
    let refilled = sandbox.wait_spares(&sandbox.url, 2).await;
    assert_eq!(refilled.len(), 2, "{refilled:?}");
    assert!(refilled.is_disjoint(&spares));
    assert_eq!(client.list_droplets(None).await.unwrap().len(), 2);

    // A power cycle keeps its name and host keys (Docker gives the container back the spare's
    // hostname; the droplet's init puts the droplet's back).
    act(&client, a.id, DropletAction::PowerCycle).await;
    let a = wait_active(&client, a.id).await;
    assert_eq!(a.public_ipv4().unwrap().to_string(), ip_a);
    assert_eq!(sandbox.ssh(&ip_a, "hostname").unwrap(), "pool-a");
    assert_eq!(sandbox.ssh(&ip_a, host_key).unwrap(), key_a);
    assert_eq!(sandbox.ssh(&ip_a, rsa_key).unwrap(), rsa_a);
    assert_eq!(
        sandbox.ssh(&ip_a, "cat /etc/infra-droplet-id").unwrap(),
        a.id.to_string()
    );

    // A snapshot of it makes a droplet (on demand) with its disk, its own name and host keys.
    sandbox
        .ssh(&ip_a, "echo written-on-pool-a >/root/marker")
        .unwrap();
    act(
        &client,
        a.id,
        DropletAction::Snapshot {
            name: "pool-a-snap".into(),
        },
    )
    .await;
    let snapshot = client.list_droplet_snapshots(a.id).await.unwrap()[0].id;
    let restored = client
        .create_droplet(&DropletCreate {
            name: "pool-c".into(),
            spec: spec(ImageRef::Id(snapshot), key.id, &["pool"]),
        })
        .await
        .unwrap();
    let c = wait_active(&client, restored.droplet.id).await;
    let ip_c = c.public_ipv4().unwrap().to_string();
    assert!(!refilled.contains(&inspect(&container(c.id), "{{.Id}}")));
    assert!(![&ip_a, &ip_b].contains(&&ip_c));
    assert_eq!(
        sandbox.ssh(&ip_c, "cat /root/marker").unwrap(),
        "written-on-pool-a"
    );
    assert_eq!(sandbox.ssh(&ip_c, "hostname").unwrap(), "pool-c");
    assert_ne!(sandbox.ssh(&ip_c, host_key).unwrap(), key_a);
    assert_eq!(
        sandbox
            .ssh(
                &ip_c,
                "cat /etc/infra-droplet-id; test -e /etc/infra-droplet || echo none"
            )
            .unwrap(),
        format!("{}\nnone", c.id)
    );

    // A restarted server keeps the spares it had (the same containers).
    let pid = sandbox.test.json("config/.infra/sandbox/server.json")["pid"]
        .as_u64()
        .unwrap();
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    wait_for("the server to stop", Duration::from_secs(15), || async {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    let again = sandbox.infra(&["sandbox", "up", "--spares", "2"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let url = field(&again.stdout, "DO_API_URL=");
    let status = sandbox.spares(&url).await;
    assert_eq!(status["ready"], json!(2), "{status}");
    assert_eq!(sandbox.wait_spares(&url, 2).await, refilled);
    let client = sandbox.client_at(&url, RetryPolicy::default());
    assert_eq!(client.list_droplets(None).await.unwrap().len(), 3);

    // Delete: the droplets' containers go, the spares stay, until `down`.
    for id in [a.id, b.id, c.id] {
        let name = container(id);
        client.delete_droplet(id).await.unwrap();
        assert!(docker_lines(&["ps", "-a", "-q", "--filter", &format!("name={name}$")]).is_empty());
    }
    let label = format!("label=infra.sandbox={sandbox_id}");
    let left: BTreeSet<String> =
        docker_lines(&["ps", "-a", "-q", "--no-trunc", "--filter", &label])
            .into_iter()
            .collect();
    assert_eq!(left, refilled);
    let down = sandbox.infra(&["sandbox", "down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(docker_lines(&["ps", "-a", "-q", "--filter", &label]).is_empty());
}

/// Sends requests to the sandbox and holds each one, and each answer, against the contract.
struct Contract<'a> {
    sandbox: &'a Sandbox,
    http: reqwest::Client,
    spec: &'static Spec,
    /// Operations answered with a 2xx.
    covered: Mutex<BTreeSet<String>>,
    problems: Mutex<Vec<String>>,
}

impl<'a> Contract<'a> {
    fn new(sandbox: &'a Sandbox) -> Contract<'a> {
        Contract {
            sandbox,
            http: sandbox.http(),
            spec: Spec::contract(),
            covered: Mutex::new(BTreeSet::new()),
            problems: Mutex::new(Vec::new()),
        }
    }

    /// Sends a request; `valid` says whether its body must itself follow the contract (the
    /// requests meant to be refused do not).
    async fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<Value>,
        valid: bool,
    ) -> (u16, Value) {
        let token = self.sandbox.token.clone();
        self.call_as(&token, method, target, body, valid).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: &str,
        target: &str,
        body: Option<Value>,
        valid: bool,
    ) -> (u16, Value) {
        let op = self
            .spec
            .find(method, target)
            .unwrap_or_else(|| panic!("{method} {target} is no operation of the contract"));
        let mut problems = Vec::new();
        if let Err(v) = op.validate_target(target) {
            problems.push(format!(
                "{method} {target} (request target):\n{}",
                report(&v)
            ));
        }
        if let (Some(body), true) = (&body, valid) {
            if let Err(v) = op.validate_request(body) {
                problems.push(format!("{method} {target} (request body):\n{}", report(&v)));
            }
        }
        let mut request = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{target}", self.sandbox.url),
            )
            .bearer_auth(token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        for header in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            if response.headers().get(header).is_none() {
                problems.push(format!("{method} {target}: no `{header}` header"));
            }
        }
        let text = response.text().await.unwrap();
        let value = if status == 204 {
            if !text.is_empty() {
                problems.push(format!("{method} {target}: 204 with a body: {text}"));
            }
            Value::Null
        } else {
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{method} {target} answered {status} with no JSON ({e}): {text}")
            });
            if let Err(v) = op.validate_response(status, &value, Options::response().strict()) {
                problems.push(format!(
                    "{method} {target} -> {status}:\n{}\n{}",
                    report(&v),
                    serde_json::to_string_pretty(&value).unwrap()
                ));
            }
            value
        };
        if (200..300).contains(&status) {
            self.covered.lock().unwrap().insert(op.id().to_owned());
        }
        self.problems.lock().unwrap().extend(problems);
        (status, value)
    }

    /// `call`, expecting `status`.
    async fn expect(&self, status: u16, method: &str, target: &str, body: Option<Value>) -> Value {
        let (got, value) = self.call(method, target, body, status < 400).await;
        assert_eq!(got, status, "{method} {target} answered {got}: {value}");
        value
    }

    async fn wait_active(&self, id: u64) {
        wait_for(&format!("droplet {id} to be active"), BOOT, || async {
            let droplet = self
                .expect(200, "GET", &format!("/v2/droplets/{id}"), None)
                .await;
            (droplet["droplet"]["status"] == "active").then_some(())
        })
        .await
    }

    async fn wait_action(&self, id: u64) {
        wait_for(&format!("action {id}"), BOOT, || async {
            let action = self
                .expect(200, "GET", &format!("/v2/actions/{id}"), None)
                .await;
            let status = action["action"]["status"].as_str().unwrap().to_owned();
            assert_ne!(status, "errored", "action {id} errored: {action}");
            (status == "completed").then_some(())
        })
        .await
    }
}

/// Walks every route of the contract (each operation answered with a 2xx at least once, plus
/// DigitalOcean's error answers) and validates every answer against the contract's schemas.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_answers_every_route_as_the_contract_says() {
    let Some(sandbox) = Sandbox::up(&["--spares", "2"]) else {
        return;
    };
    let api = Contract::new(&sandbox);

    api.expect(200, "GET", "/v2/account", None).await;
    let key = api
        .expect(
            201,
            "POST",
            "/v2/account/keys",
            Some(json!({"name": "contract", "public_key": sandbox.public_key()})),
        )
        .await;
    let key_id = key["ssh_key"]["id"].as_u64().unwrap();
    let fingerprint = key["ssh_key"]["fingerprint"].as_str().unwrap().to_owned();
    api.expect(200, "GET", "/v2/account/keys", None).await;
    api.expect(200, "GET", &format!("/v2/account/keys/{key_id}"), None)
        .await;
    api.expect(200, "GET", &format!("/v2/account/keys/{fingerprint}"), None)
        .await;
    let sizes = api
        .expect(200, "GET", "/v2/sizes?per_page=2&page=2", None)
        .await;
    assert!(sizes["links"]["pages"]["next"].is_string(), "{sizes}");
    api.expect(200, "GET", "/v2/regions", None).await;
    let image = api
        .expect(200, "GET", "/v2/images/debian-12-x64", None)
        .await;
    let image_id = image["image"]["id"].as_u64().unwrap();
    api.expect(200, "GET", &format!("/v2/images/{image_id}"), None)
        .await;

    // Two droplets at once, then their lists, one by one and by tag.
    let created = api
        .expect(
            202,
            "POST",
            "/v2/droplets",
            Some(json!({
                "names": ["contract-1", "contract-2"],
                "region": "nyc3",
                "size": "s-1vcpu-1gb",
                "image": "debian-12-x64",
                "ssh_keys": [key_id],
                "tags": ["contract"],
            })),
        )
        .await;
    let ids: Vec<u64> = created["droplets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let create_action = created["links"]["actions"][0]["id"].as_u64().unwrap();
    let (one, two) = (ids[0], ids[1]);
    api.expect(200, "GET", "/v2/droplets", None).await;
    let tagged = api
        .expect(
            200,
            "GET",
            "/v2/droplets?tag_name=contract&per_page=1",
            None,
        )
        .await;
    assert_eq!(tagged["meta"]["total"], json!(2));
    api.wait_active(one).await;
    api.wait_active(two).await;
    api.wait_action(create_action).await;

    // A snapshot of a droplet that is off, and a droplet made from it.
    let off = api
        .expect(
            201,
            "POST",
            &format!("/v2/droplets/{two}/actions"),
            Some(json!({"type": "power_off"})),
        )
        .await;
    api.wait_action(off["action"]["id"].as_u64().unwrap()).await;
    let snapshot = api
        .expect(
            201,
            "POST",
            &format!("/v2/droplets/{two}/actions"),
            Some(json!({"type": "snapshot", "name": "contract-snap"})),
        )
        .await;
    let snapshot_action = snapshot["action"]["id"].as_u64().unwrap();
    api.expect(
        200,
        "GET",
        &format!("/v2/droplets/{two}/actions/{snapshot_action}"),
        None,
    )
    .await;
    api.wait_action(snapshot_action).await;
    let on = api
        .expect(
            201,
            "POST",
            &format!("/v2/droplets/{two}/actions"),
            Some(json!({"type": "power_on"})),
        )
        .await;
    api.wait_action(on["action"]["id"].as_u64().unwrap()).await;
    api.expect(200, "GET", &format!("/v2/droplets/{two}/actions"), None)
        .await;
    let snapshots = api
        .expect(200, "GET", &format!("/v2/droplets/{two}/snapshots"), None)
        .await;
    let snapshot_id = snapshots["snapshots"][0]["id"].as_u64().unwrap();
    api.expect(200, "GET", "/v2/snapshots", None).await;
    api.expect(200, "GET", "/v2/snapshots?resource_type=droplet", None)
        .await;
    api.expect(200, "GET", &format!("/v2/snapshots/{snapshot_id}"), None)
        .await;
    api.expect(200, "GET", &format!("/v2/images/{snapshot_id}"), None)
        .await;
    let third = api
        .expect(
            202,
            "POST",
            "/v2/droplets",
            Some(json!({
                "name": "contract-3",
                "size": "s-1vcpu-1gb",
                "image": snapshot_id,
                "ssh_keys": [fingerprint],
            })),
        )
        .await;
    let three = third["droplet"]["id"].as_u64().unwrap();
    api.wait_active(three).await;
    let ip_three = third["droplet"]["networks"]["v4"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_owned();
    // The droplet's own engine starts from a snapshot taken while it was off.
    sandbox.wait_engine(&ip_three).await;

    // Tags.
    api.expect(201, "POST", "/v2/tags", Some(json!({"name": "contract-b"})))
        .await;
    api.expect(
        204,
        "POST",
        "/v2/tags/contract-b/resources",
        Some(
            json!({"resources": [{"resource_id": three.to_string(), "resource_type": "droplet"}]}),
        ),
    )
    .await;
    let tagged = api
        .expect(200, "GET", "/v2/droplets?tag_name=contract-b", None)
        .await;
    assert_eq!(tagged["droplets"][0]["id"], json!(three));

    // The lists general clients call: tags, and images by type and owner.
    let tags = api.expect(200, "GET", "/v2/tags", None).await;
    let tag = |name: &str| {
        tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no tag {name} in {tags}"))
    };
    assert_eq!(tag("contract")["resources"]["droplets"]["count"], json!(2));
    assert_eq!(tag("contract-b")["resources"]["count"], json!(1));
    let distribution = api
        .expect(200, "GET", "/v2/images?type=distribution", None)
        .await;
    let slugs: Vec<&str> = distribution["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["slug"].as_str().unwrap())
        .collect();
    assert!(slugs.contains(&"debian-12-x64"), "{slugs:?}");
    let private = api
        .expect(200, "GET", "/v2/images?private=true", None)
        .await;
    assert_eq!(private["images"][0]["id"], json!(snapshot_id), "{private}");
    assert_eq!(private["meta"]["total"], json!(1), "{private}");
    let all = api
        .expect(200, "GET", "/v2/images?per_page=2&page=1", None)
        .await;
    assert_eq!(all["meta"]["total"], json!(slugs.len() + 1), "{all}");

    // Every route also answers with a trailing slash, as DigitalOcean's do (python-digitalocean
    // sends every path that way).
    let http = sandbox.http();
    for (plain, slashed) in [
        ("/v2/account".to_owned(), "/v2/account/".to_owned()),
        (
            "/v2/droplets?tag_name=contract".to_owned(),
            "/v2/droplets/?tag_name=contract".to_owned(),
        ),
        (
            format!("/v2/droplets/{one}"),
            format!("/v2/droplets/{one}/"),
        ),
        ("/v2/tags".to_owned(), "/v2/tags/".to_owned()),
    ] {
        let get = |target: String| {
            let request = http
                .get(format!("{}{target}", sandbox.url))
                .bearer_auth(&sandbox.token);
            async move {
                let response = request.send().await.unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            }
        };
        let (expected, answer) = (get(plain).await, get(slashed.clone()).await);
        assert_eq!(expected.0, 200);
        assert_eq!(answer, expected, "{slashed}");
    }

    // Firewalls.
    let rule =
        json!({"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}});
    let out =
        json!({"protocol": "tcp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0"]}});
    let firewall = api
        .expect(
            202,
            "POST",
            "/v2/firewalls",
            Some(json!({
                "name": "contract-fw",
                "inbound_rules": [rule],
                "outbound_rules": [out],
                "droplet_ids": [one],
                "tags": ["contract-b"],
            })),
        )
        .await;
    let fw = firewall["firewall"]["id"].as_str().unwrap().to_owned();
    api.expect(200, "GET", "/v2/firewalls", None).await;
    api.expect(200, "GET", &format!("/v2/firewalls/{fw}"), None)
        .await;
    api.expect(
        200,
        "PUT",
        &format!("/v2/firewalls/{fw}"),
        Some(json!({"name": "contract-fw2", "inbound_rules": [rule], "droplet_ids": [one]})),
    )
    .await;
    let droplets = json!({"droplet_ids": [two]});
    api.expect(
        204,
        "POST",
        &format!("/v2/firewalls/{fw}/droplets"),
        Some(droplets.clone()),
    )
    .await;
    api.expect(
        204,
        "DELETE",
        &format!("/v2/firewalls/{fw}/droplets"),
        Some(droplets),
    )
    .await;
    let rules = json!({"inbound_rules": [{"protocol": "tcp", "ports": "80", "sources": {"tags": ["contract"]}}]});
    api.expect(
        204,
        "POST",
        &format!("/v2/firewalls/{fw}/rules"),
        Some(rules.clone()),
    )
    .await;
    api.expect(
        204,
        "DELETE",
        &format!("/v2/firewalls/{fw}/rules"),
        Some(rules),
    )
    .await;
    api.expect(204, "DELETE", &format!("/v2/firewalls/{fw}"), None)
        .await;

    // Reserved IPs.
    let reserved = api
        .expect(
            202,
            "POST",
            "/v2/reserved_ips",
            Some(json!({"droplet_id": one})),
        )
        .await;
    let ip = reserved["reserved_ip"]["ip"].as_str().unwrap().to_owned();
    assert_eq!(sandbox.ssh(&ip, "hostname").unwrap(), "contract-1");
    api.expect(200, "GET", &format!("/v2/reserved_ips/{ip}"), None)
        .await;
    api.expect(
        201,
        "POST",
        &format!("/v2/reserved_ips/{ip}/actions"),
        Some(json!({"type": "assign", "droplet_id": three})),
    )
    .await;
    assert_eq!(sandbox.ssh(&ip, "hostname").unwrap(), "contract-3");
    api.expect(
        201,
        "POST",
        &format!("/v2/reserved_ips/{ip}/actions"),
        Some(json!({"type": "unassign"})),
    )
    .await;
    api.expect(204, "DELETE", &format!("/v2/reserved_ips/{ip}"), None)
        .await;
    let regional = api
        .expect(
            202,
            "POST",
            "/v2/reserved_ips",
            Some(json!({"region": "nyc3"})),
        )
        .await;
    let regional = regional["reserved_ip"]["ip"].as_str().unwrap().to_owned();
    api.expect(204, "DELETE", &format!("/v2/reserved_ips/{regional}"), None)
        .await;

    // DigitalOcean's errors.
    let base =
        json!({"name": "bad", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"});
    for (field, value, message) in [
        (
            "size",
            json!("s-64vcpu-1tb"),
            "You specified an invalid size for Droplet creation.",
        ),
        (
            "region",
            json!("mars1"),
            "You specified an invalid region for Droplet creation.",
        ),
        (
            "image",
            json!("windows-11"),
            "You specified an invalid image for Droplet creation.",
        ),
        (
            "image",
            json!(999),
            "You specified an invalid image for Droplet creation.",
        ),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let error = api.expect(422, "POST", "/v2/droplets", Some(body)).await;
        assert_eq!(
            error,
            json!({"id": "unprocessable_entity", "message": message})
        );
    }
    let resize_on = api
        .expect(
            422,
            "POST",
            &format!("/v2/droplets/{one}/actions"),
            Some(json!({"type": "resize", "size": "s-2vcpu-4gb"})),
        )
        .await;
    assert_eq!(
        resize_on,
        json!({"id": "unprocessable_entity", "message": "Droplet is currently on. Please power it off to run this event."})
    );
    let missing = api.expect(404, "GET", "/v2/droplets/1", None).await;
    assert_eq!(missing["id"], json!("not_found"));
    api.expect(404, "GET", "/v2/images/999", None).await;
    api.expect(404, "GET", "/v2/snapshots/999", None).await;
    api.expect(400, "POST", "/v2/tags", Some(json!({"name": "not ok"})))
        .await;
    let (status, unauthorized) = api
        .call_as("dop_v1_wrong", "GET", "/v2/droplets", None, true)
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        unauthorized,
        json!({"id": "unauthorized", "message": "Unable to authenticate you."})
    );
    let busy = api
        .expect(
            201,
            "POST",
            &format!("/v2/droplets/{two}/actions"),
            Some(json!({"type": "reboot"})),
        )
        .await;
    let pending = api
        .expect(
            422,
            "POST",
            &format!("/v2/droplets/{two}/actions"),
            Some(json!({"type": "power_cycle"})),
        )
        .await;
    assert_eq!(
        pending["message"],
        json!("Droplet already has a pending event.")
    );
    api.wait_action(busy["action"]["id"].as_u64().unwrap())
        .await;

    // Deletes.
    api.expect(204, "DELETE", &format!("/v2/droplets/{three}"), None)
        .await;
    api.expect(204, "DELETE", "/v2/droplets?tag_name=contract", None)
        .await;
    let left = api.expect(200, "GET", "/v2/droplets", None).await;
    assert_eq!(left["droplets"], json!([]));
    api.expect(204, "DELETE", "/v2/tags/contract-b", None).await;
    api.expect(204, "DELETE", &format!("/v2/snapshots/{snapshot_id}"), None)
        .await;
    api.expect(204, "DELETE", &format!("/v2/account/keys/{key_id}"), None)
        .await;

    let problems = api.problems.lock().unwrap();
    assert!(
        problems.is_empty(),
        "{} answers break the contract:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    let covered = api.covered.lock().unwrap();
    let missed: Vec<String> = api
        .spec
        .operations()
        .iter()
        .filter(|op| !covered.contains(op.id()))
        .map(|op| op.name())
        .collect();
    assert!(
        missed.is_empty(),
        "routes never answered with a 2xx: {missed:#?}"
    );
}

/// A wrong token gets DigitalOcean's 401 body and a clear message, and no token (right or
/// wrong) shows up in output or logs.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_refuses_a_wrong_token_without_showing_it() {
    let Some(sandbox) = Sandbox::up(&["--spares", "0"]) else {
        return;
    };
    let wrong = "dop_v1_this-is-not-the-sandbox-token-0123456789";
    let ca = std::fs::read(&sandbox.ca).unwrap();
    let client = Client::trusting(
        &sandbox.url,
        Token::new(wrong).unwrap(),
        RetryPolicy::default(),
        &ca,
    )
    .unwrap();
    let error = client.account().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    let message = error.to_string();
    assert!(message.contains("Unable to authenticate you"), "{message}");
    assert!(message.contains("DO_TOKEN"), "{message}");
    assert!(!message.contains(wrong) && !message.contains(&sandbox.token));
    sandbox.client().account().await.unwrap();

    let status = sandbox.infra(&["sandbox", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains(&sandbox.url), "{}", status.stdout);
    let log = sandbox.test.read("config/.infra/sandbox/server.log");
    assert!(log.contains("GET /v2/account -> 401"), "{log}");
    for text in [&status.stdout, &status.stderr, &log] {
        assert!(!text.contains(wrong) && !text.contains(&sandbox.token));
    }
}

/// `--fail-rate` answers a share of requests with 429 (with `retry-after`) or 500, each in
/// DigitalOcean's shape; `--latency-ms` delays every answer; the client's retries get through.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_injects_the_faults_it_was_started_with() {
    let Some(sandbox) = Sandbox::up(&["--fail-rate", "0.5", "--latency-ms", "20", "--spares", "0"])
    else {
        return;
    };
    let spec = Spec::contract();
    let op = spec.find("GET", "/v2/sizes").unwrap();
    let http = sandbox.http();
    let started = Instant::now();
    let mut counts = [0usize; 3];
    for _ in 0..60 {
        let response = http
            .get(format!("{}/v2/sizes", sandbox.url))
            .bearer_auth(&sandbox.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").is_some();
        let body: Value = response.json().await.unwrap();
        op.validate_response(status, &body, Options::response())
            .unwrap_or_else(|v| panic!("{status}: {}", report(&v)));
        match status {
            200 => counts[0] += 1,
            429 => {
                assert!(retry_after, "a 429 without retry-after");
                counts[1] += 1
            }
            500 => counts[2] += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(60 * 20));
    assert!(
        counts.iter().all(|n| *n >= 5),
        "200/429/500 counts: {counts:?}"
    );
    // With half the requests failing, the default five attempts fail together one time in
    // thirty-two: give this client a budget that half-and-half odds cannot exhaust.
    let patient = sandbox.client_at(
        &sandbox.url,
        RetryPolicy {
            max_attempts: 30,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
    );
    let sizes = patient.list_sizes().await.unwrap();
    assert!(sizes.iter().any(|s| s.slug == "s-1vcpu-1gb"));
}

/// With a fifth of requests failing (429 with `retry-after`, or 500, half of those after the
/// change was made), every call gets through within its retry budget, and creating droplets
/// and keys never makes one twice: an ambiguous create is followed by a look, not a blind retry.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_converges_on_a_flaky_sandbox_without_duplicates() {
    let Some(sandbox) = Sandbox::up(&["--fail-rate", "0.2", "--spares", "2"]) else {
        return;
    };
    let client = sandbox.client();
    client.account().await.unwrap();
    assert!(!client.list_sizes().await.unwrap().is_empty());
    assert!(!client.list_regions().await.unwrap().is_empty());
    let public = sandbox.public_key();
    let key = client.ensure_ssh_key("infra", &public).await.unwrap();
    // The same key under another comment is the same key.
    let again = client
        .ensure_ssh_key("other-name", &format!("{} renamed", public.trim()))
        .await
        .unwrap();
    assert_eq!(again.id, key.id);
    assert_eq!(client.list_ssh_keys().await.unwrap().len(), 1);

    let names = ["flaky-a", "flaky-b", "flaky-c"];
    for name in names {
        let request = DropletCreate {
            name: name.into(),
            spec: spec(ImageRef::Slug("debian-12-x64".into()), key.id, &[]),
        };
        client.ensure_droplet(&request, "infra").await.unwrap();
    }
    // A second pass (a re-run of orchestrate) adopts every one.
    for name in names {
        let request = DropletCreate {
            name: name.into(),
            spec: spec(ImageRef::Slug("debian-12-x64".into()), key.id, &[]),
        };
        let (droplet, outcome) = client.ensure_droplet(&request, "infra").await.unwrap();
        assert_eq!(outcome, Outcome::Adopted, "{name}");
        assert!(droplet.has_tag("infra"));
    }
    let listed = client.list_droplets_by_tag("infra").await.unwrap();
    let mut listed_names: Vec<&str> = listed.iter().map(|d| d.name.as_str()).collect();
    listed_names.sort();
    assert_eq!(listed_names, names, "one droplet per name, none twice");
    for droplet in &listed {
        wait_active(&client, droplet.id).await;
        client.delete_droplet(droplet.id).await.unwrap();
    }
    assert!(client
        .list_droplets_by_tag("infra")
        .await
        .unwrap()
        .is_empty());
}

/// `Client::for_project` finds the project's sandbox by itself: no variables to export.
#[tokio::test(flavor = "multi_thread")]
async fn infra_finds_the_project_sandbox_without_exported_variables() {
    let Some(sandbox) = Sandbox::up(&["--spares", "0"]) else {
        return;
    };
    if std::env::var_os("DO_TOKEN").is_some() {
        panic!("DO_TOKEN is set in the test environment; unset it to test sandbox discovery");
    }
    let project = infra::project::Project::new(sandbox.test.path(), Path::new("config"));
    let client = Client::for_project(&project).unwrap();
    assert_eq!(client.base_url().trim_end_matches('/'), sandbox.url);
    client.account().await.unwrap();

    // Exported as `up` prints them, the variables get the sandbox's CA too; the same server
    // under another URL is another endpoint, which the CA is not trusted for: refused at once,
    // with what to do.
    let cleanup = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_infra"))
            .arg("cleanup")
            .current_dir(sandbox.test.path())
            .env("DO_TOKEN", &sandbox.token)
            .env("DO_API_URL", url)
            .output()
            .unwrap()
    };
    let exported = cleanup(&sandbox.url);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let elsewhere = cleanup(&sandbox.url.replace("127.0.0.1", "localhost"));
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert_eq!(elsewhere.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("after 1 attempt(s)") && stderr.contains("certificate is not trusted"),
        "{stderr}"
    );
    assert!(!stderr.contains(&sandbox.token));
}

/// A resize needs the droplet off (DigitalOcean's 422 otherwise), then gives it the new size's
/// CPUs and memory for real: `nproc` and the memory cgroup inside change, and GET shows the new
/// size. The droplet comes from a spare, which runs unlimited until it knows its size.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_resizes_a_droplet_that_is_off() {
    let Some(sandbox) = Sandbox::up(&["--spares", "1"]) else {
        return;
    };
    let client = sandbox.client();
    let key = sandbox.register_key(&client).await;
    let created = client
        .create_droplet(&DropletCreate {
            name: "sized".into(),
            spec: spec("debian-12-x64".into(), key.id, &[]),
        })
        .await
        .unwrap();
    let droplet = wait_active(&client, created.droplet.id).await;
    assert_eq!(droplet.size_slug, "s-1vcpu-1gb");
    let ip = droplet.public_ipv4().unwrap().to_string();
    let memory = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
    assert_eq!(sandbox.ssh(&ip, "nproc").unwrap(), "1");
    assert_eq!(sandbox.ssh(&ip, memory).unwrap(), (1u64 << 30).to_string());

    let refused = client
        .resize_droplet(droplet.id, "s-2vcpu-4gb")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422), "{refused}");
    assert!(
        refused.to_string().contains("Please power it off"),
        "{refused}"
    );
    act(&client, droplet.id, DropletAction::PowerOff).await;
    let unknown = client
        .resize_droplet(droplet.id, "s-64vcpu-1tb")
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(422), "{unknown}");
    let resize = client
        .resize_droplet(droplet.id, "s-2vcpu-4gb")
        .await
        .unwrap();
    assert_eq!(resize.kind, "resize");
    client
        .wait_for_action(resize.id, Duration::from_millis(250), BOOT)
        .await
        .unwrap();
    let resized = client.get_droplet(droplet.id).await.unwrap();
    assert_eq!(
        (resized.size_slug.as_str(), resized.vcpus, resized.memory),
        ("s-2vcpu-4gb", 2, 4096)
    );
    assert_eq!(resized.status, DropletStatus::Off);
    act(&client, droplet.id, DropletAction::PowerOn).await;
    wait_active(&client, droplet.id).await;
    // As many CPUs as the size has, or as this machine has if fewer.
    let machine = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        sandbox.ssh(&ip, "nproc").unwrap(),
        machine.min(2).to_string()
    );
    assert_eq!(sandbox.ssh(&ip, memory).unwrap(), (4u64 << 30).to_string());
}

/// `up`, `down` and `image` change this machine, not a cloud: `--dry-run` is refused with exit
/// 2 and a message saying what to use instead, and nothing is started or removed.
#[test]
fn sandbox_commands_refuse_dry_run() {
    let test = Test::init();
    let before = test.snapshot();
    for (args, says) in [
        (
            &["sandbox", "up", "--dry-run"][..],
            "`infra sandbox up` has no dry run",
        ),
        (
            &["--dry-run", "sandbox", "down"][..],
            "`infra sandbox down` has no dry run",
        ),
        (
            &["sandbox", "image", "--dry-run"][..],
            "`infra sandbox image` has no dry run",
        ),
    ] {
        let out = test.infra(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        out.assert_stderr_contains(says);
        out.assert_stderr_contains("without `--dry-run`");
    }
    before.assert_same(&test.snapshot());
    assert!(!test.path().join("config/.infra/sandbox").exists());
    // `status` only reads, so it takes the flag.
    let status = test.infra(["--dry-run", "sandbox", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    status.assert_stdout_contains("sandbox: not running");
}
