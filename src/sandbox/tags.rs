//! Tags (`/v2/tags...`): names on droplets and snapshots that lists filter by, deletes select
//! by, and firewalls use to pick their droplets and sources.

use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;

use crate::cloud::{
    ResourceType, Tag, TagCreate, TagResources, TagResourcesRequest, TagResponse, TaggedCount,
    TagsPage,
};
use crate::sandbox::api::{self, ApiError, ApiResult};
use crate::sandbox::firewalls;
use crate::sandbox::shared::Sandbox;
use crate::sandbox::store::State;

/// DigitalOcean's rule: letters, digits, `:`, `-` and `_`, at most 255 characters.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::tag_error(format!(
            "Error validating resource tag: \"tag-name \\\"{name}\\\" contains invalid characters\""
        )))
    }
}

fn render(state: &State, name: &str, base: &str) -> Tag {
    let droplets: Vec<u64> = state
        .droplets
        .iter()
        .filter(|d| d.tags.iter().any(|t| t == name))
        .map(|d| d.id)
        .collect();
    let snapshots = state
        .snapshots
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == name))
        .count();
    let last = droplets.last().map(|id| format!("{base}/v2/droplets/{id}"));
    Tag {
        name: name.to_owned(),
        resources: Some(TagResources {
            count: (droplets.len() + snapshots) as u64,
            last_tagged_uri: last.clone(),
            droplets: Some(TaggedCount {
                count: droplets.len() as u64,
                last_tagged_uri: last,
            }),
        }),
    }
}

/// Every tag of the account, with what it is on.
pub async fn list(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Query(query): Query<api::Query>,
) -> ApiResult {
    let state = sandbox.state.lock().await;
    let tags = state
        .tags
        .iter()
        .map(|name| render(&state, name, &sandbox.base_url))
        .collect();
    let page = api::page(tags, &query, &sandbox.base_url, "/v2/tags")?;
    Ok(api::json(
        StatusCode::OK,
        &TagsPage {
            tags: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

pub async fn create(Extract(sandbox): Extract<Arc<Sandbox>>, body: axum::body::Bytes) -> ApiResult {
    let request: TagCreate = api::body(&body)?;
    check_name(&request.name)?;
    let mut state = sandbox.state.lock().await;
    if !state.tags.contains(&request.name) {
        state.tags.push(request.name.clone());
        sandbox.save(&state)?;
    }
    let tag = render(&state, &request.name, &sandbox.base_url);
    Ok(api::json(StatusCode::CREATED, &TagResponse { tag }))
}

pub async fn delete(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(name): Path<String>,
) -> ApiResult {
    {
        let mut state = sandbox.state.lock().await;
        if !state.tags.contains(&name) {
            return Err(ApiError::not_found());
        }
        state.tags.retain(|t| *t != name);
        for droplet in &mut state.droplets {
            droplet.tags.retain(|t| *t != name);
        }
        for snapshot in &mut state.snapshots {
            snapshot.tags.retain(|t| *t != name);
        }
        for firewall in &mut state.firewalls {
            firewall.tags.retain(|t| *t != name);
        }
        sandbox.save(&state)?;
    }
    firewalls::apply(&sandbox, None).await;
    Ok(api::no_content())
}

pub async fn assign(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let request: TagResourcesRequest = api::body(&body)?;
    {
        let mut state = sandbox.state.lock().await;
        if !state.tags.contains(&name) {
            return Err(ApiError::not_found());
        }
        // Check every resource before changing any.
        let mut targets = Vec::new();
        for resource in &request.resources {
            let id: u64 = resource
                .resource_id
                .parse()
                .map_err(|_| ApiError::not_found())?;
            let exists = match resource.resource_type {
                ResourceType::Droplet => state.droplet(id).is_some(),
                ResourceType::Image => state.snapshot(id).is_some(),
                ResourceType::Volume | ResourceType::VolumeSnapshot => false,
            };
            if !exists {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "The resource you requested could not be found: {} {id}.",
                        serde_json::to_value(resource.resource_type)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ),
                ));
            }
            targets.push((resource.resource_type, id));
        }
        for (kind, id) in targets {
            let tags = match kind {
                ResourceType::Droplet => state.droplet_mut(id).map(|d| &mut d.tags),
                _ => state
                    .snapshots
                    .iter_mut()
                    .find(|s| s.id == id)
                    .map(|s| &mut s.tags),
            };
            if let Some(tags) = tags {
                if !tags.contains(&name) {
                    tags.push(name.clone());
                }
            }
        }
        sandbox.save(&state)?;
    }
    firewalls::apply(&sandbox, None).await;
    Ok(api::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_follow_digitalocean() {
        for good in ["infra", "env:prod", "web_1", "a-b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "здорово", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
