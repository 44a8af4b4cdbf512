//! The sandbox's records: what its API has been told and what it created, persisted as one
//! JSON file (`config/.infra/sandbox/state.json`) after every change, so a restarted server
//! carries on where the last one stopped.
//!
//! Records hold only what the sandbox decides (ids, names, addresses, which key a droplet got);
//! the DigitalOcean-shaped bodies are built from them on each answer (`server.rs`).

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::cloud::{Action, DropletStatus, Firewall, SshKey};

/// Everything the sandbox knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Names this sandbox's Docker objects (`infra-sbx-<id>-...`) and labels them
    /// (`infra.sandbox=<id>`), so `down` removes its own and nothing else.
    pub sandbox_id: String,
    /// The Docker network the droplets share, once made.
    #[serde(default)]
    pub network: Option<NetworkRecord>,
    /// The last id handed out; ids of every kind come from this one counter.
    pub last_id: u64,
    #[serde(default)]
    pub ssh_keys: Vec<SshKey>,
    #[serde(default)]
    pub droplets: Vec<DropletRecord>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
    #[serde(default)]
    pub firewalls: Vec<Firewall>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub reserved_ips: Vec<ReservedIpRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    /// `10.213.7.0/24`: droplets get `.10` and up, reserved IPs come from the same range.
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletRecord {
    pub id: u64,
    pub name: String,
    pub size: String,
    pub region: String,
    /// A base image id (`catalog`) or a snapshot id.
    pub image_id: u64,
    pub ip: Ipv4Addr,
    pub status: DropletStatus,
    pub created_at: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The account keys it was created with; they alone are in its `authorized_keys`.
    #[serde(default)]
    pub ssh_key_ids: Vec<u64>,
    #[serde(default)]
    pub snapshot_ids: Vec<u64>,
    /// Its Docker container's name.
    pub container: String,
    /// The spare it was made from (its `INFRA_DROPLET_ID` before), if it was: a server that
    /// stops halfway through turning the spare into it finishes the job on restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spare: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub name: String,
    pub droplet_id: u64,
    pub created_at: String,
    pub region: String,
    pub min_disk_size: u64,
    pub size_gigabytes: f64,
    /// The Docker image holding the disk.
    pub image: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedIpRecord {
    pub ip: Ipv4Addr,
    pub region: String,
    #[serde(default)]
    pub droplet_id: Option<u64>,
}

impl State {
    /// A fresh state for a new sandbox.
    pub fn new(sandbox_id: String) -> State {
        State {
            sandbox_id,
            // Ids look like DigitalOcean's (seven to nine digits) and are never reused.
            last_id: 4_100_000,
            ..State::default()
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub fn droplet(&self, id: u64) -> Option<&DropletRecord> {
        self.droplets.iter().find(|d| d.id == id)
    }

    pub fn droplet_mut(&mut self, id: u64) -> Option<&mut DropletRecord> {
        self.droplets.iter_mut().find(|d| d.id == id)
    }

    pub fn snapshot(&self, id: u64) -> Option<&SnapshotRecord> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    pub fn action_mut(&mut self, id: u64) -> Option<&mut Action> {
        self.actions.iter_mut().find(|a| a.id == id)
    }

    /// Every IPv4 address in use by a droplet or a reserved IP.
    pub fn addresses_in_use(&self) -> Vec<Ipv4Addr> {
        let mut used: Vec<Ipv4Addr> = self.droplets.iter().map(|d| d.ip).collect();
        used.extend(self.reserved_ips.iter().map(|r| r.ip));
        used
    }
}

/// Where the state lives, and its reading and atomic writing.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        Store { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` when there is none yet.
    pub fn load(&self) -> io::Result<Option<State>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a sandbox state: {e}", self.path.display()),
            )
        })
    }

    pub fn save(&self, state: &State) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        text.push(b'\n');
        atomic_file::write_with_mode(&self.path, &text, Some(0o600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("sandbox/state.json"));
        assert!(store.load().unwrap().is_none());
        let mut state = State::new("abcd1234".into());
        let id = state.next_id();
        state.droplets.push(DropletRecord {
            id,
            name: "web1".into(),
            size: "s-1vcpu-1gb".into(),
            region: "nyc3".into(),
            image_id: 1,
            ip: Ipv4Addr::new(10, 0, 0, 10),
            status: DropletStatus::New,
            created_at: "2024-01-01T00:00:00Z".into(),
            tags: vec!["infra".into()],
            ssh_key_ids: vec![7],
            snapshot_ids: vec![],
            container: "infra-sbx-abcd1234-1".into(),
            spare: Some("spare-0a1b2c3d".into()),
        });
        store.save(&state).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.droplets, state.droplets);
        assert_eq!(back.last_id, state.last_id);
        assert_eq!(back.next_id_preview(), id + 1);
    }

    impl State {
        fn next_id_preview(&self) -> u64 {
            self.last_id + 1
        }
    }
}
