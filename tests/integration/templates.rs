//! The bundled templates, rendered by `infra render` from the `init` state (and from a state
//! with running droplets), checked by the tools that will read them: `docker-compose config`,
//! `kubernetes-validate --strict` and `nginx -t`.
//!
//! A missing tool skips its check with a notice, unless `INFRA_REQUIRE_TOOLS=1` (set by CI),
//! which turns the skip into a failure.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{Output, Test};

/// Kubernetes version the manifests are validated against; kubernetes-validate ships its
/// schemas, so this works offline.
const KUBERNETES_VERSION: &str = "1.30.0";

/// The project-environments of the `init` state, with their services (web first, as in
/// config/deployment_config.json).
const HOSTOMATIC: &[(&str, &str)] = &[
    ("backend", "web"),
    ("frontend", "web"),
    ("worker_email", "worker"),
    ("scheduler", "worker"),
];

/// The program to run for `tool`, or `None` (with a notice) when it is not installed.
/// Under `INFRA_REQUIRE_TOOLS=1` a missing tool fails the test instead.
fn tool(candidates: &[&str], probe: &str, install: &str) -> Option<String> {
    for program in candidates {
        let works = Command::new(program)
            .arg(probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(program.to_string());
        }
    }
    let name = candidates[0];
    if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("`{name}` is not installed and INFRA_REQUIRE_TOOLS=1 requires it; install it with `{install}`");
    }
    eprintln!(
        "skipped: `{name}` is not installed (install it with `{install}`; INFRA_REQUIRE_TOOLS=1 makes this a failure)"
    );
    None
}

fn docker_compose() -> Option<String> {
    tool(
        &["docker-compose"],
        "version",
        "apt-get install -y docker-compose",
    )
}

fn kubernetes_validate() -> Option<String> {
    tool(
        &["kubernetes-validate"],
        "--version",
        "pip install kubernetes-validate",
    )
}

fn nginx() -> Option<String> {
    // Debian installs it in /usr/sbin, which is not on every user's PATH.
    tool(
        &["nginx", "/usr/sbin/nginx"],
        "-v",
        "apt-get install -y nginx-light",
    )
}

/// Runs a checking tool; panics with its output unless it succeeds.
fn check(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{program} {} failed ({})\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout + stderr.as_str()
}

/// `infra render ARGS`, which must succeed; its stdout.
fn render(test: &Test, args: &[&str]) -> String {
    let mut full = vec!["render"];
    full.extend_from_slice(args);
    let out = test.infra(&full);
    out.assert_success();
    assert!(
        !out.stdout.trim().is_empty(),
        "infra {} printed nothing",
        full.join(" ")
    );
    out.stdout
}

/// `--set` flags that keep nginx's files inside `dir`, so `nginx -t` runs unprivileged there.
fn nginx_paths(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("--set=nginx.pid={d}/nginx.pid"),
        format!("--set=nginx.error_log={d}/error.log"),
        format!("--set=nginx.access_log={d}/access.log"),
        format!("--set=nginx.temp_dir={d}"),
    ]
}

