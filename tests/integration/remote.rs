//! The SSH layer (`infra::remote`) against real sandbox droplets: host keys pinned on first use
//! and enforced after, commands and uploads over one reused connection, fan-out over several
//! droplets with one of them off, and waiting for a droplet that is booting.
//!
//! Like the sandbox tests, these need Docker: without it they fail, unless
//! `INFRA_SKIP_DOCKER_TESTS=1` skips them (and counts them). Each test runs its own sandbox (`infra sandbox
//! down` when it ends) with one or three droplets.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::cloud::*;
use infra::project::Project;
use infra::remote::*;

use crate::sandbox::{act, spec, wait_active, Sandbox, BOOT};

/// Creates droplets named `names` with the project's key and waits until they are active.
async fn droplets(sandbox: &Sandbox, names: &[&str]) -> Vec<(u64, Host)> {
    let client = sandbox.client();
    let key = sandbox.register_key(&client).await;
    let created = client
        .create_droplets(&DropletMultiCreate {
            names: names.iter().map(|n| n.to_string()).collect(),
            spec: spec("debian-12-x64".into(), key.id, &["infra"]),
        })
        .await
        .unwrap();
    let mut hosts = Vec::new();
    for droplet in created.droplets {
        let droplet = wait_active(&client, droplet.id).await;
        let ip = IpAddr::V4(droplet.public_ipv4().unwrap());
        hosts.push((droplet.id, Host::new(droplet.name, ip)));
    }
    hosts
}

fn project(sandbox: &Sandbox) -> Project {
    Project::new(sandbox.test.path(), Path::new("config"))
}

fn connector(sandbox: &Sandbox, options: Options) -> Connector {
    Connector::new(
        &sandbox.key,
        KnownHosts::for_project(&project(sandbox)),
        options,
    )
    .unwrap()
}

fn known_hosts_text(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(project(sandbox).known_hosts_path()).unwrap_or_default()
}

/// `SHA256:...` of an OpenSSH public key line, as `ssh-keygen -l` shows it.
fn fingerprint(openssh: &str) -> String {
    ssh_key::PublicKey::from_openssh(openssh)
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string()
}

