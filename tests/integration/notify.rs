//! `infra notify test` against real servers: email through aiosmtpd (Debian's
//! `python3-aiosmtpd`) over plain SMTP, STARTTLS with AUTH and implicit TLS, with certificates
//! made here and trusted through `smtp.ca_file`; texts through a local stand-in for Twilio's
//! API (a provider cannot exist here) that checks the form fields and the basic auth.
//!
//! Without aiosmtpd the email tests are skipped with a notice, unless `INFRA_REQUIRE_TOOLS=1`
//! (set by CI), which makes that a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

use crate::harness::{exit_code, Output, Test, BIN, PATIENCE};

/// Debian's python, where `python3-aiosmtpd` installs; then whatever `python3` is.
const PYTHONS: &[&str] = &["/usr/bin/python3", "python3"];

/// The SMTP server: one JSON file per message received in the output directory; AUTH checks
/// `SMTP_TEST_USER` / `SMTP_TEST_PASSWORD` from its environment when both are set.
const SERVER: &str = r#"
import json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

mode, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
user = os.environ.get("SMTP_TEST_USER")
password = os.environ.get("SMTP_TEST_PASSWORD")

class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content": envelope.content.decode("utf-8", "replace"),
            "login": session.auth_data if session.authenticated else None,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
        }
        path = os.path.join(outdir, "%d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    login = auth_data.login.decode()
    ok = login == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=login)

kwargs = {"server_hostname": "localhost"}
if mode != "none":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    if mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    else:
        kwargs.update(ssl_context=context)
if user and password:
    kwargs.update(authenticator=authenticator, auth_required=True)
host = os.environ.get("SMTP_TEST_HOST", "127.0.0.1")
controller = Controller(Handler(), hostname=host, port=port, **kwargs)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

/// A python that can import aiosmtpd, or `None` (with a notice) when there is none. Under
/// `INFRA_REQUIRE_TOOLS=1` a missing aiosmtpd fails the test instead.
pub(crate) fn aiosmtpd_python() -> Option<&'static str> {
    for python in PYTHONS {
        let works = Command::new(python)
            .args(["-c", "import aiosmtpd.controller"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(python);
        }
    }
    let install = "apt-get install -y python3-aiosmtpd";
    if std::env::var("INFRA_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("aiosmtpd is not installed and INFRA_REQUIRE_TOOLS=1 requires it; install it with `{install}`");
    }
    eprintln!("skipped: aiosmtpd is not installed (install it with `{install}`; INFRA_REQUIRE_TOOLS=1 makes this a failure)");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files in `dir`:
/// `ca.pem`, `server.pem`, `server-key.pem`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "infra test relay CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write server.pem");
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).expect("write key");
}

/// aiosmtpd on a free loopback port, stopped when dropped.
pub(crate) struct SmtpServer {
    child: Child,
    port: u16,
    mailbox: tempfile::TempDir,
}

impl SmtpServer {
    /// `mode` is `none`, `starttls` or `tls` (then `tls_dir` holds the certificates);
    /// `auth`, when given, is the only user and password the server accepts.
    fn start(
        python: &str,
        mode: &str,
        tls_dir: Option<&Path>,
        auth: Option<(&str, &str)>,
    ) -> SmtpServer {
        SmtpServer::start_on(python, "127.0.0.1", mode, tls_dir, auth)
    }

