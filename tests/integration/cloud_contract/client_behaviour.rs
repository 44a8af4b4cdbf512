//! How the client behaves when DigitalOcean misbehaves: rate limits, server errors, dropped
//! connections, pagination, and what its errors tell the user. DigitalOcean itself cannot be
//! reached here, so a scripted responder on 127.0.0.1 plays it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use infra::cloud::*;

use super::responder::{Reply, Responder};
use super::{client_for, example, fast_policy, TOKEN};

fn account_ok() -> Reply {
    Reply::json(200, example("account_get_response.json"))
}

fn too_many_requests() -> Reply {
    Reply::json(429, example("error_too_many_requests.json"))
        .header("ratelimit-limit", "5000")
        .header("ratelimit-remaining", "0")
}

fn server_error() -> Reply {
    Reply::json(
        500,
        r#"{"id":"server_error","message":"Unexpected server-side error","request_id":"7ac2f5c2-0b1e-4c11-9f0d-9f0fbd2c5a10"}"#,
    )
}

fn new_droplet() -> DropletCreate {
    let mut spec = DropletSpec::new("s-1vcpu-1gb", "ubuntu-22-04-x64");
    spec.region = Some("nyc3".into());
    spec.tags = vec!["infra".into(), "example.com".into()];
    DropletCreate {
        name: "example.com".into(),
        spec,
    }
}

/// The error's Display and Debug must never contain the token.
fn assert_no_token(error: &CloudError) {
    let shown = format!("{error}\n{error:?}\n{:#}", anyhow_like(error));
    assert!(!shown.contains(TOKEN), "token leaked:\n{shown}");
}

/// The error with all its sources, as `anyhow`'s `{:#}` would print it.
fn anyhow_like(error: &CloudError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let responder = Responder::script(vec![
        too_many_requests().header("retry-after", "1"),
        account_ok(),
    ])
    .await;
    let account = client_for(&responder).account().await.unwrap();
    assert_eq!(account.email, "sammy@digitalocean.com");
    assert_eq!(responder.requests().len(), 2);
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_ratelimit_reset() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let responder = Responder::script(vec![
        too_many_requests().header("ratelimit-reset", now.to_string()),
        account_ok(),
    ])
    .await;
    client_for(&responder).account().await.unwrap();
    assert_eq!(responder.requests().len(), 2);
}

#[tokio::test]
async fn a_429_asking_for_a_long_wait_fails_at_once_and_says_how_long() {
    let responder = Responder::script(vec![
        too_many_requests().header("retry-after", "3600"),
        account_ok(),
    ])
    .await;
    let error = client_for(&responder).account().await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    let text = error.to_string();
    assert!(
        text.contains("too_many_requests: API rate limit exceeded"),
        "{text}"
    );
    assert!(text.contains("wait 3600s"), "{text}");
    assert_eq!(
        responder.requests().len(),
        1,
        "a wait beyond the cap is not sat out"
    );
}

#[tokio::test]
async fn repeated_429s_exhaust_the_retry_budget() {
    let responder = Responder::start(|_| too_many_requests().header("retry-after", "0")).await;
    let error = client_for(&responder).account().await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(
        responder.requests().len(),
        fast_policy().max_attempts as usize
    );
}

