//! Fence and recreate: the failed droplet powered off and confirmed off, then a replacement
//! of the same name, region, size and tags made from its newest snapshot (or the base image),
//! found again by the incident's tag rather than made twice, the extras and the fenced
//! original destroyed, and the new id and address recorded in the state.

use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::{placed, ImageChoice, Placed, Recovery, RecoveryError};
use crate::cloud::{DropletCreate, DropletSpec, ImageRef, Outcome, SshKeyRef};
use crate::fleet::{DEFAULT_IMAGE, INFRA_TAG, SSH_TIMEOUT};
use crate::remote::{Host, KnownHosts};
use crate::report::Change;
use crate::state::placement::required_droplets;

/// What a recreate did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recreated {
    pub droplet: String,
    pub id: u64,
    pub ip: String,
    /// `created`, `adopted` (an earlier run made it), or `planned` in a dry run.
    pub outcome: String,
    pub image: ImageChoice,
}

impl Recovery {
    /// Powers `droplet` off and waits until the cloud says it is off, before anything
    /// replaces it. A droplet already off or gone counts as fenced.
    pub async fn fence(&self, droplet: &str) -> Result<bool, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let mut ck = self.checkpoint(droplet)?;
        let incident = ck.open(|| placed(&record)).clone();
        if incident.done("fence").is_some() {
            self.already(droplet, "fence", &incident);
            return Ok(true);
        }
        let Some(original) = incident.original.clone() else {
            // Never created (no id in the state): nothing can be serving as it.
            let epoch = self.permit(&mut ck)?;
            self.finish_step(&mut ck, "fence", epoch, json!({"id": null}))?;
            return Ok(true);
        };
        let change = Change::new(
            "fence_droplet",
            droplet,
            json!({"id": original.id, "ip": original.ip}),
            json!({"status": "off"}),
        );
        let epoch = self.permit(&mut ck)?;
        if self.dry_run {
            self.reporter.would(
                &change,
                &format!(
                    "fence {droplet}: power off id {} ({}) and wait until the cloud says it is off",
                    original.id, original.ip
                ),
            );
            return Ok(true);
        }
        let started = Instant::now();
        let was_on = self
            .fleet
            .power_off_confirmed(original.id)
            .await
            .inspect_err(|e| self.reporter.failed(&change, &e.to_string()))
            .map_err(Self::fleet_error(droplet))?;
        self.finish_step(
            &mut ck,
            "fence",
            epoch,
            json!({"id": original.id, "was_on": was_on}),
        )?;
        self.reporter.done(
            &change,
            &format!(
                "{droplet}: fenced: id {} {} ({:.1} s)",
                original.id,
                if was_on {
                    "powered off, and the cloud confirms it is off"
                } else {
                    "was off (or gone) already"
                },
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(true)
    }

    /// Makes the replacement of a fenced `droplet`, records it in the state and destroys the
    /// fenced original. Refused before the fence: an original still running beside its
    /// replacement could come back serving under the same name.
    pub async fn recreate(&self, droplet: &str) -> Result<Recreated, RecoveryError> {
        let loaded = self.loaded()?;
        let record = self.record(&loaded, droplet)?;
        let mut ck = self.checkpoint(droplet)?;
        let incident = ck.open(|| placed(&record)).clone();
        if incident.done("fence").is_none() && !self.dry_run {
            return Err(RecoveryError::Input(format!(
                "`{droplet}` is not fenced yet: fence it first (fence_droplet), so the original can never serve beside its replacement"
            )));
        }
        let original = incident.original.clone();
        if let (Some(step), Some(done)) = (incident.done("recreate"), incident.replacement.clone())
        {
            self.already(droplet, "recreate", &incident);
            let image = incident.image.clone().unwrap_or(ImageChoice::Base {
                slug: DEFAULT_IMAGE.into(),
            });
            let outcome = step.result["outcome"]
                .as_str()
                .unwrap_or("created")
                .to_string();
            self.destroy_original(droplet, &mut ck, original.as_ref(), done.id)
                .await?;
            return Ok(Recreated {
                droplet: droplet.into(),
                id: done.id,
                ip: done.ip,
                outcome,
                image,
            });
        }
        let wanted = required_droplets(&loaded.spec);
        let spec = wanted.get(droplet);
        let size = spec
            .map(|d| d.size.clone())
            .or(record.size.clone())
            .ok_or_else(|| RecoveryError::Input(format!(
                "droplet `{droplet}` has no size in the state or the spec; add it to infrastructure_spec"
            )))?;
        let region = spec
            .map(|d| d.region.clone())
            .or(record.region.clone())
            .ok_or_else(|| RecoveryError::Input(format!(
                "droplet `{droplet}` has no region in the state or the spec; add it to infrastructure_spec"
            )))?;
        let image = match incident.image.clone() {
            Some(image) => image,
            None => {
                let found = self
                    .fleet
                    .latest_snapshot(droplet)
                    .await
                    .map_err(Self::fleet_error(droplet))?;
                let image = match found {
                    Some(s) => ImageChoice::Snapshot(s),
                    None => ImageChoice::Base {
                        slug: DEFAULT_IMAGE.into(),
                    },
                };
                if let Some(i) = ck.incident.as_mut() {
                    i.image = Some(image.clone());
                }
                self.save(&ck)?;
                image
            }
        };
        let (image_ref, from) = match &image {
            ImageChoice::Snapshot(s) => (ImageRef::Id(s.id), format!("snapshot {}", s.name)),
            ImageChoice::Base { slug } => (
                ImageRef::Slug(slug.clone()),
                format!("the base image {slug} (no snapshot of {droplet}: its services are deployed again)"),
            ),
        };
        let tag = incident.tag();
        let not: Vec<u64> = original.iter().map(|o| o.id).collect();
        let tagged = self
            .fleet
            .droplets_tagged(&tag)
            .await
            .map_err(Self::fleet_error(droplet))?;
        let existing: Vec<u64> = tagged
            .iter()
            .map(|d| d.id)
            .filter(|id| !not.contains(id))
            .collect();
        let change =
            |after: Value| Change::new("recreate_droplet", droplet, json!(original), after);
        if self.dry_run {
            let what = match existing.iter().min() {
                Some(id) => format!(
                    "adopt droplet {id} tagged {tag} as {droplet} (an earlier run made it){}",
                    if existing.len() > 1 {
                        format!(", destroy the {} extra ones", existing.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                None => format!(
                    "create {droplet} ({size}, {region}) from {from}, tagged {INFRA_TAG}, {droplet}, {tag}"
                ),
            };
            self.reporter.would(
                &change(json!({"size": size, "region": region, "image": image, "tag": tag})),
                &format!(
                    "{what}; record its id and address in the state{}",
                    match &original {
                        Some(o) => format!(", then destroy the fenced original (id {})", o.id),
                        None => String::new(),
                    }
                ),
            );
            return Ok(Recreated {
                droplet: droplet.into(),
                id: 0,
                ip: String::new(),
                outcome: "planned".into(),
                image,
            });
        }
        let epoch = self.permit(&mut ck)?;
        let started = Instant::now();
        self.reporter.progress(
            "droplet_creating",
            droplet,
            &format!("replacing from {from} (or adopting the droplet tagged {tag})"),
            json!({"image": image, "tag": tag}),
        );
        let key = self
            .fleet
            .ensure_key(&self.reporter)
            .await
            .map_err(Self::fleet_error(droplet))?
            .ok_or_else(|| RecoveryError::Failed {
                droplet: droplet.into(),
                message: "the SSH key is not registered with the cloud".into(),
            })?;
        let mut spec = DropletSpec::new(size.clone(), image_ref);
        spec.region = Some(region.clone());
        spec.ssh_keys = vec![SshKeyRef::Id(key.id)];
        spec.tags = vec![INFRA_TAG.to_string(), droplet.to_string(), tag.clone()];
        let request = DropletCreate {
            name: droplet.to_string(),
            spec,
        };
        let (made, outcome) = self
            .fleet
            .create_tagged(&request, &tag, &not)
            .await
            .map_err(Self::fleet_error(droplet))?;
        if let Some(i) = ck.incident.as_mut() {
            if !i.created.contains(&made.id) {
                i.created.push(made.id);
            }
        }
        // Before anything else can fail: a re-run must know this droplet is ours.
        self.save(&ck)?;
        // More than one carrying the tag (a create whose answer was lost, then retried by a
        // run that did not see the first): the lowest id stays, the others go.
        let extras: Vec<u64> = self
            .fleet
            .droplets_tagged(&tag)
            .await
            .map_err(Self::fleet_error(droplet))?
            .iter()
            .map(|d| d.id)
            .filter(|id| *id != made.id && !not.contains(id))
            .collect();
        for extra in extras {
            self.permit(&mut ck)?;
            let gone = Change::new(
                "destroy_droplet",
                droplet,
                json!({"id": extra}),
                Value::Null,
            );
            self.fleet
                .delete_by_id(extra)
                .await
                .map_err(Self::fleet_error(droplet))?;
            self.reporter.done(
                &gone,
                &format!("{droplet}: destroyed an extra replacement (id {extra})"),
            );
        }
        // A new droplet has new host keys; the pin of the old one would refuse it.
        KnownHosts::for_project(&self.project)
            .forget(droplet)
            .map_err(|e| RecoveryError::Failed {
                droplet: droplet.into(),
                message: e.to_string(),
            })?;
        let (_, ip) = self
            .fleet
            .wait_active(made.id)
            .await
            .map_err(Self::fleet_error(droplet))?;
        let addr = ip.parse().map_err(|_| RecoveryError::Failed {
            droplet: droplet.into(),
            message: format!("the cloud gave the replacement an address that is not IPv4: {ip}"),
        })?;
        let session = crate::remote::wait_for_ssh(
            self.pool.connector(),
            &Host::new(droplet, addr),
            Instant::now() + SSH_TIMEOUT,
            self.fleet.cancel_flag(),
        )
        .await
        .map_err(|e| RecoveryError::Failed {
            droplet: droplet.into(),
            message: format!("the replacement (id {}) at {ip}: {e}", made.id),
        })?;
        session.close().await;
        let id = made.id;
        self.update(|s| s.record_seen(droplet, id, Some(&ip), "active"))?;
        let how = match outcome {
            Outcome::Created => "created",
            Outcome::Adopted => "adopted",
        };
        if let Some(i) = ck.incident.as_mut() {
            i.replacement = Some(Placed { id, ip: ip.clone() });
        }
        self.finish_step(
            &mut ck,
            "recreate",
            epoch,
            json!({"id": id, "ip": ip, "outcome": how}),
        )?;
        self.reporter.done(
            &change(json!({"id": id, "ip": ip, "image": image})),
            &format!(
                "{droplet}: replaced by id {id} at {ip} ({how}, from {from}, {:.1} s); the state has its new address",
                started.elapsed().as_secs_f64()
            ),
        );
        self.destroy_original(droplet, &mut ck, original.as_ref(), id)
            .await?;
        Ok(Recreated {
            droplet: droplet.into(),
            id,
            ip,
            outcome: how.into(),
            image,
        })
    }

    /// The fenced original goes once its replacement is up.
    async fn destroy_original(
        &self,
        droplet: &str,
        ck: &mut super::Checkpoint,
        original: Option<&Placed>,
        replacement: u64,
    ) -> Result<(), RecoveryError> {
        let Some(original) = original.filter(|o| o.id != replacement) else {
            return Ok(());
        };
        if let Some(incident) = ck.incident.clone() {
            if incident.done("destroy_original").is_some() {
                return Ok(());
            }
        }
        let epoch = self.permit(ck)?;
        let change = Change::new(
            "destroy_droplet",
            droplet,
            json!({"id": original.id, "ip": original.ip}),
            Value::Null,
        );
        let existed = self
            .fleet
            .delete_by_id(original.id)
            .await
            .inspect_err(|e| self.reporter.failed(&change, &e.to_string()))
            .map_err(Self::fleet_error(droplet))?;
        self.finish_step(
            ck,
            "destroy_original",
            epoch,
            json!({"id": original.id, "existed": existed}),
        )?;
        self.reporter.done(
            &change,
            &format!(
                "{droplet}: the fenced original (id {}) {}",
                original.id,
                if existed {
                    "destroyed"
                } else {
                    "was gone already"
                }
            ),
        );
        Ok(())
    }
}
