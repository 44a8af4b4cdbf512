//! Request and response bodies of DigitalOcean's API v2, as the contract
//! (`tests/fixtures/digitalocean/openapi-subset.yaml`) describes them.
//!
//! Conventions, so that the same types serve the real cloud and the sandbox:
//! - ids are `u64`; a snapshot id may be a number or a string ([`SnapshotId`]);
//! - unknown fields are ignored on input; fields the contract marks optional are `Option` or
//!   defaulted collections; nullable arrays read `null` as empty;
//! - on output, optional fields that are not nullable are left out when unset, and nullable ones
//!   are written as `null`, so a serialized value still matches the contract;
//! - timestamps stay the strings DigitalOcean sent (ISO 8601), since nothing here computes with
//!   them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize};

/// Reads `null` as the type's default (an empty list), for arrays the contract marks nullable.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Identifiers that can be a number or a string

/// An image: by numeric id (any image, including snapshots) or by slug (public images only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    Id(u64),
    Slug(String),
}

impl From<u64> for ImageRef {
    fn from(id: u64) -> Self {
        ImageRef::Id(id)
    }
}

impl From<&str> for ImageRef {
    fn from(slug: &str) -> Self {
        ImageRef::Slug(slug.to_owned())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Id(id) => write!(f, "{id}"),
            ImageRef::Slug(slug) => f.write_str(slug),
        }
    }
}

/// An SSH key on the account: by id or by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SshKeyRef {
    Id(u64),
    Fingerprint(String),
}

impl From<u64> for SshKeyRef {
    fn from(id: u64) -> Self {
        SshKeyRef::Id(id)
    }
}

impl From<&str> for SshKeyRef {
    fn from(fingerprint: &str) -> Self {
        SshKeyRef::Fingerprint(fingerprint.to_owned())
    }
}

impl fmt::Display for SshKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshKeyRef::Id(id) => write!(f, "{id}"),
            SshKeyRef::Fingerprint(fingerprint) => f.write_str(fingerprint),
        }
    }
}

/// A snapshot id. `/v2/droplets/{id}/snapshots` sends droplet snapshot ids as numbers,
/// `/v2/snapshots` sends the same ids as strings (and volume snapshot ids are UUID strings).
///
/// The form received is kept so a value serializes back as it came, but equality and hashing
/// go by the text, so `Number(6372321)` equals `Text("6372321")`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SnapshotId {
    Number(u64),
    Text(String),
}

impl SnapshotId {
    /// The numeric id, which is what creating a droplet from this snapshot needs.
    pub fn as_number(&self) -> Option<u64> {
        match self {
            SnapshotId::Number(n) => Some(*n),
            SnapshotId::Text(text) => text.parse().ok(),
        }
    }

    /// The image to create or rebuild a droplet from. A droplet snapshot is an image with the
    /// same numeric id; sending it as a string would be read as a slug, so numbers stay numbers.
    pub fn to_image(&self) -> ImageRef {
        match self.as_number() {
            Some(id) => ImageRef::Id(id),
            None => ImageRef::Slug(self.to_string()),
        }
    }
}

impl From<u64> for SnapshotId {
    fn from(id: u64) -> Self {
        SnapshotId::Number(id)
    }
}

impl From<&str> for SnapshotId {
    fn from(id: &str) -> Self {
        SnapshotId::Text(id.to_owned())
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotId::Number(n) => write!(f, "{n}"),
            SnapshotId::Text(text) => f.write_str(text),
        }
    }
}

impl PartialEq for SnapshotId {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for SnapshotId {}

impl std::hash::Hash for SnapshotId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.to_string().hash(state)
    }
}

// ---------------------------------------------------------------------------------------------
// Pagination

/// `links` of a list response. Only `pages.next` matters to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Pages>,
}

impl Links {
    /// The URL of the next page, if there is one.
    pub fn next(&self) -> Option<&str> {
        self.pages.as_ref()?.next.as_deref()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// `meta` of a list response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub total: u64,
}

/// A list response: one page of items plus its links.
pub trait Paged: serde::de::DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Links);
}