    /// [`SmtpServer::start`] on `host` (the sandbox droplets' gateway, for their monitors).
    pub(crate) fn start_on(
        python: &str,
        host: &str,
        mode: &str,
        tls_dir: Option<&Path>,
        auth: Option<(&str, &str)>,
    ) -> SmtpServer {
        let mailbox = tempfile::tempdir().expect("mailbox dir");
        let script = mailbox.path().join("server.py");
        std::fs::write(&script, SERVER).expect("write server.py");
        let outdir = mailbox.path().join("messages");
        std::fs::create_dir(&outdir).expect("messages dir");
        let port = free_port();
        let mut command = Command::new(python);
        command
            .arg(&script)
            .arg(mode)
            .arg(port.to_string())
            .arg(&outdir);
        if let Some(dir) = tls_dir {
            command
                .arg(dir.join("server.pem"))
                .arg(dir.join("server-key.pem"));
        }
        if let Some((user, password)) = auth {
            command
                .env("SMTP_TEST_USER", user)
                .env("SMTP_TEST_PASSWORD", password);
        }
        let mut child = command
            .env("SMTP_TEST_HOST", host)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(mailbox.path().join("server.log")).expect("log"))
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        if line.trim() != "ready" {
            let log =
                std::fs::read_to_string(mailbox.path().join("server.log")).unwrap_or_default();
            panic!("aiosmtpd did not start within {PATIENCE:?}: {line:?}\n{log}");
        }
        SmtpServer {
            child,
            port,
            mailbox,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The messages received so far, in order.
    pub(crate) fn messages(&self) -> Vec<Value> {
        let dir = self.mailbox.path().join("messages");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("messages dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("JSON")
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `infra ARGS` in the project with `vars` set (and no inherited SMTP or Twilio ones).
fn infra(test: &Test, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(test.path());
    for var in [
        "SMTP_PASSWORD",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    let out = command.stdin(Stdio::null()).output().expect("run infra");
    Output {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: exit_code(out.status),
    }
}

fn email_config(port: u16, security: &str, extra: &str) -> String {
    format!(
        r#"{{
  "enabled": true,
  "smtp": {{"host": "127.0.0.1", "port": {port}, "security": "{security}"{extra}}},
  "from": "infra@example.com",
  "recipients": ["ops@example.com", "oncall@example.com"]
}}
"#
    )
}

/// The headers and body of a received message.
fn split_message(content: &str) -> (String, String) {
    let content = content.replace("\r\n", "\n");
    let (headers, body) = content
        .split_once("\n\n")
        .expect("headers, blank line, body");
    (headers.to_string(), body.to_string())
}

fn assert_test_email(message: &Value) {
    assert_eq!(message["mail_from"], "infra@example.com", "{message}");
    assert_eq!(
        message["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"]),
        "{message}"
    );
    let (headers, body) = split_message(message["content"].as_str().expect("content"));
    assert!(
        headers
            .lines()
            .any(|l| l == "Subject: [test] [infra] heartbeat from master: 0 droplets, 0 services"),
        "{headers}"
    );
    assert!(body.starts_with("Heartbeat from master at "), "{body}");
    assert!(body.contains("The next one is due in 60 minutes"), "{body}");
}

#[test]
fn a_test_email_arrives_over_plain_smtp() {
    let Some(python) = aiosmtpd_python() else {
        return;
    };
    let server = SmtpServer::start(python, "none", None, None);
    let test = Test::init();
    test.write(
        "config/email_config.json",
        &email_config(server.port, "none", ""),
    );
    let out = infra(&test, &["notify", "test", "--email"], &[]);
    out.assert_success().assert_stdout(&format!(
        "email: sent to ops@example.com, oncall@example.com through 127.0.0.1:{} (none)\n",
        server.port
    ));
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_test_email(&messages[0]);
    assert_eq!(messages[0]["tls"], false);
}

#[test]
fn a_test_email_arrives_over_starttls_with_the_password_from_the_environment() {
    let Some(python) = aiosmtpd_python() else {
        return;
    };
    let test = Test::init();
    let tls = test.path().join("config");
    certificates(&tls);
    let password = "pa55-w0rd-not-in-any-output";
    let server = SmtpServer::start(
        python,
        "starttls",
        Some(&tls),
        Some(("alerts@example.com", password)),
    );
    test.write(
        "config/email_config.json",
        &email_config(
            server.port,
            "starttls",
            r#", "username": "alerts@example.com", "password_env": "SMTP_PASSWORD", "ca_file": "ca.pem""#,
        ),
    );

    // The variable unset: a clear error naming it, nothing sent.
    let unset = infra(&test, &["notify", "test", "--email"], &[]);
    unset.assert_code(1).assert_stderr_contains(
        "smtp.password_env names `SMTP_PASSWORD`, which is not set; export the SMTP password in `SMTP_PASSWORD` where infra runs",
    );
    assert!(server.messages().is_empty());

    // A wrong password: the server refuses the login; no password in the output.
    let wrong = infra(
        &test,
        &["notify", "test", "--email"],
        &[("SMTP_PASSWORD", "wrong-secret-value")],
    );
    wrong
        .assert_code(1)
        .assert_stderr_contains("error: the test alert failed on email\n")
        .assert_stderr_contains("the server refused the login");
    assert!(!format!("{}{}", wrong.stdout, wrong.stderr).contains("wrong-secret-value"));
    assert!(server.messages().is_empty());

    let out = infra(
        &test,
        &["notify", "test", "--email"],
        &[("SMTP_PASSWORD", password)],
    );
    out.assert_success().assert_stdout(&format!(
        "email: sent to ops@example.com, oncall@example.com through 127.0.0.1:{} (starttls)\n",
        server.port
    ));
    assert!(!format!("{}{}", out.stdout, out.stderr).contains(password));
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_test_email(&messages[0]);
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], "alerts@example.com");
}

