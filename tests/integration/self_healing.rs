//! Self-healing on the sandbox, for real, with the operator's machine out of the loop: a
//! project of three web droplets deployed with its monitors (installed by the deploy), a real
//! SMTP server (aiosmtpd) on the droplets' gateway for the alerts. A killed container is
//! restarted by its own droplet's monitor and no droplet is touched; a droplet powered off
//! through the sandbox's API (its disk broken, so that the monitors' one power cycle does not
//! revive it) is drained from nginx while requests keep being answered, then rebuilt from its
//! snapshot by the monitors' coordinator: one droplet of that name in the
//! cloud, its services running, nginx at its new address, every monitor's state agreeing with
//! the cloud, and the alert and the recovery email delivered. A droplet cut off with iptables
//! abstains, and runs no step.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::{answering, sample_repo};
use crate::notify::{aiosmtpd_python, SmtpServer};
use crate::orchestrate::{describe, Sandbox};
use crate::recover::{deployment_config, named, power_off, run_ok, UAT};

const WEB: &[&str] = &["hostomatic-web1", "hostomatic-web2", "hostomatic-web3"];

/// `infra exec DROPLET -- COMMAND`'s output, without the droplet prefix.
fn on(sandbox: &Sandbox, droplet: &str, command: &str) -> String {
    let out = sandbox.infra(&["exec", droplet, "--", command]);
    assert_eq!(out.code, 0, "{}", describe(&out));
    out.stdout
        .lines()
        .map(|l| l.split_once(" | ").map(|(_, rest)| rest).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A monitor's last report, read on its droplet.
fn report(sandbox: &Sandbox, droplet: &str) -> Value {
    let text = on(
        sandbox,
        droplet,
        "cat /var/lib/infra/monitor/config/.infra/monitor/status.json 2>/dev/null || echo null",
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn peer_state(report: &Value, peer: &str) -> String {
    report["protocol"]["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == peer))
        .and_then(|p| p["state"].as_str())
        .unwrap_or("")
        .to_string()
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("not {what} within {within:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitors_restart_a_killed_container_and_rebuild_a_powered_off_droplet() {
    let Some(python) = aiosmtpd_python() else {
        return;
    };
    let Some(sandbox) = Sandbox::up_monitored(&[], true) else {
        return;
    };
    // The droplets reach this machine on their network's gateway: the SMTP server listens there.
    let env = sandbox.test.read("config/.infra/sandbox/env");
    let gateway = env
        .lines()
        .find_map(|l| l.strip_prefix("DO_API_URL_FROM_DROPLETS=https://"))
        .and_then(|rest| rest.split(':').next())
        .expect("the sandbox serves the droplets on their gateway")
        .to_string();
    let smtp = SmtpServer::start_on(python, &gateway, "none", None, None);
    sandbox.test.write(
        "config/email_config.json",
        &format!(
            r#"{{"enabled": true, "smtp": {{"host": "{gateway}", "port": {}, "security": "none"}},
  "from": "infra@example.com", "recipients": ["ops@example.com"], "heartbeat": {{"interval_minutes": 1440}}}}"#,
            smtp.port()
        ),
    );
    let repo = tempfile::Builder::new()
        .prefix("infra-app-")
        .tempdir()
        .unwrap();
    sample_repo(repo.path());
    sandbox.test.write(
        "config/deployment_config.json",
        &deployment_config(repo.path()),
    );
    // Three web droplets of one project; the shortest recovery delay allowed.
    sandbox.test.write(
        "setup.rhai",
        "remove_project_spec(\"digitalpixo\");\nscale_project_spec(\"hostomatic\", 3);\n",
    );
    sandbox.ok(&["run", "setup.rhai"]);
    let mut state = sandbox.test.json("config/infrastructure.json");
    state["infrastructure_spec"]["recover_after"] = 45.into();
    sandbox.test.write(
        "config/infrastructure.json",
        &serde_json::to_string_pretty(&state).unwrap(),
    );
    sandbox.ok(&["orchestrate"]);
    run_ok(&sandbox, &["deploy-uat", "hostomatic"]);
    sandbox
        .test
        .write("snap.rhai", "snapshot(\"hostomatic-web2\");\n");
    sandbox.ok(&["run", "snap.rhai"]);

    // Every monitor sees every peer alive.
    let all: Vec<&str> = std::iter::once("master")
        .chain(WEB.iter().copied())
        .collect();
    for droplet in &all {
        wait_until(
            &format!("{droplet}'s monitor seeing its peers alive"),
            Duration::from_secs(60),
            || {
                let r = report(&sandbox, droplet);
                all.iter()
                    .filter(|p| *p != droplet)
                    .all(|p| peer_state(&r, p) == "alive")
            },
        );
    }
    let ids_before: Vec<u64> = {
        let mut ids = Vec::new();
        for d in &all {
            ids.extend(named(&sandbox, d).await.into_iter().map(|d| d.0));
        }
        ids
    };

    // A killed container: its droplet's monitor starts it again; no droplet is touched.
    on(
        &sandbox,
        "hostomatic-web1",
        "docker kill hostomatic-uat-backend",
    );
    wait_until(
        "the killed backend running again",
        Duration::from_secs(60),
        || {
            on(
                &sandbox,
                "hostomatic-web1",
                "docker inspect -f '{{.State.Running}}' hostomatic-uat-backend",
            )
            .trim()
                == "true"
        },
    );
    let mut ids_after = Vec::new();
    for d in &all {
        ids_after.extend(named(&sandbox, d).await.into_iter().map(|d| d.0));
    }
    assert_eq!(
        ids_before, ids_after,
        "a restart must not touch any droplet"
    );

    // A droplet cut off from its peers abstains and runs no step.
    on(
        &sandbox,
        "hostomatic-web3",
        "iptables -I INPUT -p udp --dport 7947 -j DROP && iptables -I OUTPUT -p udp --dport 7947 -j DROP",
    );
    wait_until(
        "hostomatic-web3 abstaining",
        Duration::from_secs(30),
        || report(&sandbox, "hostomatic-web3")["protocol"]["abstaining"] == true,
    );
    on(
        &sandbox,
        "hostomatic-web3",
        "iptables -D INPUT -p udp --dport 7947 -j DROP && iptables -D OUTPUT -p udp --dport 7947 -j DROP",
    );
    let steps = report(&sandbox, "hostomatic-web3")["steps"].clone();
    assert_eq!(steps, serde_json::json!([]), "a cut-off monitor ran steps");
    for droplet in &all {
        wait_until(
            &format!("{droplet} seeing its peers alive again"),
            Duration::from_secs(90),
            || {
                let r = report(&sandbox, droplet);
                all.iter()
                    .filter(|p| *p != droplet)
                    .all(|p| peer_state(&r, p) == "alive")
            },
        );
    }

    // web2 dies for good: powered off through the sandbox's API, with a disk that no longer
    // boots (its init is not executable), so the monitors' one power cycle does not bring it
    // back and the rebuild from its snapshot (taken before) is what does.
    on(&sandbox, "hostomatic-web2", "chmod -x /sbin/droplet-init");
    let master = sandbox.state_droplets()["master"].clone();
    let old = named(&sandbox, "hostomatic-web2").await;
    assert_eq!(old.len(), 1, "{old:?}");
    let client = sandbox.client();
    power_off(&client, old[0].0).await;
    let off = Instant::now();
    // Drained: nginx answers from the other two only, and keeps answering.
    let others: BTreeSet<String> = ["hostomatic-web1", "hostomatic-web3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    wait_until("web2 drained from nginx", Duration::from_secs(30), || {
        let seen: BTreeSet<String> = answering(&master, UAT, "/api/", 9)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        seen == others
    });
    let drained_after = off.elapsed();
    // Rebuilt: one droplet of that name, active, another id; its services answer through nginx.
    wait_until(
        "web2 rebuilt by the monitors",
        Duration::from_secs(900),
        || {
            let seen: BTreeSet<String> = answering(&master, UAT, "/api/", 12)
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            seen.contains("hostomatic-web2")
        },
    );
    let now = named(&sandbox, "hostomatic-web2").await;
    assert_eq!(now.len(), 1, "one droplet of that name: {now:?}");
    assert_ne!(now[0].0, old[0].0, "a new droplet");
    assert_eq!(now[0].1, "active");
    // Every monitor's state has its new address.
    for droplet in ["master", "hostomatic-web1", "hostomatic-web3"] {
        let state: Value = serde_json::from_str(&on(
            &sandbox,
            droplet,
            "cat /var/lib/infra/monitor/config/infrastructure.json",
        ))
        .unwrap();
        assert_eq!(
            state["droplets"]["hostomatic-web2"]["ip"], now[0].2,
            "{droplet}'s monitor state"
        );
    }
    // The alert and the recovery email arrived.
    wait_until("the recovery email", Duration::from_secs(60), || {
        let subjects: Vec<String> = smtp
            .messages()
            .iter()
            .filter_map(|m| m["content"].as_str().map(str::to_string))
            .collect();
        subjects
            .iter()
            .any(|c| c.contains("ALERT: hostomatic-web2"))
            && subjects
                .iter()
                .any(|c| c.contains("recovered: hostomatic-web2"))
    });
    eprintln!("self-healing: drained {drained_after:?} after the power off");
}
