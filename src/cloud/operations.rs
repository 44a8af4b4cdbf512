//! The DigitalOcean operations infra uses, one method each, grouped as the API groups them.
//! Every path, method and body here is one the contract (`openapi-subset.yaml`) lists.

use std::time::Duration;

use reqwest::Method;

use crate::cloud::client::{Client, Replay};
use crate::cloud::error::CloudError;
use crate::cloud::types::*;

/// DigitalOcean creates at most this many droplets in one request.
const MAX_DROPLETS_PER_CREATE: usize = 10;

// Account ----------------------------------------------------------------------------------------

impl Client {
    /// The account the token belongs to; also the cheapest way to check a token.
    pub async fn account(&self) -> Result<Account, CloudError> {
        let response: AccountResponse = self.get(self.url(&["v2", "account"], &[])).await?;
        Ok(response.account)
    }
}

// SSH keys ---------------------------------------------------------------------------------------

impl Client {
    /// Every SSH key on the account. DigitalOcean allows only 10 of these calls a minute.
    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError> {
        self.list_all::<SshKeysPage>(&["v2", "account", "keys"], &[])
            .await
    }

    /// Adds a public key to the account.
    pub async fn create_ssh_key(&self, key: &SshKeyCreate) -> Result<SshKey, CloudError> {
        let url = self.url(&["v2", "account", "keys"], &[]);
        let response: SshKeyResponse = self.send(Method::POST, url, key, Replay::Unsafe).await?;
        Ok(response.ssh_key)
    }

    pub async fn get_ssh_key(&self, key: &SshKeyRef) -> Result<SshKey, CloudError> {
        let id = key.to_string();
        let response: SshKeyResponse = self
            .get(self.url(&["v2", "account", "keys", &id], &[]))
            .await?;
        Ok(response.ssh_key)
    }

    pub async fn delete_ssh_key(&self, key: &SshKeyRef) -> Result<(), CloudError> {
        let id = key.to_string();
        let url = self.url(&["v2", "account", "keys", &id], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }
}

// Droplets ---------------------------------------------------------------------------------------

impl Client {
    /// Creates one droplet. Never retried once the request may have reached DigitalOcean: an
    /// uncertain outcome is [`CloudError::Ambiguous`], and the caller should look for the droplet
    /// by its tag ([`Client::list_droplets_by_tag`]) before creating it again.
    pub async fn create_droplet(
        &self,
        droplet: &DropletCreate,
    ) -> Result<DropletCreated, CloudError> {
        let url = self.url(&["v2", "droplets"], &[]);
        self.send(Method::POST, url, droplet, Replay::Unsafe).await
    }

    /// Creates up to ten droplets sharing one spec, with the same no-blind-retry rule as
    /// [`Client::create_droplet`].
    pub async fn create_droplets(
        &self,
        droplets: &DropletMultiCreate,
    ) -> Result<DropletsCreated, CloudError> {
        let count = droplets.names.len();
        if count == 0 || count > MAX_DROPLETS_PER_CREATE {
            return Err(CloudError::InvalidRequest(format!(
                "a multi-droplet create takes 1 to {MAX_DROPLETS_PER_CREATE} names, not {count}; \
                 split the names into several creates"
            )));
        }
        let url = self.url(&["v2", "droplets"], &[]);
        self.send(Method::POST, url, droplets, Replay::Unsafe).await
    }

    pub async fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError> {
        let id = id.to_string();
        let response: DropletResponse = self.get(self.url(&["v2", "droplets", &id], &[])).await?;
        Ok(response.droplet)
    }

    /// Every droplet on the account, or only those with `tag`.
    pub async fn list_droplets(&self, tag: Option<&str>) -> Result<Vec<Droplet>, CloudError> {
        match tag {
            Some(tag) => self.list_droplets_by_tag(tag).await,
            None => {
                self.list_all::<DropletsPage>(&["v2", "droplets"], &[])
                    .await
            }
        }
    }

    /// Every droplet with `tag`, across all pages.
    pub async fn list_droplets_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError> {
        self.list_all::<DropletsPage>(&["v2", "droplets"], &[("tag_name", tag)])
            .await
    }

