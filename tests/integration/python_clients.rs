//! DigitalOcean clients nobody here wrote, from PyPI and unpatched, against `infra sandbox up`:
//! python-digitalocean (which sends every path with a trailing slash) and pydo, DigitalOcean's
//! official client (which sends its token over HTTPS only). Each runs the same flow through its
//! public API (`tests/fixtures/python_clients/`): account; register a key; create droplets with
//! tags; wait until active; SSH to their public IP with the key; list by tag; sizes; regions;
//! snapshot and list snapshots; power off and on; create and list a firewall; list tags; list
//! distribution images; a bad size gets DigitalOcean's 422; destroy; destroy by tag.
//!
//! They need Docker, ssh, python3 and both clients (`.ci/run` installs them); without them the
//! tests are skipped, unless `INFRA_REQUIRE_TOOLS=1` makes that a failure.

use std::path::PathBuf;
use std::process::Command;

use crate::sandbox::Sandbox;

/// The steps each flow reports, in order (`step: NAME` lines).
const STEPS: [&str; 16] = [
    "account",
    "register key",
    "create with tags",
    "wait until active",
    "ssh",
    "list by tag",
    "sizes",
    "regions",
    "snapshot and list snapshots",
    "power off and on",
    "create and list a firewall",
    "list tags",
    "list distribution images",
    "bad size",
    "destroy",
    "destroy by tag",
];

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python_clients")
}

/// Whether python3 can import `module`; skips (or fails under `INFRA_REQUIRE_TOOLS=1`) if not.
fn have_python_module(module: &str, package: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("python3 cannot import `{module}` and INFRA_REQUIRE_TOOLS=1 requires it (`python3 -m pip install {package}`, as .ci/run does)");
    }
    eprintln!("skipped: python3 cannot import `{module}` (`python3 -m pip install {package}`; INFRA_REQUIRE_TOOLS=1 makes this a failure)");
    false
}

/// Runs `script` against a sandbox of its own and checks it went through every step, and that
/// the sandbox is left without droplets.
async fn run_flow(module: &str, package: &str, script: &str) {
    if !have_python_module(module, package) {
        return;
    }
    let Some(sandbox) = Sandbox::up(&["--spares", "2"]) else {
        return;
    };
    let mut command = Command::new("python3");
    command
        .arg(scripts().join(script))
        .current_dir(scripts())
        .env("DO_API_URL", &sandbox.url)
        .env("DO_TOKEN", &sandbox.token)
        .env("REQUESTS_CA_BUNDLE", &sandbox.ca)
        .env("SANDBOX_SSH_KEY", &sandbox.key)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // Nothing from the caller's environment may point a client anywhere else.
    for name in [
        "DIGITALOCEAN_ACCESS_TOKEN",
        "DIGITALOCEAN_END_POINT",
        "DIGITALOCEAN_TOKEN",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "CURL_CA_BUNDLE",
    ] {
        command.env_remove(name);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let steps: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("step: "))
        .collect();
    assert!(
        out.status.success() && steps == STEPS,
        "{script} failed after {steps:?}:\n{stdout}\n{stderr}"
    );
    // The flow's deletes happened on the sandbox, not only in the client's view.
    let left = sandbox.client().list_droplets(None).await.unwrap();
    assert!(left.is_empty(), "droplets left: {left:?}");
    // Neither the token nor the CA's key ever shows.
    let log = sandbox.test.read("config/.infra/sandbox/server.log");
    assert!(!log.contains(&sandbox.token) && !log.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_digitalocean_works_against_the_sandbox() {
    run_flow(
        "digitalocean",
        "python-digitalocean",
        "python_digitalocean_flow.py",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pydo_works_against_the_sandbox() {
    run_flow("pydo", "pydo", "pydo_flow.py").await;
}
