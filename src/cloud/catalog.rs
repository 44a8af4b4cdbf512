//! The droplet sizes and regions a cloud offers, by slug, so that `infra validate` catches
//! `"web_droplet_spec": "s-999"` before a create fails on it.
//!
//! Where the list comes from, in order:
//! 1. The configured cloud itself (`DO_TOKEN`, or the project's running sandbox): `infra
//!    validate` asks `/v2/sizes` and `/v2/regions`, waiting at most [`REFRESH_TIMEOUT`], and
//!    keeps the answer in `config/.infra/catalog.json` with the endpoint it came from.
//! 2. That file, when the cloud does not answer in time and the file is for the same endpoint.
//! 3. The list bundled below: DigitalOcean's slugs. Nothing is fetched when no cloud is
//!    configured, and no request ever goes anywhere but the configured endpoint.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Client;
use crate::project::Project;

/// How long `infra validate` waits for the cloud's lists before it uses the cached or the
/// bundled ones: validation must stay quick when the cloud is slow or gone.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// DigitalOcean's droplet size slugs: Basic (`s-`, regular, and the `-amd` and `-intel`
/// premium ones), General Purpose (`g-`, `gd-`), CPU-Optimized (`c-`, `c2-`),
/// Memory-Optimized (`m-`, `m3-`, `m6-`) and Storage-Optimized (`so-`), with the legacy sizes
/// older droplets still use.
const BUNDLED_SIZES: &[&str] = &[
    "s-1vcpu-512mb-10gb",
    "s-1vcpu-1gb",
    "s-1vcpu-1gb-amd",
    "s-1vcpu-1gb-intel",
    "s-1vcpu-1gb-35gb-intel",
    "s-1vcpu-2gb",
    "s-1vcpu-2gb-amd",
    "s-1vcpu-2gb-intel",
    "s-1vcpu-2gb-70gb-intel",
    "s-2vcpu-2gb",
    "s-2vcpu-2gb-amd",
    "s-2vcpu-2gb-intel",
    "s-2vcpu-2gb-90gb-intel",
    "s-2vcpu-4gb",
    "s-2vcpu-4gb-amd",
    "s-2vcpu-4gb-intel",
    "s-2vcpu-4gb-120gb-intel",
    "s-2vcpu-8gb-amd",
    "s-2vcpu-8gb-160gb-intel",
    "s-4vcpu-8gb",
    "s-4vcpu-8gb-amd",
    "s-4vcpu-8gb-intel",
    "s-4vcpu-8gb-240gb-intel",
    "s-4vcpu-16gb-amd",
    "s-4vcpu-16gb-320gb-intel",
    "s-8vcpu-16gb",
    "s-8vcpu-16gb-amd",
    "s-8vcpu-16gb-intel",
    "s-8vcpu-16gb-480gb-intel",
    "s-8vcpu-32gb-amd",
    "s-8vcpu-32gb-640gb-intel",
    // Legacy Basic sizes.
    "s-1vcpu-3gb",
    "s-3vcpu-1gb",
    "s-6vcpu-16gb",
    "s-8vcpu-32gb",
    "s-12vcpu-48gb",
    "s-16vcpu-64gb",
    "s-20vcpu-96gb",
    "s-24vcpu-128gb",
    "s-32vcpu-192gb",
    "g-2vcpu-8gb",
    "g-4vcpu-16gb",
    "g-8vcpu-32gb",
    "g-16vcpu-64gb",
    "g-32vcpu-128gb",
    "g-40vcpu-160gb",
    "gd-2vcpu-8gb",
    "gd-4vcpu-16gb",
    "gd-8vcpu-32gb",
    "gd-16vcpu-64gb",
    "gd-32vcpu-128gb",
    "gd-40vcpu-160gb",
    "c-2",
    "c-4",
    "c-8",
    "c-16",
    "c-32",
    "c-48",
    "c2-2vcpu-4gb",
    "c2-4vcpu-8gb",
    "c2-8vcpu-16gb",
    "c2-16vcpu-32gb",
    "c2-32vcpu-64gb",
    "c2-48vcpu-96gb",
    "m-2vcpu-16gb",
    "m-4vcpu-32gb",
    "m-8vcpu-64gb",
    "m-16vcpu-128gb",
    "m-24vcpu-192gb",
    "m-32vcpu-256gb",
    "m3-2vcpu-16gb",
    "m3-4vcpu-32gb",
    "m3-8vcpu-64gb",
    "m3-16vcpu-128gb",
    "m3-24vcpu-192gb",
    "m3-32vcpu-256gb",
    "m6-2vcpu-16gb",
    "m6-4vcpu-32gb",
    "m6-8vcpu-64gb",
    "m6-16vcpu-128gb",
    "m6-24vcpu-192gb",
    "m6-32vcpu-256gb",
    "so-2vcpu-16gb",
    "so-4vcpu-32gb",
    "so-8vcpu-64gb",
    "so-16vcpu-128gb",
    "so-24vcpu-192gb",
    "so-32vcpu-256gb",
];

