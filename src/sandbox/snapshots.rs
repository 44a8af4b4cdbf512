//! Snapshots (`/v2/snapshots...`, `/v2/droplets/{id}/snapshots`) and images
//! (`/v2/images`, `/v2/images/{id}`). A snapshot is a Docker image of the droplet's disk; a droplet created
//! with its id as `image` starts from it.

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;

use crate::cloud::{
    DropletSnapshot, DropletSnapshotsPage, Image, ImageResponse, ImagesPage, Snapshot, SnapshotId,
    SnapshotResponse, SnapshotsPage,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::catalog;
use crate::sandbox::shared::Sandbox;
use crate::sandbox::store::SnapshotRecord;

/// A snapshot as `/v2/images/{id}` and a droplet's `image` show it.
pub fn image_of(snapshot: &SnapshotRecord) -> Image {
    Image {
        id: snapshot.id,
        name: Some(snapshot.name.clone()),
        kind: Some("snapshot".into()),
        distribution: Some("Debian".into()),
        slug: None,
        public: Some(false),
        regions: vec![snapshot.region.clone()],
        created_at: Some(snapshot.created_at.clone()),
        min_disk_size: Some(snapshot.min_disk_size),
        size_gigabytes: Some(snapshot.size_gigabytes),
        description: Some(String::new()),
        tags: snapshot.tags.clone(),
        status: Some("available".into()),
        error_message: Some(String::new()),
    }
}

/// The image of a droplet made from a snapshot that has since been deleted.
pub fn deleted_image(id: u64) -> Image {
    Image {
        id,
        name: Some("deleted snapshot".into()),
        kind: Some("snapshot".into()),
        distribution: Some("Debian".into()),
        slug: None,
        public: Some(false),
        regions: Vec::new(),
        created_at: None,
        min_disk_size: None,
        size_gigabytes: None,
        description: Some(String::new()),
        tags: Vec::new(),
        status: Some("deleted".into()),
        error_message: Some(String::new()),
    }
}

fn of_droplet(snapshot: &SnapshotRecord) -> DropletSnapshot {
    DropletSnapshot {
        id: snapshot.id,
        name: snapshot.name.clone(),
        created_at: snapshot.created_at.clone(),
        regions: vec![snapshot.region.clone()],
        min_disk_size: snapshot.min_disk_size,
        size_gigabytes: snapshot.size_gigabytes,
        kind: "snapshot".into(),
    }
}

fn of_account(snapshot: &SnapshotRecord) -> Snapshot {
    Snapshot {
        id: SnapshotId::Text(snapshot.id.to_string()),
        name: snapshot.name.clone(),
        created_at: snapshot.created_at.clone(),
        regions: vec![snapshot.region.clone()],
        min_disk_size: snapshot.min_disk_size,
        size_gigabytes: snapshot.size_gigabytes,
        resource_id: snapshot.droplet_id.to_string(),
        resource_type: "droplet".into(),
        tags: snapshot.tags.clone(),
    }
}

/// Every snapshot taken of the droplet (a deleted droplet's id is a 404, as on DigitalOcean,
/// though its snapshots stay in `/v2/snapshots`).
pub async fn list_for_droplet(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(id): Path<String>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let id = api::id(&id)?;
    let state = sandbox.state.lock().await;
    state.droplet(id).ok_or_else(ApiError::not_found)?;
    let snapshots = state
        .snapshots
        .iter()
        .filter(|s| s.droplet_id == id)
        .map(of_droplet)
        .collect();
    let path = format!("/v2/droplets/{id}/snapshots");
    let page = api::page(snapshots, &query, &sandbox.base_url, &path)?;
    Ok(api::json(
        StatusCode::OK,
        &DropletSnapshotsPage {
            snapshots: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn list(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let state = sandbox.state.lock().await;
    // The sandbox has no volumes, so no volume snapshots.
    let volumes = query.get("resource_type").is_some_and(|t| t == "volume");
    let snapshots = state
        .snapshots
        .iter()
        .filter(|_| !volumes)
        .map(of_account)
        .collect();
    let page = api::page(snapshots, &query, &sandbox.base_url, "/v2/snapshots")?;
    Ok(api::json(
        StatusCode::OK,
        &SnapshotsPage {
            snapshots: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn get(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    let id = api::id(&id)?;
    let state = sandbox.state.lock().await;
    let snapshot = state.snapshot(id).ok_or_else(ApiError::not_found)?;
    Ok(api::json(
        StatusCode::OK,
        &SnapshotResponse {
            snapshot: of_account(snapshot),
        },
    ))
}

pub async fn delete(Extract(sandbox): Extract<Arc<Sandbox>>, Path(id): Path<String>) -> ApiResult {
    let id = api::id(&id)?;
    let image = {
        let mut state = sandbox.state.lock().await;
        let image = state
            .snapshot(id)
            .ok_or_else(ApiError::not_found)?
            .image
            .clone();
        state.snapshots.retain(|s| s.id != id);
        for droplet in &mut state.droplets {
            droplet.snapshot_ids.retain(|s| *s != id);
        }
        sandbox.save(&state)?;
        image
    };
    sandbox.docker.remove_image(&image).await.map_err(|e| {
        ApiError::server_error(format!(
            "the snapshot was removed from the account but its image was not: {e}"
        ))
    })?;
    Ok(api::no_content())
}

/// `GET /v2/images`: the base images (DigitalOcean's distribution images) and the account's
/// snapshots; `type=distribution` keeps the base images, `type=application` finds none (the
/// sandbox has no 1-Click applications), `private=true` keeps the snapshots, `tag_name` those
/// with the tag.
pub async fn list_images(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let kind = query.get("type").map(String::as_str);
    if kind.is_some_and(|k| k != "distribution" && k != "application") {
        return Err(ApiError::bad_request(
            "`type` must be `distribution` or `application`",
        ));
    }
    let private = match query.get("private").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("`private` must be `true` or `false`")),
    };
    let tag = query.get("tag_name");
    let state = sandbox.state.lock().await;
    let mut images = Vec::new();
    if !private && kind != Some("application") {
        images.extend(catalog::base_images());
    }
    if kind.is_none() {
        images.extend(state.snapshots.iter().map(image_of));
    }
    images.retain(|image| tag.is_none_or(|t| image.tags.contains(t)));
    let page = api::page(images, &query, &sandbox.base_url, "/v2/images")?;
    Ok(api::json(
        StatusCode::OK,
        &ImagesPage {
            images: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

/// A base image by id or slug, or a snapshot by id.
pub async fn get_image(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(image_id): Path<String>,
) -> ApiResult {
    let state = sandbox.state.lock().await;
    let image = match image_id.parse::<u64>() {
        Ok(id) => catalog::base_image(Some(id), None).or_else(|| state.snapshot(id).map(image_of)),
        Err(_) => catalog::base_image(None, Some(&image_id)),
    }
    .ok_or_else(ApiError::not_found)?;
    Ok(api::json(StatusCode::OK, &ImageResponse { image }))
}