#[test]
fn a_test_email_arrives_over_implicit_tls_and_an_untrusted_certificate_is_refused() {
    let Some(python) = aiosmtpd_python() else {
        return;
    };
    let test = Test::init();
    let tls = test.path().join("config");
    certificates(&tls);
    let server = SmtpServer::start(python, "tls", Some(&tls), None);

    // Without the CA file, the relay's certificate is not trusted.
    test.write(
        "config/email_config.json",
        &email_config(server.port, "tls", ""),
    );
    let untrusted = infra(&test, &["notify", "test", "--email"], &[]);
    untrusted
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "email: sending through 127.0.0.1:{} (tls) failed: ",
            server.port
        ))
        .assert_stderr_contains("`smtp.ca_file` for a private CA");
    assert!(server.messages().is_empty());

    test.write(
        "config/email_config.json",
        &email_config(server.port, "tls", r#", "ca_file": "ca.pem""#),
    );
    infra(&test, &["notify", "test", "--email"], &[]).assert_success();
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_test_email(&messages[0]);
    assert_eq!(messages[0]["tls"], true);
}

#[test]
fn a_dry_run_renders_the_test_email_and_sends_nothing() {
    let test = Test::init();
    test.write(
        "config/email_config.json",
        &email_config(free_port(), "none", ""),
    );
    let out = infra(&test, &["--dry-run", "notify", "test", "--email"], &[]);
    out.assert_success()
        .assert_stdout_contains("email: would send through 127.0.0.1:")
        .assert_stdout_contains(
            " (none) to ops@example.com, oncall@example.com\nSubject: [test] [infra] heartbeat from master: 0 droplets, 0 services\n\nHeartbeat from master at ",
        );
    let json = infra(&test, &["--dry-run", "--json", "notify", "test"], &[]).json();
    assert_eq!(json["email"]["status"], "would_send");
    assert_eq!(json["key"], "heartbeat/master/test");
    assert_eq!(
        json["email"]["to"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(
        json["email"]["subject"],
        "[test] [infra] heartbeat from master: 0 droplets, 0 services"
    );
    assert_eq!(json["sms"]["status"], "not_sent");
    assert_eq!(
        json["sms"]["reason"],
        "disabled in config/sms_config.json (\"enabled\": false)"
    );
}

#[test]
fn disabled_channels_say_so_and_fail_only_when_asked_for() {
    let test = Test::init();
    infra(&test, &["notify", "test"], &[])
        .assert_success()
        .assert_stdout(
            "email: not sent: disabled in config/email_config.json (\"enabled\": false)\n\
             sms: not sent: disabled in config/sms_config.json (\"enabled\": false)\n",
        );
    infra(&test, &["notify", "test", "--sms"], &[])
        .assert_code(1)
        .assert_stderr(
            "error: the test alert failed on sms\n\
             error: sms: asked for, but disabled in config/sms_config.json (\"enabled\": false)\n",
        );
}

/// What the stand-in for Twilio received: path, Authorization header and form fields.
type Received = Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>;

/// A stand-in for Twilio's Messages API on a free loopback port, answering `status`.
fn twilio(status: u16) -> (String, Received) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::post;

    let received: Received = Arc::default();
    let seen = received.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                    let seen = seen.clone();
                    async move {
                        let form: Vec<(String, String)> = reqwest::Url::parse(&format!(
                            "http://form/?{}",
                            String::from_utf8_lossy(&body)
                        ))
                        .expect("form")
                        .query_pairs()
                        .into_owned()
                        .collect();
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        seen.lock()
                            .expect("received")
                            .push((uri.path().to_string(), auth, form));
                        let reply = if status == 201 {
                            r#"{"sid": "SM0001", "status": "queued"}"#
                        } else {
                            r#"{"code": 20003, "message": "Authenticate", "status": 401}"#
                        };
                        (StatusCode::from_u16(status).expect("status"), reply)
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv_timeout(PATIENCE).expect("the stand-in started");
    (format!("http://{addr}/2010-04-01"), received)
}

fn sms_config(api_url: &str) -> String {
    format!(
        r#"{{
  "enabled": true,
  "provider": "twilio",
  "api_url": "{api_url}",
  "account_sid_env": "TWILIO_ACCOUNT_SID",
  "auth_token_env": "TWILIO_AUTH_TOKEN",
  "from": "+447700900000",
  "recipients": ["+447700900123", "+447700900456"]
}}
"#
    )
}

