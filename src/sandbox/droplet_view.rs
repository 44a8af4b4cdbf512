//! A droplet as DigitalOcean's API shows it, from the sandbox's record: what every route that
//! returns a droplet (droplets, reserved IPs) renders.

use crate::cloud::{ActionStatus, DiskInfo, DiskSize, Droplet, NetworkType, NetworkV4, Networks};
use crate::sandbox::catalog;
use crate::sandbox::snapshots;
use crate::sandbox::store::{DropletRecord, State};

/// A droplet as the API shows it.
pub fn render(state: &State, droplet: &DropletRecord) -> Droplet {
    let size = catalog::size(&droplet.size).unwrap_or_else(|| catalog::sizes().remove(0));
    let region = catalog::region(&droplet.region)
        .unwrap_or_else(|| catalog::region(catalog::DEFAULT_REGION).expect("default region"));
    let image = catalog::base_image(Some(droplet.image_id), None)
        .or_else(|| state.snapshot(droplet.image_id).map(snapshots::image_of))
        .unwrap_or_else(|| snapshots::deleted_image(droplet.image_id));
    let gateway = state.network.as_ref().map(|n| n.gateway.to_string());
    let address = |kind| NetworkV4 {
        ip_address: Some(droplet.ip.to_string()),
        netmask: Some("255.255.255.0".into()),
        gateway: gateway.clone(),
        kind,
    };
    let locked = state.actions.iter().any(|a| {
        a.status == ActionStatus::InProgress
            && a.resource_id == Some(droplet.id)
            && a.resource_type.as_deref() == Some("droplet")
    });
    Droplet {
        id: droplet.id,
        name: droplet.name.clone(),
        memory: size.memory,
        vcpus: size.vcpus,
        disk: size.disk,
        disk_info: vec![DiskInfo {
            kind: Some("local".into()),
            size: Some(DiskSize {
                amount: Some(size.disk),
                unit: Some("gib".into()),
            }),
        }],
        locked,
        status: droplet.status,
        kernel: None,
        created_at: droplet.created_at.clone(),
        features: vec!["private_networking".into()],
        backup_ids: Vec::new(),
        next_backup_window: None,
        snapshot_ids: droplet.snapshot_ids.clone(),
        image,
        volume_ids: Vec::new(),
        size_slug: size.slug.clone(),
        size,
        networks: Networks {
            v4: vec![address(NetworkType::Public), address(NetworkType::Private)],
            v6: Vec::new(),
        },
        region,
        tags: droplet.tags.clone(),
        vpc_uuid: Some(vpc_uuid(&state.sandbox_id)),
    }
}

/// The sandbox network's id, shaped as a UUID.
fn vpc_uuid(sandbox_id: &str) -> String {
    let hex: String = format!("{sandbox_id:0>12}").chars().take(12).collect();
    format!("5a4db0c5-0000-4000-8000-{hex}")
}
