//! A droplet's own checks and repairs (src/health/) against the real things: a real
//! `redis-server` (Debian's) for queue depth, requeue limits and a wrong password, and the
//! host's Docker Engine for a container killed with `docker kill` and restarted by `repair`.
//!
//! Without `redis-server` the Redis tests skip with a notice, unless `INFRA_REQUIRE_TOOLS=1`
//! (CI) makes that a failure; the Docker tests follow `INFRA_SKIP_DOCKER_TESTS` like the other
//! Docker tests. Images are built here `FROM scratch` with Debian's busybox-static: nothing
//! is pulled. Time in the restart tests is the caller's `now`, so the backoff is walked
//! through without waiting for it.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use infra::health::checks::{ContainerStatus, ProcessStatus};
use infra::health::{
    requeue_failed, ExpectedContainer, LocalHealth, RedisError, RedisTarget, RepairEvent,
};
use infra::state::runtime::ServiceKind;
use infra::template::Secret;

use crate::harness::{docker_tests_can_run, PATIENCE};

const PASSWORD: &str = "test-only-7f3c91e2a4";

/// Whether `program` can run; a missing one skips the test with a notice, or fails it under
/// `INFRA_REQUIRE_TOOLS=1`.
fn have_tool(program: &str, install: &str) -> bool {
    let works = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return true;
    }
    if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("`{program}` is not installed and INFRA_REQUIRE_TOOLS=1 requires it; install it with `{install}`");
    }
    eprintln!("skipped: `{program}` is not installed (`{install}`; INFRA_REQUIRE_TOOLS=1 makes this a failure)");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` on a free loopback port with a password, stopped when dropped. Its
/// config (with the password) goes in on standard input, never on its command line.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        if !have_tool("redis-server", "apt-get install redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("redis-server")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let config = format!(
            "port {port}\nbind 127.0.0.1\nrequirepass {PASSWORD}\nsave \"\"\nappendonly no\ndir {}\n",
            dir.path().display()
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(config.as_bytes()).unwrap();
        drop(stdin);
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(RedisServer {
            child,
            port,
            _dir: dir,
        })
    }

    fn target(&self) -> RedisTarget {
        RedisTarget::new("127.0.0.1", self.port, Some(Secret::new(PASSWORD)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(name: &str, engine: &str, queues: &[&str], max_depth: Option<u64>) -> ExpectedContainer {
    ExpectedContainer {
        name: name.to_string(),
        project: "shop".into(),
        environment: "prod".into(),
        service: "jobs".into(),
        kind: ServiceKind::Worker,
        engine: engine.to_string(),
        port: None,
        health_path: None,
        queues: queues.iter().map(|q| q.to_string()).collect(),
        max_queue_depth: max_depth,
        max_requeues: 2,
        max_cpu_percent: None,
        max_memory_mb: None,
        env_file: format!("/etc/infra/env/{name}.env"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_jobs_go_back_to_their_queue_at_most_max_requeues_times() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut redis = server.target().connect().await.unwrap();
    redis.ping().await.unwrap();
    redis.lpush("mail", &[b"job-1", b"job-2"]).await.unwrap();
    redis
        .lpush("mail:failed", &[b"{\"to\":\"a@example.com\"}", b"job-x"])
        .await
        .unwrap();
    assert_eq!(redis.llen("mail").await.unwrap(), 2);

    // First and second failure: both go back (limit 2).
    for round in 1..=2 {
        let (moved, at_limit) = requeue_failed(&mut redis, "mail", 2).await.unwrap();
        assert_eq!((moved, at_limit.len()), (2, 0), "round {round}");
        assert_eq!(redis.llen("mail:failed").await.unwrap(), 0);
        assert_eq!(
            redis.hget("mail:requeues", b"job-x").await.unwrap(),
            Some(round)
        );
        // The worker takes them and they fail again.
        for _ in 0..2 {
            redis
                .lmove(
                    "mail",
                    "mail:failed",
                    infra::health::redis::End::Left,
                    infra::health::redis::End::Left,
                )
                .await
                .unwrap()
                .unwrap();
        }
    }
    // Third failure: past the limit, they stay where they are.
    let (moved, at_limit) = requeue_failed(&mut redis, "mail", 2).await.unwrap();
    assert_eq!(moved, 0);
    assert_eq!(at_limit.len(), 2);
    assert!(at_limit
        .iter()
        .all(|(job, n)| job.starts_with("sha256:") && *n == 2));
    assert_eq!(redis.llen("mail:failed").await.unwrap(), 2);
    assert_eq!(redis.llen("mail").await.unwrap(), 2);
    let mut left = redis.lrange("mail", 0, -1).await.unwrap();
    left.sort();
    assert_eq!(left, [b"job-1".to_vec(), b"job-2".to_vec()]);

    // A new failed job still gets its own requeues beside the ones at the limit.
    redis.lpush("mail:failed", &[b"job-new"]).await.unwrap();
    let (moved, at_limit) = requeue_failed(&mut redis, "mail", 2).await.unwrap();
    assert_eq!((moved, at_limit.len()), (1, 2));
    assert_eq!(
        redis.lrange("mail", 0, 0).await.unwrap(),
        [b"job-new".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_reports_queue_depth_alerts_a_backlog_once_and_requeues() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut redis = server.target().connect().await.unwrap();
    let jobs: Vec<Vec<u8>> = (0..6).map(|i| format!("job-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = jobs.iter().map(Vec::as_slice).collect();
    redis.lpush("mail", &refs).await.unwrap();
    redis.rpush("mail:failed", &[b"broken"]).await.unwrap();

    // No engine here: the container part of the report says so and nothing is restarted.
    let expected = vec![worker(
        "shop-prod-jobs",
        "/nonexistent/docker",
        &["mail", "thumbs"],
        Some(5),
    )];
    let redis_by_env = IndexMap::from([("shop-prod".to_string(), server.target())]);
    let mut health = LocalHealth::new(expected, redis_by_env);
    let now = Instant::now();
    let report = health.check(now).await;
    let mail = &report.queues[0];
    assert_eq!(
        (mail.queue.as_str(), mail.depth, mail.failed, mail.backlog),
        ("mail", Some(6), Some(1), true)
    );
    let thumbs = &report.queues[1];
    assert_eq!((thumbs.depth, thumbs.backlog), (Some(0), false));
    let container = &report.containers[0];
    assert_eq!(container.status, ContainerStatus::Unknown);
    assert!(
        container
            .error
            .as_deref()
            .unwrap()
            .contains("cannot run `/nonexistent/docker`"),
        "{container:?}"
    );
    assert!(!report.healthy());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["queues"][0]["depth"], 6);

    let events = health.repair(now, &report).await;
    assert_eq!(
        events,
        [
            RepairEvent::QueueBacklog {
                project_env: "shop-prod".into(),
                queue: "mail".into(),
                depth: 6,
                max_depth: 5
            },
            RepairEvent::Requeued {
                project_env: "shop-prod".into(),
                queue: "mail".into(),
                jobs: 1
            },
        ]
    );
    assert_eq!(redis.llen("mail").await.unwrap(), 7);

    // The backlog goes on: told once. Nothing but telling is done about it.
    let report = health.check(now + Duration::from_secs(1)).await;
    assert_eq!(report.queues[0].depth, Some(7));
    assert_eq!(
        health.repair(now + Duration::from_secs(1), &report).await,
        []
    );
    assert_eq!(redis.llen("mail").await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let wrong = "not-the-password-1234";
    let target = RedisTarget::new("127.0.0.1", server.port, Some(Secret::new(wrong)));
    let error = target.connect().await.unwrap_err();
    assert!(matches!(error, RedisError::Auth { .. }), "{error:?}");
    let message = error.to_string();
    assert_eq!(
        message,
        format!("Redis at 127.0.0.1:{} refused the password; check <PROJECT>_<ENV>_REDIS_PASSWORD and deploy again so the env files and the server agree", server.port)
    );
    assert!(!format!("{error:?}{target:?}").contains(wrong));

    // Without a password the server refuses the first command, naming where it is.
    let open = RedisTarget::new("127.0.0.1", server.port, None);
    let mut redis = open.connect().await.unwrap();
    let message = redis.llen("mail").await.unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("Redis at 127.0.0.1:{}: NOAUTH", server.port)),
        "{message}"
    );

    // Nothing listening: the address is named.
    let closed = free_port();
    let message = RedisTarget::new("127.0.0.1", closed, None)
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("cannot reach Redis at 127.0.0.1:{closed}: ")),
        "{message}"
    );
}

// --- Docker -----------------------------------------------------------------------------

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Containers and the image of one test, removed when dropped.
struct Containers {
    names: Vec<String>,
    image: String,
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            docker(&["rm", "--force", name]);
        }
        if !self.image.is_empty() {
            docker(&["rmi", "--force", &self.image]);
        }
    }
}

/// An image with busybox and a page at /www/health, built here.
fn busybox_image(tag: &str) -> Option<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else {
        if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("busybox is not installed and INFRA_REQUIRE_TOOLS=1 requires it; install it with `apt-get install busybox-static`");
        }
        eprintln!("skipped: busybox is not installed (`apt-get install busybox-static`)");
        return None;
    };
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, context.path().join("busybox")).unwrap();
    std::fs::create_dir(context.path().join("www")).unwrap();
    std::fs::write(context.path().join("www/health"), "ok\n").unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n",
    )
    .unwrap();
    let (ok, out) = docker(&[
        "build",
        "--quiet",
        "--tag",
        tag,
        &context.path().display().to_string(),
    ]);
    assert!(ok, "{out}");
    Some(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_container_is_restarted_and_three_restarts_in_ten_minutes_alert() {
    if !docker_tests_can_run() {
        return;
    }
    let id = std::process::id();
    let image = format!("infra-health-test:{id}");
    let web = format!("infra-health-{id}-web");
    let jobs = format!("infra-health-{id}-jobs");
    let _cleanup = Containers {
        names: vec![web.clone(), jobs.clone()],
        image: image.clone(),
    };
    if busybox_image(&image).is_none() {
        return;
    }
    // The web container listens on 8080 and is published on another droplet port, as the
    // rollout's second slot does.
    let published = free_port();
    let (ok, out) = docker(&[
        "run",
        "--detach",
        "--name",
        &web,
        "--publish",
        &format!("127.0.0.1:{published}:8080"),
        &image,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = docker(&[
        "run",
        "--detach",
        "--name",
        &jobs,
        &image,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    assert!(ok, "{out}");

    let mut web_expected = worker(&web, "docker", &[], None);
    web_expected.kind = ServiceKind::Web;
    web_expected.port = Some(8080);
    web_expected.health_path = Some("/health".into());
    web_expected.max_memory_mb = Some(4096);
    let expected = vec![web_expected, worker(&jobs, "docker", &[], None)];
    let mut health =
        LocalHealth::new(expected, IndexMap::new()).with_resource_interval(Duration::ZERO);
    let t0 = Instant::now();

    // httpd may take a moment to listen: wait (not a timing assertion) until it answers.
    let deadline = Instant::now() + PATIENCE;
    let report = loop {
        let report = health.check(t0).await;
        if report.healthy() {
            break report;
        }
        assert!(Instant::now() < deadline, "never healthy: {report:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let web_report = report.container(&web).unwrap();
    let http = web_report.http.as_ref().unwrap();
    assert_eq!(
        (http.port, http.status, http.ok),
        (published, Some(200), true)
    );
    assert_eq!(
        report.container(&jobs).unwrap().process,
        Some(ProcessStatus::Alive)
    );
    assert_eq!(health.repair(t0, &report).await, []);

    // CPU and memory come from `docker stats` in the background: wait for a sample.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let report = health.check(t0).await;
        if let Some(usage) = report.container(&web).unwrap().usage {
            assert!(
                usage.memory_mb > 0.0 && usage.memory_mb < 4096.0,
                "{usage:?}"
            );
            assert!(report.container(&web).unwrap().over.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "no CPU and memory sample");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let kill = |name: &str| {
        let (ok, out) = docker(&["kill", name]);
        assert!(ok, "{out}");
    };
    let at = |s: u64| t0 + Duration::from_secs(s);

    // First kill: restarted at once.
    kill(&jobs);
    let report = health.check(at(10)).await;
    assert_eq!(
        report.container(&jobs).unwrap().status,
        ContainerStatus::Stopped
    );
    assert_eq!(
        health.repair(at(10), &report).await,
        [RepairEvent::Restarted {
            container: jobs.clone(),
            attempt: 1
        }]
    );
    let report = health.check(at(10)).await;
    assert_eq!(
        report.container(&jobs).unwrap().status,
        ContainerStatus::Running
    );

    // Second kill: the backoff holds the restart for a second.
    kill(&jobs);
    let report = health.check(at(10)).await;
    assert_eq!(health.repair(at(10), &report).await, []);
    assert_eq!(
        health.check(at(10)).await.container(&jobs).unwrap().status,
        ContainerStatus::Stopped
    );
    assert_eq!(
        health.repair(at(11), &report).await,
        [RepairEvent::Restarted {
            container: jobs.clone(),
            attempt: 2
        }]
    );

    // Third kill, two seconds later: restarted, and three restarts within ten minutes alert.
    kill(&jobs);
    let report = health.check(at(13)).await;
    let events = health.repair(at(13), &report).await;
    assert_eq!(
        events,
        [
            RepairEvent::Restarted {
                container: jobs.clone(),
                attempt: 3
            },
            RepairEvent::RepeatedRestarts {
                container: jobs.clone(),
                restarts: 3,
                window_seconds: 600
            },
        ]
    );
    assert!(events.iter().any(RepairEvent::is_alert));
    let report = health.check(at(13)).await;
    assert_eq!(
        report.container(&jobs).unwrap().status,
        ContainerStatus::Running
    );
    // The web container was never touched.
    let (_, restarts) = docker(&[
        "inspect",
        "--format",
        "{{.RestartCount}} {{.State.Running}}",
        &web,
    ]);
    assert_eq!(restarts.trim(), "0 true");

    // A web service that stops answering its health path is told once (not restarted).
    let (ok, out) = docker(&["exec", &web, "/bin/busybox", "rm", "/www/health"]);
    assert!(ok, "{out}");
    let report = health.check(at(20)).await;
    let http = report.container(&web).unwrap().http.clone().unwrap();
    assert_eq!((http.status, http.ok), (Some(404), false));
    let events = health.repair(at(20), &report).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], RepairEvent::Unhealthy { container, reason } if container == &web && reason.contains("answered 404")),
        "{events:?}"
    );
    assert_eq!(health.repair(at(21), &report).await, []);

    // A container that is gone cannot be restarted here: told once.
    docker(&["rm", "--force", &jobs]);
    let report = health.check(at(30)).await;
    assert_eq!(
        report.container(&jobs).unwrap().status,
        ContainerStatus::Missing
    );
    assert_eq!(
        health.repair(at(30), &report).await,
        [RepairEvent::Missing {
            container: jobs.clone()
        }]
    );
    assert_eq!(health.repair(at(31), &report).await, []);
}

// --- Redis on the master ----------------------------------------------------------------

/// A project whose worker names queues gets a Redis on the master, so its password variable
/// is required with the other secrets, before anything changes.
#[test]
fn a_missing_redis_password_stops_a_deploy_before_anything_changes() {
    let test = crate::playbooks::deployed()
        .edit(
            "config/deployment_config.json",
            "\"command\": \"python email_processor.py\",",
            "\"command\": \"python email_processor.py\", \"queues\": [\"email_queue\"], \"max_queue_depth\": 100,",
        )
        .edit(
            "config/deployment_config.json",
            "\"secrets\": [\"db_password\", \"redis_password\"]",
            "\"secrets\": [\"db_password\"]",
        );
    let before = test.snapshot();
    let run = |extra: &[(&str, &str)]| {
        let mut command = Command::new(crate::harness::BIN);
        command
            .args(["deploy-uat", "hostomatic", "--dry-run"])
            .current_dir(test.path())
            .env_remove("DO_TOKEN")
            .env_remove("RUST_LOG");
        for (key, value) in [
            ("HOSTOMATIC_UAT_DB_PASSWORD", "x"),
            ("HOSTOMATIC_UAT_STRIPE_KEY", "x"),
            ("HOSTOMATIC_UAT_STRIPE_PUBLISHABLE_KEY", "x"),
            ("HOSTOMATIC_UAT_SENDGRID_API_KEY", "x"),
        ] {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        command.env_remove("HOSTOMATIC_UAT_REDIS_PASSWORD");
        command.output().unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "secrets are missing, so nothing was changed: set HOSTOMATIC_UAT_REDIS_PASSWORD"
        ),
        "{stderr}"
    );
    before.assert_same(&test.snapshot());
}

/// The sandbox's droplet image (built by .ci/prepare-sandbox), or `None` with a notice.
fn droplet_image() -> Option<String> {
    let (ok, out) = docker(&[
        "images",
        "--filter",
        "label=infra.droplet-image=1",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let image = out
        .lines()
        .find(|l| ok && l.starts_with("infra-droplet:"))
        .map(str::to_string);
    if image.is_none() {
        if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("the sandbox's droplet image is missing and INFRA_REQUIRE_TOOLS=1 requires it; run .ci/prepare-sandbox");
        }
        eprintln!("skipped: the sandbox's droplet image is missing (run .ci/prepare-sandbox)");
    }
    image
}

/// Runs `script` in `container` with `input` on standard input; (success, output).
fn exec_in(container: &str, script: &str, input: &[u8]) -> (bool, String) {
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The master's Redis, as bootstrap starts it, in a container of the droplet image (no
/// systemd, as in the sandbox): bound to the master's own address with its password,
/// reachable from another host, its data on disk, a boot hook, idempotent, and restarted when
/// its config changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_masters_redis_starts_bound_to_its_address_and_asks_for_its_password() {
    if !docker_tests_can_run() {
        return;
    }
    let Some(image) = droplet_image() else {
        return;
    };
    let name = format!("infra-health-{}-master", std::process::id());
    let _cleanup = Containers {
        names: vec![name.clone()],
        image: String::new(),
    };
    let (ok, out) = docker(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--entrypoint",
        "/bin/sleep",
        &image,
        "600",
    ]);
    assert!(ok, "{out}");
    let (_, ip) = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ]);
    let ip = ip.trim().to_string();
    let place = infra::deploy::redis::RedisPlace {
        project_env: "shop-prod".into(),
        host: ip.clone(),
        port: 6512,
    };
    let upload = |password: &str| {
        let config = place.config_file(&Secret::new(password));
        let (ok, out) = exec_in(
            &name,
            "mkdir -p /etc/infra/redis && umask 077 && cat >/etc/infra/redis/shop-prod.conf",
            config.as_bytes(),
        );
        assert!(ok, "{out}");
    };
    upload(PASSWORD);
    let (ok, out) = exec_in(
        &name,
        &infra::deploy::bootstrap::redis_script(&place, false),
        b"",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("changed: started infra-redis-shop-prod on port 6512"),
        "{out}"
    );
    assert!(
        out.contains("changed: boot hook 40-infra-redis-shop-prod"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD));

    // From this host, as another droplet of the fleet would reach it.
    let target = RedisTarget::new(ip.clone(), 6512, Some(Secret::new(PASSWORD)));
    let mut redis = target.connect().await.unwrap();
    redis.rpush("mail", &[b"kept"]).await.unwrap();
    let wrong = RedisTarget::new(ip.clone(), 6512, Some(Secret::new("wrong-one")));
    assert!(matches!(
        wrong.connect().await.unwrap_err(),
        RedisError::Auth { .. }
    ));
    let (_, modes) = exec_in(
        &name,
        "stat -c '%a %n' /etc/infra/redis/shop-prod.conf /var/lib/infra/redis/shop-prod; ps -o args= -C redis-server",
        b"",
    );
    assert!(
        modes.contains("600 /etc/infra/redis/shop-prod.conf"),
        "{modes}"
    );
    assert!(
        modes.contains("700 /var/lib/infra/redis/shop-prod"),
        "{modes}"
    );
    assert!(
        !modes.contains(PASSWORD),
        "the password is on a command line: {modes}"
    );

    // A second run changes nothing.
    let (ok, out) = exec_in(
        &name,
        &infra::deploy::bootstrap::redis_script(&place, false),
        b"",
    );
    assert!(ok, "{out}");
    assert!(!out.contains("changed:"), "{out}");

    // A new password: the server is restarted with it, and the queue is still there.
    drop(redis);
    let new_password = "rotated-9d2b61";
    upload(new_password);
    let (ok, out) = exec_in(
        &name,
        &infra::deploy::bootstrap::redis_script(&place, true),
        b"",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("changed: stopped infra-redis-shop-prod"),
        "{out}"
    );
    assert!(
        out.contains("changed: started infra-redis-shop-prod"),
        "{out}"
    );
    let target = RedisTarget::new(ip, 6512, Some(Secret::new(new_password)));
    let mut redis = target.connect().await.unwrap();
    assert_eq!(
        redis.lrange("mail", 0, -1).await.unwrap(),
        [b"kept".to_vec()]
    );
}
