//! `/v2/account` and the account's SSH keys (`/v2/account/keys`): the keys a droplet can be
//! created with, and so the only keys that can log in to it.

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use md5::{Digest, Md5};

use crate::cloud::{Account, AccountResponse, SshKey, SshKeyCreate, SshKeyResponse, SshKeysPage};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::shared::Sandbox;
use crate::sandbox::store::State;

/// How many droplets the sandbox account may have at once.
pub const DROPLET_LIMIT: u64 = 25;

pub async fn get_account(Extract(sandbox): Extract<Arc<Sandbox>>) -> ApiResult {
    let state = sandbox.state.lock().await;
    let account = Account {
        droplet_limit: DROPLET_LIMIT,
        floating_ip_limit: 5,
        email: "sandbox@infra.invalid".into(),
        name: Some("infra sandbox".into()),
        uuid: format!("{:0>40}", state.sandbox_id),
        email_verified: true,
        status: "active".into(),
        status_message: String::new(),
        team: None,
    };
    Ok(api::json(StatusCode::OK, &AccountResponse { account }))
}

pub async fn list_keys(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let keys = sandbox.state.lock().await.ssh_keys.clone();
    let page = api::page(keys, &query, &sandbox.base_url, "/v2/account/keys")?;
    Ok(api::json(
        StatusCode::OK,
        &SshKeysPage {
            ssh_keys: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn create_key(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    body: axum::body::Bytes,
) -> ApiResult {
    let request: SshKeyCreate = api::body(&body)?;
    let name = request.name.trim();
    if name.is_empty() {
        return Err(ApiError::unprocessable("Name can't be blank"));
    }
    let public_key = request.public_key.trim();
    let fingerprint = fingerprint(public_key).ok_or_else(|| {
        ApiError::unprocessable("Key invalid, key should be of the format `type key [comment]`")
    })?;
    let mut state = sandbox.state.lock().await;
    if state.ssh_keys.iter().any(|k| k.fingerprint == fingerprint) {
        return Err(ApiError::unprocessable(
            "SSH Key is already in use on your account",
        ));
    }
    let key = SshKey {
        id: state.next_id(),
        fingerprint,
        public_key: public_key.to_owned(),
        name: name.to_owned(),
    };
    state.ssh_keys.push(key.clone());
    sandbox.save(&state)?;
    Ok(api::json(
        StatusCode::CREATED,
        &SshKeyResponse { ssh_key: key },
    ))
}

pub async fn get_key(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(identifier): Path<String>,
) -> ApiResult {
    let state = sandbox.state.lock().await;
    let key = find(&state, &identifier).ok_or_else(ApiError::not_found)?;
    Ok(api::json(
        StatusCode::OK,
        &SshKeyResponse {
            ssh_key: key.clone(),
        },
    ))
}

pub async fn delete_key(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(identifier): Path<String>,
) -> ApiResult {
    let mut state = sandbox.state.lock().await;
    let id = find(&state, &identifier)
        .ok_or_else(ApiError::not_found)?
        .id;
    // Droplets keep the key they were made with, as on DigitalOcean.
    state.ssh_keys.retain(|k| k.id != id);
    sandbox.save(&state)?;
    Ok(api::no_content())
}

/// A key by id or by fingerprint.
pub fn find<'s>(state: &'s State, identifier: &str) -> Option<&'s SshKey> {
    let identifier = identifier.trim();
    match identifier.parse::<u64>() {
        Ok(id) => state.ssh_keys.iter().find(|k| k.id == id),
        Err(_) => state
            .ssh_keys
            .iter()
            .find(|k| k.fingerprint.eq_ignore_ascii_case(identifier)),
    }
}

/// DigitalOcean's fingerprint: MD5 of the key's wire encoding, as colon-separated hex.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let key = ssh_key::PublicKey::from_openssh(public_key).ok()?;
    let blob = key.to_bytes().ok()?;
    let digest = Md5::digest(&blob);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_openssh_md5() {
        // `ssh-keygen -l -E md5 -f key.pub` prints MD5:0d:5c:8c:... for this key.
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBC+Y9vCMVPM7rJSlpdh9hh/3Lb3cwNEp9T6uiCur8B3 a@b";
        assert_eq!(
            fingerprint(key).as_deref(),
            Some("0d:5c:8c:8e:0f:dd:d9:7c:39:54:15:fc:e4:d9:1e:4b")
        );
        assert!(super::fingerprint("ssh-ed25519 not-base64").is_none());
    }
}
