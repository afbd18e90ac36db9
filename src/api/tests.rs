//! The API in process: every class of bad input gets a 4xx naming the field, and property
//! tests throw arbitrary bodies at every endpoint that takes one.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;

use aimesh_actors::Node;

use crate::config::Config;

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn app_with(extra: &str) -> (Node, Router) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("api-{}-{n}", std::process::id());
    let text = format!("[[node]]\nname = \"{name}\"\napi = \"127.0.0.1:0\"\n{extra}");
    let config = Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    crate::server::start(&config, &config.nodes[0])
        .await
        .unwrap()
}

async fn app() -> (Node, Router) {
    app_with("").await
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    send(
        app,
        Method::POST,
        uri,
        Some("application/json"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, Method::GET, uri, None, vec![]).await
}

async fn network(app: &Router) -> String {
    let (status, body) = post(app, "/api/mesh/networks", json!({"name": "n"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["network_id"].as_str().unwrap().to_owned()
}

fn assert_error(
    status: StatusCode,
    body: &Value,
    want: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}

#[tokio::test]
async fn each_class_of_bad_input_gets_a_4xx_naming_the_field() {
    let (_node, app) = app().await;
    let net = network(&app).await;
    let tasks = format!("/api/mesh/networks/{net}/tasks");
    let ok = || json!({"task": "Write a launch email", "priority": 2});

    // Malformed JSON, and trailing garbage.
    let (s, b) = send(
        &app,
        Method::POST,
        &tasks,
        Some("application/json"),
        b"{\"task\": ".to_vec(),
    )
    .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "malformed_json", None);
    let (s, b) = send(
        &app,
        Method::POST,
        &tasks,
        Some("application/json"),
        b"{\"task\":\"x\"} {}".to_vec(),
    )
    .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "malformed_json", None);
    // Not JSON at all.
    let (s, b) = send(
        &app,
        Method::POST,
        &tasks,
        Some("text/plain"),
        b"task=x".to_vec(),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    // Missing, wrongly typed, unknown fields.
    let (s, b) = post(&app, &tasks, json!({"priority": 1})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_field",
        Some("task"),
    );
    let (s, b) = post(&app, &tasks, json!({"task": "x", "priority": "high"})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_type",
        Some("priority"),
    );
    let (s, b) = post(&app, &tasks, json!({"task": "x", "priorty": 1})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
        Some("priorty"),
    );
    let (s, b) = post(&app, &tasks, json!({"task": ["x"]})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_type",
        Some("task"),
    );
    let (s, b) = post(&app, &tasks, json!({"task": "x", "context": [1, 2]})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("context"),
    );
    // Empty task text; priority out of range.
    let (s, b) = post(&app, &tasks, json!({"task": "   "})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("task"),
    );
    for p in [0, 6, -1, 300] {
        let (s, b) = post(&app, &tasks, json!({"task": "x", "priority": p})).await;
        assert_error(
            s,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("priority"),
        );
    }
    // Unknown enum values.
    let memory = format!("/api/mesh/networks/{net}/memory");
    let (s, b) = post(&app, &memory, json!({"type": "opinion", "content": "x"})).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("type"),
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("fact"),
        "{b}"
    );
    // Nested fields are named by their path.
    let agents = format!("/api/mesh/networks/{net}/agents");
    let (s, b) = post(
        &app,
        &agents,
        json!({"agent_config": {"name": "SEO", "type": "seo", "parameters": {"temperature": 5}}}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("agent_config.parameters.temperature"),
    );
    let (s, b) = post(
        &app,
        &agents,
        json!({"agent_config": {"name": "SEO", "type": "seo", "parameters": {"temprature": 1}}}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
        Some("agent_config.parameters.temprature"),
    );
    let (s, b) = post(
        &app,
        "/api/mesh/networks",
        json!({"name": "n", "max_iterations": 0}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("max_iterations"),
    );
    // Unknown ids, malformed ids.
    let ghost = aimesh_actors::ids::NetworkId::new();
    let (s, b) = post(&app, &format!("/api/mesh/networks/{ghost}/tasks"), ok()).await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("network_id"),
    );
    let (s, b) = get(&app, "/api/mesh/networks/not-an-id").await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("network_id"),
    );
    let (s, b) = get(&app, &format!("{tasks}/{ghost}")).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", Some("task_id"));
    let (s, b) = post(&app, &format!("{tasks}/{ghost}/process"), json!({})).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", Some("task_id"));
    let (s, b) = send(
        &app,
        Method::DELETE,
        &format!("{agents}/{ghost}"),
        None,
        vec![],
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", Some("agent_id"));
    // Bad query parameters.
    let (s, b) = get(&app, &format!("{tasks}?limit=abc")).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("limit"),
    );
    let (s, b) = get(&app, &format!("{tasks}?status=done")).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("status"),
    );
    let (s, b) = get(&app, &format!("{tasks}?stauts=failed")).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("stauts"),
    );
    let (s, b) = get(&app, &format!("{memory}?type=opinion")).await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("type"),
    );
    // Unknown routes and methods answer JSON too.
    let (s, b) = get(&app, "/api/mesh/nope").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", None);
    let (s, b) = send(&app, Method::PUT, "/api/mesh/networks", None, vec![]).await;
    assert_error(
        s,
        &b,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );

    // None of it left a trace, and the good request still works.
    let (s, b) = get(&app, &tasks).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["total"], 0, "{b}");
    let (s, b) = post(&app, &tasks, ok()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["status"], "queued");
    assert_eq!(b["priority"], 2);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_memory_items_over_theirs_422() {
    let (_node, app) =
        app_with("[limits]\nmax_body_bytes = 4096\nmax_memory_item_bytes = 256\n").await;
    let net = network(&app).await;
    let big = "x".repeat(5000);
    let (s, b) = post(
        &app,
        &format!("/api/mesh/networks/{net}/tasks"),
        json!({"task": big}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    let (s, b) = post(
        &app,
        &format!("/api/mesh/networks/{net}/memory"),
        json!({"type": "fact", "content": "y".repeat(300)}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("content"),
    );
    let (s, _) = post(
        &app,
        &format!("/api/mesh/networks/{net}/memory"),
        json!({"type": "fact", "content": "small"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn memory_round_trips_with_filters_and_pagination() {
    let (_node, app) = app().await;
    let net = network(&app).await;
    let memory = format!("/api/mesh/networks/{net}/memory");
    for i in 0..5 {
        let kind = if i % 2 == 0 { "fact" } else { "feedback" };
        let (s, b) = post(
            &app,
            &memory,
            json!({"type": kind, "content": format!("item {i}"), "metadata": {"i": i}}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["type"], kind);
    }
    let (s, b) = get(&app, &format!("{memory}?type=fact&limit=2")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["total"], 3);
    assert_eq!(b["items"].as_array().unwrap().len(), 2);
    assert_eq!(b["items"][0]["content"], "item 4", "newest first: {b}");
    assert_eq!(b["next_offset"], 2);
    let (_, b) = get(&app, &format!("{memory}?type=fact&limit=2&offset=2")).await;
    assert_eq!(b["items"][0]["content"], "item 0");
    assert_eq!(b["next_offset"], Value::Null);
}

#[tokio::test]
async fn search_sessions_and_retention_validate_their_inputs() {
    let (_node, app) = app().await;
    let net = network(&app).await;
    let memory = format!("/api/mesh/networks/{net}/memory");
    let sessions = format!("/api/mesh/networks/{net}/sessions");
    let bad_query = StatusCode::BAD_REQUEST;
    let bad_value = StatusCode::UNPROCESSABLE_ENTITY;
    for (query, field) in [
        ("query=", "query"),
        ("query=%20%20", "query"),
        ("k=5", "k"),
        ("query=invoices&k=0", "k"),
        ("query=invoices&k=101", "k"),
        ("query=invoices&k=ten", "k"),
        ("query=invoices&limit=5", "limit"),
        ("query=invoices&offset=5", "offset"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("type=opinion", "type"),
        ("agent_id=nobody", "agent_id"),
        ("colour=blue", "colour"),
    ] {
        let (s, b) = get(&app, &format!("{memory}?{query}")).await;
        assert_error(s, &b, bad_query, "invalid_query", Some(field));
    }
    let (s, b) = get(&app, &format!("{memory}?query={}", "x".repeat(2001))).await;
    assert_error(s, &b, bad_query, "invalid_query", Some("query"));

    for ttl in [json!(0), json!(-5), json!(315_360_001)] {
        let (s, b) = post(
            &app,
            &memory,
            json!({"type": "fact", "content": "x", "ttl_seconds": ttl}),
        )
        .await;
        assert_error(s, &b, bad_value, "invalid_value", Some("ttl_seconds"));
        let (s, b) = post(&app, &sessions, json!({"ttl_seconds": ttl})).await;
        assert_error(s, &b, bad_value, "invalid_value", Some("ttl_seconds"));
    }
    let (s, b) = post(
        &app,
        &sessions,
        json!({"session_id": "has spaces/and slashes"}),
    )
    .await;
    assert_error(s, &b, bad_value, "invalid_value", Some("session_id"));
    // An item cannot name a session that does not exist.
    let (s, b) = post(
        &app,
        &memory,
        json!({"type": "context", "content": "x", "session_id": "nope"}),
    )
    .await;
    assert_error(s, &b, bad_value, "invalid_value", Some("session_id"));
    let (s, b) = send(
        &app,
        Method::DELETE,
        &format!("{sessions}/nope"),
        None,
        vec![],
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("session_id"),
    );
    for (retention, field) in [
        (json!({"max_items": 0}), "retention.max_items"),
        (json!({"max_age_seconds": -1}), "retention.max_age_seconds"),
    ] {
        let (s, b) = post(
            &app,
            "/api/mesh/networks",
            json!({"name": "r", "retention": retention}),
        )
        .await;
        assert_error(s, &b, bad_value, "invalid_value", Some(field));
    }
    // None of that stored anything.
    let (_, b) = get(&app, &memory).await;
    assert_eq!(b["total"], 0, "{b}");
}

#[tokio::test]
async fn search_and_sessions_round_trip_through_the_api() {
    let (_node, app) = app().await;
    let net = network(&app).await;
    let memory = format!("/api/mesh/networks/{net}/memory");
    let sessions = format!("/api/mesh/networks/{net}/sessions");
    let (s, b) = post(
        &app,
        &sessions,
        json!({"session_id": "chat-1", "ttl_seconds": 600}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["expires_at"].is_string(), "{b}");
    for (kind, text, session) in [
        (
            "fact",
            "Invoices are sent on the first business day of each month",
            None,
        ),
        (
            "decision",
            "Deployments happen on Tuesdays after the canary passes",
            Some("chat-1"),
        ),
        (
            "fact",
            "The brand voice is friendly, direct and free of jargon",
            Some("chat-1"),
        ),
    ] {
        let mut body = json!({"type": kind, "content": text});
        if let Some(s) = session {
            body["session_id"] = json!(s);
        }
        let (s, b) = post(&app, &memory, body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        if session.is_some() {
            assert!(
                b["expires_at"].is_string(),
                "the item lives as long as its session: {b}"
            );
        }
    }
    let (s, b) = get(
        &app,
        &format!("{memory}?query=when%20do%20we%20deploy%3F&k=2"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["k"], 2);
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{b}");
    assert!(
        items[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Deployments"),
        "{b}"
    );
    assert!(
        items[0]["score"].as_f64().unwrap() > items[1]["score"].as_f64().unwrap(),
        "{b}"
    );
    // Filters apply to searches too.
    let (_, b) = get(&app, &format!("{memory}?query=invoices&type=decision")).await;
    assert!(
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] == "decision"),
        "{b}"
    );
    // Deleting the session takes its items with it.
    let (_, b) = get(&app, &sessions).await;
    assert_eq!(b["total"], 1, "{b}");
    let (s, b) = send(
        &app,
        Method::DELETE,
        &format!("{sessions}/chat-1"),
        None,
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items_removed"], 2, "{b}");
    let (_, b) = get(&app, &memory).await;
    assert_eq!(b["total"], 1, "{b}");
    let (_, b) = get(&app, &sessions).await;
    assert_eq!(b["total"], 0, "{b}");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("")),
        prop_oneof![Just(1), Just(3), Just(5), Just(0), Just(6)].prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("task".to_owned()),
                    Just("context".to_owned()),
                    Just("priority".to_owned()),
                    Just("name".to_owned()),
                    Just("type".to_owned()),
                    Just("content".to_owned()),
                    Just("agent_config".to_owned()),
                    Just("parameters".to_owned()),
                    Just("capabilities".to_owned()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body with one field replaced, removed, or an extra field added.
fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    (0..keys.len().max(1), arb_json(), 0..3u8, "[a-z_]{1,10}").prop_map(
        move |(i, v, how, extra)| {
            let mut body = valid.clone();
            if let (Some(obj), Some(key)) = (body.as_object_mut(), keys.get(i)) {
                match how {
                    0 => {
                        obj.insert(key.clone(), v);
                    }
                    1 => {
                        obj.remove(key);
                    }
                    _ => {
                        obj.insert(extra, v);
                    }
                }
            }
            body
        },
    )
}

fn body_strategy(valid: Value) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => mutated(valid.clone()).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(serde_json::to_vec(&valid).unwrap()),
    ]
}

/// Throws generated bodies at one endpoint: every answer is `ok` or a well-formed 4xx, and
/// afterwards the endpoint's listing holds exactly the accepted requests.
fn fuzz_endpoint(path: &str, valid: Value, ok: StatusCode, listing_key: &str, listing: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (node, app) = rt.block_on(app());
    let net = rt.block_on(network(&app));
    let uri = format!("/api/mesh/networks/{net}/{path}");
    let accepted = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(PropConfig {
        cases: 300,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let result = runner.run(&body_strategy(valid), |body| {
        let (status, json) = rt.block_on(send(
            &app,
            Method::POST,
            &uri,
            Some("application/json"),
            body,
        ));
        if status == ok {
            accepted.set(accepted.get() + 1);
        } else {
            prop_assert!(status.is_client_error(), "status {status}: {json}");
            prop_assert!(json["error"]["code"].is_string(), "{json}");
            prop_assert!(json["error"]["message"].is_string(), "{json}");
        }
        Ok(())
    });
    result.unwrap();
    let (s, b) = rt.block_on(get(&app, &format!("/api/mesh/networks/{net}/{listing}")));
    assert_eq!(s, StatusCode::OK, "{b}");
    let held = b[listing_key].as_u64().unwrap_or_else(|| {
        b[listing_key]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or(0)
    });
    assert!(
        accepted.get() > 0,
        "the strategy never produced a valid body"
    );
    assert_eq!(held, accepted.get() + extra_baseline(listing), "{b}");
    drop(node);
}

/// Entries a fresh default network already has in a listing (its five agents).
fn extra_baseline(listing: &str) -> u64 {
    if listing == "agents" { 5 } else { 0 }
}

#[test]
fn arbitrary_task_bodies_get_202_or_a_clean_4xx_and_nothing_else_is_kept() {
    fuzz_endpoint(
        "tasks",
        json!({"task": "Write an email", "context": {"product_name": "X"}, "priority": 2}),
        StatusCode::ACCEPTED,
        "total",
        "tasks?limit=500",
    );
}

#[test]
fn arbitrary_memory_bodies_get_201_or_a_clean_4xx_and_nothing_else_is_kept() {
    fuzz_endpoint(
        "memory",
        json!({"type": "fact", "content": "Brand voice is direct", "metadata": {"source": "brief"}}),
        StatusCode::CREATED,
        "total",
        "memory?limit=500",
    );
}

#[test]
fn arbitrary_agent_bodies_get_201_or_a_clean_4xx_and_nothing_else_is_kept() {
    fuzz_endpoint(
        "agents",
        json!({"agent_config": {
            "name": "SEO Specialist", "type": "seo", "model": "claude-3-7-sonnet",
            "description": "Specializes in search engine optimization",
            "parameters": {"temperature": 0.4, "max_tokens": 4000},
            "capabilities": ["keyword_analysis", "seo_optimization"]
        }}),
        StatusCode::CREATED,
        "total",
        "agents",
    );
}

#[test]
fn arbitrary_network_bodies_get_201_or_a_clean_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_node, app) = rt.block_on(app());
    let accepted = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(PropConfig {
        cases: 200,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let valid = json!({"name": "N", "description": "d", "max_iterations": 3, "timeout_seconds": 60,
        "agents": [{"name": "C", "type": "content"}]});
    runner
        .run(&body_strategy(valid), |body| {
            let (status, json) = rt.block_on(send(
                &app,
                Method::POST,
                "/api/mesh/networks",
                Some("application/json"),
                body,
            ));
            if status == StatusCode::CREATED {
                accepted.set(accepted.get() + 1);
            } else {
                prop_assert!(status.is_client_error(), "status {status}: {json}");
                prop_assert!(json["error"]["code"].is_string(), "{json}");
            }
            Ok(())
        })
        .unwrap();
    let (_, b) = rt.block_on(get(&app, "/api/mesh/networks"));
    assert_eq!(b["total"].as_u64(), Some(accepted.get()));
}
