//! From source to images in the registry: build each service's image here, push it (only the
//! layers the registry lacks), and record the release. Promotion makes another environment's
//! release this one's without building: the same manifests under this environment's tag.

use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;
use serde_json::{json, Value};

use super::build::{self, BuildSpec};
use super::checkout::Source;
use super::registry::{self, Registry, REGISTRY_PORT};
use super::releases::{now_rfc3339, release_name, ImageRecord, ReleaseRecord};
use super::{DeployError, Deployer};
use crate::remote::Tunnel;
use crate::report::Change;

/// One service's image, built here.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuiltImage {
    pub service: String,
    /// `hostomatic-backend:uat-20261202-065000-abc1234`.
    pub local_tag: String,
    pub image_id: String,
}

impl Deployer {
    /// The name of a release of `source` made now.
    pub fn release_name_for(&self, source: &Source) -> String {
        release_name(
            &self.environment,
            std::time::SystemTime::now(),
            &source.commit,
            source.dirty,
        )
    }

    /// Builds every service's image from `source`, one after the other, each timed.
    pub fn build_images(
        &self,
        source: &Source,
        release: &str,
    ) -> Result<Vec<BuiltImage>, DeployError> {
        let mut out = Vec::new();
        for (service, config) in &self.deployment.services {
            if !self.loaded.services[&self.project_env].contains_key(service) {
                continue;
            }
            let (containerfile, context) = build::locate(
                &source.dir,
                service,
                &config.containerfile_path,
                config.context.as_deref(),
            )?;
            let local_tag = format!("{}:{release}", self.repository(service));
            let change = Change::new(
                "build_image",
                service,
                Value::Null,
                json!({"image": local_tag, "containerfile": config.containerfile_path, "commit": source.commit}),
            );
            if self.dry_run {
                self.reporter.would(
                    &change,
                    &format!(
                        "build {local_tag} from {} (commit {})",
                        config.containerfile_path,
                        short(&source.commit)
                    ),
                );
                out.push(BuiltImage {
                    service: service.clone(),
                    local_tag,
                    image_id: String::new(),
                });
                continue;
            }
            let spec = BuildSpec {
                service: service.clone(),
                containerfile,
                context,
                tag: local_tag.clone(),
                labels: vec![
                    ("infra.project".into(), self.name.clone()),
                    ("infra.service".into(), service.clone()),
                    ("infra.release".into(), release.to_string()),
                    ("infra.commit".into(), source.commit.clone()),
                ],
            };
            let built = build::build(&spec).inspect_err(|e| {
                self.reporter.failed(&change, &e.to_string());
            })?;
            self.reporter.done(
                &change,
                &format!(
                    "{service}: built {local_tag} in {:.1} s",
                    built.took.as_secs_f64()
                ),
            );
            out.push(BuiltImage {
                service: service.clone(),
                local_tag,
                image_id: built.image_id,
            });
        }
        Ok(out)
    }

    /// A tunnel to the master's registry.
    async fn registry_tunnel(&self) -> Result<Tunnel, DeployError> {
        let master = self.master()?;
        let session = self.pool.session(&master).await?;
        Ok(Tunnel::open(session, "127.0.0.1", REGISTRY_PORT).await?)
    }