/// A first connection pins the droplet's real host key; later ones verify it; a different pinned
/// key is refused with a message that names the droplet and both fingerprints, until `forget`.
/// Commands report stdout, stderr and status over one reused connection, stop at their timeout,
/// and uploads land with their mode, atomically, without the contents in any error.
#[tokio::test(flavor = "multi_thread")]
async fn remote_pins_host_keys_runs_commands_and_uploads() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    let (_, host) = droplets(&sandbox, &["ssh-a"]).await.remove(0);
    let ip = host.ip.to_string();
    let connector = Connector::for_project(&project(&sandbox)).unwrap();
    assert!(!project(&sandbox).known_hosts_path().exists());

    // Trust on first use: the pin is the droplet's own ed25519 host key, read with OpenSSH.
    let session = connector.connect(&host).await.unwrap();
    let real_key = sandbox
        .ssh(&ip, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub")
        .unwrap();
    let pinned = format!("ssh-a,{ip} {real_key}\n");
    assert_eq!(known_hosts_text(&sandbox), pinned);
    // A second connection verifies it and leaves the file as it was.
    let again = connector.connect(&host).await.unwrap();
    assert_eq!(
        again.exec("hostname").await.unwrap().stdout_text(),
        "ssh-a\n"
    );
    assert_eq!(known_hosts_text(&sandbox), pinned);
    drop(again);

    // exec: stdout, stderr and status apart; a failure is no error until `run`.
    let output = session
        .exec("echo out; echo err >&2; exit 3")
        .await
        .unwrap();
    assert_eq!(output.status, 3);
    assert_eq!(output.stdout_text(), "out\n");
    assert_eq!(output.stderr_text(), "err\n");
    assert!(!output.success());
    let failed = session.run("ls /no/such/dir").await.unwrap_err();
    let message = failed.to_string();
    assert!(
        matches!(failed, RemoteError::CommandFailed { .. }),
        "{failed:?}"
    );
    assert!(message.contains(&format!("`ssh-a` ({ip})")), "{message}");
    assert!(message.contains("exit status 2"), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");

    // One connection for many commands: the same client port every time.
    let first = session.run("echo $SSH_CONNECTION").await.unwrap();
    for _ in 0..5 {
        assert_eq!(session.run("echo $SSH_CONNECTION").await.unwrap(), first);
    }

    // Standard input, larger than one SSH window, comes back whole.
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = session
        .exec_with("cat", Some(&input), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(echoed.status, 0);
    assert!(echoed.stdout == input, "stdin did not come back whole");

    // A command past its timeout is given up on, and the session goes on.
    let slow = session
        .exec_with("sleep 37", None, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(slow, RemoteError::CommandTimeout { .. }),
        "{slow:?}"
    );
    assert!(slow.to_string().contains("`sleep 37`"), "{slow}");
    // ... and is stopped there (sent TERM), not left running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.exec("pgrep -f 'sleep [3]7'").await.unwrap().status == 0 {
        assert!(Instant::now() < deadline, "`sleep 37` outlived its timeout");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        session.run("echo still").await.unwrap().stdout_text(),
        "still\n"
    );
    // Commands leave nothing behind in /tmp (each notes its process group there while it runs).
    assert_eq!(
        session
            .run("ls -a /tmp | grep -c infra-exec || true")
            .await
            .unwrap()
            .stdout_text(),
        "1\n",
        "only this command's own file"
    );

    // Uploads: contents and mode, replacing what is there, quoting the path.
    let secret = "API_TOKEN=do-not-log-me-4242\n";
    session
        .upload("/root/app.env", secret.as_bytes(), 0o600)
        .await
        .unwrap();
    assert_eq!(
        session
            .run("stat -c '%a %U' /root/app.env; cat /root/app.env")
            .await
            .unwrap()
            .stdout_text(),
        format!("600 root\n{secret}")
    );
    session
        .upload("/root/app.env", b"replaced\n", 0o640)
        .await
        .unwrap();
    session
        .upload("/root/with space's.txt", b"", 0o755)
        .await
        .unwrap();
    assert_eq!(
        session
            .run("stat -c '%a %s %n' /root/app.env /root/with*; cat /root/app.env; ls -a /root | grep -c infra-upload || true")
            .await
            .unwrap()
            .stdout_text(),
        "640 9 /root/app.env\n755 0 /root/with space's.txt\nreplaced\n0\n"
    );
    let refused = session
        .upload("/no/such/dir/app.env", secret.as_bytes(), 0o600)
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("upload to /no/such/dir/app.env") && message.contains("`ssh-a`"),
        "{message}"
    );
    assert!(!message.contains("do-not-log-me"), "{message}");

    // Tampered pin: another key under the droplet's name is refused, naming both keys.
    let other =
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let other = other.public_key().to_openssh().unwrap();
    let tampered = format!("ssh-a,{ip} {other}\n");
    std::fs::write(project(&sandbox).known_hosts_path(), &tampered).unwrap();
    let changed = connector.connect(&host).await.unwrap_err();
    let message = changed.to_string();
    assert!(
        matches!(changed, RemoteError::HostKeyChanged { .. }),
        "{changed:?}"
    );
    for part in [
        format!("the SSH host key of `ssh-a` ({ip}) changed"),
        format!("config/known_hosts` line 1 pins {}", fingerprint(&other)),
        format!("the host offered {}", fingerprint(&real_key)),
        "remove line 1".to_string(),
    ] {
        assert!(message.contains(&part), "no `{part}` in: {message}");
    }
    assert_eq!(
        known_hosts_text(&sandbox),
        tampered,
        "a refusal rewrote the pin"
    );
    // The open session is not affected; a rebuilt droplet is re-pinned after `forget`.
    session.run("true").await.unwrap();
    assert_eq!(connector.known_hosts().forget("ssh-a").unwrap(), 1);
    connector.connect(&host).await.unwrap();
    assert_eq!(known_hosts_text(&sandbox), pinned);

    // A key the droplet does not know is refused, naming the key file.
    let stranger = sandbox.test.path().join("stranger_key");
    infra::keypair::generate(&stranger, "stranger").unwrap();
    let with_stranger = Connector::new(
        &stranger,
        connector.known_hosts().clone(),
        Options::default(),
    )
    .unwrap();
    let rejected = with_stranger.connect(&host).await.unwrap_err();
    assert!(
        matches!(rejected, RemoteError::AuthRejected { .. }),
        "{rejected:?}"
    );
    let message = rejected.to_string();
    assert!(
        message.contains(&stranger.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("`ssh-a` ({ip})")), "{message}");

    // Nothing listens on another port: refused, naming the host.
    let elsewhere = connector_on_port(&sandbox, 2222);
    let refused = elsewhere.connect(&host).await.unwrap_err();
    assert!(
        matches!(refused, RemoteError::Connect { .. }),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains(&format!("`ssh-a` ({ip}) on port 2222")),
        "{refused}"
    );
}