macro_rules! page {
    ($(#[$doc:meta])* $name:ident, $field:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            #[serde(default)]
            pub $field: Vec<$item>,
            #[serde(default)]
            pub links: Links,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub meta: Option<Meta>,
        }

        impl Paged for $name {
            type Item = $item;
            fn into_parts(self) -> (Vec<$item>, Links) {
                (self.$field, self.links)
            }
        }
    };
}

page!(
    /// `GET /v2/droplets`.
    DropletsPage, droplets, Droplet
);
page!(
    /// `GET /v2/account/keys`.
    SshKeysPage, ssh_keys, SshKey
);
page!(
    /// `GET /v2/droplets/{droplet_id}/actions`.
    ActionsPage, actions, Action
);
page!(
    /// `GET /v2/droplets/{droplet_id}/snapshots`.
    DropletSnapshotsPage, snapshots, DropletSnapshot
);
page!(
    /// `GET /v2/snapshots`.
    SnapshotsPage, snapshots, Snapshot
);
page!(
    /// `GET /v2/firewalls`.
    FirewallsPage, firewalls, Firewall
);
page!(
    /// `GET /v2/sizes`.
    SizesPage, sizes, Size
);
page!(
    /// `GET /v2/regions`.
    RegionsPage, regions, Region
);
page!(
    /// `GET /v2/tags`.
    TagsPage, tags, Tag
);
page!(
    /// `GET /v2/images`.
    ImagesPage, images, Image
);

// ---------------------------------------------------------------------------------------------
// Errors

/// An error body. Most endpoints send `id`, `message` and maybe `request_id`; tag endpoints send
/// `error`, `messages` and `root_causes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_causes: Vec<String>,
}

impl ErrorBody {
    /// The most useful human-readable text in the body.
    pub fn text(&self) -> String {
        if let Some(message) = self.message.as_ref().filter(|m| !m.trim().is_empty()) {
            return message.trim().to_owned();
        }
        let mut parts: Vec<&str> = self.error.iter().map(String::as_str).collect();
        parts.extend(self.messages.iter().flatten().map(String::as_str));
        if parts.is_empty() {
            parts.extend(self.root_causes.iter().map(String::as_str));
        }
        parts.join("; ")
    }
}

// ---------------------------------------------------------------------------------------------
// Account

/// `GET /v2/account`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountResponse {
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub droplet_limit: u64,
    pub floating_ip_limit: u64,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub uuid: String,
    pub email_verified: bool,
    /// `active`, `warning` or `locked`.
    pub status: String,
    pub status_message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Team>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// SSH keys

/// `POST /v2/account/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyCreate {
    pub name: String,
    pub public_key: String,
}

/// `GET /v2/account/keys/{ssh_key_identifier}` and the create response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyResponse {
    pub ssh_key: SshKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: u64,
    #[serde(default)]
    pub fingerprint: String,
    pub public_key: String,
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Actions

/// `GET /v2/actions/{action_id}`, and the answer to every action request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResponse {
    pub action: Action,
}

/// Something DigitalOcean does asynchronously (create, snapshot, power off, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    #[serde(default)]
    pub status: ActionStatus,
    /// `create`, `snapshot`, `power_off`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub resource_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    #[serde(default)]
    pub region_slug: Option<String>,
}

impl Action {
    /// `droplet 3164444`, for messages.
    pub fn resource(&self) -> String {
        match (&self.resource_type, self.resource_id) {
            (Some(kind), Some(id)) => format!("{kind} {id}"),
            (Some(kind), None) => kind.clone(),
            (None, Some(id)) => format!("resource {id}"),
            (None, None) => "an unnamed resource".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    #[default]
    InProgress,
    Completed,
    Errored,
}

/// A link to the action started by a create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLink {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub rel: String,
    #[serde(default)]
    pub href: String,
}

/// `links` of a droplet or reserved IP create response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLinks {
    #[serde(default)]
    pub actions: Vec<ActionLink>,
}

// ---------------------------------------------------------------------------------------------
// Droplets

