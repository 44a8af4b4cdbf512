//! `infra run --watch FILE`: edits re-run the playbook; a broken edit is reported and does not
//! stop the watch; editing an imported module re-runs too. Each step waits for the line it
//! expects on stderr (bounded by the harness's patience), never for a fixed time.

use crate::harness::{Running, Test};

/// Waits until the watcher says it is watching again (after a run or a failed compile).
fn settled(watcher: &mut Running) {
    watcher.wait_for_line("starting with `watching `", |l| l.starts_with("watching "));
}

#[test]
fn editing_the_playbook_reruns_it_and_a_broken_edit_keeps_the_watch_going() {
    let test = Test::new().file("w.rhai", "log(\"version 1\");\n");
    let mut watcher = test.spawn(["run", "--watch", "w.rhai"]);
    watcher.wait_for("version 1");
    settled(&mut watcher);

    test.write("w.rhai", "log(\"version 2\");\n");
    watcher.wait_for("version 2");
    settled(&mut watcher);

    test.write("w.rhai", "log(\"version 3\" +);\n");
    watcher.wait_for("error: w.rhai:1:18: unexpected ')'");
    watcher.wait_for("1 | log(\"version 3\" +);");
    watcher.wait_for("warning: keeping the previous version of `w.rhai`");
    settled(&mut watcher);

    test.write("w.rhai", "log(\"version 4\");\n");
    watcher.wait_for("version 4");
    settled(&mut watcher);

    watcher.signal("INT");
    let rest = watcher.finish();
    // The broken version never ran.
    assert!(
        !rest.stderr.lines().any(|l| l == "version 3"),
        "{}",
        rest.stderr
    );
}

#[test]
fn a_failing_run_is_reported_and_the_watch_goes_on() {
    let test = Test::new().file("w.rhai", "fail(\"first try\");\n");
    let mut watcher = test.spawn(["run", "--watch", "w.rhai"]);
    watcher.wait_for("error: w.rhai:1:1: first try");
    settled(&mut watcher);

    test.write("w.rhai", "log(\"second try\");\n");
    watcher.wait_for("second try");
    settled(&mut watcher);
    watcher.signal("INT");
    watcher.finish();
}

#[test]
fn editing_an_imported_project_module_reruns_the_playbook() {
    let test = Test::new()
        .file("stdlib/marker.rhai", "fn tag() {\n    \"m1\"\n}\n")
        .file(
            "w.rhai",
            "import \"marker\" as marker;\nlog(\"tag \" + marker::tag());\n",
        );
    let mut watcher = test.spawn(["run", "--watch", "w.rhai"]);
    watcher.wait_for("tag m1");
    settled(&mut watcher);

    test.write("stdlib/marker.rhai", "fn tag() {\n    \"m2\"\n}\n");
    watcher.wait_for("tag m2");
    settled(&mut watcher);

    // A module that stops compiling is reported at its own file and line.
    test.write("stdlib/marker.rhai", "fn tag( {\n    \"m3\"\n}\n");
    watcher.wait_for_line("starting with `error: stdlib/marker.rhai:1:`", |l| {
        l.starts_with("error: stdlib/marker.rhai:1:")
    });
    watcher.wait_for("warning: keeping the previous version of `w.rhai`");
    settled(&mut watcher);

    test.write("stdlib/marker.rhai", "fn tag() {\n    \"m4\"\n}\n");
    watcher.wait_for("tag m4");
    settled(&mut watcher);

    watcher.signal("INT");
    let rest = watcher.finish();
    assert!(
        !rest.stderr.lines().any(|l| l == "tag m3"),
        "{}",
        rest.stderr
    );
}

/// After a broken edit of the playbook, the modules of the last good version are still watched.
#[test]
fn modules_stay_watched_while_the_playbook_is_broken() {
    let test = Test::new()
        .file("stdlib/marker.rhai", "fn tag() {\n    \"m1\"\n}\n")
        .file(
            "w.rhai",
            "import \"marker\" as marker;\nlog(\"tag \" + marker::tag());\n",
        );
    let mut watcher = test.spawn(["run", "--watch", "w.rhai"]);
    watcher.wait_for("tag m1");
    watcher.wait_for("watching 2 file(s) for changes (Ctrl-C to stop)");
    test.write(
        "w.rhai",
        "import \"marker\" as marker;\nlog(\"tag \" + );\n",
    );
    watcher.wait_for("warning: keeping the previous version of `w.rhai`");
    watcher.wait_for("watching 2 file(s) for changes (Ctrl-C to stop)");
    watcher.signal("INT");
    watcher.finish();
}