/// Renders nginx.conf into `nginx/` of the project and has `nginx -t` check it.
fn nginx_test(test: &Test, nginx: &str) -> String {
    let dir = test.path().join("nginx-check");
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let mut args = vec!["nginx/nginx.conf.j2".to_string()];
    args.extend(nginx_paths(&dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let conf = render(test, &args);
    test.write("nginx-check/nginx.conf", &conf);
    let conf_path = dir.join("nginx.conf");
    let prefix = format!("{}/", dir.display());
    check(
        nginx,
        &["-t", "-c", &conf_path.display().to_string(), "-p", &prefix],
        test.path(),
    );
    conf
}

/// The lines of `text` from `start` (a whole line) through the next line equal to `end`.
fn block(text: &str, start: &str, end: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .iter()
        .position(|l| *l == start)
        .unwrap_or_else(|| panic!("no line {start:?} in:\n{text}"));
    let to = lines[from..]
        .iter()
        .position(|l| *l == end)
        .unwrap_or_else(|| panic!("no line {end:?} after {start:?} in:\n{text}"));
    lines[from..=from + to].join("\n") + "\n"
}

/// The Compose service blocks of a rendered file: service name -> its lines.
fn compose_services(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_services = false;
    for line in text.lines() {
        if line == "services:" {
            in_services = true;
            continue;
        }
        if !in_services || line.starts_with('#') {
            continue;
        }
        let name = line
            .strip_prefix("  ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.strip_suffix(':'));
        match name {
            Some(name) => out.push((name.to_string(), String::new())),
            None => {
                let (_, body) = out.last_mut().expect("a line before any service");
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

/// The port `infra discover` reports for a service.
fn port_of(test: &Test, project: &str, env: &str, service: &str) -> u64 {
    let out = test.infra(["discover", project, env, "--json"]);
    out.assert_success();
    let full = format!("{project}-{env}-{service}");
    out.json()["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == full.as_str())
        .and_then(|s| s["port"].as_u64())
        .unwrap_or_else(|| panic!("no port for {full}:\n{}", out.stdout))
}

/// The `init` project with droplets running (the master and hostomatic's two web droplets
/// have IPs, digitalpixo's droplet is not up yet) and hostomatic-prod deployed on ports 8001
/// and 9001.
fn running() -> Test {
    let test = Test::init();
    let mut state: Value = test.json("config/infrastructure.json");
    state["droplets"] = json!({
        "master": {"ip": "10.0.0.10", "size": "s-2vcpu-4gb", "region": "lon1", "role": "master"},
        "hostomatic-web1": {"ip": "10.0.0.11", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic"},
        "hostomatic-web2": {"ip": "10.0.0.12", "size": "s-2vcpu-4gb", "region": "lon1", "role": "web", "project": "hostomatic"},
        "digitalpixo-web1": {"size": "s-1vcpu-1gb", "region": "lon1", "role": "web", "project": "digitalpixo"}
    });
    state["projects"] = json!({
        "hostomatic-prod": {
            "backend": {"type": "web", "port": 8001, "assigned_droplets": ["hostomatic-web1", "hostomatic-web2"]},
            "frontend": {"type": "web", "port": 9001, "assigned_droplets": ["hostomatic-web1", "hostomatic-web2"]},
            "worker_email": {"type": "worker", "assigned_droplets": ["hostomatic-web1"]},
            "scheduler": {"type": "worker", "assigned_droplets": ["hostomatic-web1"]}
        }
    });
    test.write(
        "config/infrastructure.json",
        &serde_json::to_string_pretty(&state).expect("json"),
    );
    test
}

#[test]
fn init_writes_every_template_the_spec_lists() {
    let test = Test::init();
    for name in [
        "docker-compose.yml.j2",
        "kubernetes/namespace.yaml.j2",
        "kubernetes/deployment.yaml.j2",
        "kubernetes/service.yaml.j2",
        "nginx/nginx.conf.j2",
        "vault/vault.hcl.j2",
        "env/service.env.j2",
        "email/heartbeat.txt.j2",
        "email/failure_alert.txt.j2",
        "email/recovery_complete.txt.j2",
    ] {
        assert!(
            test.path().join("templates").join(name).is_file(),
            "infra init did not write templates/{name}"
        );
    }
}

#[test]
fn compose_files_pass_docker_compose_config() {
    let test = Test::init();
    let Some(compose) = docker_compose() else {
        return;
    };
    for (project, env, services) in [
        (
            "hostomatic",
            "prod",
            &["backend", "frontend", "worker_email", "scheduler"][..],
        ),
        (
            "hostomatic",
            "uat",
            &["backend", "frontend", "worker_email", "scheduler"][..],
        ),
        ("digitalpixo", "prod", &["backend", "frontend"][..]),
    ] {
        let dir = format!("deploy/{project}-{env}");
        let file = render(&test, &["docker-compose.yml.j2", project, env]);
        test.write(&format!("{dir}/docker-compose.yml"), &file);
        // Compose reads each service's env file, so they are rendered beside it.
        for service in services {
            let env_file = render(
                &test,
                &["env/service.env.j2", project, env, "--service", service],
            );
            test.write(&format!("{dir}/{project}-{env}-{service}.env"), &env_file);
        }
        check(
            &compose,
            &["-f", "docker-compose.yml", "config", "-q"],
            &test.path().join(&dir),
        );
        let listed = check(
            &compose,
            &["-f", "docker-compose.yml", "config", "--services"],
            &test.path().join(&dir),
        );
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort_unstable();
        let mut expected = services.to_vec();
        expected.sort_unstable();
        assert_eq!(listed, expected, "services of {project}-{env}");
    }
}

#[test]
fn compose_workers_run_their_command_and_publish_no_port() {
    let test = Test::init();
    let file = render(&test, &["docker-compose.yml.j2", "hostomatic", "prod"]);
    let services = compose_services(&file);
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        HOSTOMATIC.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    for (name, body) in &services {
        assert!(
            body.contains(&format!("    container_name: \"hostomatic-prod-{name}\"\n")),
            "{name}:\n{body}"
        );
        assert!(
            body.contains(&format!("    image: \"hostomatic-prod-{name}:latest\"\n")),
            "{name}:\n{body}"
        );
        assert!(
            body.contains("    restart: unless-stopped\n"),
            "{name}:\n{body}"
        );
        assert!(
            body.contains(&format!("      - \"./hostomatic-prod-{name}.env\"\n")),
            "{name}:\n{body}"
        );
    }
    let body = |name: &str| &services.iter().find(|(n, _)| n == name).expect(name).1;
    for worker in ["worker_email", "scheduler"] {
        assert!(
            !body(worker).contains("ports:"),
            "{worker} publishes a port:\n{}",
            body(worker)
        );
        assert!(
            !body(worker).contains("PORT"),
            "{worker} gets a PORT:\n{}",
            body(worker)
        );
        assert!(body(worker).contains("      infra.type: \"worker\"\n"));
    }
    assert!(body("worker_email").contains("    command: [\"python\", \"email_processor.py\"]\n"));
    assert!(body("scheduler").contains("    command: [\"python\", \"cron_scheduler.py\"]\n"));
    let port = port_of(&test, "hostomatic", "prod", "backend");
    assert!(
        body("backend").contains(&format!(
            "    environment:\n      PORT: \"{port}\"\n    ports:\n      - \"{port}:{port}\"\n"
        )),
        "backend:\n{}",
        body("backend")
    );
}

#[test]
fn compose_for_one_droplet_holds_only_its_services() {
    let test = running();
    let file = render(
        &test,
        &[
            "docker-compose.yml.j2",
            "hostomatic",
            "prod",
            "--droplet",
            "hostomatic-web2",
            "--release",
            "uat-20250101-120000-abc1234",
        ],
    );
    let names: Vec<String> = compose_services(&file)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // Workers are placed on the first web droplet only.
    assert_eq!(names, ["backend", "frontend"]);
    assert!(file.contains("    image: \"hostomatic-prod-backend:uat-20250101-120000-abc1234\"\n"));
    assert!(file.contains("      PORT: \"8001\"\n"), "{file}");
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate_strict() {
    // A health check and plain environment variables exercise the probe and `env` branches.
    let test = Test::init().edit(
        "config/deployment_config.json",
        "\"containerfile_path\": \"backend/Dockerfile\",",
        "\"containerfile_path\": \"backend/Dockerfile\",\n          \"health_check\": \"/health\",\n          \"environment\": {\"LOG_LEVEL\": \"info\"},",
    );
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    for (project, env, services, web) in
        [("hostomatic", "prod", 4, 2), ("digitalpixo", "uat", 2, 2)]
    {
        let mut files = Vec::new();
        for kind in ["namespace", "deployment", "service"] {
            let text = render(
                &test,
                &[&format!("kubernetes/{kind}.yaml.j2"), project, env],
            );
            let file = format!("k8s-{project}-{env}-{kind}.yaml");
            test.write(&file, &text);
            files.push(file);
        }
        let mut args = vec!["--strict", "-k", KUBERNETES_VERSION];
        args.extend(files.iter().map(String::as_str));
        let report = check(&validate, &args, test.path());
        // An empty document passes too, so count what was actually validated.
        let passed = |kind: &str| {
            report
                .lines()
                .filter(|l| l.contains("passed for resource") && l.contains(&format!(" {kind}/")))
                .count()
        };
        assert_eq!(passed("namespace"), 1, "{report}");
        assert_eq!(passed("deployment"), services, "{report}");
        assert_eq!(passed("service"), web, "{report}");
        assert!(!report.contains("ERROR"), "{report}");
    }
    let deployments = test.read("k8s-hostomatic-prod-deployment.yaml");
    assert!(
        deployments.contains(
            "          readinessProbe:\n            httpGet:\n              path: \"/health\"\n"
        ),
        "{deployments}"
    );
    assert!(
        deployments.contains("            - name: \"LOG_LEVEL\"\n              value: \"info\"\n"),
        "{deployments}"
    );
}

#[test]
fn kubernetes_services_leave_out_workers_and_deployments_keep_them() {
    let test = Test::init();
    let services = render(&test, &["kubernetes/service.yaml.j2", "hostomatic", "prod"]);
    assert_eq!(services.matches("kind: Service\n").count(), 2, "{services}");
    assert!(services.contains("  name: \"backend\"\n"));
    assert!(services.contains("  name: \"frontend\"\n"));
    assert!(
        !services.contains("worker"),
        "a worker got a Service:\n{services}"
    );
    assert!(
        !services.contains("scheduler"),
        "a worker got a Service:\n{services}"
    );

    let deployments = render(
        &test,
        &["kubernetes/deployment.yaml.j2", "hostomatic", "prod"],
    );
    assert_eq!(deployments.matches("kind: Deployment\n").count(), 4);
    // DNS-1123: `worker_email` becomes `worker-email`; the image keeps the service's name.
    assert!(
        deployments.contains("  name: \"worker-email\"\n"),
        "{deployments}"
    );
    assert!(deployments.contains("          image: \"hostomatic-prod-worker_email:latest\"\n"));
    assert!(deployments.contains("          args: [\"python\", \"email_processor.py\"]\n"));
    assert!(deployments.contains("  namespace: \"hostomatic-prod\"\n"));
}

#[test]
fn nginx_config_passes_nginx_t_before_orchestration() {
    let test = Test::init();
    let Some(nginx) = nginx() else {
        return;
    };
    let conf = nginx_test(&test, &nginx);
    // No droplet has an IP yet: every upstream is a `down` placeholder on its port.
    let port = port_of(&test, "hostomatic", "prod", "backend");
    assert_eq!(
        block(&conf, "    upstream hostomatic-prod-backend {", "    }"),
        format!(
            "    upstream hostomatic-prod-backend {{
        # none of its droplets has an IP yet (run `infra orchestrate`)
        server 127.0.0.1:{port} down;
        keepalive 16;
    }}
"
        )
    );
    assert!(conf.contains("        server_name prod.hostomatic.internal;\n"));
}

#[test]
fn nginx_upstreams_list_the_assigned_droplets_that_have_an_ip() {
    let test = running().edit(
        "config/deployment_config.json",
        "\"hostomatic\": {\n      \"branch\": \"main\",",
        "\"hostomatic\": {\n      \"branch\": \"main\",\n      \"domains\": {\"prod\": \"hostomatic.example.com\"},",
    );
    let Some(nginx) = nginx() else {
        return;
    };
    let conf = nginx_test(&test, &nginx);
    assert_eq!(
        block(&conf, "    upstream hostomatic-prod-backend {", "    }"),
        "    upstream hostomatic-prod-backend {
        server 10.0.0.11:8001 max_fails=3 fail_timeout=10s;
        server 10.0.0.12:8001 max_fails=3 fail_timeout=10s;
        keepalive 16;
    }
"
    );
    assert_eq!(
        block(&conf, "    upstream hostomatic-prod-frontend {", "    }"),
        "    upstream hostomatic-prod-frontend {
        server 10.0.0.11:9001 max_fails=3 fail_timeout=10s;
        server 10.0.0.12:9001 max_fails=3 fail_timeout=10s;
        keepalive 16;
    }
"
    );
    // Not deployed yet, but placed on the same droplets, on its own port.
    let uat = port_of(&test, "hostomatic", "uat", "backend");
    assert_eq!(
        block(&conf, "    upstream hostomatic-uat-backend {", "    }"),
        format!(
            "    upstream hostomatic-uat-backend {{
        server 10.0.0.11:{uat} max_fails=3 fail_timeout=10s;
        server 10.0.0.12:{uat} max_fails=3 fail_timeout=10s;
        keepalive 16;
    }}
"
        )
    );
    // digitalpixo's droplet has no IP yet.
    let pixo = port_of(&test, "digitalpixo", "prod", "backend");
    assert_eq!(
        block(&conf, "    upstream digitalpixo-prod-backend {", "    }"),
        format!(
            "    upstream digitalpixo-prod-backend {{
        # none of its droplets has an IP yet (run `infra orchestrate`)
        server 127.0.0.1:{pixo} down;
        keepalive 16;
    }}
"
        )
    );
    // Workers take no traffic: no upstream, no location.
    assert!(!conf.contains("worker_email"), "{conf}");
    assert!(!conf.contains("scheduler"), "{conf}");
    let server = block(
        &conf,
        "        server_name hostomatic.example.com;",
        "    }",
    );
    assert!(
        server.contains(
            "        location /api/ {\n            proxy_pass http://hostomatic-prod-backend;\n"
        ),
        "{server}"
    );
    assert!(
        server.contains(
            "        location / {\n            proxy_pass http://hostomatic-prod-frontend;\n"
        ),
        "{server}"
    );
    assert!(server
        .contains("            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"));
    assert!(conf.contains("        server_name uat.hostomatic.internal;\n"));
}

#[test]
fn vault_and_emails_render_from_the_init_state_and_with_running_droplets() {
    for test in [Test::init(), running()] {
        let vault = render(&test, &["vault/vault.hcl.j2"]);
        assert!(
            vault.contains("storage \"file\" {\n  path = \"/opt/vault/data\"\n}\n"),
            "{vault}"
        );
        for email in ["heartbeat", "failure_alert", "recovery_complete"] {
            let text = render(&test, &[&format!("email/{email}.txt.j2")]);
            let mut lines = text.lines();
            let subject = lines.next().expect("a subject line");
            assert!(subject.starts_with("Subject: [infra] "), "{email}:\n{text}");
            assert_eq!(
                lines.next(),
                Some(""),
                "{email}: no blank line after the subject:\n{text}"
            );
        }
    }
    let test = running();
    let vault = render(&test, &["vault/vault.hcl.j2"]);
    assert!(
        vault.contains("api_addr     = \"http://10.0.0.10:8200\"\n"),
        "{vault}"
    );
    let alert = render(
        &test,
        &["email/failure_alert.txt.j2", "--droplet", "hostomatic-web2"],
    );
    assert!(alert.starts_with("Subject: [infra] ALERT: hostomatic-web2 has failed\n\nhostomatic-web2 (10.0.0.12) failed"), "{alert}");
    assert!(
        alert.contains("\n  hostomatic-prod-backend\n  hostomatic-prod-frontend\n"),
        "{alert}"
    );
    assert!(
        !alert.contains("worker_email"),
        "workers are placed on web1 only:\n{alert}"
    );
}

#[test]
fn env_files_hold_the_environment_and_where_each_secret_comes_from() {
    let test = Test::init().edit(
        "config/deployment_config.json",
        "\"command\": \"python email_processor.py\",",
        "\"command\": \"python email_processor.py\",\n          \"environment\": {\"WORKER_CONCURRENCY\": 4, \"QUEUE\": \"email\"},",
    );
    let out = test.infra([
        "render",
        "env/service.env.j2",
        "hostomatic",
        "prod",
        "--service",
        "worker_email",
    ]);
    out.assert_success().assert_stdout(
        "# hostomatic-prod-worker_email: rendered by infra from templates/env/service.env.j2
WORKER_CONCURRENCY=4
QUEUE=email
DB_PASSWORD=<from $HOSTOMATIC_PROD_DB_PASSWORD>
SENDGRID_API_KEY=<from $HOSTOMATIC_PROD_SENDGRID_API_KEY>
",
    );
    let out = test.infra(["render", "env/service.env.j2", "hostomatic", "prod"]);
    out.assert_code(2).assert_stderr(
        "error: `env/service.env.j2` renders one service's env file; name it, like `infra render env/service.env.j2 hostomatic prod --service backend`\n",
    );
}

#[test]
fn an_undefined_variable_in_a_project_template_is_an_error_naming_file_line_and_name() {
    let test = Test::init().edit(
        "templates/nginx/nginx.conf.j2",
        "listen {{ nginx.listen }} default_server;",
        "listen {{ nginx.lisen }} default_server;",
    );
    let line = test
        .read("templates/nginx/nginx.conf.j2")
        .lines()
        .position(|l| l.contains("nginx.lisen"))
        .expect("edited line")
        + 1;
    let gutter = " ".repeat(line.to_string().len());
    test.infra(["render", "nginx/nginx.conf.j2"])
        .assert_code(2)
        .assert_stdout("")
        .assert_stderr(&format!(
            "error: templates/nginx/nginx.conf.j2:{line}: `lisen` is undefined: `nginx` has no such field (it has listen, pid, error_log, access_log, temp_dir, worker_connections); `infra render nginx/nginx.conf.j2 --show-context` lists what the context has, or fix the name in the template
{gutter} |
{line} |         listen {{{{ nginx.lisen }}}} default_server;
"
        ));

    // A top-level variable the context does not have, in a service loop.
    let test = Test::init().edit(
        "templates/docker-compose.yml.j2",
        "    restart: unless-stopped",
        "    restart: {{ restart_policy }}",
    );
    let out = test.infra(["render", "docker-compose.yml.j2", "hostomatic", "prod"]);
    out.assert_code(2).assert_stdout("");
    assert!(
        out.stderr
            .starts_with("error: templates/docker-compose.yml.j2:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(": `restart_policy` is undefined: the context has no such variable (it has project, environment, project_env, release, droplet, services);"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("|     restart: {{ restart_policy }}\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn render_refuses_what_it_cannot_render() {
    let test = Test::init();
    let out = test.infra(["render", "nope.j2"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .starts_with("error: infra does not know which context `nope.j2` is rendered with;"),
        "{}",
        out.stderr
    );
    test.infra(["render", "kubernetes/nope.yaml.j2", "hostomatic", "prod"])
        .assert_code(2)
        .assert_stderr_contains("error: template `kubernetes/nope.yaml.j2` is neither in templates/ nor embedded; create templates/kubernetes/nope.yaml.j2 or use one of: docker-compose.yml.j2, email/failure_alert.txt.j2, ");
    test.infra(["render", "docker-compose.yml.j2"])
        .assert_code(2)
        .assert_stderr("error: `docker-compose.yml.j2` renders one project-environment; name them, like `infra render docker-compose.yml.j2 hostomatic uat`\n");
    test.infra(["render", "docker-compose.yml.j2", "hostomatic", "staging"])
        .assert_code(2)
        .assert_stderr(
            "error: project `hostomatic` has no environment `staging`; it has prod, uat\n",
        );
    test.infra([
        "render",
        "docker-compose.yml.j2",
        "hostomatic",
        "prod",
        "--release",
        "bad tag",
    ])
    .assert_code(2)
    .assert_stderr_contains("error: `bad tag` is not a valid image tag;");
    test.infra(["render", "nginx/nginx.conf.j2", "--set", "nginx.lisen=1"])
        .assert_code(2)
        .assert_stderr("error: `nginx` has no `lisen`; it has listen, pid, error_log, access_log, temp_dir, worker_connections\n");
    // A domain must not be able to inject nginx directives.
    let injected = Test::init().edit(
        "config/deployment_config.json",
        "\"hostomatic\": {\n      \"branch\": \"main\",",
        "\"hostomatic\": {\n      \"branch\": \"main\",\n      \"domains\": {\"uat\": \"a.example.com; include /etc/passwd\"},",
    );
    injected
        .infra(["render", "nginx/nginx.conf.j2"])
        .assert_code(2)
        .assert_stderr("error: domain `a.example.com; include /etc/passwd` of `hostomatic-uat` in deployment_config.json is not a host name; use one like \"uat.example.com\"\n");
    test.infra(["render", "../config/infrastructure.json"])
        .assert_code(2)
        .assert_stderr_contains("is not a template name; use a path inside templates/");
}

#[test]
fn playbooks_render_templates_with_contexts_they_build_or_change() {
    let test = Test::init()
        .file("templates/custom/hello.txt.j2", "hello {{ name }} on {{ port }}\n")
        .file(
            "playbooks/render.rhai",
            r#"
let ctx = template_context("nginx/nginx.conf.j2");
ctx.nginx.listen = 8080;
let conf = render_template("nginx/nginx.conf.j2", ctx);
if !conf.contains("listen 8080 default_server;") { fail("listen not changed"); }
let compose = render_template("docker-compose.yml.j2",
    template_context("docker-compose.yml.j2", #{project: "hostomatic", environment: "prod", release: "v1"}));
if !compose.contains("hostomatic-prod-backend:v1") { fail("release not used"); }
log(render_template("custom/hello.txt.j2", #{name: "team", port: 8080}));
"#,
        );
    test.infra(["run", "playbooks/render.rhai"])
        .assert_success()
        .assert_stderr_contains("hello team on 8080");

    let test = test.file(
        "playbooks/undefined.rhai",
        "log(render_template(\"custom/hello.txt.j2\", #{name: \"team\"}));\n",
    );
    let out: Output = test.infra(["run", "playbooks/undefined.rhai"]);
    out.assert_code(2).assert_stderr_contains(
        "templates/custom/hello.txt.j2:1: `port` is undefined: the context has no such variable (it has name)",
    );
}

/// The `kubernetes` platform: without a cluster configured a deploy stops before anything,
/// saying which key to set; with one, a dry run shows the `kubectl` command line and the
/// manifests it would apply (images by digest from the configured registry, Secrets left
/// out), and those manifests pass `kubernetes-validate --strict`.
#[test]
fn kubernetes_deploys_name_their_cluster_and_apply_valid_manifests() {
    let test = crate::playbooks::deployed();
    let app = test.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    crate::deploy::sample_repo(&app);
    let config = |extra: &str| {
        format!(
            r#"{{"deployment_platform": "kubernetes", {extra}
  "projects": {{"hostomatic": {{"services": {{
    "backend": {{"containerfile_path": "backend/Dockerfile", "secrets": ["db_password"], "health_path": "/health"}},
    "frontend": {{"containerfile_path": "frontend/Dockerfile"}},
    "worker_email": {{"type": "worker", "containerfile_path": "workers/Dockerfile", "command": "python email_processor.py"}},
    "scheduler": {{"type": "worker", "containerfile_path": "scheduler/Dockerfile", "command": "python cron_scheduler.py", "singleton": true}}
  }}}}}}}}"#
        )
    };
    let secrets = [("HOSTOMATIC_UAT_DB_PASSWORD", "k8s-canary-19")];
    let deploy = [
        "--dry-run",
        "deploy-uat",
        "hostomatic",
        "--local",
        "--project-path",
        "app",
    ];

    test.write(
        "config/deployment_config.json",
        &config(r#""registry": "registry.example.com/team","#),
    );
    let out = crate::orchestrate::run(&test, &deploy, &secrets);
    assert_eq!(out.code, 2, "{}", crate::orchestrate::describe(&out));
    assert!(
        out.stderr
            .contains("no cluster is configured: set \"kubernetes_context\""),
        "{}",
        out.stderr
    );
    test.write(
        "config/deployment_config.json",
        &config(r#""kubernetes_context": "prod-cluster","#),
    );
    let out = crate::orchestrate::run(&test, &deploy, &secrets);
    assert_eq!(out.code, 2, "{}", crate::orchestrate::describe(&out));
    assert!(out.stderr.contains("set \"registry\""), "{}", out.stderr);

    test.write(
        "config/deployment_config.json",
        &config(
            r#""kubernetes_context": "prod-cluster", "registry": "registry.example.com/team","#,
        ),
    );
    let out = crate::orchestrate::run(&test, &deploy, &secrets);
    assert_eq!(out.code, 0, "{}", crate::orchestrate::describe(&out));
    let marker = "[dry-run] would `kubectl --context prod-cluster apply --filename -` these manifests (and one Secret per service, not shown):\n";
    let start = out
        .stdout
        .find(marker)
        .unwrap_or_else(|| panic!("{}", out.stdout))
        + marker.len();
    let manifests: String = out.stdout[start..]
        .lines()
        .take_while(|l| !l.starts_with("[dry-run]"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        manifests.contains("image: \"registry.example.com/team/hostomatic-backend@sha256:"),
        "{manifests}"
    );
    assert!(!out.stdout.contains("k8s-canary-19") && !out.stderr.contains("k8s-canary-19"));
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    test.write("k8s-plan.yaml", &manifests);
    let report = check(
        &validate,
        &["--strict", "-k", KUBERNETES_VERSION, "k8s-plan.yaml"],
        test.path(),
    );
    for resource in [
        "namespace/hostomatic-uat",
        "deployment/backend",
        "deployment/scheduler",
        "service/backend",
        "service/frontend",
    ] {
        assert!(
            report.contains(&format!("passed for resource {resource} ")),
            "{resource} not validated: {report}"
        );
    }
}