fn connector_on_port(sandbox: &Sandbox, port: u16) -> Connector {
    connector(
        sandbox,
        Options {
            port,
            ..Options::default()
        },
    )
}

/// `fan_out` runs on every host at once, or one at a time with a limit of one, reusing the
/// pool's sessions; a droplet that is off fails alone.
/// `wait_for_ssh` gives up at its deadline on a droplet that is off, stops when cancelled, and
/// returns a session once a powered-on droplet answers.
#[tokio::test(flavor = "multi_thread")]
async fn remote_fans_out_and_waits_for_droplets() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    let droplets = droplets(&sandbox, &["fan-a", "fan-b", "fan-c"]).await;
    let hosts: Vec<Host> = droplets.iter().map(|(_, h)| h.clone()).collect();
    let quick = Options {
        connect_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let pool = Pool::new(connector(&sandbox, quick.clone()));

    // All three at once: each host's work waits at a barrier that only all three together pass
    // (a fan-out that ran them one by one would time out there).
    let barrier = &tokio::sync::Barrier::new(3);
    let results = pool
        .fan_out(&hosts, 3, |session| async move {
            tokio::time::timeout(BOOT, barrier.wait())
                .await
                .map_err(|_| anyhow::anyhow!("the three hosts never ran at the same time"))?;
            let output = session.run("echo $SSH_CONNECTION; hostname").await?;
            anyhow::Ok(output.stdout_text())
        })
        .await;
    let first: Vec<String> = results
        .into_iter()
        .zip(&hosts)
        .map(|((host, result), expected)| {
            assert_eq!(&host, expected, "results come in the order of the hosts");
            let text = result.unwrap_or_else(|e| panic!("{host}: {e:#}"));
            assert!(text.ends_with(&format!("\n{}\n", host.name)), "{text}");
            text
        })
        .collect();

    // One at a time with a limit of one, on the sessions the pool already has.
    let in_flight = &AtomicUsize::new(0);
    let most = &AtomicUsize::new(0);
    let results = pool
        .fan_out(&hosts, 1, |session| async move {
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let output = session.run("echo $SSH_CONNECTION; hostname").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            output.map(|o| o.stdout_text())
        })
        .await;
    assert_eq!(most.load(Ordering::SeqCst), 1);
    let second: Vec<String> = results.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(second, first, "the pool opened new connections");
    let session = pool.session(&hosts[0]).await.unwrap();
    assert!(Arc::ptr_eq(
        &session,
        &pool.session(&hosts[0]).await.unwrap()
    ));

    // One droplet off: its result is an error naming it, the others' are their hostnames.
    let client = sandbox.client();
    let (off_id, off) = droplets[2].clone();
    act(&client, off_id, DropletAction::PowerOff).await;
    let fresh = Pool::new(connector(&sandbox, quick.clone()));
    let results = fresh
        .fan_out(&hosts, 3, |session| async move {
            session.run("hostname").await.map(|o| o.stdout_text())
        })
        .await;
    assert_eq!(results[0].1.as_ref().unwrap(), "fan-a\n");
    assert_eq!(results[1].1.as_ref().unwrap(), "fan-b\n");
    let error = results[2].1.as_ref().unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(error.host(), Some(&off));
    assert!(
        error.to_string().contains(&format!("`fan-c` ({})", off.ip)),
        "{error}"
    );

    // Waiting on a droplet that stays off ends at the deadline, with the last reason.
    let connector = connector(&sandbox, quick);
    let never = AtomicBool::new(false);
    let started = Instant::now();
    let gave_up = wait_for_ssh(
        &connector,
        &off,
        Instant::now() + Duration::from_secs(3),
        &never,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(gave_up, RemoteError::WaitGaveUp { .. }),
        "{gave_up:?}"
    );
    assert!(
        gave_up.to_string().starts_with(&format!(
            "gave up waiting for SSH on `fan-c` ({}) after 3 s: cannot connect",
            off.ip
        )),
        "{gave_up}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Ctrl-C: the flag stops the wait long before its deadline.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        flag.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let cancelled = wait_for_ssh(&connector, &off, Instant::now() + BOOT, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(cancelled, RemoteError::Cancelled { .. }),
        "{cancelled:?}"
    );
    assert!(started.elapsed() < BOOT / 2);

    // Powered on (not waited for through the API): the wait returns a working session, and the
    // host key pinned before the power cycle still holds.
    client
        .droplet_action(off_id, &DropletAction::PowerOn)
        .await
        .unwrap();
    let never = AtomicBool::new(false);
    let session = wait_for_ssh(&connector, &off, Instant::now() + BOOT, &never)
        .await
        .unwrap();
    assert_eq!(
        session.run("hostname").await.unwrap().stdout_text(),
        "fan-c\n"
    );
    assert_eq!(
        known_hosts_text(&sandbox).lines().count(),
        3,
        "{}",
        known_hosts_text(&sandbox)
    );
    pool.close().await;
}