/// The Authorization header basic auth with `user` and `password` makes.
fn basic_auth(user: &str, password: &str) -> String {
    let request = reqwest::Client::new()
        .get("http://example.com")
        .basic_auth(user, Some(password))
        .build()
        .expect("request");
    request.headers()["authorization"]
        .to_str()
        .expect("header")
        .to_string()
}

const SID: &str = "AC0123456789abcdef";
const TOKEN: &str = "tw-token-secret-value";

#[test]
fn a_test_text_goes_to_twilio_as_a_form_with_basic_auth() {
    let (api_url, received) = twilio(201);
    let test = Test::init();
    test.write("config/sms_config.json", &sms_config(&api_url));
    let out = infra(
        &test,
        &["notify", "test", "--sms"],
        &[("TWILIO_ACCOUNT_SID", SID), ("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    out.assert_success().assert_stdout(&format!(
        "sms: sent to +447700900123, +447700900456 through twilio at {api_url}\n"
    ));
    let mut got = received.lock().expect("received").clone();
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(got.len(), 2, "{got:?}");
    for ((path, auth, form), to) in got.iter().zip(["+447700900123", "+447700900456"]) {
        assert_eq!(path, &format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        assert_eq!(auth, &basic_auth(SID, TOKEN));
        assert_eq!(
            form,
            &vec![
                ("To".to_string(), to.to_string()),
                ("From".to_string(), "+447700900000".to_string()),
                (
                    "Body".to_string(),
                    "[infra] test alert from `infra notify test`: 0 droplets, 0 services"
                        .to_string()
                ),
            ]
        );
    }
}

#[test]
fn a_refused_text_fails_naming_the_channel_without_the_credentials() {
    let (api_url, received) = twilio(401);
    let test = Test::init();
    test.write("config/sms_config.json", &sms_config(&api_url));
    let out = infra(
        &test,
        &["notify", "test", "--sms"],
        &[("TWILIO_ACCOUNT_SID", SID), ("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    out.assert_code(1)
        .assert_stderr_contains("error: the test alert failed on sms\n")
        .assert_stderr_contains(&format!(
            "text to +447700900123 through twilio at {api_url} failed: HTTP 401 Unauthorized: Authenticate; check the credentials"
        ));
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains(SID) && !all.contains(TOKEN), "{all}");
    assert_eq!(received.lock().expect("received").len(), 2);

    // The variables unset: the error names the one missing, and nothing is sent.
    infra(&test, &["notify", "test", "--sms"], &[])
        .assert_code(1)
        .assert_stderr_contains(
            "config/sms_config.json: account_sid_env names `TWILIO_ACCOUNT_SID`, which is not set",
        );
    assert_eq!(received.lock().expect("received").len(), 2);
}

const ALERT_PLAYBOOK: &str = r#"
let report = send_alert(#{kind: "failure", droplet: "hostomatic-web1", incident: "epoch-3", error: "no answer to 3 probes"});
log("sms " + report.sms.status);
"#;

#[test]
fn a_playbook_alert_is_texted_once_per_event() {
    let (api_url, received) = twilio(201);
    let test = Test::init();
    test.write("config/sms_config.json", &sms_config(&api_url));
    test.write("alert.rhai", ALERT_PLAYBOOK);
    let vars = [("TWILIO_ACCOUNT_SID", SID), ("TWILIO_AUTH_TOKEN", TOKEN)];

    let dry = infra(&test, &["--dry-run", "run", "alert.rhai"], &vars);
    dry.assert_success()
        .assert_stdout_contains("[dry-run] would send the alert failure/hostomatic-web1/epoch-3\n")
        .assert_stderr_contains("sms would_send");
    assert!(received.lock().expect("received").is_empty());

    let first = infra(&test, &["run", "alert.rhai"], &vars);
    first
        .assert_success()
        .assert_stdout_contains("alert failure/hostomatic-web1/epoch-3: email not sent: disabled in config/email_config.json (\"enabled\": false); sms sent to +447700900123, +447700900456\n")
        .assert_stderr_contains("sms sent");
    let got = received.lock().expect("received").clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0].2[2],
        (
            "Body".to_string(),
            "[infra] ALERT hostomatic-web1 failed: no answer to 3 probes".to_string()
        )
    );

    // Run again (a restarted monitor, a re-run recovery): the same event is not sent twice.
    infra(&test, &["run", "alert.rhai"], &vars)
        .assert_success()
        .assert_stderr_contains("sms suppressed");
    assert_eq!(received.lock().expect("received").len(), 2);
}
