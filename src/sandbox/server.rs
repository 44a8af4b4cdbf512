//! The sandbox's HTTP server: DigitalOcean's API v2 subset on 127.0.0.1 (over HTTPS when
//! `infra sandbox up` runs it, see `tls.rs`), with its token check, rate-limit headers and
//! injected faults, over the shared [`Sandbox`] handle. Every route also answers with a
//! trailing slash, as DigitalOcean's do.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::sandbox::api::{ApiError, ApiResult};
use crate::sandbox::faults::Fault;
use crate::sandbox::shared::{Sandbox, HOURLY_LIMIT};
use crate::sandbox::{account, catalog, droplets, firewalls, reserved_ips, snapshots, tags};

/// Every route of the contract.
pub fn router(sandbox: Arc<Sandbox>) -> Router {
    let routes = Router::new()
        .route("/v2/account", get(account::get_account))
        .route(
            "/v2/account/keys",
            get(account::list_keys).post(account::create_key),
        )
        .route(
            "/v2/account/keys/{ssh_key_identifier}",
            get(account::get_key).delete(account::delete_key),
        )
        .route("/v2/actions/{action_id}", get(droplets::get_action))
        .route(
            "/v2/droplets",
            get(droplets::list)
                .post(droplets::create)
                .delete(droplets::delete_by_tag),
        )
        .route(
            "/v2/droplets/{droplet_id}",
            get(droplets::get).delete(droplets::delete),
        )
        .route(
            "/v2/droplets/{droplet_id}/snapshots",
            get(snapshots::list_for_droplet),
        )
        .route(
            "/v2/droplets/{droplet_id}/actions",
            get(droplets::list_actions).post(droplets::post_action),
        )
        .route(
            "/v2/droplets/{droplet_id}/actions/{action_id}",
            get(droplets::get_droplet_action),
        )
        .route("/v2/snapshots", get(snapshots::list))
        .route(
            "/v2/snapshots/{snapshot_id}",
            get(snapshots::get).delete(snapshots::delete),
        )
        .route("/v2/images", get(snapshots::list_images))
        .route("/v2/images/{image_id}", get(snapshots::get_image))
        .route(
            "/v2/firewalls",
            get(firewalls::list).post(firewalls::create),
        )
        .route(
            "/v2/firewalls/{firewall_id}",
            get(firewalls::get)
                .put(firewalls::update)
                .delete(firewalls::delete),
        )
        .route(
            "/v2/firewalls/{firewall_id}/droplets",
            post(firewalls::add_droplets).delete(firewalls::remove_droplets),
        )
        .route(
            "/v2/firewalls/{firewall_id}/rules",
            post(firewalls::add_rules).delete(firewalls::remove_rules),
        )
        .route("/v2/tags", get(tags::list).post(tags::create))
        .route("/v2/tags/{tag_id}", axum::routing::delete(tags::delete))
        .route("/v2/tags/{tag_id}/resources", post(tags::assign))
        .route("/v2/reserved_ips", post(reserved_ips::create))
        .route(
            "/v2/reserved_ips/{reserved_ip}",
            get(reserved_ips::get).delete(reserved_ips::delete),
        )
        .route(
            "/v2/reserved_ips/{reserved_ip}/actions",
            post(reserved_ips::post_action),
        )
        .route("/v2/sizes", get(list_sizes))
        .route("/sandbox/spares", get(spares_status))
        .route("/v2/regions", get(list_regions))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This method is not allowed on this resource.",
            )
        })
        .layer(middleware::from_fn_with_state(sandbox.clone(), guard))
        .with_state(sandbox);
    // Routing sees the path without its trailing slash: the rewrite must come before it, so
    // it wraps the whole router.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(trim_trailing_slash))
}

