//! [`Sandbox`]: what every route and background task of the sandbox shares — its state and
//! store, the Docker engine, the droplet image, the token, the injected faults, the request
//! count behind the rate-limit headers, and the spare droplets.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::header;
use tokio::sync::Mutex;

use crate::cloud::{Action, ActionStatus};
use crate::sandbox::api::ApiError;
use crate::sandbox::backend::Docker;
use crate::sandbox::catalog;
use crate::sandbox::faults::Faults;
use crate::sandbox::spare_pool::{self, Spares};
use crate::sandbox::store::{NetworkRecord, State, Store};

/// How long a droplet may take from its container starting to sshd answering.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// What every route and background task shares.
pub struct Sandbox {
    pub state: Mutex<State>,
    store: Store,
    pub docker: Docker,
    /// The droplet image (`infra-droplet:<hash>`).
    pub image: String,
    token: String,
    /// `https://127.0.0.1:<port>`, for links.
    pub base_url: String,
    pub(super) faults: Faults,
    /// Requests in the last hour, for the `ratelimit-*` headers.
    recent: std::sync::Mutex<std::collections::VecDeque<u64>>,
    /// Addresses of deleted droplets whose containers are still being removed.
    held: std::sync::Mutex<Vec<Ipv4Addr>>,
    /// Booted containers waiting to become droplets (`spares.rs`).
    pub spares: Spares,
    /// Droplets are records only, with no container (`--records-only`): creates and deletes
    /// change the records, nothing runs, and no other action is performed.
    pub records_only: bool,
}

/// DigitalOcean's hourly request budget, reported in `ratelimit-limit`.
pub(super) const HOURLY_LIMIT: usize = 5000;

impl Sandbox {
    pub fn new(
        state: State,
        store: Store,
        docker: Docker,
        image: String,
        token: String,
        base_url: String,
        faults: Faults,
    ) -> Sandbox {
        Sandbox {
            state: Mutex::new(state),
            store,
            docker,
            image,
            token,
            base_url,
            faults,
            recent: Default::default(),
            held: Default::default(),
            spares: Spares::default(),
            records_only: false,
        }
    }

    /// Droplets as records only, for benchmarks of fleets larger than Docker could run here.
    pub fn records_only(self, records_only: bool) -> Sandbox {
        Sandbox {
            records_only,
            ..self
        }
    }

    /// The pool of spare droplets it keeps (none by default).
    pub fn with_spares(self, spares: Spares) -> Sandbox {
        Sandbox { spares, ..self }
    }

    pub fn hold_addresses(&self, addresses: impl IntoIterator<Item = Ipv4Addr>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.extend(addresses);
    }

    pub fn release_addresses(&self, addresses: impl IntoIterator<Item = Ipv4Addr>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for address in addresses {
            if let Some(at) = held.iter().position(|a| *a == address) {
                held.remove(at);
            }
        }
    }

    /// Addresses no droplet has but none may be given: those of deleted droplets whose
    /// containers are still being removed, and those of the spares.
    pub fn held_addresses(&self) -> Vec<Ipv4Addr> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        held.extend(self.spares.addresses());
        held
    }

    /// The first free address of the sandbox network, from `.10`: none a droplet, reserved IP or
    /// spare holds.
    pub fn allocate_address(&self, state: &State, network: &NetworkRecord) -> Option<Ipv4Addr> {
        let base = network.gateway.octets();
        let used = state.addresses_in_use();
        let held = self.held_addresses();
        (10..=254u8)
            .map(|last| Ipv4Addr::new(base[0], base[1], base[2], last))
            .find(|ip| !used.contains(ip) && !held.contains(ip))
    }

    /// Where the spares' directories are (`spares/<spare identity>` beside the state file).
    pub fn spares_root(&self) -> std::path::PathBuf {
        spare_pool::root(self.store.path())
    }

    /// Persists `state`; a failure is the request's 500.
    pub fn save(&self, state: &State) -> Result<(), ApiError> {
        self.store.save(state).map_err(|e| {
            tracing::error!("cannot save the sandbox state: {e}");
            ApiError::server_error(format!("the sandbox cannot save its state: {e}"))
        })
    }

    /// Persists `state` from a background task, where nobody waits for an answer.
    pub fn save_quietly(&self, state: &State) {
        let _ = self.save(state);
    }

    /// Starts an action on a resource: recorded `in-progress` until [`Sandbox::finish`].
    pub fn start_action(
        &self,
        state: &mut State,
        kind: &str,
        resource_id: u64,
        resource_type: &str,
        region: &str,
    ) -> Action {
        let action = Action {
            id: state.next_id(),
            status: ActionStatus::InProgress,
            kind: kind.to_owned(),
            started_at: Some(now()),
            completed_at: None,
            resource_id: Some(resource_id),
            resource_type: Some(resource_type.to_owned()),
            region: catalog::region(region),
            region_slug: Some(region.to_owned()),
        };
        state.actions.push(action.clone());
        action
    }

    /// Marks an action completed or errored, and saves.
    pub async fn finish(&self, action_id: u64, outcome: Result<(), String>) {
        let mut state = self.state.lock().await;
        if let Some(action) = state.action_mut(action_id) {
            action.completed_at = Some(now());
            action.status = match &outcome {
                Ok(()) => ActionStatus::Completed,
                Err(_) => ActionStatus::Errored,
            };
            if let Err(reason) = &outcome {
                tracing::warn!("action {action_id} ({}) failed: {reason}", action.kind);
            }
        }
        self.save_quietly(&state);
    }

    pub fn action_href(&self, id: u64) -> String {
        format!("{}/v2/actions/{id}", self.base_url)
    }

    pub(super) fn authorized(&self, request: &Request) -> bool {
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let Ok(text) = value.to_str() else {
            return false;
        };
        let presented = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    pub(super) fn count_request(&self) -> (usize, u64) {
        let now = unix_seconds();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        while recent.front().is_some_and(|t| *t + 3600 <= now) {
            recent.pop_front();
        }
        recent.push_back(now);
        let reset = recent.front().map_or(now, |t| t + 3600);
        (HOURLY_LIMIT.saturating_sub(recent.len()), reset)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Now, as DigitalOcean writes times: `2020-07-21T18:37:44Z`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