/// A layer of 200 MB (random, so compression cannot shrink it) goes through a `Tunnel` to a
/// registry that listens only on the droplet's loopback, pushed by this machine's Docker
/// Engine: the forward keeps to the channel's window and never stalls (Kamal's in-process
/// forward wedged at ~27 MiB, basecamp/kamal#1886). The registry then has the image, and the
/// tunnel counted at least the layer's size.
#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_carries_a_200_mb_layer_to_a_registry_on_the_droplet() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    let (_, host) = droplets(&sandbox, &["registry"]).await.remove(0);
    let ip = host.ip.to_string();
    // The registry on the droplet's loopback only (the sandbox image has Debian's).
    sandbox
        .ssh(
            &ip,
            "mkdir -p /etc/infra && printf 'version: 0.1\\nstorage:\\n  filesystem:\\n    rootdirectory: /var/lib/docker-registry\\nhttp:\\n  addr: 127.0.0.1:5000\\n' >/etc/infra/registry.yml && (setsid docker-registry serve /etc/infra/registry.yml >/var/log/registry.log 2>&1 </dev/null &) && for i in $(seq 50); do curl -fs http://127.0.0.1:5000/v2/ && exit 0; sleep 0.2; done; exit 1",
        )
        .unwrap();

    // One FROM-scratch image whose only layer is 200 MB of random bytes.
    let context = tempfile::tempdir().unwrap();
    let blob = context.path().join("blob");
    let status = std::process::Command::new("head")
        .args(["-c", "209715200", "/dev/urandom"])
        .stdout(std::fs::File::create(&blob).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY blob /blob\n",
    )
    .unwrap();
    let tag = format!("infra-tunnel-test:{}", std::process::id());
    let built = std::process::Command::new("docker")
        .args(["build", "--quiet", "--tag", &tag])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let pool = Pool::new(connector(&sandbox, Options::default()));
    let session = pool.session(&host).await.unwrap();
    let tunnel = Tunnel::open(session.clone(), "127.0.0.1", 5000)
        .await
        .unwrap();
    let remote = format!("127.0.0.1:{}/tunnel-test:big", tunnel.port());
    assert!(docker(&["tag", &tag, &remote]).0);
    let started = Instant::now();
    let pushed = tokio::task::spawn_blocking({
        let remote = remote.clone();
        move || docker(&["push", &remote])
    });
    let (ok, output) = tokio::time::timeout(Duration::from_secs(600), pushed)
        .await
        .expect("the push through the tunnel stalled")
        .unwrap();
    let took = started.elapsed();
    let _ = docker(&["rmi", &remote]);
    let _ = docker(&["rmi", &tag]);
    assert!(ok, "docker push through the tunnel failed: {output}");
    assert!(output.contains("digest: sha256:"), "{output}");
    assert!(
        tunnel.bytes_sent() >= 200 * 1024 * 1024,
        "only {} bytes went through the tunnel",
        tunnel.bytes_sent()
    );
    // The registry on the droplet has it, as it says itself.
    let manifest = session
        .run("curl -fs -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://127.0.0.1:5000/v2/tunnel-test/manifests/big")
        .await
        .unwrap();
    assert_eq!(manifest.stdout_text(), "200");
    eprintln!(
        "200 MB layer through the tunnel in {:.1} s ({} bytes sent)",
        took.as_secs_f64(),
        tunnel.bytes_sent()
    );
}

/// `docker ARGS`: whether it succeeded, and all it printed.
fn docker(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
