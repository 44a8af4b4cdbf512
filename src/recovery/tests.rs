//! Resume and fencing of the recovery steps, without a cloud: the cloud client points at an
//! address nothing listens on, so a step that called it instead of resuming would fail.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::checkpoint::checkpoint_path;
use super::*;
use crate::audit::AuditLog;
use crate::cloud::{Client, RetryPolicy, Token};
use crate::state::store::StateStore;

const STATE: &str = r#"{
  "infrastructure_spec": {
    "droplets": {"master": {"size": "s-1vcpu-1gb", "region": "lon1", "role": "master"}},
    "projects": {"shop": {"environments": ["prod"], "web_droplets": 1, "web_droplet_spec": "s-1vcpu-1gb"}}
  },
  "droplets": {
    "master": {"id": 1, "ip": "10.0.0.1", "size": "s-1vcpu-1gb", "region": "lon1", "role": "master"},
    "shop-web1": {"id": 7, "ip": "10.0.0.7", "size": "s-1vcpu-1gb", "region": "lon1", "role": "web", "project": "shop"}
  },
  "projects": {}
}
"#;

/// A fence that always answers with the same epoch.
struct Fixed(u64);

impl Fence for Fixed {
    fn permits(&self) -> Result<u64, FenceRefused> {
        Ok(self.0)
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    project: Project,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::new(dir.path(), std::path::Path::new("config"));
        std::fs::create_dir_all(project.infra_dir()).unwrap();
        std::fs::write(project.state_path(), STATE).unwrap();
        crate::keypair::generate(&project.ssh_key_path(), "test").unwrap();
        Setup { _dir: dir, project }
    }

    fn recovery(&self, fence: Arc<dyn Fence>) -> Recovery {
        let path = self.project.state_path();
        let store = StateStore::open(
            &path,
            "config/infrastructure.json",
            &self.project.lock_path(),
            "test",
            Duration::ZERO,
            false,
        )
        .unwrap();
        // Nothing listens on port 1, and no request is retried: a cloud call fails at once.
        let retry = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let client = Client::new("http://127.0.0.1:1", Token::new("t").unwrap(), retry).unwrap();
        let fleet = Fleet::new(
            client,
            self.project.clone(),
            Arc::new(AtomicBool::new(false)),
        );
        let connector = crate::remote::Connector::for_project(&self.project).unwrap();
        let audit = self.project.infra_dir().join("audit.log");
        Recovery::new(Parts {
            project: self.project.clone(),
            records: Arc::new(StoreRecords::new(self.project.clone(), store)),
            fleet: Arc::new(fleet),
            pool: Arc::new(Pool::new(connector)),
            reporter: Reporter::new(
                AuditLog {
                    display: "audit.log".into(),
                    path: audit,
                    command: "test".into(),
                },
                true,
                false,
            ),
            dry_run: false,
            command: "test".into(),
            lock_timeout: Duration::ZERO,
            fence,
        })
    }

    /// A checkpoint of shop-web1 with these steps done under epoch 2.
    fn checkpoint(&self, steps: &[&str]) -> Checkpoint {
        let mut ck = Checkpoint {
            droplet: "shop-web1".into(),
            epoch: 2,
            ..Default::default()
        };
        ck.open(|| {
            Some(Placed {
                id: 7,
                ip: "10.0.0.7".into(),
            })
        });
        for step in steps {
            ck.record(step, 2, json!({"outcome": "created"}));
        }
        if steps.contains(&"recreate") {
            ck.incident.as_mut().unwrap().replacement = Some(Placed {
                id: 9,
                ip: "10.0.0.9".into(),
            });
        }
        ck.save(&checkpoint_path(&self.project, "shop-web1"))
            .unwrap();
        ck
    }
}

#[tokio::test]
async fn a_rerun_skips_every_step_the_checkpoint_has_done() {
    let setup = Setup::new();
    let before = setup.checkpoint(&["drain", "fence", "recreate", "destroy_original"]);
    let fence = LocalFence::acquire(&setup.project, "shop-web1", "test", Duration::ZERO).unwrap();
    assert_eq!(fence.epoch(), 3);
    let recovery = setup.recovery(Arc::new(fence));

    // Each would have to ask the cloud (power off, list, create, delete) if it ran again.
    assert!(recovery.fence("shop-web1").await.unwrap());
    let made = recovery.recreate("shop-web1").await.unwrap();
    assert_eq!(
        (made.id, made.ip.as_str(), made.outcome.as_str()),
        (9, "10.0.0.9", "created")
    );
    let drained = recovery.drain("shop-web1").await.unwrap();
    assert!(drained.drained);
    // Nothing was redone: the checkpoint is as it was.
    assert_eq!(recovery.checkpoint("shop-web1").unwrap(), before);
}

#[tokio::test]
async fn a_step_under_a_stale_epoch_is_refused_and_changes_nothing() {
    let setup = Setup::new();
    // A coordinator under epoch 2 drained it; this one holds only epoch 1.
    let before = setup.checkpoint(&["drain"]);
    let recovery = setup.recovery(Arc::new(Fixed(1)));
    let e = recovery.fence("shop-web1").await.unwrap_err();
    assert!(matches!(e, RecoveryError::Fence(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the recovery of `shop-web1` under epoch 1 is stale: epoch 2 has acted on it since, so this run stops without changing anything"
    );
    assert_eq!(recovery.checkpoint("shop-web1").unwrap(), before);
    // Restoring is a side effect too.
    assert!(matches!(
        recovery.restore("shop-web1").await.unwrap_err(),
        RecoveryError::Fence(_)
    ));
    assert_eq!(recovery.checkpoint("shop-web1").unwrap(), before);
}

#[tokio::test]
async fn recreate_is_refused_before_the_fence() {
    let setup = Setup::new();
    setup.checkpoint(&["drain"]);
    let recovery = setup.recovery(Arc::new(Fixed(3)));
    let e = recovery.recreate("shop-web1").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "`shop-web1` is not fenced yet: fence it first (fence_droplet), so the original can never serve beside its replacement"
    );
    assert!(e.is_input());
}

#[tokio::test]
async fn an_unknown_droplet_is_named_with_the_known_ones() {
    let setup = Setup::new();
    let recovery = setup.recovery(Arc::new(Fixed(1)));
    let e = recovery.fence("shop-web9").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "droplet `shop-web9` is not in the state (it has master, shop-web1); `infra status` lists the droplets"
    );
}