/// `/v2/account/` is `/v2/account`: DigitalOcean answers both, and python-digitalocean sends
/// every path with the slash.
async fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        let target = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(target) = target.parse() {
            parts.path_and_query = Some(target);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// Latency, then the token, then injected faults; rate-limit headers on every answer. The
/// sandbox's own routes (`/sandbox/...`, not DigitalOcean's) get neither latency nor faults.
async fn guard(Extract(sandbox): Extract<Arc<Sandbox>>, request: Request, next: Next) -> Response {
    let own = request.uri().path().starts_with("/sandbox/");
    if sandbox.faults.latency_ms > 0 && !own {
        tokio::time::sleep(sandbox.faults.latency()).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (remaining, reset) = sandbox.count_request();
    let mut response = if !sandbox.authorized(&request) {
        ApiError::unauthorized().into_response()
    } else {
        let fault = if own {
            Fault::None
        } else {
            sandbox.faults.draw()
        };
        match fault {
            Fault::None => next.run(request).await,
            Fault::TooManyRequests => {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "API rate limit exceeded.",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                response
            }
            Fault::ServerError => {
                // Half of the server errors on changes come after the change was made, as when
                // a real API's answer is lost: a client must look before it repeats a create.
                if method != axum::http::Method::GET
                    && rand_core::RngCore::next_u32(&mut rand_core::OsRng) & 1 == 1
                {
                    let _ = next.run(request).await;
                }
                ApiError::server_error("Unexpected server-side error").into_response()
            }
        }
    };
    tracing::info!("{method} {path} -> {}", response.status().as_u16());
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(HOURLY_LIMIT as u64));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining as u64));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
    response
}

/// `{"spares": {"target": 5, "ready": 4, "booting": 1}}`: how full the pool of spares is.
async fn spares_status(Extract(sandbox): Extract<Arc<Sandbox>>) -> ApiResult {
    Ok(crate::sandbox::api::json(
        StatusCode::OK,
        &serde_json::json!({ "spares": sandbox.spares.status() }),
    ))
}

