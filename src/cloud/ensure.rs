//! Creates that are safe to repeat: look for the resource first, create it only when it is
//! missing, and after an ambiguous answer (a 5xx or a dropped connection once the request may
//! have reached DigitalOcean) look again before trying once more. A re-run after a crash, or a
//! create whose answer was lost, adopts what exists instead of making a second one.
//!
//! [`create_once`] is the one place that loop is written; droplets, SSH keys and firewalls
//! (and the fleet's concurrent bring-up) all go through it.

use std::future::Future;
use std::time::Duration;

use super::{Client, CloudError, Droplet, DropletCreate, SshKey, SshKeyCreate};

/// Attempts at a create whose outcome stays ambiguous.
pub const CREATE_ATTEMPTS: u32 = 4;

/// Whether a create made the resource or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Adopted,
}

/// Looks for the resource with `find`, creates it with `create` when it is missing, and after
/// an ambiguous failure waits a little and looks again before another attempt (at most
/// [`CREATE_ATTEMPTS`]). `what` names the resource in the warning.
pub async fn create_once<T, F, FF, C, CF>(
    what: &str,
    mut find: F,
    mut create: C,
) -> Result<(T, Outcome), CloudError>
where
    F: FnMut() -> FF,
    FF: Future<Output = Result<Option<T>, CloudError>>,
    C: FnMut() -> CF,
    CF: Future<Output = Result<T, CloudError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(found) = find().await? {
            return Ok((found, Outcome::Adopted));
        }
        match create().await {
            Ok(made) => return Ok((made, Outcome::Created)),
            Err(e) if e.is_ambiguous() && attempt < CREATE_ATTEMPTS => {
                tracing::warn!(
                    "creating {what} may or may not have worked ({e}); looking for it before trying again"
                );
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Client {
    /// The droplet named `request.name` carrying `tag`: found, or created with that tag.
    pub async fn ensure_droplet(
        &self,
        request: &DropletCreate,
        tag: &str,
    ) -> Result<(Droplet, Outcome), CloudError> {
        let mut request = request.clone();
        if !request.spec.tags.iter().any(|t| t == tag) {
            request.spec.tags.push(tag.to_string());
        }
        let request = &request;
        create_once(
            &format!("droplet `{}`", request.name),
            || self.find_tagged_droplet(&request.name, tag),
            || async { Ok(self.create_droplet(request).await?.droplet) },
        )
        .await
    }

    /// The droplet named `name` among those tagged `tag`.
    pub async fn find_tagged_droplet(
        &self,
        name: &str,
        tag: &str,
    ) -> Result<Option<Droplet>, CloudError> {
        Ok(self
            .list_droplets_by_tag(tag)
            .await?
            .into_iter()
            .find(|d| d.name == name))
    }

    /// The account's SSH key with this public key: found (by key, whatever its name), or
    /// registered under `name`.
    pub async fn ensure_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey, CloudError> {
        // Compare the key material only: the comment after it may differ.
        let material = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let wanted = material(public_key);
        let request = SshKeyCreate {
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
        };
        let (key, _) = create_once(
            &format!("SSH key `{name}`"),
            || async {
                let keys = self.list_ssh_keys().await?;
                Ok(keys.into_iter().find(|k| material(&k.public_key) == wanted))
            },
            || self.create_ssh_key(&request),
        )
        .await?;
        Ok(key)
    }
}