    /// Pushes `built` and records the release (built, not yet deployed); none in a dry run,
    /// which pushes nothing. The bytes each push sent are in its `push_image` change.
    pub async fn push_images(
        &self,
        release: &str,
        source: &Source,
        built: &[BuiltImage],
    ) -> Result<Option<ReleaseRecord>, DeployError> {
        if self.dry_run {
            for image in built {
                let change = Change::new(
                    "push_image",
                    &image.service,
                    Value::Null,
                    json!({"image": image.local_tag}),
                );
                self.reporter.would(
                    &change,
                    &format!(
                        "push {} to the registry {} (only the layers it lacks)",
                        image.local_tag,
                        self.registry.host_prefix()
                    ),
                );
            }
            return Ok(None);
        }
        let tunnel = match &self.registry {
            Registry::Master { .. } => Some(Arc::new(self.registry_tunnel().await?)),
            Registry::Outside { .. } => None,
        };
        let prefix = match (&tunnel, &self.registry) {
            (Some(t), _) => format!("127.0.0.1:{}", t.port()),
            (None, r) => r.host_prefix(),
        };
        let mut images = IndexMap::new();
        for image in built {
            let repository = self.repository(&image.service);
            let started = Instant::now();
            let before = tunnel.as_ref().map_or(0, |t| t.bytes_sent());
            let local_tag = image.local_tag.clone();
            let push_prefix = prefix.clone();
            let push_repository = repository.clone();
            let tag = release.to_string();
            let change = Change::new(
                "push_image",
                &image.service,
                Value::Null,
                json!({"repository": repository, "tag": release}),
            );
            // `docker push` blocks; the tunnel it goes through runs on the async runtime.
            let digest = tokio::task::spawn_blocking(move || {
                registry::push(&local_tag, &push_prefix, &push_repository, &tag)
            })
            .await
            .map_err(|e| DeployError::Push {
                message: format!("the push stopped: {e}"),
            })?
            .inspect_err(|e| self.reporter.failed(&change, &e.to_string()))?;
            let sent = tunnel.as_ref().map_or(0, |t| t.bytes_sent()) - before;
            let change = Change::new(
                "push_image",
                &image.service,
                Value::Null,
                json!({"repository": repository, "tag": release, "digest": digest, "bytes_sent": sent}),
            );
            self.reporter.done(
                &change,
                &format!(
                    "{}: pushed {repository}:{release} ({}, {} sent) in {:.1} s",
                    image.service,
                    short_digest(&digest),
                    human_bytes(sent),
                    started.elapsed().as_secs_f64()
                ),
            );
            images.insert(image.service.clone(), ImageRecord { repository, digest });
        }
        let record = ReleaseRecord {
            name: release.to_string(),
            commit: source.commit.clone(),
            branch: source.branch.clone(),
            dirty: source.dirty,
            created: now_rfc3339(),
            promoted_from: None,
            images,
            deployed: None,
        };
        let mut releases = self.releases()?;
        releases.record(record.clone());
        self.save_releases(&releases)?;
        Ok(Some(record))
    }

    /// This environment's release of the images `from`'s current release runs: the same
    /// digests under this environment's tag, nothing built or pushed again.
    pub async fn promote(&self, from: &Deployer) -> Result<ReleaseRecord, DeployError> {
        let source_releases = from.releases()?;
        let Some(source) = source_releases.current_release().cloned() else {
            return Err(DeployError::Input(format!(
                "`{}` has no release to promote yet; deploy it first (`infra deploy-{} {}`)",
                from.project_env, from.environment, from.name
            )));
        };
        let commit_source = Source {
            dir: std::path::PathBuf::new(),
            commit: source.commit.clone(),
            dirty: source.dirty,
            branch: source.branch.clone(),
        };
        let name = self.release_name_for(&commit_source);
        let change = |service: &str, image: &ImageRecord| {
            Change::new(
                "tag_image",
                service,
                json!({"repository": image.repository, "tag": source.name, "digest": image.digest}),
                json!({"repository": image.repository, "tag": name, "digest": image.digest}),
            )
        };
        if self.dry_run {
            for (service, image) in &source.images {
                self.reporter.would(
                    &change(service, image),
                    &format!(
                        "tag {}@{} (from {}) as {}:{name}",
                        image.repository,
                        short_digest(&image.digest),
                        source.name,
                        image.repository
                    ),
                );
            }
        } else {
            match &self.registry {
                Registry::Master { .. } => {
                    let tunnel = self.registry_tunnel().await?;
                    let base = format!("http://127.0.0.1:{}", tunnel.port());
                    for (service, image) in &source.images {
                        registry::retag(&base, &image.repository, &image.digest, &name).await?;
                        self.reporter.done(
                            &change(service, image),
                            &format!(
                                "{service}: tagged {}@{} as {}:{name}",
                                image.repository,
                                short_digest(&image.digest),
                                image.repository
                            ),
                        );
                    }
                }
                Registry::Outside { .. } => {
                    return Err(DeployError::Input(
                        "promoting between environments through an outside registry is not supported yet: deploy the same commit to prod with `infra deploy-prod` once the registry is the master's, or run the UAT flow against prod".into(),
                    ))
                }
            }
        }
        let record = ReleaseRecord {
            name,
            commit: source.commit.clone(),
            branch: source.branch.clone(),
            dirty: source.dirty,
            created: now_rfc3339(),
            promoted_from: Some(source.name.clone()),
            images: source.images.clone(),
            deployed: None,
        };
        let mut releases = self.releases()?;
        releases.record(record.clone());
        self.save_releases(&releases)?;
        Ok(record)
    }
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

pub fn human_bytes(n: u64) -> String {
    if n >= 10 * 1024 * 1024 {
        format!("{} MB", n / (1024 * 1024))
    } else if n >= 1024 {
        format!("{} kB", n / 1024)
    } else {
        format!("{n} B")
    }
}
