//! `infra exec TARGET -- COMMAND` and the `ssh`/`ssh_all` natives, on sandbox droplets: every
//! targeted droplet runs the command, its output comes back prefixed by its name, a failure
//! anywhere fails the command naming the droplet, and a dry run runs nothing.

use crate::orchestrate::{describe, edit_spec, Sandbox, SMALL_SPEC};

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_on_every_target_and_names_failures() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);

    let all = sandbox.ok(&["exec", "all", "--", "hostname"]);
    assert_eq!(
        all.stdout,
        "master | master\nhostomatic-web1 | hostomatic-web1\n",
        "{}",
        describe(&all)
    );
    // A role, a project, one droplet.
    for (target, expected) in [
        ("web", "hostomatic-web1 | hostomatic-web1\n"),
        ("hostomatic", "hostomatic-web1 | hostomatic-web1\n"),
        ("master", "master | master\n"),
    ] {
        let out = sandbox.ok(&["exec", target, "--", "hostname"]);
        assert_eq!(out.stdout, expected, "{target}: {}", describe(&out));
    }

    let failing = sandbox.infra(&["exec", "all", "--", "test", "$(hostname)", "=", "master"]);
    assert_eq!(failing.code, 1, "{}", describe(&failing));
    assert!(
        failing
            .stderr
            .contains("error: 1 of 2 droplets failed: hostomatic-web1 (exit status 1)"),
        "{}",
        describe(&failing)
    );
    assert!(
        failing.stdout.contains("hostomatic-web1 ! exit status 1"),
        "{}",
        describe(&failing)
    );

    let json = sandbox.ok(&["--json", "exec", "master", "--", "echo out; echo err >&2"]);
    let line: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(line["droplet"], "master");
    assert_eq!(line["ok"], true);
    assert_eq!(line["stdout"], "out\n");
    assert_eq!(line["stderr"], "err\n");

    let unknown = sandbox.infra(&["exec", "nosuch", "--", "true"]);
    assert_eq!(unknown.code, 2, "{}", describe(&unknown));
    assert!(
        unknown.stderr.contains(
            "no droplet matches `nosuch`; name `all`, a role (master, web), a project or a droplet (master, hostomatic-web1)"
        ),
        "{}",
        describe(&unknown)
    );

    // A dry run runs nothing.
    let dry = sandbox.ok(&["--dry-run", "exec", "all", "--", "touch", "/root/touched"]);
    assert_eq!(
        dry.stdout,
        "[dry-run] would run `touch /root/touched` on master, hostomatic-web1\n"
    );
    let check = sandbox.ok(&[
        "exec",
        "all",
        "--",
        "test ! -e /root/touched && echo absent",
    ]);
    assert_eq!(check.stdout, "master | absent\nhostomatic-web1 | absent\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn playbooks_run_commands_with_ssh_and_ssh_all() {
    let Some(sandbox) = Sandbox::up(&[]) else {
        return;
    };
    edit_spec(&sandbox, SMALL_SPEC, &[]);
    sandbox.ok(&["orchestrate"]);
    sandbox.test.write(
        "remote.rhai",
        r#"// A dry run runs nothing, so there is nothing to check then.
let one = ssh("master", "hostname");
if !dry_run() && one.stdout != "master\n" { fail(`ssh gave ${one.stdout}`); }
let all = ssh_all("all", "echo $((6 * 7))");
if !dry_run() && (all.len() != 2 || all["hostomatic-web1"].stdout != "42\n") { fail(`ssh_all gave ${all}`); }
ssh_all(["hostomatic-web1"], "hostname");
ssh("hostomatic-web1", "exit 4");
"#,
    );
    let out = sandbox.infra(&["run", "remote.rhai"]);
    assert_eq!(out.code, 1, "{}", describe(&out));
    assert!(
        out.stdout.contains("master | master\n") && out.stdout.contains("hostomatic-web1 | 42\n"),
        "{}",
        describe(&out)
    );
    assert!(
        out.stderr
            .contains("`exit 4` failed on hostomatic-web1 (exit status 4)"),
        "{}",
        describe(&out)
    );
    let dry = sandbox.ok(&["--dry-run", "run", "remote.rhai"]);
    assert!(
        dry.stdout
            .contains("[dry-run] would run `exit 4` on hostomatic-web1"),
        "{}",
        describe(&dry)
    );
}