/// DigitalOcean's datacenter region slugs.
const BUNDLED_REGIONS: &[&str] = &[
    "nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1",
    "blr1", "syd1", "atl1",
];

/// Sizes and regions one cloud offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The API the lists came from; `None` for the bundled lists.
    pub endpoint: Option<String>,
    pub sizes: Vec<String>,
    pub regions: Vec<String>,
}

impl Catalog {
    /// DigitalOcean's slugs as bundled with this version of infra.
    pub fn bundled() -> Catalog {
        Catalog {
            endpoint: None,
            sizes: BUNDLED_SIZES.iter().map(|s| s.to_string()).collect(),
            regions: BUNDLED_REGIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Why `slug` is not a size this cloud offers, naming the nearest one; `None` if it is.
    pub fn size_problem(&self, slug: &str) -> Option<String> {
        self.problem(slug, &self.sizes, "droplet size", "s-1vcpu-1gb", "size")
    }

    /// Why `slug` is not a region this cloud has, naming the nearest one; `None` if it is.
    pub fn region_problem(&self, slug: &str) -> Option<String> {
        self.problem(slug, &self.regions, "region", "lon1", "region")
    }

    fn problem(
        &self,
        slug: &str,
        known: &[String],
        what: &str,
        example: &str,
        doctl: &str,
    ) -> Option<String> {
        if known.iter().any(|k| k == slug) {
            return None;
        }
        let offered_by = match &self.endpoint {
            None => "DigitalOcean".to_string(),
            Some(endpoint) => format!("the cloud at {endpoint}"),
        };
        let hint = match crate::schema::nearest(slug, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => match &self.endpoint {
                None => format!(
                    "use one like `{example}` (`doctl compute {doctl} list` lists them all)"
                ),
                Some(_) => format!("it offers {}", known.join(", ")),
            },
        };
        Some(format!(
            "`{slug}` is not a {what} {offered_by} offers; {hint}"
        ))
    }
}

/// Where the cloud's own lists are kept between runs.
pub fn cache_path(project: &Project) -> PathBuf {
    project.infra_dir().join("catalog.json")
}

/// The cached lists, if they were fetched from `endpoint`.
pub fn cached(project: &Project, endpoint: &str) -> Option<Catalog> {
    let text = std::fs::read_to_string(cache_path(project)).ok()?;
    let catalog: Catalog = serde_json::from_str(&text).ok()?;
    (catalog.endpoint.as_deref() == Some(endpoint)).then_some(catalog)
}

/// Asks the cloud for its sizes and regions (the available ones).
async fn fetch(client: &Client) -> Result<Catalog, String> {
    let (sizes, regions) =
        tokio::try_join!(client.list_sizes(), client.list_regions()).map_err(|e| e.to_string())?;
    let catalog = Catalog {
        endpoint: Some(client.base_url().to_string()),
        sizes: sizes
            .into_iter()
            .filter(|s| s.available)
            .map(|s| s.slug)
            .collect(),
        regions: regions
            .into_iter()
            .filter(|r| r.available)
            .map(|r| r.slug)
            .collect(),
    };
    if catalog.sizes.is_empty() || catalog.regions.is_empty() {
        // An empty list would make every spec invalid: trust the other sources instead.
        return Err("the cloud listed no available sizes or regions".into());
    }
    Ok(catalog)
}

/// The lists `client`'s cloud answers with, kept for the next run; when it does not answer
/// within [`REFRESH_TIMEOUT`], the ones it gave last time, else the bundled ones.
pub async fn refreshed(project: &Project, client: &Client) -> Catalog {
    let endpoint = client.base_url().to_string();
    let failure = match tokio::time::timeout(REFRESH_TIMEOUT, fetch(client)).await {
        Ok(Ok(catalog)) => {
            let text = serde_json::to_string_pretty(&catalog).expect("a catalog serializes");
            let path = cache_path(project);
            let written = std::fs::create_dir_all(project.infra_dir())
                .and_then(|()| crate::atomic_file::write(&path, text.as_bytes()));
            if let Err(e) = written {
                tracing::debug!(
                    "cannot keep the sizes and regions in {}: {e}",
                    path.display()
                );
            }
            return catalog;
        }
        Ok(Err(e)) => e,
        Err(_) => format!("no answer within {}s", REFRESH_TIMEOUT.as_secs()),
    };
    tracing::debug!("sizes and regions not refreshed from {endpoint}: {failure}");
    cached(project, &endpoint).unwrap_or_else(Catalog::bundled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_slugs_are_valid_unique_and_cover_the_sandbox() {
        let bundled = Catalog::bundled();
        for (list, what) in [(&bundled.sizes, "size"), (&bundled.regions, "region")] {
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "a {what} is listed twice");
            for slug in list {
                assert_eq!(
                    crate::state::spec::slug_problem(slug, what, "x"),
                    None,
                    "{slug}"
                );
            }
        }
        // A spec written for the sandbox must validate without it running.
        for size in crate::sandbox::catalog::sizes() {
            assert_eq!(bundled.size_problem(&size.slug), None);
        }
        for region in crate::sandbox::catalog::regions() {
            assert_eq!(bundled.region_problem(&region.slug), None);
        }
    }

    #[test]
    fn an_unknown_slug_names_the_nearest_or_an_example() {
        let bundled = Catalog::bundled();
        assert_eq!(
            bundled.size_problem("s-2vcpu-4g").unwrap(),
            "`s-2vcpu-4g` is not a droplet size DigitalOcean offers; did you mean `s-2vcpu-4gb`?"
        );
        assert_eq!(
            bundled.size_problem("s-999").unwrap(),
            "`s-999` is not a droplet size DigitalOcean offers; use one like `s-1vcpu-1gb` (`doctl compute size list` lists them all)"
        );
        assert_eq!(
            bundled.region_problem("lon2").unwrap(),
            "`lon2` is not a region DigitalOcean offers; did you mean `lon1`?"
        );
        let sandbox = Catalog {
            endpoint: Some("http://127.0.0.1:8089".into()),
            sizes: vec!["s-1vcpu-1gb".into()],
            regions: vec!["lon1".into(), "nyc3".into()],
        };
        assert_eq!(
            sandbox.region_problem("syd1").unwrap(),
            "`syd1` is not a region the cloud at http://127.0.0.1:8089 offers; it offers lon1, nyc3"
        );
    }

    #[test]
    fn the_cache_is_used_only_for_its_own_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        std::fs::create_dir_all(project.infra_dir()).unwrap();
        let catalog = Catalog {
            endpoint: Some("http://127.0.0.1:8089".into()),
            sizes: vec!["s-1vcpu-1gb".into()],
            regions: vec!["lon1".into()],
        };
        std::fs::write(
            cache_path(&project),
            serde_json::to_string(&catalog).unwrap(),
        )
        .unwrap();
        assert_eq!(cached(&project, "http://127.0.0.1:8089"), Some(catalog));
        assert_eq!(cached(&project, crate::cloud::DEFAULT_API_URL), None);
    }

    /// A stand-in cloud on loopback that answers `/v2/sizes` and `/v2/regions` as
    /// DigitalOcean does (one page), with one size that is not available.
    async fn serve_lists() -> (String, tokio::task::JoinHandle<()>) {
        use axum::routing::get;
        use serde_json::json;
        let size = |slug: &str, available: bool| {
            json!({"slug": slug, "memory": 1024, "vcpus": 1, "disk": 25, "transfer": 1.0,
                   "price_monthly": 6.0, "price_hourly": 0.009, "regions": ["lon1"],
                   "available": available, "description": "Basic"})
        };
        let sizes = json!({
            "sizes": [size("s-1vcpu-1gb", true), size("s-9vcpu-9gb", false)],
            "links": {}, "meta": {"total": 2}
        });
        let regions = json!({
            "regions": [{"name": "London 1", "slug": "lon1", "features": [], "available": true,
                         "sizes": ["s-1vcpu-1gb"]}],
            "links": {}, "meta": {"total": 1}
        });
        let app = axum::Router::new()
            .route("/v2/sizes", get(move || async move { axum::Json(sizes) }))
            .route(
                "/v2/regions",
                get(move || async move { axum::Json(regions) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, server)
    }

    fn client(url: &str) -> Client {
        let once = crate::cloud::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        };
        Client::new(url, crate::cloud::Token::new("test-token").unwrap(), once).unwrap()
    }

    #[tokio::test]
    async fn the_clouds_lists_are_fetched_kept_and_used_while_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        let (url, server) = serve_lists().await;
        let fetched = refreshed(&project, &client(&url)).await;
        assert_eq!(fetched.sizes, ["s-1vcpu-1gb"]);
        assert_eq!(fetched.regions, ["lon1"]);
        let endpoint = fetched.endpoint.clone().unwrap();
        assert!(endpoint.starts_with(&url), "{endpoint}");
        assert!(cache_path(&project).exists());

        // The cloud is gone: a new client (no pooled connection) gets the kept lists, as
        // they are in the file (changed here, so they cannot have come from the server).
        server.abort();
        let _ = server.await;
        let kept = Catalog {
            sizes: vec!["s-2vcpu-4gb".into()],
            ..fetched.clone()
        };
        std::fs::write(cache_path(&project), serde_json::to_string(&kept).unwrap()).unwrap();
        assert_eq!(refreshed(&project, &client(&url)).await, kept);
        // Another endpoint never uses them.
        assert_eq!(
            refreshed(&project, &client("http://127.0.0.1:9")).await,
            Catalog::bundled()
        );
    }
}
