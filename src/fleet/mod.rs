//! The fleet reconciler: the state compared with the cloud ([`refresh`]), droplets brought up
//! (created, or adopted when a tagged one already exists) and destroyed ([`bring_up`]),
//! resized ([`resize`]), replaced when recovery rebuilds one ([`replace`]), the firewalls kept
//! in step ([`firewalls`]) and snapshots kept to
//! their retention ([`snapshots`]). Core code: it knows the cloud client and the project, not
//! Rhai; the cloud client is reached only through [`Fleet`].

pub mod admin;
mod bring_up;
pub mod firewalls;
pub mod refresh;
pub mod replace;
mod resize;
pub mod snapshots;

pub use admin::{check_cidr, sandbox_admin_address};
pub use bring_up::Ready;
pub use firewalls::wanted_firewalls;
pub use refresh::{Finding, Refresh};
pub use snapshots::{DEFAULT_SNAPSHOT_RETENTION, SNAPSHOT_PREFIX};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cloud::catalog::{self, Catalog};
use crate::cloud::{Client, CloudError, SshKey};
use crate::project::Project;
use crate::report::{Change, Reporter};

/// Every droplet infra makes carries this tag, and one named after the droplet.
pub const INFRA_TAG: &str = "infra";
/// The image droplets start from.
pub const DEFAULT_IMAGE: &str = "debian-12-x64";
/// The firewall for the whole fleet (SSH from the admin, everything between droplets).
pub const FLEET_FIREWALL: &str = "infra-fleet";
/// The firewall that opens HTTP and HTTPS on the master.
pub const MASTER_FIREWALL: &str = "infra-master";
/// How long an active droplet's sshd may take to answer.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a new droplet may take to become active.
pub const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("cannot read the infrastructure public key `{path}`: {source}; run `infra init` to make the key pair")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("droplet `{name}` (id {id}) was not active after {secs} s (status {status}); look at it in the control panel, or delete it and orchestrate again")]
    NotActive {
        name: String,
        id: u64,
        secs: u64,
        status: String,
    },
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("stopped (Ctrl-C)")]
    Cancelled,
    #[error("SSH to `{droplet}` ({ip}) does not answer from here since the firewall allows SSH only from ADMIN_IP={admin}{}; set the address the droplets see this machine as with `infra update-admin-ip CIDR` (or export ADMIN_IP) and run again ({cause})", seen_as.as_ref().map(|a| format!(", but the droplets see this machine as {a}")).unwrap_or_default())]
    LockedOut {
        admin: String,
        droplet: String,
        ip: String,
        seen_as: Option<String>,
        cause: String,
    },
    #[error("the firewall `infra-fleet` allows SSH only from {allowed}, but the droplets see this machine as {seen_as}: SSH to them would never answer; run `infra update-admin-ip {seen_as}` (or export ADMIN_IP={seen_as}) and run again")]
    ShutOut { allowed: String, seen_as: String },
    /// The state could not record what was done (the cloud has it; a re-run adopts it).
    #[error("{0}")]
    Record(String),
}

pub struct Fleet {
    client: Client,
    project: Project,
    cancel: Arc<AtomicBool>,
    timings: std::sync::Mutex<Timings>,
}

/// Where a run's time went: waiting on the API, and waiting for droplets to boot (the pauses
/// between polls). The rest of a run is infra's own work.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Timings {
    pub api: Duration,
    pub boot_wait: Duration,
}

impl Fleet {
    /// The fleet of `project` in its cloud: DigitalOcean with `DO_TOKEN`, else the project's
    /// sandbox. The one way the rest of infra reaches the cloud client.
    pub fn for_project(project: &Project, cancel: Arc<AtomicBool>) -> Result<Fleet, CloudError> {
        Ok(Fleet::new(
            Client::for_project(project)?,
            project.clone(),
            cancel,
        ))
    }

    pub fn new(client: Client, project: Project, cancel: Arc<AtomicBool>) -> Self {
        Fleet {
            client,
            project,
            cancel,
            timings: Default::default(),
        }
    }

    pub fn timings(&self) -> Timings {
        *self.timings.lock().expect("timings")
    }

    /// Awaits an API call, counting its time.
    pub(crate) async fn api<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let start = Instant::now();
        let result = call.await;
        self.timings.lock().expect("timings").api += start.elapsed();
        result
    }

    /// Waits for droplets, counting the time.
    pub(crate) async fn pause(&self, how_long: Duration) {
        let start = Instant::now();
        tokio::time::sleep(how_long).await;
        self.timings.lock().expect("timings").boot_wait += start.elapsed();
    }

    pub(crate) fn check_cancel(&self) -> Result<(), FleetError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(FleetError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The project's public key, registered with the account (found by its key material);
    /// in a dry run, told as what would be registered when it is not yet.
    /// `None` only in a dry run, for a key not registered yet.
    pub async fn ensure_key(&self, reporter: &Reporter) -> Result<Option<SshKey>, FleetError> {
        let path = crate::keypair::public_path(&self.project.ssh_key_path());
        let public = std::fs::read_to_string(&path).map_err(|source| FleetError::Key {
            path: self.project.display(&path),
            source,
        })?;
        let material: String = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let registered = self.api(self.client.list_ssh_keys()).await?;
        if let Some(key) = registered.into_iter().find(|k| {
            k.public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                == material
        }) {
            return Ok(Some(key));
        }
        let change = Change::new(
            "register_ssh_key",
            "infra",
            Value::Null,
            json!({"public_key": material}),
        );
        if reporter.dry_run() {
            reporter.would(
                &change,
                "register the infrastructure SSH key with the account",
            );
            return Ok(None);
        }
        let key = self
            .api(self.client.ensure_ssh_key("infra", &public))
            .await?;
        reporter.done(
            &change,
            &format!("registered the infrastructure SSH key (id {})", key.id),
        );
        Ok(Some(key))
    }
}

/// The lists of sizes and regions to validate the spec of `project` against (see
/// `cloud::catalog`). Never
/// fails: a cloud that cannot be asked is logged at debug level and the fallback used.
pub async fn catalog_for_validation(project: &Project) -> Catalog {
    match Client::for_project(project) {
        Ok(client) => catalog::refreshed(project, &client).await,
        Err(e) => {
            // No cloud configured: the lists fetched from DigitalOcean before, else ours.
            tracing::debug!("sizes and regions not refreshed: {e}");
            let endpoint = std::env::var("DO_API_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| crate::cloud::DEFAULT_API_URL.to_string());
            catalog::cached(project, endpoint.trim()).unwrap_or_else(Catalog::bundled)
        }
    }
}
