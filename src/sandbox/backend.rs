//! Droplets as Docker containers, driven through the `docker` command line.
//!
//! A droplet is a container of the droplet image (`image.rs`) on the sandbox's own bridge
//! network, with a fixed address (`--ip`, so a power cycle keeps it), its name as hostname,
//! and enough privileges to run its own Docker Engine and iptables (the flags measured in
//! ENVIRONMENT.md: every capability but `SYS_RESOURCE`, no seccomp or masked paths, every
//! device). Not a security boundary: these are the user's own test hosts.
//!
//! Every object made here carries the label `infra.sandbox=<sandbox id>`, so `down` removes
//! exactly what this sandbox made. Nothing else is in a droplet's container configuration that
//! names the droplet: a spare (`spares.rs`) is started before its droplet exists, and Docker
//! cannot change a container's labels, hostname or network aliases. A droplet made from a spare
//! even keeps the spare's container name (`infra-sbx-<sandbox id>-spare-<hex>`; a rename would
//! be one more call this machine's Docker Engine makes droplets created together wait for in
//! turn): the sandbox finds every droplet's container by the name its record holds, never by
//! the droplet's id. So droplets have no network alias either: they reach each other by
//! address, as on DigitalOcean, whose droplet names do not resolve; the init
//! (`droplet_init.sh`) sets a spare's hostname itself.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::sandbox::store::NetworkRecord;

/// The label every Docker object of a sandbox carries.
pub const LABEL: &str = "infra.sandbox";

/// The droplet image's entrypoint, restored on snapshots (see [`Docker::snapshot`]).
const ENTRYPOINT: &str = r#"ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/sbin/droplet-init"]"#;

/// State an engine restart or a power cycle leaves behind. A snapshot must not hold
/// `/var/lib/docker/runtimes` in a lower layer: on fuse-overlayfs, renaming a directory that
/// hides a lower one shows the lower one again, and the inner dockerd then fails to start with
/// "failed to setup runtimes dir ... file exists".
const SNAPSHOT_CLEANUP: [&str; 8] = [
    "/var/lib/docker/runtimes",
    "/var/lib/docker/tmp",
    "/run/docker",
    "/run/docker.pid",
    "/run/docker.sock",
    "/run/containerd",
    "/run/sshd.pid",
    "/run/nginx.pid",
];

#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct DockerError {
    pub command: String,
    pub message: String,
}

/// Whether a container is running, stopped or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Stopped,
    Missing,
}

/// What `docker run` needs to start a droplet (or a spare).
#[derive(Debug, Clone)]
pub struct DropletRun<'a> {
    pub container: &'a str,
    pub hostname: &'a str,
    /// `INFRA_DROPLET_ID`: the droplet's id, or a spare's own name until it becomes one.
    pub identity: &'a str,
    pub sandbox_id: &'a str,
    pub network: &'a str,
    pub ip: Ipv4Addr,
    pub image: &'a str,
    /// A spare's own directory of the sandbox's, bind-mounted at [`SPARE_MOUNT`]: how the
    /// sandbox hands it over without a `docker exec` (`spares.rs`).
    pub spare_dir: Option<&'a std::path::Path>,
    /// A droplet's size; a spare runs unlimited until it becomes a droplet ([`Docker::limit`]).
    pub limits: Option<&'a Limits>,
}

/// The share of this machine a droplet of some size gets: as many of the machine's CPUs as the
/// size has vcpus (all of them when it has more), so that `nproc` inside shows the size; and
/// the size's memory, with no swap beyond it. Which CPUs depends on the droplet, so that
/// droplets of one vcpu spread over the machine instead of all sharing the first CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `--cpuset-cpus`: `0`, `0,1`, ...
    pub cpus: String,
    pub memory_mib: u64,
}

impl Limits {
    pub fn new(vcpus: u64, memory_mib: u64, droplet_id: u64) -> Limits {
        let machine = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        Limits::on(machine, vcpus, memory_mib, droplet_id)
    }

    fn on(machine: u64, vcpus: u64, memory_mib: u64, droplet_id: u64) -> Limits {
        let count = vcpus.clamp(1, machine.max(1));
        let first = droplet_id.wrapping_mul(count) % machine.max(1);
        let mut chosen: Vec<u64> = (0..count).map(|i| (first + i) % machine.max(1)).collect();
        chosen.sort_unstable();
        let cpus = chosen
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Limits { cpus, memory_mib }
    }