async fn list_sizes(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    axum::extract::Query(query): axum::extract::Query<crate::sandbox::api::Query>,
) -> ApiResult {
    let page = crate::sandbox::api::page(catalog::sizes(), &query, &sandbox.base_url, "/v2/sizes")?;
    Ok(crate::sandbox::api::json(
        StatusCode::OK,
        &crate::cloud::SizesPage {
            sizes: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

async fn list_regions(
    Extract(sandbox): Extract<Arc<Sandbox>>,
    axum::extract::Query(query): axum::extract::Query<crate::sandbox::api::Query>,
) -> ApiResult {
    let page =
        crate::sandbox::api::page(catalog::regions(), &query, &sandbox.base_url, "/v2/regions")?;
    Ok(crate::sandbox::api::json(
        StatusCode::OK,
        &crate::cloud::RegionsPage {
            regions: page.items,
            links: page.links,
            meta: Some(page.meta),
        },
    ))
}

/// Binds `127.0.0.1:port` (any free port when it is taken or 0).
pub async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let wanted = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => Ok(listener),
        Err(_) if port != 0 => tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await,
        Err(e) => Err(e),
    }
}

/// Serves until `shutdown` resolves: over TLS with a [`crate::sandbox::tls::TlsListener`],
/// over plain HTTP with a bare `TcpListener` (the unit tests).
pub async fn serve<L>(
    listener: L,
    sandbox: Arc<Sandbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(sandbox))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    //! The routes that need no droplet, over real HTTP; droplets themselves are tested with
    //! Docker in `tests/integration/sandbox.rs`.

    use super::*;
    use crate::sandbox::backend::Docker;
    use crate::sandbox::faults::Faults;
    use crate::sandbox::store::{NetworkRecord, State, Store};
    use serde_json::{json, Value};

    const TOKEN: &str = "dop_v1_unit-test-token";

    async fn start(dir: &std::path::Path) -> String {
        let mut state = State::new("0badcafe".into());
        state.network = Some(NetworkRecord {
            name: "infra-sbx-0badcafe".into(),
            subnet: "10.213.9.0/24".into(),
            gateway: Ipv4Addr::new(10, 213, 9, 1),
        });
        let listener = bind(0).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sandbox = Arc::new(Sandbox::new(
            state,
            Store::new(dir.join("state.json")),
            Docker::default(),
            "infra-droplet:test".into(),
            TOKEN.into(),
            url.clone(),
            Faults::default(),
        ));
        tokio::spawn(serve(listener, sandbox, std::future::pending()));
        url
    }

    async fn call(
        url: &str,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(response.headers().contains_key("ratelimit-remaining"));
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn answers_with_digitalocean_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let url = start(dir.path()).await;
        let unauthorized = json!({"id": "unauthorized", "message": "Unable to authenticate you."});
        assert_eq!(
            call(&url, "GET", "/v2/account", "wrong", None).await,
            (401, unauthorized)
        );
        let (status, account) = call(&url, "GET", "/v2/account", TOKEN, None).await;
        assert_eq!(
            (status, account["account"]["status"].clone()),
            (200, json!("active"))
        );

        let key = json!({"name": "k", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBC+Y9vCMVPM7rJSlpdh9hh/3Lb3cwNEp9T6uiCur8B3 a@b"});
        let (status, created) =
            call(&url, "POST", "/v2/account/keys", TOKEN, Some(key.clone())).await;
        assert_eq!(status, 201);
        assert_eq!(
            created["ssh_key"]["fingerprint"],
            json!("0d:5c:8c:8e:0f:dd:d9:7c:39:54:15:fc:e4:d9:1e:4b")
        );
        let (status, again) = call(&url, "POST", "/v2/account/keys", TOKEN, Some(key)).await;
        assert_eq!(
            (status, again["id"].clone()),
            (422, json!("unprocessable_entity"))
        );

        let bad_size = json!({"name": "web1", "size": "s-99", "image": "debian-12-x64"});
        assert_eq!(
            call(&url, "POST", "/v2/droplets", TOKEN, Some(bad_size)).await,
            (
                422,
                json!({"id": "unprocessable_entity", "message": "You specified an invalid size for Droplet creation."})
            )
        );
        let not_found =
            json!({"id": "not_found", "message": "The resource you requested could not be found."});
        assert_eq!(
            call(&url, "GET", "/v2/nothing", TOKEN, None).await,
            (404, not_found)
        );
        let (status, missing) = call(&url, "GET", "/v2/droplets/7", TOKEN, None).await;
        assert_eq!((status, missing["id"].clone()), (404, json!("not_found")));
        let (status, wrong_method) = call(&url, "PUT", "/v2/account", TOKEN, None).await;
        assert_eq!(
            (status, wrong_method["id"].clone()),
            (405, json!("method_not_allowed"))
        );

        assert_eq!(
            call(&url, "GET", "/sandbox/spares", TOKEN, None).await,
            (
                200,
                json!({"spares": {"target": 0, "ready": 0, "booting": 0}})
            )
        );
        // With a trailing slash, as python-digitalocean sends every path.
        let (status, slash) =
            call(&url, "GET", "/v2/account/keys/?per_page=200", TOKEN, None).await;
        assert_eq!((status, slash["meta"]["total"].clone()), (200, json!(1)));
        assert_eq!(
            call(&url, "GET", "/v2/tags/", TOKEN, None).await,
            (200, json!({"tags": [], "links": {}, "meta": {"total": 0}}))
        );
        let (status, images) = call(&url, "GET", "/v2/images?type=distribution", TOKEN, None).await;
        assert_eq!(status, 200);
        let images = images["images"].as_array().unwrap().clone();
        assert!(
            images.iter().any(|i| i["slug"] == "debian-12-x64"),
            "{images:?}"
        );
        assert!(images.iter().all(|i| i["type"] == "base"), "{images:?}");
        let (status, private) = call(&url, "GET", "/v2/images?private=true", TOKEN, None).await;
        assert_eq!((status, private["images"].clone()), (200, json!([])));
        let (status, apps) = call(&url, "GET", "/v2/images?type=application", TOKEN, None).await;
        assert_eq!((status, apps["images"].clone()), (200, json!([])));
        let (status, _) = call(&url, "GET", "/v2/images?type=windows", TOKEN, None).await;
        assert_eq!(status, 400);
        let (status, sizes) = call(&url, "GET", "/v2/sizes?per_page=3", TOKEN, None).await;
        assert_eq!(status, 200);
        assert_eq!(sizes["sizes"].as_array().unwrap().len(), 3);
        assert_eq!(
            sizes["links"]["pages"]["next"],
            json!(format!("{url}/v2/sizes?page=2&per_page=3"))
        );
        // Every change is on disk.
        let saved = Store::new(dir.path().join("state.json"))
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(saved.ssh_keys.len(), 1);
    }
}