/// `GET /v2/droplets/{droplet_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletResponse {
    pub droplet: Droplet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub memory: u64,
    pub vcpus: u64,
    pub disk: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_info: Vec<DiskInfo>,
    pub locked: bool,
    pub status: DropletStatus,
    /// Deprecated by DigitalOcean; `null` on every droplet made since 2017.
    #[serde(default)]
    pub kernel: Option<Kernel>,
    pub created_at: String,
    pub features: Vec<String>,
    pub backup_ids: Vec<u64>,
    #[serde(default)]
    pub next_backup_window: Option<BackupWindow>,
    pub snapshot_ids: Vec<u64>,
    pub image: Image,
    pub volume_ids: Vec<String>,
    pub size: Size,
    pub size_slug: String,
    pub networks: Networks,
    pub region: Region,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_uuid: Option<String>,
}

impl Droplet {
    /// The public IPv4 address: the `networks.v4` entry whose `type` is `public`.
    pub fn public_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4_of(NetworkType::Public)
    }

    /// The private (VPC) IPv4 address.
    pub fn private_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4_of(NetworkType::Private)
    }

    /// The public IPv6 address, when IPv6 is enabled.
    pub fn public_ipv6(&self) -> Option<Ipv6Addr> {
        self.networks
            .v6
            .iter()
            .filter(|n| n.kind == NetworkType::Public)
            .find_map(|n| n.ip_address.as_deref()?.parse().ok())
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    fn ipv4_of(&self, kind: NetworkType) -> Option<Ipv4Addr> {
        self.networks
            .v4
            .iter()
            .filter(|n| n.kind == kind)
            .find_map(|n| n.ip_address.as_deref()?.parse().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DropletStatus {
    New,
    Active,
    Off,
    Archive,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// `local`, `boot` or `scratch`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<DiskSize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSize {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networks {
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
    #[serde(default)]
    pub v6: Vec<NetworkV6>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkV4 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    /// DigitalOcean sends the string `nil` for private interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(rename = "type")]
    pub kind: NetworkType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkV6 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(rename = "type")]
    pub kind: NetworkType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    Public,
    Private,
}

/// What a droplet create needs besides its name(s); shared by [`DropletCreate`] and
/// [`DropletMultiCreate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub size: String,
    pub image: ImageRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<SshKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<bool>,
    /// Tags to create the droplet with. infra always tags its droplets (`infra` and the droplet
    /// name) so that a create that may have failed can be found again instead of repeated.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// cloud-init user data, at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_droplet_agent: Option<bool>,
}

impl DropletSpec {
    pub fn new(size: impl Into<String>, image: impl Into<ImageRef>) -> DropletSpec {
        DropletSpec {
            region: None,
            size: size.into(),
            image: image.into(),
            ssh_keys: Vec::new(),
            backups: None,
            ipv6: None,
            monitoring: None,
            tags: Vec::new(),
            user_data: None,
            vpc_uuid: None,
            with_droplet_agent: None,
        }
    }
}

/// `POST /v2/droplets` for one droplet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletCreate {
    pub name: String,
    #[serde(flatten)]
    pub spec: DropletSpec,
}

/// `POST /v2/droplets` for up to ten droplets that share a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletMultiCreate {
    pub names: Vec<String>,
    #[serde(flatten)]
    pub spec: DropletSpec,
}

impl DropletMultiCreate {
    /// The most names one request may carry (DigitalOcean's limit): more droplets take more
    /// requests.
    pub const MAX_NAMES: usize = 10;
}

/// Answer to a single-droplet create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletCreated {
    pub droplet: Droplet,
    #[serde(default)]
    pub links: ActionLinks,
}

/// Answer to a multi-droplet create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletsCreated {
    pub droplets: Vec<Droplet>,
    #[serde(default)]
    pub links: ActionLinks,
}