    /// The `docker run` / `docker update` flags that set them.
    fn args(&self) -> Vec<String> {
        let memory = format!("{}m", self.memory_mib);
        vec![
            "--cpuset-cpus".into(),
            self.cpus.clone(),
            "--memory".into(),
            memory.clone(),
            "--memory-swap".into(),
            memory,
        ]
    }
}

/// Where a spare sees its directory of the sandbox's (`droplet_init.sh` watches it).
pub const SPARE_MOUNT: &str = "/run/infra-spare";

/// The `docker` command line.
#[derive(Debug, Clone)]
pub struct Docker {
    program: String,
}

impl Default for Docker {
    fn default() -> Self {
        Docker {
            program: std::env::var("INFRA_DOCKER").unwrap_or_else(|_| "docker".to_owned()),
        }
    }
}

impl Docker {
    /// Runs `docker args...`; its stdout, trimmed, or its stderr as the error.
    pub async fn run(&self, args: &[&str]) -> Result<String, DockerError> {
        self.run_with_input(args, None).await
    }

    pub async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<String, DockerError> {
        let command = format!("docker {}", args.first().copied().unwrap_or(""));
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| DockerError {
            command: command.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "docker is not installed (the sandbox runs droplets as Docker containers)".into()
            } else {
                e.to_string()
            },
        })?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input).await.map_err(|e| DockerError {
                command: command.clone(),
                message: format!("cannot write its input: {e}"),
            })?;
        }
        let output = child.wait_with_output().await.map_err(|e| DockerError {
            command: command.clone(),
            message: e.to_string(),
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(DockerError {
                command,
                message: stderr
                    .trim()
                    .trim_start_matches("Error response from daemon: ")
                    .to_owned(),
            })
        }
    }

    /// Fails with a clear message when Docker cannot be used.
    pub async fn check(&self) -> Result<(), DockerError> {
        self.run(&["version", "--format", "{{.Server.Version}}"])
            .await
            .map(|_| ())
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        Ok(!self.run(&["images", "-q", image]).await?.is_empty())
    }

    /// Makes the sandbox's bridge network on the first free /24 of `10.213.0.0/16` and up.
    pub async fn create_network(
        &self,
        name: &str,
        sandbox_id: &str,
    ) -> Result<NetworkRecord, DockerError> {
        let label = format!("{LABEL}={sandbox_id}");
        // Start at a place that depends on the sandbox, so two sandboxes rarely race for one.
        let start = sandbox_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        let mut last = None;
        for step in 0..64u32 {
            let n = (start + step) % 4096;
            let (second, third) = (213 + n / 256, n % 256);
            if second > 255 {
                continue;
            }
            let subnet = format!("10.{second}.{third}.0/24");
            let gateway = Ipv4Addr::new(10, second as u8, third as u8, 1);
            let gateway_text = gateway.to_string();
            match self
                .run(&[
                    "network",
                    "create",
                    "--driver",
                    "bridge",
                    "--subnet",
                    &subnet,
                    "--gateway",
                    &gateway_text,
                    "--label",
                    &label,
                    name,
                ])
                .await
            {
                Ok(_) => {
                    return Ok(NetworkRecord {
                        name: name.to_owned(),
                        subnet,
                        gateway,
                    })
                }
                Err(e) if e.message.contains("overlap") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(DockerError {
            command: "docker network create".into(),
            message: "no free /24 in 10.213.0.0-10.228.255.255".into(),
        }))
    }

    /// Makes the network again with the address range it had (after a host reboot or a
    /// manual removal), so droplets keep their addresses.
    pub async fn ensure_network(
        &self,
        network: &NetworkRecord,
        sandbox_id: &str,
    ) -> Result<(), DockerError> {
        if self
            .run(&["network", "inspect", &network.name])
            .await
            .is_ok()
        {
            return Ok(());
        }
        let gateway = network.gateway.to_string();
        let label = format!("{LABEL}={sandbox_id}");
        self.run(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &network.subnet,
            "--gateway",
            &gateway,
            "--label",
            &label,
            &network.name,
        ])
        .await
        .map(|_| ())
    }

    /// Creates and starts a droplet's container.
    pub async fn run_droplet(&self, droplet: &DropletRun<'_>) -> Result<(), DockerError> {
        let label = format!("{LABEL}={}", droplet.sandbox_id);
        let id_env = format!("INFRA_DROPLET_ID={}", droplet.identity);
        let ip = droplet.ip.to_string();
        let mount = droplet
            .spare_dir
            .map(|dir| format!("{}:{SPARE_MOUNT}", dir.display()));
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            droplet.container,
            "--hostname",
            droplet.hostname,
            "--network",
            droplet.network,
            "--ip",
            &ip,
            "--env",
            &id_env,
            "--label",
            &label,
            "--restart",
            "unless-stopped",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--device-cgroup-rule",
            "a *:* rwm",
        ];
        if let Some(mount) = &mount {
            args.extend(["--volume", mount]);
        }
        let limits = droplet.limits.map(Limits::args).unwrap_or_default();
        args.extend(limits.iter().map(String::as_str));
        args.push(droplet.image);
        self.run(&args).await.map(|_| ())
    }

    pub async fn state(&self, container: &str) -> Result<ContainerState, DockerError> {
        match self
            .run(&["inspect", "--format", "{{.State.Running}}", container])
            .await
        {
            Ok(running) if running == "true" => Ok(ContainerState::Running),
            Ok(_) => Ok(ContainerState::Stopped),
            Err(e) if e.message.contains("No such") => Ok(ContainerState::Missing),
            Err(e) => Err(e),
        }
    }

    /// The containers whose names contain `part`, stopped ones too.
    pub async fn containers_named(&self, part: &str) -> Result<Vec<String>, DockerError> {
        let filter = format!("name={part}");
        let names = self
            .run(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
            .await?;
        Ok(names
            .lines()
            .filter(|l| l.contains(part))
            .map(str::to_owned)
            .collect())
    }

    /// `docker inspect --format FORMAT container`.
    pub async fn inspect(&self, container: &str, format: &str) -> Result<String, DockerError> {
        self.run(&["inspect", "--format", format, container]).await
    }

    /// Sets a droplet's CPUs and memory, running or not (a resize, or a spare that just became a
    /// droplet).
    pub async fn limit(&self, container: &str, limits: &Limits) -> Result<(), DockerError> {
        let mut args = vec!["update".to_owned()];
        args.extend(limits.args());
        args.push(container.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args).await.map(|_| ())
    }

    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        self.run(&["start", container]).await.map(|_| ())
    }

    /// Pulls the plug.
    pub async fn kill(&self, container: &str) -> Result<(), DockerError> {
        match self.run(&["kill", container]).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("is not running") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Asks the droplet to shut down, and pulls the plug after `grace`.
    pub async fn stop(&self, container: &str, grace: Duration) -> Result<(), DockerError> {
        let seconds = grace.as_secs().to_string();
        self.run(&["stop", "--time", &seconds, container])
            .await
            .map(|_| ())
    }

    pub async fn remove_container(&self, container: &str) -> Result<(), DockerError> {
        match self.run(&["rm", "--force", "--volumes", container]).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("No such container") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs a shell script inside a running droplet, `input` on its stdin.
    pub async fn exec(
        &self,
        container: &str,
        script: &str,
        input: Option<&[u8]>,
    ) -> Result<String, DockerError> {
        let mut args = vec!["exec"];
        if input.is_some() {
            args.push("--interactive");
        }
        args.extend([container, "sh", "-c", script]);
        self.run_with_input(&args, input).await
    }

    /// Captures a droplet's disk (running or not) as the image `tag`; returns its size in bytes.
    ///
    /// Two commits: the disk as it is, then a layer that removes what must not outlive a boot
    /// (see [`SNAPSHOT_CLEANUP`]), made by a throwaway container with no network.
    pub async fn snapshot(
        &self,
        container: &str,
        tag: &str,
        sandbox_id: &str,
    ) -> Result<u64, DockerError> {
        let raw = format!("{tag}-raw");
        let helper = format!("{container}-snapshot");
        let label = format!("{LABEL}={sandbox_id}");
        let label_change = format!("LABEL {label}");
        self.run(&["commit", "--change", &label_change, container, &raw])
            .await?;
        let _ = self.remove_container(&helper).await;
        let mut run = vec![
            "run",
            "--name",
            &helper,
            "--label",
            &label,
            "--network",
            "none",
            "--entrypoint",
            "/bin/rm",
            &raw,
            "-rf",
        ];
        run.extend(SNAPSHOT_CLEANUP);
        let result = async {
            self.run(&run).await?;
            self.run(&[
                "commit",
                "--change",
                ENTRYPOINT,
                "--change",
                &label_change,
                &helper,
                tag,
            ])
            .await?;
            self.run(&["image", "inspect", "--format", "{{.Size}}", tag])
                .await
        }
        .await;
        let _ = self.remove_container(&helper).await;
        // Only the name goes: the layers stay under the final image.
        let _ = self.run(&["rmi", &raw]).await;
        Ok(result?.parse().unwrap_or(0))
    }

    /// Removes an image; one still used by a droplet loses its name now and its layers when
    /// `down` removes everything labelled with the sandbox.
    pub async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        match self.run(&["rmi", image]).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("No such image") => Ok(()),
            Err(e) if e.message.contains("being used") => {
                self.run(&["rmi", "--force", image]).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes every container, image and network labelled with the sandbox.
    pub async fn remove_all(&self, sandbox_id: &str) -> Result<Vec<String>, DockerError> {
        let filter = format!("label={LABEL}={sandbox_id}");
        let mut removed = Vec::new();
        let containers = self
            .run(&["ps", "--all", "--quiet", "--filter", &filter])
            .await?;
        for id in containers.lines().filter(|l| !l.is_empty()) {
            self.remove_container(id).await?;
            removed.push(format!("container {id}"));
        }
        let images = self
            .run(&[
                "images",
                "--all",
                "--quiet",
                "--no-trunc",
                "--filter",
                &filter,
            ])
            .await?;
        let mut pending: Vec<&str> = images.lines().filter(|l| !l.is_empty()).collect();
        pending.dedup();
        // A snapshot's parent layers go after the snapshot: repeat until nothing is left.
        while !pending.is_empty() {
            let mut blocked = Vec::new();
            let mut last = None;
            for id in pending.iter().copied() {
                match self.run(&["rmi", "--force", id]).await {
                    Ok(_) => removed.push(format!("image {}", short(id))),
                    // Removing a child took this one with it.
                    Err(e) if e.message.contains("No such image") => {}
                    Err(e) => {
                        blocked.push(id);
                        last = Some(e);
                    }
                }
            }
            if blocked.len() == pending.len() {
                return Err(last.expect("a blocked image has an error"));
            }
            pending = blocked;
        }
        let networks = self
            .run(&["network", "ls", "--quiet", "--filter", &filter])
            .await?;
        for id in networks.lines().filter(|l| !l.is_empty()) {
            self.run(&["network", "rm", id]).await?;
            removed.push(format!("network {id}"));
        }
        Ok(removed)
    }
}

fn short(id: &str) -> &str {
    let id = id.trim_start_matches("sha256:");
    &id[..id.len().min(12)]
}

/// Whether an SSH server answers at `ip:22`: it accepts the connection and sends its banner.
pub async fn ssh_answers(ip: Ipv4Addr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((ip, 22)).await.ok()?;
        let mut banner = [0u8; 4];
        stream.read_exact(&mut banner).await.ok()?;
        Some(&banner == b"SSH-")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_size_within_the_machine() {
        // One vcpu: one CPU, chosen by the droplet, so droplets spread.
        assert_eq!(Limits::on(2, 1, 1024, 7).cpus, "1");
        assert_eq!(Limits::on(2, 1, 1024, 8).cpus, "0");
        // As many as the machine has, at most.
        assert_eq!(Limits::on(2, 2, 4096, 7).cpus, "0,1");
        assert_eq!(Limits::on(2, 8, 16384, 3).cpus, "0,1");
        assert_eq!(Limits::on(4, 2, 4096, 1).cpus, "2,3");
        assert_eq!(
            Limits::on(2, 1, 1024, 7).args(),
            [
                "--cpuset-cpus",
                "1",
                "--memory",
                "1024m",
                "--memory-swap",
                "1024m"
            ]
        );
    }
}