#[tokio::test]
async fn a_create_refused_with_429_is_retried_because_nothing_was_created() {
    let responder = Responder::script(vec![
        too_many_requests().header("retry-after", "0"),
        Reply::json(202, example("droplet_create_response.json")),
    ])
    .await;
    let created = client_for(&responder)
        .create_droplet(&new_droplet())
        .await
        .unwrap();
    assert_eq!(created.droplet.id, 3164444);
    let requests = responder.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests
        .iter()
        .all(|r| r.method == "POST" && r.path() == "/v2/droplets"));
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn server_errors_on_a_read_are_retried_until_it_succeeds() {
    let responder = Responder::script(vec![
        server_error(),
        Reply::json(503, r#"{"id":"service_unavailable","message":"try later"}"#),
        account_ok(),
    ])
    .await;
    client_for(&responder).account().await.unwrap();
    assert_eq!(responder.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_that_persist_give_up_with_the_request_id() {
    let responder = Responder::start(|_| server_error()).await;
    let error = client_for(&responder).get_droplet(42).await.unwrap_err();
    assert_eq!(responder.requests().len(), 4);
    let CloudError::Api(api) = &error else {
        panic!("expected an API error, got {error:?}");
    };
    assert_eq!(api.status, 500);
    assert_eq!(api.attempts, 4);
    assert_eq!(
        api.request_id.as_deref(),
        Some("7ac2f5c2-0b1e-4c11-9f0d-9f0fbd2c5a10")
    );
    assert_eq!(
        error.to_string(),
        "DigitalOcean answered GET /v2/droplets/42 with 500 server_error: Unexpected server-side \
         error (request id 7ac2f5c2-0b1e-4c11-9f0d-9f0fbd2c5a10) after 4 attempts; DigitalOcean \
         had a server error; run again later, and if it persists quote the request id to \
         DigitalOcean support"
    );
}

#[tokio::test]
async fn unauthorized_shows_digitalocean_id_message_and_request_id_but_never_the_token() {
    let responder = Responder::script(vec![Reply::json(
        401,
        // A server that echoes the token back must not get it printed either.
        format!(
            r#"{{"id":"unauthorized","message":"Unable to authenticate you with {TOKEN}.","request_id":"4d9d8375-3c56-4925-a3e7-eb137fed17e9"}}"#
        ),
    )])
    .await;
    let error = client_for(&responder).account().await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("401 unauthorized"), "{text}");
    assert!(
        text.contains("Unable to authenticate you with ***"),
        "{text}"
    );
    assert!(
        text.contains("request id 4d9d8375-3c56-4925-a3e7-eb137fed17e9"),
        "{text}"
    );
    assert!(
        text.contains("check that `DO_TOKEN` holds a valid"),
        "{text}"
    );
    assert_no_token(&error);
    let requests = responder.requests();
    assert_eq!(requests.len(), 1, "a 401 is not retried");
    // The token did go where it belongs.
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn not_found_is_reported_as_such() {
    let responder =
        Responder::script(vec![Reply::json(404, example("error_not_found.json"))]).await;
    let error = client_for(&responder).get_droplet(7).await.unwrap_err();
    assert!(error.is_not_found());
    assert!(
        error
            .to_string()
            .contains("404 not_found: The resource you requested could not be found"),
        "{error}"
    );
}

#[tokio::test]
async fn a_create_that_gets_a_500_is_not_retried_and_is_ambiguous() {
    let responder = Responder::script(vec![
        server_error(),
        Reply::json(202, example("droplet_create_response.json")),
    ])
    .await;
    let error = client_for(&responder)
        .create_droplet(&new_droplet())
        .await
        .unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("POST /v2/droplets may or may not have taken effect"),
        "{text}"
    );
    assert!(
        text.contains("500 Unexpected server-side error, request id 7ac2f5c2"),
        "{text}"
    );
    assert!(text.contains("list droplets by its tag"), "{text}");
    assert_no_token(&error);
    assert_eq!(
        responder.requests().len(),
        1,
        "a create must never be repeated blindly"
    );
}

#[tokio::test]
async fn a_create_whose_connection_drops_is_ambiguous() {
    let responder = Responder::script(vec![
        Reply::HangUp,
        Reply::json(202, example("droplet_create_response.json")),
    ])
    .await;
    let error = client_for(&responder)
        .create_droplet(&new_droplet())
        .await
        .unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    assert_no_token(&error);
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn a_create_whose_answer_cannot_be_read_is_ambiguous() {
    // The droplet was accepted (202), so a retry would make a second one.
    let responder = Responder::script(vec![Reply::json(202, r#"{"droplet": {"id": "#)]).await;
    let error = client_for(&responder)
        .create_droplet(&new_droplet())
        .await
        .unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("its 202 answer could not be read"),
        "{error}"
    );
    assert_eq!(responder.requests().len(), 1);
}

#[tokio::test]
async fn a_read_whose_answer_cannot_be_read_is_a_decode_error() {
    let responder = Responder::script(vec![Reply::json(200, r#"{"account": {"email": 7}}"#)]).await;
    let error = client_for(&responder).account().await.unwrap_err();
    assert!(
        matches!(error, CloudError::Decode { status: 200, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(
            "could not understand DigitalOcean's answer to GET /v2/account (status 200)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn an_action_that_gets_a_500_is_not_retried() {
    let responder = Responder::script(vec![
        server_error(),
        Reply::json(201, example("action_get_response.json")),
    ])
    .await;
    let error = client_for(&responder)
        .droplet_action(
            3164444,
            &DropletAction::Snapshot {
                name: "web1".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    assert_eq!(
        responder.requests().len(),
        1,
        "a second snapshot would be made"
    );
}

#[tokio::test]
async fn a_read_whose_connection_drops_is_retried() {
    let responder = Responder::script(vec![Reply::HangUp, account_ok()]).await;
    client_for(&responder).account().await.unwrap();
    assert_eq!(responder.requests().len(), 2);
}

#[tokio::test]
async fn a_delete_retried_after_a_server_error_counts_404_as_done() {
    let responder = Responder::script(vec![
        server_error(),
        Reply::json(404, example("error_not_found.json")),
    ])
    .await;
    client_for(&responder)
        .delete_droplet(3164444)
        .await
        .unwrap();
    assert_eq!(responder.requests().len(), 2);
}

#[tokio::test]
async fn a_delete_of_something_missing_from_the_start_is_not_found() {
    let responder =
        Responder::script(vec![Reply::json(404, example("error_not_found.json"))]).await;
    let error = client_for(&responder)
        .delete_droplet(3164444)
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error_after_every_attempt() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::new(
        &format!("http://127.0.0.1:{port}"),
        Token::new(TOKEN).unwrap(),
        fast_policy(),
    )
    .unwrap();
    let error = client.account().await.unwrap_err();
    let CloudError::Transport { attempts, .. } = &error else {
        panic!("expected a transport error, got {error:?}");
    };
    assert_eq!(*attempts, 4);
    let text = error.to_string();
    assert!(
        text.starts_with("could not reach DigitalOcean for GET /v2/account after 4 attempt(s)"),
        "{text}"
    );
    assert!(
        text.contains("check the network connection and `DO_API_URL`"),
        "{text}"
    );
    assert_no_token(&error);

    // Nothing reached a server, so a create may be retried too, and ends the same way.
    let error = client.create_droplet(&new_droplet()).await.unwrap_err();
    assert!(
        matches!(error, CloudError::Transport { attempts: 4, .. }),
        "{error:?}"
    );
}

fn droplet_named(id: u64, name: &str) -> serde_json::Value {
    let mut droplet: serde_json::Value =
        serde_json::from_str(&example("droplet_get_response.json")).unwrap();
    droplet["droplet"]["id"] = json!(id);
    droplet["droplet"]["name"] = json!(name);
    droplet["droplet"].clone()
}

#[tokio::test]
async fn listing_by_tag_follows_links_pages_next() {
    let responder = Responder::start(|request| {
        let page = request
            .target
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("page="))
            .unwrap_or("1");
        let body = match page {
            "1" => json!({
                "droplets": [droplet_named(1, "web1"), droplet_named(2, "web2")],
                "links": {"pages": {"next": "{base}/v2/droplets?page=2&per_page=200&tag_name=web", "last": "{base}/v2/droplets?page=3&per_page=200&tag_name=web"}},
                "meta": {"total": 5}
            }),
            "2" => json!({
                "droplets": [droplet_named(3, "web3"), droplet_named(4, "web4")],
                "links": {"pages": {"first": "{base}/v2/droplets?page=1&per_page=200&tag_name=web", "next": "{base}/v2/droplets?page=3&per_page=200&tag_name=web"}},
                "meta": {"total": 5}
            }),
            _ => json!({
                "droplets": [droplet_named(5, "web5")],
                "links": {"pages": {"first": "{base}/v2/droplets?page=1&per_page=200&tag_name=web", "prev": "{base}/v2/droplets?page=2&per_page=200&tag_name=web"}},
                "meta": {"total": 5}
            }),
        };
        Reply::json(200, body.to_string())
    })
    .await;
    let droplets = client_for(&responder)
        .list_droplets_by_tag("web")
        .await
        .unwrap();
    let ids: Vec<u64> = droplets.iter().map(|d| d.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let targets: Vec<String> = responder.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/v2/droplets?tag_name=web&per_page=200",
            "/v2/droplets?page=2&per_page=200&tag_name=web",
            "/v2/droplets?page=3&per_page=200&tag_name=web",
        ]
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let responder = Responder::script(vec![Reply::json(
        200,
        example("regions_list_paginated_response.json"),
    )])
    .await;
    let error = client_for(&responder).list_regions().await.unwrap_err();
    assert!(matches!(error, CloudError::Pagination { .. }), "{error:?}");
    assert!(
        error.to_string().contains("https://api.digitalocean.com"),
        "{error}"
    );
    assert_eq!(
        responder.requests().len(),
        1,
        "the token must not travel to another host"
    );
}

#[tokio::test]
async fn a_next_link_that_loops_is_an_error_not_a_hang() {
    let responder = Responder::start(|_| {
        Reply::json(
            200,
            json!({"sizes": [], "links": {"pages": {"next": "{base}/v2/sizes?page=1&per_page=200"}}}).to_string(),
        )
    })
    .await;
    let error = client_for(&responder).list_sizes().await.unwrap_err();
    assert!(error.to_string().contains("loop back"), "{error}");
    assert_eq!(responder.requests().len(), 2);
}

fn action_with_status(status: &str) -> Reply {
    let mut body: serde_json::Value =
        serde_json::from_str(&example("action_get_response.json")).unwrap();
    body["action"]["status"] = json!(status);
    body["action"]["type"] = json!("snapshot");
    Reply::json(200, body.to_string())
}

#[tokio::test]
async fn wait_for_action_polls_until_it_completes() {
    let responder = Responder::script(vec![
        action_with_status("in-progress"),
        action_with_status("in-progress"),
        action_with_status("completed"),
    ])
    .await;
    let action = client_for(&responder)
        .wait_for_action(982864273, Duration::from_millis(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(action.status, ActionStatus::Completed);
    let requests = responder.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.target == "/v2/actions/982864273"));
}

#[tokio::test]
async fn wait_for_action_reports_an_errored_action() {
    let responder = Responder::script(vec![action_with_status("errored")]).await;
    let error = client_for(&responder)
        .wait_for_action(982864273, Duration::from_millis(1), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "DigitalOcean action 982864273 (snapshot) on droplet 3164444 errored; look at the resource \
         in the control panel, fix the cause and run again"
    );
}

#[tokio::test]
async fn wait_for_action_gives_up_after_its_timeout() {
    let responder = Responder::start(|_| action_with_status("in-progress")).await;
    let error = client_for(&responder)
        .wait_for_action(
            982864273,
            Duration::from_millis(2),
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CloudError::ActionTimedOut { id: 982864273, .. }),
        "{error:?}"
    );
    assert!(responder.requests().len() >= 2, "it polled");
}

#[tokio::test]
async fn an_error_page_that_is_not_json_is_shown_briefly() {
    let responder = Responder::script(vec![Reply::Http {
        status: 422,
        headers: vec![("content-type".into(), "text/html".into())],
        body: format!("<html><body>{}</body></html>", "x".repeat(1000)),
    }])
    .await;
    let error = client_for(&responder).get_droplet(1).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("422: <html><body>xxx"), "{text}");
    assert!(text.len() < 600, "the page is cut short: {text}");
}

#[tokio::test]
async fn requests_that_cannot_be_expressed_send_nothing() {
    let responder = Responder::script(Vec::new()).await;
    let client = client_for(&responder);
    let names = (1..=11).map(|i| format!("web{i}")).collect();
    let error = client
        .create_droplets(&DropletMultiCreate {
            names,
            spec: DropletSpec::new("s-1vcpu-1gb", "ubuntu-22-04-x64"),
        })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("1 to 10 names, not 11"),
        "{error}"
    );
    client.add_droplets_to_firewall("fw", &[]).await.unwrap();
    client
        .add_firewall_rules("fw", &FirewallRules::default())
        .await
        .unwrap();
    client.tag_resources("infra", &[]).await.unwrap();
    assert!(responder.requests().is_empty());
}

#[tokio::test]
async fn clones_share_one_client_and_the_client_prints_no_token() {
    let responder = Responder::script(vec![account_ok(), account_ok()]).await;
    let client = client_for(&responder);
    let clone = client.clone();
    let (a, b) = tokio::join!(client.account(), clone.account());
    a.unwrap();
    b.unwrap();
    assert!(!format!("{client:?}").contains(TOKEN));
    assert_eq!(responder.requests().len(), 2);
}