/// `POST /v2/droplets/{droplet_id}/actions`: the actions infra uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DropletAction {
    /// Snapshot the droplet's disk; best taken while it is powered off.
    Snapshot {
        name: String,
    },
    /// Hard power off, like pulling the plug.
    PowerOff,
    PowerOn,
    /// Graceful shutdown; it may not complete, so follow it with `PowerOff` after a timeout.
    Shutdown,
    Reboot,
    /// Hard reset.
    PowerCycle,
    /// Change the size; `disk: true` also grows the disk, which cannot be undone.
    Resize {
        size: String,
        disk: bool,
    },
    /// Reinstall the droplet from an image or snapshot, keeping its id and IP addresses.
    Rebuild {
        image: ImageRef,
    },
}

// ---------------------------------------------------------------------------------------------
// Snapshots and images

/// An entry of `GET /v2/droplets/{droplet_id}/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropletSnapshot {
    pub id: u64,
    pub name: String,
    pub created_at: String,
    pub regions: Vec<String>,
    pub min_disk_size: u64,
    pub size_gigabytes: f64,
    /// `snapshot` or `backup`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /v2/snapshots/{snapshot_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub snapshot: Snapshot,
}

/// An entry of `GET /v2/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub name: String,
    pub created_at: String,
    pub regions: Vec<String>,
    pub min_disk_size: u64,
    pub size_gigabytes: f64,
    /// The droplet (or volume) it was taken from, as a string.
    pub resource_id: String,
    /// `droplet` or `volume`.
    pub resource_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

/// `GET /v2/images/{image_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResponse {
    pub image: Image,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `base`, `snapshot`, `backup`, `custom` or `admin`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default)]
    pub min_disk_size: Option<u64>,
    #[serde(default)]
    pub size_gigabytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// `NEW`, `available`, `pending`, `deleted` or `retired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Firewalls

/// `GET /v2/firewalls/{firewall_id}` and the create and update responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallResponse {
    pub firewall: Firewall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FirewallStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default)]
    pub pending_changes: Vec<PendingChange>,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub droplet_ids: Vec<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub inbound_rules: Vec<InboundRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub outbound_rules: Vec<OutboundRule>,
}

impl Firewall {
    /// The writable part, for a read-modify-write update (`PUT` replaces the whole firewall).
    pub fn to_request(&self) -> FirewallRequest {
        FirewallRequest {
            name: self.name.clone(),
            inbound_rules: self.inbound_rules.clone(),
            outbound_rules: self.outbound_rules.clone(),
            droplet_ids: self.droplet_ids.clone(),
            tags: self.tags.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallStatus {
    Waiting,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    #[serde(default)]
    pub droplet_id: u64,
    #[serde(default)]
    pub removing: bool,
    #[serde(default)]
    pub status: String,
}

/// `POST /v2/firewalls` and `PUT /v2/firewalls/{firewall_id}`.
///
/// Every list is always sent, empty or not: a `PUT` resets whatever it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRequest {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub inbound_rules: Vec<InboundRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub outbound_rules: Vec<OutboundRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub droplet_ids: Vec<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRule {
    pub protocol: Protocol,
    /// One port (`22`), a range (`8000-9000`), or `0` for all; always `0` for ICMP.
    pub ports: String,
    pub sources: RuleTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRule {
    pub protocol: Protocol,
    pub ports: String,
    pub destinations: RuleTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

/// Where traffic may come from (inbound) or go to (outbound).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTarget {
    /// IPv4/IPv6 addresses and CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub droplet_ids: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_uids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
}

/// `POST`/`DELETE /v2/firewalls/{firewall_id}/rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRules {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inbound_rules: Vec<InboundRule>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub outbound_rules: Vec<OutboundRule>,
}

impl FirewallRules {
    pub fn is_empty(&self) -> bool {
        self.inbound_rules.is_empty() && self.outbound_rules.is_empty()
    }
}

/// `POST`/`DELETE /v2/firewalls/{firewall_id}/droplets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallDroplets {
    pub droplet_ids: Vec<u64>,
}

// ---------------------------------------------------------------------------------------------
// Tags

/// `POST /v2/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCreate {
    pub name: String,
}

/// Answer to a tag create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagResponse {
    pub tag: Tag,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<TagResources>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagResources {
    #[serde(default)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tagged_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplets: Option<TaggedCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaggedCount {
    #[serde(default)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tagged_uri: Option<String>,
}

