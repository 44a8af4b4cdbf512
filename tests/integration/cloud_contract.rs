//! The DigitalOcean client against its contract (`tests/fixtures/digitalocean/`): every example
//! body decodes into the client's types, every body the client can send validates against the
//! operation's request schema, and every request the client makes names an operation of the
//! contract with valid parameters.

mod client_behaviour;
mod responder;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use infra::cloud::*;

use crate::openapi::{fixtures_dir, report, Options, Spec};
use responder::{Reply, Responder};

/// The token every test client uses; tests assert it never shows up in errors.
pub const TOKEN: &str = "dop_v1_do-not-print-this-token-0123456789";

/// Retries without real waiting, so tests stay fast.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_rate_limit_wait: Duration::from_secs(2),
    }
}

pub fn client_for(responder: &Responder) -> Client {
    Client::new(&responder.url(), Token::new(TOKEN).unwrap(), fast_policy()).unwrap()
}

/// The text of `examples/<name>`.
pub fn example(name: &str) -> String {
    let path = fixtures_dir().join("examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn example_json(name: &str) -> Value {
    serde_json::from_str(&example(name)).unwrap()
}

// Examples ----------------------------------------------------------------------------------------

/// Where an example belongs: the operation, the status (`None` for a request body) and the type
/// it must decode into (given as a function that decodes and re-encodes it).
struct ExampleCase {
    file: &'static str,
    method: &'static str,
    template: &'static str,
    status: Option<u16>,
    decode: fn(&str) -> Result<Value, String>,
}

fn roundtrip<T: DeserializeOwned + Serialize>(text: &str) -> Result<Value, String> {
    let typed: T = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

#[rustfmt::skip]
fn example_cases() -> Vec<ExampleCase> {
    let case = |file, method, template, status, decode| ExampleCase { file, method, template, status, decode };
    vec![
        case("account_get_response.json", "GET", "/v2/account", Some(200), roundtrip::<AccountResponse>),
        case("action_get_response.json", "GET", "/v2/actions/{action_id}", Some(200), roundtrip::<ActionResponse>),
        case("droplet_actions_list_response.json", "GET", "/v2/droplets/{droplet_id}/actions", Some(200), roundtrip::<ActionsPage>),
        case("droplet_create_request.json", "POST", "/v2/droplets", None, roundtrip::<DropletCreate>),
        case("droplet_create_response.json", "POST", "/v2/droplets", Some(202), roundtrip::<DropletCreated>),
        case("droplet_get_response.json", "GET", "/v2/droplets/{droplet_id}", Some(200), roundtrip::<DropletResponse>),
        case("droplet_multi_create_request.json", "POST", "/v2/droplets", None, roundtrip::<DropletMultiCreate>),
        case("droplet_snapshots_list_response.json", "GET", "/v2/droplets/{droplet_id}/snapshots", Some(200), roundtrip::<DropletSnapshotsPage>),
        case("droplets_list_by_tag_response.json", "GET", "/v2/droplets", Some(200), roundtrip::<DropletsPage>),
        case("error_bad_request.json", "POST", "/v2/firewalls", Some(400), roundtrip::<ErrorBody>),
        case("error_not_found.json", "GET", "/v2/droplets/{droplet_id}", Some(404), roundtrip::<ErrorBody>),
        case("error_tags_bad_request.json", "POST", "/v2/tags", Some(400), roundtrip::<ErrorBody>),
        case("error_too_many_requests.json", "GET", "/v2/droplets", Some(429), roundtrip::<ErrorBody>),
        case("firewall_create_request.json", "POST", "/v2/firewalls", None, roundtrip::<FirewallRequest>),
        case("firewall_get_response.json", "GET", "/v2/firewalls/{firewall_id}", Some(200), roundtrip::<FirewallResponse>),
        case("images_list_response.json", "GET", "/v2/images", Some(200), roundtrip::<ImagesPage>),
        case("regions_list_paginated_response.json", "GET", "/v2/regions", Some(200), roundtrip::<RegionsPage>),
        case("reserved_ip_assign_action_response.json", "POST", "/v2/reserved_ips/{reserved_ip}/actions", Some(201), roundtrip::<ActionResponse>),
        case("snapshot_get_response.json", "GET", "/v2/snapshots/{snapshot_id}", Some(200), roundtrip::<SnapshotResponse>),
        case("ssh_key_get_response.json", "GET", "/v2/account/keys/{ssh_key_identifier}", Some(200), roundtrip::<SshKeyResponse>),
        case("ssh_keys_list_response.json", "GET", "/v2/account/keys", Some(200), roundtrip::<SshKeysPage>),
        case("tags_list_response.json", "GET", "/v2/tags", Some(200), roundtrip::<TagsPage>),
    ]
}

/// Whether everything in `original` is in `copy` with the same value; the first difference.
fn keeps(original: &Value, copy: &Value, at: &str) -> Result<(), String> {
    match (original, copy) {
        (Value::Object(a), Value::Object(b)) => {
            a.iter().try_for_each(|(key, value)| match b.get(key) {
                Some(other) => keeps(value, other, &format!("{at}/{key}")),
                None => Err(format!("{at}/{key}")),
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| keeps(x, y, &format!("{at}/{i}"))),
        _ if original == copy => Ok(()),
        _ => Err(format!("{at} ({original} became {copy})")),
    }
}

/// Checks one body against the operation's schema: strictly for requests, leniently for
/// responses (DigitalOcean adds fields over time).
fn check_body(
    spec: &Spec,
    method: &str,
    template: &str,
    status: Option<u16>,
    body: &Value,
) -> Result<(), String> {
    check_body_with(spec, method, template, status, body, Options::response())
}

fn check_body_with(
    spec: &Spec,
    method: &str,
    template: &str,
    status: Option<u16>,
    body: &Value,
    response_options: Options,
) -> Result<(), String> {
    let operation = spec
        .operation(method, template)
        .ok_or_else(|| format!("the contract has no {method} {template}"))?;
    let outcome = match status {
        None => operation.validate_request(body),
        Some(status) => operation.validate_response(status, body, response_options),
    };
    outcome.map_err(|violations| report(&violations))
}

#[test]
fn every_example_decodes_into_its_type_and_validates() {
    let spec = Spec::contract();
    let cases = example_cases();
    let mut failures = Vec::new();

    let files: BTreeSet<String> = std::fs::read_dir(fixtures_dir().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.len() >= 20, "examples missing: {files:?}");
    for file in &files {
        if !cases.iter().any(|case| case.file == file) {
            failures.push(format!(
                "{file}: no entry in example_cases(); say which type it decodes into"
            ));
        }
    }

    for case in &cases {
        let text = example(case.file);
        let original: Value = serde_json::from_str(&text).unwrap();
        let where_ = format!(
            "{} ({} {} {:?})",
            case.file, case.method, case.template, case.status
        );
        if let Err(e) = check_body(spec, case.method, case.template, case.status, &original) {
            failures.push(format!(
                "{where_}: the example itself does not validate:\n{e}"
            ));
        }
        match (case.decode)(&text) {
            Err(e) => failures.push(format!("{where_}: does not decode: {e}")),
            Ok(reencoded) => {
                // What the types write back must still honour the contract, without inventing
                // fields (the sandbox serves these types).
                let strict = Options::response().strict();
                if let Err(e) = check_body_with(
                    spec,
                    case.method,
                    case.template,
                    case.status,
                    &reencoded,
                    strict,
                ) {
                    failures.push(format!("{where_}: re-encoded body does not validate:\n{e}"));
                }
                // A request must not lose or change a value on its way through the type (a
                // response may drop fields infra does not use). Writing out a default the example
                // left implicit (an empty list) is fine.
                let kept = match case.status {
                    None => keeps(&original, &reencoded, ""),
                    Some(_) => Ok(()),
                };
                if let Err(at) = kept {
                    failures.push(format!(
                        "{where_}: a round trip through the type loses {at}:\n{original}\nvs\n{reencoded}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn examples_decode_to_the_values_they_hold() {
    let droplet: DropletResponse =
        serde_json::from_str(&example("droplet_get_response.json")).unwrap();
    let droplet = droplet.droplet;
    assert_eq!(droplet.id, 3164444);
    assert_eq!(droplet.status, DropletStatus::Active);
    assert_eq!(
        droplet.public_ipv4(),
        Some("192.241.165.154".parse().unwrap())
    );
    assert_eq!(
        droplet.private_ipv4(),
        Some("10.128.192.124".parse().unwrap())
    );
    assert_eq!(
        droplet.public_ipv6(),
        Some("2604:a880:0:1010::18a:a001".parse().unwrap())
    );
    assert!(droplet.has_tag("env:prod"));
    assert_eq!(droplet.kernel, None);
    let as_written = serde_json::to_value(&droplet).unwrap();
    let schema = Spec::contract().schema("droplet").unwrap();
    if let Err(v) = Spec::contract().validate(schema, &as_written, Options::response().strict()) {
        panic!(
            "a Droplet as written does not match the `droplet` schema:\n{}",
            report(&v)
        );
    }

    let created: DropletCreated =
        serde_json::from_str(&example("droplet_create_response.json")).unwrap();
    assert_eq!(
        created.droplet.public_ipv4(),
        None,
        "a new droplet has no network yet"
    );
    assert_eq!(created.links.actions[0].id, 7515);

    let snapshot: SnapshotResponse =
        serde_json::from_str(&example("snapshot_get_response.json")).unwrap();
    let listed: DropletSnapshotsPage =
        serde_json::from_str(&example("droplet_snapshots_list_response.json")).unwrap();
    // The same snapshot, once as a string id and once as a number.
    assert_eq!(
        snapshot.snapshot.id,
        SnapshotId::Number(listed.snapshots[0].id)
    );
    assert_eq!(snapshot.snapshot.id.to_image(), ImageRef::Id(6372321));

    let regions: RegionsPage =
        serde_json::from_str(&example("regions_list_paginated_response.json")).unwrap();
    assert_eq!(
        regions.links.next(),
        Some("https://api.digitalocean.com/v2/regions?page=2&per_page=1")
    );
    assert_eq!(regions.meta.unwrap().total, 13);

    let keys: SshKeysPage = serde_json::from_str(&example("ssh_keys_list_response.json")).unwrap();
    assert_eq!(keys.links.next(), None);

    let tags_error: ErrorBody =
        serde_json::from_str(&example("error_tags_bad_request.json")).unwrap();
    assert!(
        tags_error.text().contains("contains invalid characters"),
        "{}",
        tags_error.text()
    );
}

#[test]
fn examples_embedded_in_the_contract_validate() {
    let spec = Spec::contract();
    let mut checked = 0;
    let mut failures = Vec::new();
    let media_examples = |media: &Value| -> Vec<(String, Value)> {
        let mut found = Vec::new();
        if let Some(example) = media.get("example") {
            found.push(("example".to_owned(), example.clone()));
        }
        if let Some(example) = media.get("schema").and_then(|s| s.get("example")) {
            found.push(("schema example".to_owned(), example.clone()));
        }
        for (name, node) in media
            .get("examples")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let node = spec.resolve(node).unwrap();
            if let Some(value) = node.get("value") {
                found.push((name.clone(), value.clone()));
            }
        }
        found
    };
    for operation in spec.operations() {
        let node = operation.node();
        if let Some(body) = node.get("requestBody") {
            let body = spec.resolve(body).unwrap();
            for (name, value) in media_examples(&body["content"]["application/json"]) {
                checked += 1;
                if let Err(v) = operation.validate_request(&value) {
                    failures.push(format!(
                        "{} request {name}:\n{}",
                        operation.name(),
                        report(&v)
                    ));
                }
            }
        }
        for (status, response) in node["responses"].as_object().unwrap() {
            let Ok(code) = status.parse::<u16>() else {
                continue;
            };
            let response = spec.resolve(response).unwrap();
            for (name, value) in media_examples(&response["content"]["application/json"]) {
                checked += 1;
                if let Err(v) = operation.validate_response(code, &value, Options::response()) {
                    failures.push(format!(
                        "{} {status} {name}:\n{}",
                        operation.name(),
                        report(&v)
                    ));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} embedded examples found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// Request bodies ---------------------------------------------------------------------------------

fn web_spec() -> DropletSpec {
    DropletSpec {
        region: Some("nyc3".into()),
        ssh_keys: vec![
            SshKeyRef::Id(289794),
            "3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45".into(),
        ],
        monitoring: Some(true),
        ipv6: Some(false),
        tags: vec!["infra".into(), "hostomatic-web1".into()],
        user_data: Some("#cloud-config\npackages: [docker.io]\n".into()),
        vpc_uuid: Some("760e09ef-dc84-11e8-981e-3cfdfeaae000".into()),
        with_droplet_agent: Some(false),
        ..DropletSpec::new("s-1vcpu-2gb", "ubuntu-22-04-x64")
    }
}

fn firewall_request() -> FirewallRequest {
    FirewallRequest {
        name: "infra-hostomatic".into(),
        inbound_rules: vec![
            InboundRule {
                protocol: Protocol::Tcp,
                ports: "22".into(),
                sources: RuleTarget {
                    addresses: vec!["203.0.113.7/32".into()],
                    ..RuleTarget::default()
                },
            },
            InboundRule {
                protocol: Protocol::Tcp,
                ports: "8000-9999".into(),
                sources: RuleTarget {
                    tags: vec!["infra".into()],
                    droplet_ids: vec![3164444],
                    ..RuleTarget::default()
                },
            },
            InboundRule {
                protocol: Protocol::Icmp,
                ports: "0".into(),
                sources: RuleTarget {
                    addresses: vec!["0.0.0.0/0".into(), "::/0".into()],
                    ..RuleTarget::default()
                },
            },
        ],
        outbound_rules: vec![OutboundRule {
            protocol: Protocol::Udp,
            ports: "0".into(),
            destinations: RuleTarget {
                addresses: vec!["0.0.0.0/0".into(), "::/0".into()],
                ..RuleTarget::default()
            },
        }],
        droplet_ids: vec![3164444, 3164459],
        tags: vec!["infra".into()],
    }
}

fn rules() -> FirewallRules {
    FirewallRules {
        inbound_rules: vec![InboundRule {
            protocol: Protocol::Tcp,
            ports: "443".into(),
            sources: RuleTarget {
                load_balancer_uids: vec!["4de7ac8b-495b-4884-9a69-1050c6793cd6".into()],
                ..RuleTarget::default()
            },
        }],
        outbound_rules: Vec::new(),
    }
}

/// Every request body type the client sends, with realistic values, and where it goes.
fn request_bodies() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    fn to<T: Serialize>(body: &T) -> Value {
        serde_json::to_value(body).unwrap()
    }
    let actions = [
        DropletAction::Snapshot {
            name: "hostomatic-web1-20240501-120000".into(),
        },
        DropletAction::PowerOff,
        DropletAction::PowerOn,
        DropletAction::Shutdown,
        DropletAction::Reboot,
        DropletAction::PowerCycle,
        DropletAction::Resize {
            size: "s-2vcpu-4gb".into(),
            disk: true,
        },
        DropletAction::Rebuild {
            image: ImageRef::Id(6372321),
        },
        DropletAction::Rebuild {
            image: "ubuntu-22-04-x64".into(),
        },
    ];
    let mut bodies = vec![
        (
            "droplet create",
            "POST",
            "/v2/droplets",
            to(&DropletCreate {
                name: "hostomatic-web1".into(),
                spec: web_spec(),
            }),
        ),
        (
            "droplet create, minimal",
            "POST",
            "/v2/droplets",
            to(&DropletCreate {
                name: "master".into(),
                spec: DropletSpec::new("s-1vcpu-1gb", 6372321),
            }),
        ),
        (
            "droplet multi-create",
            "POST",
            "/v2/droplets",
            to(&DropletMultiCreate {
                names: vec!["shop-web1".into(), "shop-web2".into()],
                spec: web_spec(),
            }),
        ),
        (
            "ssh key create",
            "POST",
            "/v2/account/keys",
            to(&SshKeyCreate {
                name: "infra".into(),
                public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvVjG0 infra@host".into(),
            }),
        ),
        (
            "firewall create",
            "POST",
            "/v2/firewalls",
            to(&firewall_request()),
        ),
        (
            "firewall update",
            "PUT",
            "/v2/firewalls/{firewall_id}",
            to(&firewall_request()),
        ),
        (
            "firewall add droplets",
            "POST",
            "/v2/firewalls/{firewall_id}/droplets",
            to(&FirewallDroplets {
                droplet_ids: vec![3164444],
            }),
        ),
        (
            "firewall remove droplets",
            "DELETE",
            "/v2/firewalls/{firewall_id}/droplets",
            to(&FirewallDroplets {
                droplet_ids: vec![3164444],
            }),
        ),
        (
            "firewall add rules",
            "POST",
            "/v2/firewalls/{firewall_id}/rules",
            to(&rules()),
        ),
        (
            "firewall remove rules",
            "DELETE",
            "/v2/firewalls/{firewall_id}/rules",
            to(&rules()),
        ),
        (
            "tag create",
            "POST",
            "/v2/tags",
            to(&TagCreate {
                name: "env:prod".into(),
            }),
        ),
        (
            "tag resources",
            "POST",
            "/v2/tags/{tag_id}/resources",
            to(&TagResourcesRequest {
                resources: vec![
                    TaggedResource::droplet(3164444),
                    TaggedResource {
                        resource_id: "7555620".into(),
                        resource_type: ResourceType::Image,
                    },
                ],
            }),
        ),
        (
            "reserved ip for droplet",
            "POST",
            "/v2/reserved_ips",
            to(&ReservedIpCreate::ForDroplet {
                droplet_id: 3164444,
            }),
        ),
        (
            "reserved ip in region",
            "POST",
            "/v2/reserved_ips",
            to(&ReservedIpCreate::InRegion {
                region: "nyc3".into(),
                project_id: Some("746c6152-2fa2-11ed-92d3-27aaa54e4988".into()),
            }),
        ),
        (
            "reserved ip assign",
            "POST",
            "/v2/reserved_ips/{reserved_ip}/actions",
            to(&ReservedIpAction::Assign {
                droplet_id: 3164444,
            }),
        ),
        (
            "reserved ip unassign",
            "POST",
            "/v2/reserved_ips/{reserved_ip}/actions",
            to(&ReservedIpAction::Unassign),
        ),
    ];
    for action in actions {
        bodies.push((
            "droplet action",
            "POST",
            "/v2/droplets/{droplet_id}/actions",
            to(&action),
        ));
    }
    bodies
}

#[test]
fn request_bodies_the_client_builds_validate_against_the_contract() {
    let spec = Spec::contract();
    let mut failures = Vec::new();
    for (what, method, template, body) in request_bodies() {
        if let Err(e) = check_body(spec, method, template, None, &body) {
            failures.push(format!("{what} ({method} {template}): {body}\n{e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_validator_rejects_broken_bodies() {
    let spec = Spec::contract();
    let droplet = example_json("droplet_get_response.json");
    let mut bad_ip = droplet.clone();
    bad_ip["droplet"]["networks"]["v4"][1]["ip_address"] = json!("999.241.165.154");
    let mut string_id = droplet.clone();
    string_id["droplet"]["id"] = json!("3164444");
    let mut missing_size = droplet.clone();
    missing_size["droplet"]
        .as_object_mut()
        .unwrap()
        .remove("size");
    let mut snapshot = example_json("snapshot_get_response.json");
    snapshot["snapshot"]
        .as_object_mut()
        .unwrap()
        .remove("resource_id");
    let mut firewall = example_json("firewall_create_request.json");
    firewall["inbound_rules"][0]["protocol"] = json!("tcpp");
    let mut read_only = example_json("firewall_create_request.json");
    read_only["id"] = json!("bb4b2611-3d72-467b-8602-280330ecd65c");

    // (what, method, template, status or None for a request, body, text the report must contain)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<u16>,
        Value,
        &'static str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("bad public ip", "GET", "/v2/droplets/{droplet_id}", Some(200), bad_ip, "/droplet/networks/v4/1/ip_address"),
        ("id as string", "GET", "/v2/droplets/{droplet_id}", Some(200), string_id, "/droplet/id: expected integer"),
        ("missing required field", "GET", "/v2/droplets/{droplet_id}", Some(200), missing_size, "missing required property `size`"),
        ("snapshot without resource_id", "GET", "/v2/snapshots/{snapshot_id}", Some(200), snapshot, "`resource_id`"),
        ("error without message", "GET", "/v2/account", Some(401), json!({"id": "unauthorized"}), "`message`"),
        ("create without size", "POST", "/v2/droplets", None, json!({"name": "web1", "image": "ubuntu-22-04-x64"}), "`size`"),
        ("create with a bad name", "POST", "/v2/droplets", None, json!({"name": "web_1!", "size": "s-1vcpu-1gb", "image": 1}), "does not match"),
        ("create with name and names", "POST", "/v2/droplets", None, json!({"name": "a", "names": ["b"], "size": "s", "image": 1}), "oneOf"),
        ("create with a misspelt field", "POST", "/v2/droplets", None, json!({"name": "web1", "size": "s", "image": 1, "ssh_key": [1]}), "unknown property `ssh_key`"),
        ("create with a float image", "POST", "/v2/droplets", None, json!({"name": "web1", "size": "s", "image": 1.5}), "/image"),
        ("unknown action", "POST", "/v2/droplets/{droplet_id}/actions", None, json!({"type": "explode"}), "`explode`"),
        ("resize with a numeric size", "POST", "/v2/droplets/{droplet_id}/actions", None, json!({"type": "resize", "size": 2}), "/size: expected string"),
        ("power off with a stray field", "POST", "/v2/droplets/{droplet_id}/actions", None, json!({"type": "power_off", "name": "x"}), "unknown property `name`"),
        ("bad protocol", "POST", "/v2/firewalls", None, firewall, "/inbound_rules/0/protocol"),
        ("read-only firewall id sent", "POST", "/v2/firewalls", None, read_only, "/id: is read-only"),
        ("firewall without rules", "POST", "/v2/firewalls", None, json!({"name": "fw"}), "anyOf"),
        ("rules body without rules", "POST", "/v2/firewalls/{firewall_id}/rules", None, json!({}), "anyOf"),
        ("tag with a space", "POST", "/v2/tags", None, json!({"name": "env prod"}), "does not match"),
        ("tag resource of unknown type", "POST", "/v2/tags/{tag_id}/resources", None, json!({"resources": [{"resource_id": "1", "resource_type": "kettle"}]}), "kettle"),
    ];
    let mut failures = Vec::new();
    for (what, method, template, status, body, expected) in cases {
        match check_body(spec, method, template, status, &body) {
            Ok(()) => failures.push(format!("{what}: accepted but should fail")),
            Err(report) if !report.contains(expected) => failures.push(format!(
                "{what}: report does not mention {expected:?}:\n{report}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// Every request the client makes ------------------------------------------------------------------

/// A response body for each operation the client calls, valid per the contract.
fn canned_reply(request: &responder::Recorded) -> Reply {
    let spec = Spec::contract();
    let Some(operation) = spec.find(&request.method, &request.target) else {
        return Reply::json(
            404,
            r#"{"id":"not_found","message":"no such operation in the contract"}"#,
        );
    };
    let droplet = example_json("droplet_get_response.json")["droplet"].clone();
    let snapshot = example_json("snapshot_get_response.json")["snapshot"].clone();
    let firewall = example_json("firewall_get_response.json")["firewall"].clone();
    let region = droplet["region"].clone();
    let page = |key: &str, item: Value| json!({key: [item], "links": {}, "meta": {"total": 1}});
    let (status, body) = match operation.id() {
        "account_get" => (200, example_json("account_get_response.json")),
        "sshKeys_list" => (200, example_json("ssh_keys_list_response.json")),
        "sshKeys_create" => (201, example_json("ssh_key_get_response.json")),
        "sshKeys_get" => (200, example_json("ssh_key_get_response.json")),
        "actions_get" | "dropletActions_get" => (200, example_json("action_get_response.json")),
        "droplets_list" => (200, example_json("droplets_list_by_tag_response.json")),
        "droplets_create" => match request.json().unwrap().get("names") {
            None => (202, example_json("droplet_create_response.json")),
            Some(_) => (
                202,
                json!({"droplets": [droplet], "links": {"actions": [{"id": 7515, "rel": "create", "href": "https://api.digitalocean.com/v2/actions/7515"}]}}),
            ),
        },
        "droplets_get" => (200, example_json("droplet_get_response.json")),
        "droplets_list_snapshots" => (200, example_json("droplet_snapshots_list_response.json")),
        "dropletActions_list" => (200, example_json("droplet_actions_list_response.json")),
        "dropletActions_post" => (201, example_json("action_get_response.json")),
        "snapshots_list" => (200, page("snapshots", snapshot)),
        "snapshots_get" => (200, example_json("snapshot_get_response.json")),
        "images_get" => (200, json!({"image": droplet["image"]})),
        "images_list" => (200, example_json("images_list_response.json")),
        "firewalls_list" => (200, page("firewalls", firewall)),
        "firewalls_create" => (202, example_json("firewall_get_response.json")),
        "firewalls_get" | "firewalls_update" => (200, example_json("firewall_get_response.json")),
        "tags_list" => (200, example_json("tags_list_response.json")),
        "tags_create" => (
            201,
            json!({"tag": {"name": "env:prod", "resources": {"count": 0, "droplets": {"count": 0}}}}),
        ),
        "reservedIPs_create" => (
            202,
            json!({"reserved_ip": {"ip": "45.55.96.47", "region": region, "droplet": null, "locked": false}, "links": {}}),
        ),
        "reservedIPs_get" => (
            200,
            json!({"reserved_ip": {"ip": "45.55.96.47", "region": region, "droplet": droplet, "locked": false}}),
        ),
        "reservedIPsActions_post" => (201, example_json("reserved_ip_assign_action_response.json")),
        "sizes_list" => (200, page("sizes", droplet["size"].clone())),
        "regions_list" => (200, page("regions", region)),
        _ => return Reply::no_content(),
    };
    Reply::json(status, body.to_string())
}

#[tokio::test]
async fn every_request_the_client_makes_is_an_operation_of_the_contract() {
    let responder = Responder::start(canned_reply).await;
    let client = client_for(&responder);
    let fw = "bb4b2611-3d72-467b-8602-280330ecd65c";

    client.account().await.unwrap();
    client.list_ssh_keys().await.unwrap();
    client
        .create_ssh_key(&SshKeyCreate {
            name: "infra".into(),
            public_key: "ssh-ed25519 AAAA infra".into(),
        })
        .await
        .unwrap();
    client.get_ssh_key(&SshKeyRef::Id(289794)).await.unwrap();
    client
        .get_ssh_key(&"3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45".into())
        .await
        .unwrap();
    client.delete_ssh_key(&SshKeyRef::Id(289794)).await.unwrap();
    client.get_action(982864273).await.unwrap();
    client.list_droplets(None).await.unwrap();
    client.list_droplets(Some("infra")).await.unwrap();
    client.list_droplets_by_tag("env:prod").await.unwrap();
    client
        .list_droplets_by_name("hostomatic-web1")
        .await
        .unwrap();
    let created = client
        .create_droplet(&DropletCreate {
            name: "hostomatic-web1".into(),
            spec: web_spec(),
        })
        .await
        .unwrap();
    assert_eq!(created.droplet.id, 3164444);
    let many = client
        .create_droplets(&DropletMultiCreate {
            names: vec!["a-web1".into(), "a-web2".into()],
            spec: web_spec(),
        })
        .await
        .unwrap();
    assert_eq!(many.droplets.len(), 1);
    client.get_droplet(3164444).await.unwrap();
    client.delete_droplet(3164444).await.unwrap();
    client.delete_droplets_by_tag("env:test").await.unwrap();
    for action in [
        DropletAction::Snapshot {
            name: "web1-snap".into(),
        },
        DropletAction::PowerOff,
        DropletAction::PowerOn,
        DropletAction::Shutdown,
        DropletAction::Reboot,
        DropletAction::PowerCycle,
        DropletAction::Resize {
            size: "s-2vcpu-4gb".into(),
            disk: false,
        },
        DropletAction::Rebuild {
            image: ImageRef::Id(6372321),
        },
    ] {
        client.droplet_action(3164444, &action).await.unwrap();
    }
    client.list_droplet_actions(3164444).await.unwrap();
    client.get_droplet_action(3164444, 982864273).await.unwrap();
    client
        .wait_for_action(982864273, Duration::from_millis(1), Duration::from_secs(5))
        .await
        .unwrap();
    client.list_droplet_snapshots(3164444).await.unwrap();
    let snapshots = client.list_snapshots().await.unwrap();
    client.get_snapshot(&snapshots[0].id).await.unwrap();
    client
        .delete_snapshot(&SnapshotId::Number(6372321))
        .await
        .unwrap();
    client.get_image(&ImageRef::Id(63663980)).await.unwrap();
    client.get_image(&"ubuntu-20-04-x64".into()).await.unwrap();
    client.list_firewalls().await.unwrap();
    let firewall = client.create_firewall(&firewall_request()).await.unwrap();
    client.get_firewall(fw).await.unwrap();
    client
        .update_firewall(fw, &firewall.to_request())
        .await
        .unwrap();
    client
        .add_droplets_to_firewall(fw, &[3164444])
        .await
        .unwrap();
    client
        .remove_droplets_from_firewall(fw, &[3164444])
        .await
        .unwrap();
    client.add_firewall_rules(fw, &rules()).await.unwrap();
    client.remove_firewall_rules(fw, &rules()).await.unwrap();
    client.delete_firewall(fw).await.unwrap();
    client.create_tag("env:prod").await.unwrap();
    client
        .tag_resources("env:prod", &[TaggedResource::droplet(3164444)])
        .await
        .unwrap();
    client.delete_tag("env:prod").await.unwrap();
    client
        .create_reserved_ip(&ReservedIpCreate::ForDroplet {
            droplet_id: 3164444,
        })
        .await
        .unwrap();
    let reserved = client.get_reserved_ip("45.55.96.47").await.unwrap();
    assert_eq!(reserved.droplet.unwrap().id, 3164444);
    client
        .reserved_ip_action(
            "45.55.96.47",
            &ReservedIpAction::Assign {
                droplet_id: 3164444,
            },
        )
        .await
        .unwrap();
    client
        .reserved_ip_action("45.55.96.47", &ReservedIpAction::Unassign)
        .await
        .unwrap();
    client.delete_reserved_ip("45.55.96.47").await.unwrap();
    client.list_sizes().await.unwrap();
    client.list_regions().await.unwrap();
    client.list_tags().await.unwrap();
    client.list_distribution_images().await.unwrap();

    let spec = Spec::contract();
    let mut used = BTreeSet::new();
    let mut failures = Vec::new();
    for request in responder.requests() {
        let what = format!("{} {}", request.method, request.target);
        let Some(operation) = spec.find(&request.method, &request.target) else {
            failures.push(format!("{what}: no such operation in the contract"));
            continue;
        };
        used.insert(operation.id());
        if let Err(v) = operation.validate_target(&request.target) {
            failures.push(format!("{what}: {}", report(&v)));
        }
        match (request.json(), operation.request_schema()) {
            (Some(body), Some(_)) => {
                if let Err(v) = operation.validate_request(&body) {
                    failures.push(format!("{what}: body {body}\n{}", report(&v)));
                }
                if request.header("content-type") != Some("application/json") {
                    failures.push(format!(
                        "{what}: body sent without content-type application/json"
                    ));
                }
            }
            (Some(body), None) => failures.push(format!(
                "{what}: sends a body {body} the operation does not take"
            )),
            (None, Some(_)) => {
                failures.push(format!("{what}: sends no body but the operation takes one"))
            }
            (None, None) => {}
        }
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            failures.push(format!("{what}: no bearer token"));
        }
    }
    // The responder's own answers came from the contract too; check them so this test cannot
    // pass on a fake server that disagrees with it.
    for request in responder.requests() {
        if let (Some(operation), Reply::Http { status, body, .. }) = (
            spec.find(&request.method, &request.target),
            canned_reply(&request),
        ) {
            if !body.is_empty() {
                let body: Value = serde_json::from_str(&body).unwrap();
                if let Err(v) = operation.validate_response(status, &body, Options::response()) {
                    failures.push(format!(
                        "canned {} {status}: {}",
                        operation.name(),
                        report(&v)
                    ));
                }
            }
        }
    }
    let all: BTreeSet<&str> = spec.operations().iter().map(|op| op.id()).collect();
    let unused: Vec<_> = all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "operations of the contract the client never calls: {unused:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
