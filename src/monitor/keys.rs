//! Each monitor's Ed25519 key, and the peers' public keys.
//!
//! The operator's machine makes one key per droplet the first time monitors are installed and
//! keeps them in `config/.infra/monitor/keys/<droplet>.key` (0600, the 32-byte secret as hex).
//! A droplet receives only its own secret (`config/.infra/monitor/key`, 0600) and every peer's
//! public key (`config/.infra/monitor/peers.json`: `{"<droplet>": "<hex>"}`); a droplet
//! replaced by recovery keeps its name, so it keeps its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::protocol::{hex, load_secret, save_secret, unhex, KeyFileError};
use crate::project::Project;

/// This droplet's secret key, on a droplet.
pub const OWN_KEY_FILE: &str = "key";
/// Every monitor's public key, on a droplet.
pub const PEERS_FILE: &str = "peers.json";

/// `config/.infra/monitor/` of `project`.
pub fn monitor_dir(project: &Project) -> PathBuf {
    project.infra_dir().join(super::MONITOR_DIR)
}

/// Where the operator's machine keeps `droplet`'s secret key.
pub fn key_path(project: &Project, droplet: &str) -> PathBuf {
    monitor_dir(project)
        .join("keys")
        .join(format!("{droplet}.key"))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{0}")]
    Key(#[from] KeyFileError),
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

pub fn secret_hex(key: &SigningKey) -> String {
    hex(&key.to_bytes())
}

pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let bytes = unhex::<32>(text.trim())
        .ok_or_else(|| "not an Ed25519 public key (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not a valid Ed25519 public key: {e}"))
}

/// Reads a secret key file (refused when others can read it).
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    Ok(load_secret(path)?)
}

/// Writes a secret key file, 0600 from the first byte.
pub fn write_secret(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    }
    Ok(save_secret(path, key)?)
}

/// `droplet`'s key on the operator's machine, made now if it has none.
pub fn ensure_key(project: &Project, droplet: &str) -> Result<SigningKey, KeyError> {
    let path = key_path(project, droplet);
    if path.exists() {
        return read_secret(&path);
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    write_secret(&path, &key)?;
    Ok(key)
}

/// `peers.json`'s text for these keys.
pub fn peers_json(keys: &BTreeMap<String, VerifyingKey>) -> String {
    let map: BTreeMap<&String, String> = keys.iter().map(|(n, k)| (n, hex(k.as_bytes()))).collect();
    serde_json::to_string_pretty(&map).expect("a map of strings serializes")
}

/// Reads `peers.json`.
pub fn read_peers(path: &Path) -> Result<BTreeMap<String, VerifyingKey>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let map: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| file_error(path, e))?;
    map.into_iter()
        .map(|(name, hex)| {
            parse_public(&hex)
                .map(|k| (name.clone(), k))
                .map_err(|e| file_error(path, format!("`{name}`: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), Path::new("config"));
        let key = ensure_key(&project, "web1").unwrap();
        let path = key_path(&project, "web1");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            ensure_key(&project, "web1").unwrap().to_bytes(),
            key.to_bytes()
        );
        let peers = BTreeMap::from([("web1".to_string(), key.verifying_key())]);
        let file = dir.path().join("peers.json");
        std::fs::write(&file, peers_json(&peers)).unwrap();
        assert_eq!(read_peers(&file).unwrap(), peers);
        std::fs::write(&file, r#"{"web1": "zz"}"#).unwrap();
        let error = read_peers(&file).unwrap_err().to_string();
        assert!(
            error.contains("`web1`") && error.contains("public key"),
            "{error}"
        );
    }
}