/// `POST /v2/tags/{tag_id}/resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagResourcesRequest {
    pub resources: Vec<TaggedResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaggedResource {
    /// The resource's id, as a string even for droplets.
    pub resource_id: String,
    pub resource_type: ResourceType,
}

impl TaggedResource {
    pub fn droplet(id: u64) -> TaggedResource {
        TaggedResource {
            resource_id: id.to_string(),
            resource_type: ResourceType::Droplet,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Droplet,
    Image,
    Volume,
    VolumeSnapshot,
}

// ---------------------------------------------------------------------------------------------
// Reserved IPs

/// `POST /v2/reserved_ips`: reserve an IP for a droplet (assigned at once) or in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReservedIpCreate {
    ForDroplet {
        droplet_id: u64,
    },
    InRegion {
        region: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project_id: Option<String>,
    },
}

/// `GET /v2/reserved_ips/{reserved_ip}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedIpResponse {
    pub reserved_ip: ReservedIp,
}

/// Answer to a reserved IP create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedIpCreated {
    pub reserved_ip: ReservedIp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<ReservedIpLinks>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedIpLinks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub droplets: Vec<ActionLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedIp {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// The droplet it is assigned to, if any.
    #[serde(default)]
    pub droplet: Option<Box<Droplet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// `POST /v2/reserved_ips/{reserved_ip}/actions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReservedIpAction {
    Assign { droplet_id: u64 },
    Unassign,
}

// ---------------------------------------------------------------------------------------------
// Sizes and regions

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub slug: String,
    pub memory: u64,
    pub vcpus: u64,
    pub disk: u64,
    /// Terabytes of transfer a month.
    pub transfer: f64,
    pub price_monthly: f64,
    pub price_hourly: f64,
    pub regions: Vec<String>,
    pub available: bool,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_info: Vec<DiskInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub slug: String,
    pub features: Vec<String>,
    pub available: bool,
    pub sizes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshot_ids_compare_by_text_and_keep_their_form() {
        let number: SnapshotId = serde_json::from_value(json!(6372321)).unwrap();
        let text: SnapshotId = serde_json::from_value(json!("6372321")).unwrap();
        assert_eq!(number, text);
        assert_eq!(serde_json::to_value(&text).unwrap(), json!("6372321"));
        assert_eq!(text.to_image(), ImageRef::Id(6372321));
        let volume = SnapshotId::from("fbe805e8-866b-11e6-96bf-000f53315a41");
        assert_eq!(volume.as_number(), None);
    }

    #[test]
    fn droplet_actions_serialize_with_their_type() {
        let cases = [
            (
                DropletAction::Snapshot {
                    name: "web1-2024".into(),
                },
                json!({"type": "snapshot", "name": "web1-2024"}),
            ),
            (DropletAction::PowerOff, json!({"type": "power_off"})),
            (
                DropletAction::Resize {
                    size: "s-2vcpu-2gb".into(),
                    disk: false,
                },
                json!({"type": "resize", "size": "s-2vcpu-2gb", "disk": false}),
            ),
            (
                DropletAction::Rebuild { image: 42.into() },
                json!({"type": "rebuild", "image": 42}),
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(serde_json::to_value(&action).unwrap(), expected);
        }
    }

    #[test]
    fn nullable_lists_read_null_as_empty() {
        let firewall: Firewall = serde_json::from_value(json!({
            "id": "f", "name": "n", "droplet_ids": null, "tags": null,
            "inbound_rules": null, "outbound_rules": null
        }))
        .unwrap();
        assert!(firewall.droplet_ids.is_empty() && firewall.inbound_rules.is_empty());
    }

    #[test]
    fn error_body_text_covers_both_shapes() {
        let plain: ErrorBody =
            serde_json::from_value(json!({"id": "not_found", "message": "gone"})).unwrap();
        assert_eq!(plain.text(), "gone");
        let tags: ErrorBody = serde_json::from_value(json!({
            "error": "bad tag", "messages": null, "root_causes": ["rpc error"]
        }))
        .unwrap();
        assert_eq!(tags.text(), "bad tag");
    }
}
