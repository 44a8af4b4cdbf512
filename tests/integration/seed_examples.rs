//! The product spec's JSON examples (copied verbatim into `tests/fixtures/seed/`) load, and save
//! back byte for byte: unchanged, and after an edit that is then undone, both through the
//! library and through the binary.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use infra::document::Document;
use infra::state::{ServiceKind, ServiceRecord, State};

use crate::harness::Test;

/// Every JSON example of the spec, in the order it shows them.
const EXAMPLES: &[&str] = &[
    "dataflow_input_infrastructure.json",
    "dataflow_output_state.json",
    "quickstart_infrastructure.json",
    "quickstart_deployment_config.json",
    "reference_infrastructure.json",
    "reference_deployment_config.json",
    "custom_worker_services.json",
];

/// The examples that are whole state files (`config/infrastructure.json`).
const STATE_EXAMPLES: &[&str] = &[
    "dataflow_input_infrastructure.json",
    "dataflow_output_state.json",
    "quickstart_infrastructure.json",
    "reference_infrastructure.json",
];

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse(name: &str, text: &str) -> Document {
    Document::parse(Path::new(name), name, text).unwrap_or_else(|e| panic!("{e}"))
}

/// Saves `edit` of `text`, reads the result back, undoes the edit and saves again: the second
/// save must give `text` back exactly. Returns the intermediate (edited) text.
fn edit_then_undo(
    name: &str,
    text: &str,
    edit: impl FnOnce(&mut Value),
    undo: impl FnOnce(&mut Value),
) -> String {
    let mut doc = parse(name, text);
    edit(&mut doc.value);
    let edited = doc.render();
    assert_ne!(edited, text, "{name}: the edit changed nothing");
    let mut doc = parse(name, &edited);
    undo(&mut doc.value);
    let restored = doc.render();
    assert_eq!(
        restored, text,
        "{name}: edit then undo did not restore the bytes; edited text was:\n{edited}"
    );
    edited
}

#[test]
fn every_seed_example_is_json_and_renders_unchanged() {
    for name in EXAMPLES {
        let text = fixture(name);
        let doc = parse(name, &text);
        assert!(doc.value.is_object(), "{name}: not an object");
        assert_eq!(doc.render(), text, "{name}: an unchanged document changed");
    }
}

/// Whitespace the layout engine does not model (the spec's quickstart deployment config has a
/// space after one comma) is kept only while the document is unchanged.
#[test]
fn seed_examples_survive_a_top_level_edit_and_undo() {
    for name in EXAMPLES
        .iter()
        .filter(|n| **n != "quickstart_deployment_config.json")
    {
        let text = fixture(name);
        let edited = edit_then_undo(
            name,
            &text,
            |v| {
                v.as_object_mut()
                    .unwrap()
                    .insert("note".into(), json!({"by": "test", "tags": ["a", "b"]}));
            },
            |v| {
                v.as_object_mut().unwrap().shift_remove("note");
            },
        );
        // The new key follows the file's own layout: two-space indent, scalar lists inline.
        assert!(
            edited.ends_with(
                "  },\n  \"note\": {\n    \"by\": \"test\",\n    \"tags\": [\"a\", \"b\"]\n  }\n}\n"
            ),
            "{name}: the new key is not laid out like the rest:\n{edited}"
        );
    }
}

#[test]
fn seed_examples_survive_nested_edits_and_undo() {
    // A nested object written on one line stays on one line (the data-flow output's droplets).
    let name = "dataflow_output_state.json";
    let text = fixture(name);
    let edited = edit_then_undo(
        name,
        &text,
        |v| v["droplets"]["master"]["monitors"] = json!(["hostomatic-web1"]),
        |v| {
            v["droplets"]["master"]
                .as_object_mut()
                .unwrap()
                .shift_remove("monitors");
        },
    );
    assert!(
        edited.contains(
            "\"master\": {\"ip\": \"192.168.1.10\", \"role\": \"master\", \"monitors\": [\"hostomatic-web1\"]},\n"
        ),
        "{edited}"
    );

    // A deployment config gains and loses a worker.
    let name = "reference_deployment_config.json";
    let text = fixture(name);
    let custom: Value = serde_json::from_str(&fixture("custom_worker_services.json")).unwrap();
    edit_then_undo(
        name,
        &text,
        |v| {
            v["projects"]["hostomatic"]["services"]["worker_custom"] =
                custom["worker_custom"].clone()
        },
        |v| {
            v["projects"]["hostomatic"]["services"]
                .as_object_mut()
                .unwrap()
                .shift_remove("worker_custom");
        },
    );
}