    /// Droplets named exactly `name` (case-insensitive; names need not be unique).
    pub async fn list_droplets_by_name(&self, name: &str) -> Result<Vec<Droplet>, CloudError> {
        self.list_all::<DropletsPage>(&["v2", "droplets"], &[("name", name)])
            .await
    }

    /// Deletes a droplet. A retry that finds it already gone counts as success.
    pub async fn delete_droplet(&self, id: u64) -> Result<(), CloudError> {
        let id = id.to_string();
        let url = self.url(&["v2", "droplets", &id], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// Deletes every droplet with `tag`.
    pub async fn delete_droplets_by_tag(&self, tag: &str) -> Result<(), CloudError> {
        let url = self.url(&["v2", "droplets"], &[("tag_name", tag)]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// Starts an action (snapshot, power off, resize, ...) and returns it in progress; see
    /// [`Client::wait_for_action`]. Not retried once it may have reached DigitalOcean.
    pub async fn droplet_action(
        &self,
        droplet_id: u64,
        action: &DropletAction,
    ) -> Result<Action, CloudError> {
        let id = droplet_id.to_string();
        let url = self.url(&["v2", "droplets", &id, "actions"], &[]);
        let response: ActionResponse = self.send(Method::POST, url, action, Replay::Unsafe).await?;
        Ok(response.action)
    }

    /// Starts resizing a droplet to `size` (CPU and memory only: the disk keeps its size, so
    /// the resize can be undone). DigitalOcean requires the droplet to be off; the action is
    /// returned in progress, see [`Client::wait_for_action`].
    pub async fn resize_droplet(&self, droplet_id: u64, size: &str) -> Result<Action, CloudError> {
        let action = DropletAction::Resize {
            size: size.to_owned(),
            disk: false,
        };
        self.droplet_action(droplet_id, &action).await
    }

    /// Every action ever run on a droplet, newest first.
    pub async fn list_droplet_actions(&self, droplet_id: u64) -> Result<Vec<Action>, CloudError> {
        let id = droplet_id.to_string();
        self.list_all::<ActionsPage>(&["v2", "droplets", &id, "actions"], &[])
            .await
    }

    pub async fn get_droplet_action(
        &self,
        droplet_id: u64,
        action_id: u64,
    ) -> Result<Action, CloudError> {
        let (droplet, action) = (droplet_id.to_string(), action_id.to_string());
        let url = self.url(&["v2", "droplets", &droplet, "actions", &action], &[]);
        let response: ActionResponse = self.get(url).await?;
        Ok(response.action)
    }

    /// Snapshots (and backups) taken of a droplet.
    pub async fn list_droplet_snapshots(
        &self,
        droplet_id: u64,
    ) -> Result<Vec<DropletSnapshot>, CloudError> {
        let id = droplet_id.to_string();
        self.list_all::<DropletSnapshotsPage>(&["v2", "droplets", &id, "snapshots"], &[])
            .await
    }
}

// Actions ----------------------------------------------------------------------------------------

impl Client {
    pub async fn get_action(&self, id: u64) -> Result<Action, CloudError> {
        let id = id.to_string();
        let response: ActionResponse = self.get(self.url(&["v2", "actions", &id], &[])).await?;
        Ok(response.action)
    }

    /// Polls an action every `interval` until it completes. An `errored` action is
    /// [`CloudError::ActionErrored`]; one still running after `timeout` is
    /// [`CloudError::ActionTimedOut`] (it may still finish).
    pub async fn wait_for_action(
        &self,
        id: u64,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Action, CloudError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let action = self.get_action(id).await?;
            match action.status {
                ActionStatus::Completed => return Ok(action),
                ActionStatus::Errored => {
                    return Err(CloudError::ActionErrored {
                        id,
                        resource: action.resource(),
                        kind: action.kind,
                    })
                }
                ActionStatus::InProgress => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(CloudError::ActionTimedOut {
                    id,
                    resource: action.resource(),
                    kind: action.kind,
                    waited: timeout,
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
        }
    }
}

// Snapshots and images ---------------------------------------------------------------------------

impl Client {
    /// Every droplet snapshot on the account (volume snapshots are left out).
    pub async fn list_snapshots(&self) -> Result<Vec<Snapshot>, CloudError> {
        self.list_all::<SnapshotsPage>(&["v2", "snapshots"], &[("resource_type", "droplet")])
            .await
    }

    pub async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot, CloudError> {
        let id = id.to_string();
        let response: SnapshotResponse = self.get(self.url(&["v2", "snapshots", &id], &[])).await?;
        Ok(response.snapshot)
    }

    pub async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), CloudError> {
        let id = id.to_string();
        let url = self.url(&["v2", "snapshots", &id], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// An image by id (any image, snapshots included) or slug (public images).
    pub async fn get_image(&self, image: &ImageRef) -> Result<Image, CloudError> {
        let id = image.to_string();
        let response: ImageResponse = self.get(self.url(&["v2", "images", &id], &[])).await?;
        Ok(response.image)
    }

    /// The distribution images (DigitalOcean's base images), to check a spec's image slug.
    pub async fn list_distribution_images(&self) -> Result<Vec<Image>, CloudError> {
        self.list_all::<ImagesPage>(&["v2", "images"], &[("type", "distribution")])
            .await
    }
}

// Firewalls --------------------------------------------------------------------------------------

impl Client {
    pub async fn list_firewalls(&self) -> Result<Vec<Firewall>, CloudError> {
        self.list_all::<FirewallsPage>(&["v2", "firewalls"], &[])
            .await
    }

    /// Creates a firewall; like every create, not retried once it may have arrived.
    pub async fn create_firewall(
        &self,
        firewall: &FirewallRequest,
    ) -> Result<Firewall, CloudError> {
        let url = self.url(&["v2", "firewalls"], &[]);
        let response: FirewallResponse = self
            .send(Method::POST, url, firewall, Replay::Unsafe)
            .await?;
        Ok(response.firewall)
    }

    pub async fn get_firewall(&self, id: &str) -> Result<Firewall, CloudError> {
        let response: FirewallResponse = self.get(self.url(&["v2", "firewalls", id], &[])).await?;
        Ok(response.firewall)
    }

    /// Replaces the whole firewall: whatever `firewall` leaves out is reset, so start from
    /// [`Firewall::to_request`].
    pub async fn update_firewall(
        &self,
        id: &str,
        firewall: &FirewallRequest,
    ) -> Result<Firewall, CloudError> {
        let url = self.url(&["v2", "firewalls", id], &[]);
        let response: FirewallResponse =
            self.send(Method::PUT, url, firewall, Replay::Safe).await?;
        Ok(response.firewall)
    }

    pub async fn delete_firewall(&self, id: &str) -> Result<(), CloudError> {
        let url = self.url(&["v2", "firewalls", id], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// Puts droplets behind the firewall (nothing is sent for an empty list).
    pub async fn add_droplets_to_firewall(
        &self,
        id: &str,
        droplet_ids: &[u64],
    ) -> Result<(), CloudError> {
        self.firewall_droplets(Method::POST, id, droplet_ids).await
    }

    pub async fn remove_droplets_from_firewall(
        &self,
        id: &str,
        droplet_ids: &[u64],
    ) -> Result<(), CloudError> {
        self.firewall_droplets(Method::DELETE, id, droplet_ids)
            .await
    }

    /// Adds rules (nothing is sent when `rules` is empty).
    pub async fn add_firewall_rules(
        &self,
        id: &str,
        rules: &FirewallRules,
    ) -> Result<(), CloudError> {
        self.firewall_rules(Method::POST, id, rules).await
    }

    pub async fn remove_firewall_rules(
        &self,
        id: &str,
        rules: &FirewallRules,
    ) -> Result<(), CloudError> {
        self.firewall_rules(Method::DELETE, id, rules).await
    }

    // Adding or removing members and rules is set-like: repeating it ends in the same state, so
    // these are retried like reads.
    async fn firewall_droplets(
        &self,
        method: Method,
        id: &str,
        droplet_ids: &[u64],
    ) -> Result<(), CloudError> {
        if droplet_ids.is_empty() {
            return Ok(());
        }
        let body = FirewallDroplets {
            droplet_ids: droplet_ids.to_vec(),
        };
        let url = self.url(&["v2", "firewalls", id, "droplets"], &[]);
        self.send_no_content(method, url, Some(&body), Replay::Safe)
            .await
    }

    async fn firewall_rules(
        &self,
        method: Method,
        id: &str,
        rules: &FirewallRules,
    ) -> Result<(), CloudError> {
        if rules.is_empty() {
            return Ok(());
        }
        let url = self.url(&["v2", "firewalls", id, "rules"], &[]);
        self.send_no_content(method, url, Some(rules), Replay::Safe)
            .await
    }
}

// Tags -------------------------------------------------------------------------------------------

impl Client {
    /// Every tag of the account, with how many resources carry it.
    pub async fn list_tags(&self) -> Result<Vec<Tag>, CloudError> {
        self.list_all::<TagsPage>(&["v2", "tags"], &[]).await
    }

    /// Creates a tag; creating one that exists is harmless, so this is retried like a read.
    pub async fn create_tag(&self, name: &str) -> Result<Tag, CloudError> {
        let body = TagCreate {
            name: name.to_owned(),
        };
        let url = self.url(&["v2", "tags"], &[]);
        let response: TagResponse = self.send(Method::POST, url, &body, Replay::Safe).await?;
        Ok(response.tag)
    }

    /// Deletes a tag, untagging everything that had it.
    pub async fn delete_tag(&self, name: &str) -> Result<(), CloudError> {
        let url = self.url(&["v2", "tags", name], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// Tags resources (nothing is sent for an empty list).
    pub async fn tag_resources(
        &self,
        tag: &str,
        resources: &[TaggedResource],
    ) -> Result<(), CloudError> {
        if resources.is_empty() {
            return Ok(());
        }
        let body = TagResourcesRequest {
            resources: resources.to_vec(),
        };
        let url = self.url(&["v2", "tags", tag, "resources"], &[]);
        self.send_no_content(Method::POST, url, Some(&body), Replay::Safe)
            .await
    }
}

// Reserved IPs -----------------------------------------------------------------------------------

impl Client {
    /// Reserves an IP, assigned to a droplet or held in a region. Not retried once it may have
    /// arrived: a repeat would reserve (and bill) a second address.
    pub async fn create_reserved_ip(
        &self,
        request: &ReservedIpCreate,
    ) -> Result<ReservedIpCreated, CloudError> {
        let url = self.url(&["v2", "reserved_ips"], &[]);
        self.send(Method::POST, url, request, Replay::Unsafe).await
    }

    pub async fn get_reserved_ip(&self, ip: &str) -> Result<ReservedIp, CloudError> {
        let response: ReservedIpResponse =
            self.get(self.url(&["v2", "reserved_ips", ip], &[])).await?;
        Ok(response.reserved_ip)
    }

    pub async fn delete_reserved_ip(&self, ip: &str) -> Result<(), CloudError> {
        let url = self.url(&["v2", "reserved_ips", ip], &[]);
        self.send_no_content::<()>(Method::DELETE, url, None, Replay::Safe)
            .await
    }

    /// Assigns the IP to a droplet (moving it if needed) or unassigns it.
    pub async fn reserved_ip_action(
        &self,
        ip: &str,
        action: &ReservedIpAction,
    ) -> Result<Action, CloudError> {
        let url = self.url(&["v2", "reserved_ips", ip, "actions"], &[]);
        let response: ActionResponse = self.send(Method::POST, url, action, Replay::Unsafe).await?;
        Ok(response.action)
    }
}

// Sizes and regions ------------------------------------------------------------------------------

impl Client {
    pub async fn list_sizes(&self) -> Result<Vec<Size>, CloudError> {
        self.list_all::<SizesPage>(&["v2", "sizes"], &[]).await
    }

    pub async fn list_regions(&self) -> Result<Vec<Region>, CloudError> {
        self.list_all::<RegionsPage>(&["v2", "regions"], &[]).await
    }
}