#[test]
fn state_api_edits_of_seed_state_examples_undo_to_the_same_bytes() {
    for name in STATE_EXAMPLES {
        let text = fixture(name);
        let mut state = State::from_document(parse(name, &text));
        // Editing creates a missing section, which then stays (empty): only examples that
        // have the section can come back byte for byte.
        let has = |key: &str| state.value().get(key).is_some();
        let (has_spec, has_runtime) = (
            has("infrastructure_spec"),
            has("droplets") && has("projects"),
        );
        assert!(has_spec || has_runtime, "{name}");

        if has_spec {
            state
                .add_project_spec("shop", &["prod".into(), "uat".into()], 2, "s-1vcpu-1gb")
                .unwrap();
            let edited = state.document().render();
            state = State::from_document(parse(name, &edited));
            assert!(state.spec().projects.contains_key("shop"), "{name}");
            state.remove_project_spec("shop").unwrap();
            assert_eq!(
                state.document().render(),
                text,
                "{name}: project add/remove"
            );
        }
        if !has_runtime {
            continue;
        }

        state.add_droplet(
            "shop-web1",
            Some("10.0.0.9"),
            "s-1vcpu-1gb",
            "lon1",
            "web",
            &["master".into()],
            Some("shop"),
        );
        state.add_project_service(
            "shop-prod",
            "backend",
            &ServiceRecord {
                kind: ServiceKind::Web,
                port: Some(8123),
                assigned_droplets: vec!["shop-web1".into()],
            },
        );
        let edited = state.document().render();
        let mut state = State::from_document(parse(name, &edited));
        assert!(
            state.remove_project_service("shop-prod", "backend"),
            "{name}"
        );
        assert!(state.remove_droplet("shop-web1"), "{name}");
        assert_eq!(
            state.document().render(),
            text,
            "{name}: droplet and service add/remove; edited text was:\n{edited}"
        );
    }
}

/// The quick start's state file, and the state `infra init` writes, through the natives that
/// `infra add-project` and `infra remove-project` edit them with (run as playbooks: the commands
/// themselves go on to orchestrate, which `orchestrate.rs` tests on the sandbox).
#[test]
fn add_project_then_remove_project_restores_the_file_exactly() {
    for (label, text) in [
        (
            "seed quick start",
            fixture("quickstart_infrastructure.json"),
        ),
        (
            "init default",
            infra::project::embedded("config/infrastructure.json")
                .unwrap()
                .to_string(),
        ),
    ] {
        let test = Test::new()
            .file("config/infrastructure.json", &text)
            .file(
                "add.rhai",
                "add_project_spec(\"x\", [\"prod\"], 1, \"s-1vcpu-1gb\");\nshow_plan(plan());\n",
            )
            .file(
                "remove.rhai",
                "remove_project_spec(\"x\");\nshow_plan(plan());\n",
            );
        test.infra(["run", "add.rhai"]).assert_success();
        let edited = test.json("config/infrastructure.json");
        assert_eq!(
            edited["infrastructure_spec"]["projects"]["x"],
            json!({"environments": ["prod"], "web_droplets": 1, "web_droplet_spec": "s-1vcpu-1gb"}),
            "{label}"
        );
        test.infra(["run", "remove.rhai"]).assert_success();
        assert_eq!(test.read("config/infrastructure.json"), text, "{label}");
    }
}

#[test]
fn scale_up_then_back_restores_the_file_exactly() {
    let text = fixture("quickstart_infrastructure.json");
    let test = Test::new().file("config/infrastructure.json", &text).file(
        "scale.rhai",
        "scale_project_spec(ARGS[0], parse_int(ARGS[1]));\nshow_plan(plan());\n",
    );
    test.infra(["run", "scale.rhai", "hostomatic", "3"])
        .assert_success();
    assert_eq!(
        test.json("config/infrastructure.json")["infrastructure_spec"]["projects"]["hostomatic"]
            ["web_droplets"],
        3
    );
    test.infra(["run", "scale.rhai", "hostomatic", "2"])
        .assert_success();
    assert_eq!(test.read("config/infrastructure.json"), text);
}

/// The spec's quick start (its infrastructure.json and deployment_config.json) is valid as is.
#[test]
fn quick_start_example_validates() {
    Test::new()
        .file(
            "config/infrastructure.json",
            &fixture("quickstart_infrastructure.json"),
        )
        .file(
            "config/deployment_config.json",
            &fixture("quickstart_deployment_config.json"),
        )
        .args(["validate"])
        .run()
        .assert_success()
        .assert_stderr("")
        .assert_stdout(
            "valid: config/infrastructure.json, config/deployment_config.json (2 projects, 4 droplets and 12 services in the spec)\n",
        );
}

/// The data-flow output (runtime state only) is a valid state that `infra status` reads.
#[test]
fn data_flow_output_example_validates() {
    Test::new()
        .file(
            "config/infrastructure.json",
            &fixture("dataflow_output_state.json"),
        )
        .args(["validate"])
        .run()
        .assert_success()
        .assert_stderr("");
}

/// The spec's data-flow example asks for hostomatic's droplets without naming a master and
/// says orchestrate creates "master, hostomatic-web1, hostomatic-web2" from it.
#[test]
fn data_flow_input_example_validates() {
    Test::new()
        .file(
            "config/infrastructure.json",
            &fixture("dataflow_input_infrastructure.json"),
        )
        .args(["validate"])
        .run()
        .assert_success();
}
