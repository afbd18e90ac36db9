//! OTLP trace export: a node with `OTEL_EXPORTER_OTLP_ENDPOINT` sends its spans to a collector
//! (a small OTLP/HTTP JSON receiver here), and one task is one trace: its root span, the
//! acceptance, every subtask and every model call share the task's trace id, linked parent to
//! child. With two nodes, the spans of subtasks run on the peer join the same trace.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Fake, Proc, cluster_file, eventually, fake, free_port, node_with};

/// Spans received, with their resource's `service.instance.id`.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Value)>>>,
    _rt: Option<Arc<tokio::runtime::Runtime>>,
}

impl Collector {
    /// An OTLP/HTTP JSON receiver on a free port; its URL.
    fn start() -> (Self, String) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spans: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sink = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut got = sink.lock().unwrap();
                    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                        let instance = rs["resource"]["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|a| a["key"] == "service.instance.id")
                            .and_then(|a| a["value"]["stringValue"].as_str())
                            .unwrap_or("")
                            .to_owned();
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            for s in ss["spans"].as_array().into_iter().flatten() {
                                got.push((instance.clone(), s.clone()));
                            }
                        }
                    }
                    axum::Json(json!({}))
                }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await });
        (
            Self {
                spans,
                _rt: Some(Arc::new(rt)),
            },
            url,
        )
    }

    /// The spans of `trace` (hex), with the node that sent each.
    fn trace(&self, trace: &str) -> Vec<(String, Value)> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s["traceId"].as_str() == Some(trace))
            .cloned()
            .collect()
    }
}

fn node(config: &std::path::Path, name: &str, collector: &str) -> Proc {
    node_with(
        config,
        name,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("AIMESH_COOKIE", "tracing-test-cookie"),
            ("FAKE_KEY", "sk-ant-fake"),
        ],
    )
}

/// A client's `traceparent` (its request span `span`, sampled).
fn client_traceparent(span: u64) -> String {
    format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span:016x}-01")
}

/// Runs one task to completion through `api`, submitted with `traceparent` when given; its id.
fn run_task(api: &Api, net: &str, traceparent: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = traceparent
        .map(|t| ("traceparent", t))
        .into_iter()
        .collect();
    let (status, task) = api.post_with_headers(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Plan a product launch email for developers", "priority": 2}),
        &headers,
    );
    assert_eq!(status, 202, "{task}");
    let id = task["task_id"].as_str().unwrap().to_owned();
    let (status, body) = api.post_empty(&format!("/networks/{net}/tasks/{id}/process"));
    assert_eq!(status, 202, "{body}");
    let done = eventually(Duration::from_secs(60), "the task to finish", || {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
        (t["status"] != "queued" && t["status"] != "processing").then_some(t)
    });
    assert_eq!(done["status"], "completed", "{done}");
    id
}

/// The `cluster.toml` section that sends Anthropic-format calls to `fake`.
fn provider_section(fake: &Fake) -> String {
    format!(
        "[gateway.providers.anthropic]\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n",
        fake.url
    )
}

/// The `traceparent` of every request `fake` recorded, oldest first.
fn traceparents(fake: &Fake) -> Vec<String> {
    let calls: Value = reqwest::blocking::get(format!("{}/_fake/calls", fake.url))
        .unwrap()
        .json()
        .unwrap();
    calls["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["traceparent"].as_str().map(str::to_owned))
        .collect()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// The spans `span` links to, as `(traceId, spanId)`.
fn links(span: &Value) -> Vec<(String, String)> {
    span["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let id = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (id("traceId"), id("spanId"))
        })
        .collect()
}

/// Checks the shape of one task's trace, submitted from the client span `client` (a
/// `traceparent`) when given; the spans by name.
fn check_trace(
    spans: &[(String, Value)],
    task: &str,
    client: Option<&str>,
) -> HashMap<String, Vec<Value>> {
    let hex = task.replace('-', "");
    let root_id = &hex[16..32];
    let mut by_name: HashMap<String, Vec<Value>> = HashMap::new();
    for (_, s) in spans {
        by_name
            .entry(s["name"].as_str().unwrap().to_owned())
            .or_default()
            .push(s.clone());
    }
    let roots = &by_name["task"];
    assert_eq!(roots.len(), 1, "one root span");
    assert_eq!(
        roots[0]["spanId"], root_id,
        "the root's id comes from the task id"
    );
    assert!(
        roots[0]["parentSpanId"].as_str().unwrap_or("").is_empty(),
        "the root has no parent: {}",
        roots[0]
    );
    assert_eq!(
        attr(&roots[0], "aimesh.status").and_then(|v| v["stringValue"].as_str()),
        Some("completed")
    );
    // Every other span hangs off a span of the same trace: one tree.
    let ids: HashSet<&str> = spans
        .iter()
        .map(|(_, s)| s["spanId"].as_str().unwrap())
        .collect();
    for (_, s) in spans {
        if s["name"] == "task" {
            continue;
        }
        let parent = s["parentSpanId"].as_str().unwrap_or("");
        assert!(
            ids.contains(parent),
            "span {} has parent {parent:?} outside the trace",
            s["name"]
        );
    }
    let accepts = &by_name["task.accept"];
    assert_eq!(accepts.len(), 1);
    assert_eq!(accepts[0]["parentSpanId"], root_id);
    let subtasks = &by_name["subtask"];
    assert!(!subtasks.is_empty(), "subtask spans");
    let subtask_ids: HashSet<&str> = subtasks
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    for s in subtasks {
        assert_eq!(s["parentSpanId"], root_id);
        assert_eq!(
            attr(s, "aimesh.outcome").and_then(|v| v["stringValue"].as_str()),
            Some("completed")
        );
    }
    let calls = &by_name["model.call"];
    // One per subtask, plus the synthesis (a child of the root).
    assert!(calls.len() > subtasks.len(), "{calls:?}");
    let under_subtasks = calls
        .iter()
        .filter(|c| subtask_ids.contains(c["parentSpanId"].as_str().unwrap()))
        .count();
    assert_eq!(
        under_subtasks,
        subtasks.len(),
        "each subtask's call is its child"
    );
    assert!(
        calls.iter().any(|c| c["parentSpanId"] == root_id),
        "the synthesis call hangs off the root"
    );
    assert!(
        calls.iter().all(|c| attr(c, "aimesh.provider").is_some()),
        "calls say which provider answered"
    );
    // The client's span is linked from the root and the acceptance, and from nothing else; it
    // is never a parent (the task keeps its own trace).
    let expected: Vec<(String, String)> = client
        .map(|tp| {
            let parts: Vec<&str> = tp.split('-').collect();
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .into_iter()
        .collect();
    for (_, s) in spans {
        let want = if s["name"] == "task" || s["name"] == "task.accept" {
            expected.clone()
        } else {
            Vec::new()
        };
        assert_eq!(links(s), want, "links of {}", s["name"]);
    }
    by_name
}

#[test]
fn one_task_is_one_trace_exported_over_otlp() {
    let (collector, url) = Collector::start();
    // Model calls go over HTTP to a provider that records their `traceparent`.
    let fake = fake(0);
    let port = free_port();
    let (_dir, config) = cluster_file(&[("solo", port)], &provider_section(&fake));
    let _node = node(&config, "solo", &url);
    let api = Api::new(port);
    api.wait_healthy();
    let (status, net) = api.post("/networks", &json!({"name": "traced"}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap().to_owned();
    let client = client_traceparent(0x00f0_67aa_0ba9_02b7);
    let task = run_task(&api, &net, Some(&client));
    let hex = task.replace('-', "");
    eventually(Duration::from_secs(20), "the task's trace", || {
        let spans = collector.trace(&hex);
        spans.iter().any(|(_, s)| s["name"] == "task").then_some(())
    });
    // Give the batch processor a moment for the rest of the trace.
    std::thread::sleep(Duration::from_millis(500));
    let spans = collector.trace(&hex);
    assert!(spans.len() >= 4, "{spans:?}");
    check_trace(&spans, &task, Some(&client));
    assert!(spans.iter().all(|(node, _)| node == "solo"));
    // An invalid `traceparent` is ignored, as the Trace Context spec asks: the task is taken.
    let (status, ignored) = api.post_with_headers(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Plan a product launch email for developers"}),
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )],
    );
    assert_eq!(status, 202, "{ignored}");
    assert!(ignored.get("client_traceparent").is_none(), "{ignored}");
    // A later version's header is kept in version-00 form, its extra fields dropped.
    let later = format!("{}-and-more", client.replacen("00-", "cc-", 1));
    let (status, kept) = api.post_with_headers(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Plan a product launch email for developers"}),
        &[("traceparent", &later)],
    );
    assert_eq!(status, 202, "{kept}");
    assert_eq!(kept["client_traceparent"], client.as_str());

    // Each request the provider got names its model call's span as its parent.
    let parents = traceparents(&fake);
    let model_calls: HashSet<&str> = spans
        .iter()
        .filter(|(_, s)| s["name"] == "model.call")
        .filter_map(|(_, s)| s["spanId"].as_str())
        .collect();
    assert!(!parents.is_empty(), "the provider got no traceparent");
    assert_eq!(parents.len(), model_calls.len(), "{parents:?}");
    for tp in parents {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", hex.as_str(), "01"),
            "{tp}"
        );
        assert!(
            model_calls.contains(parts[2]),
            "{tp} names no model.call span"
        );
    }
}

#[test]
fn spans_of_subtasks_run_on_a_peer_join_the_tasks_trace() {
    let (collector, url) = Collector::start();
    let (p1, p2) = (free_port(), free_port());
    // The owner has no specialists of its own capacity to spare: a peer runs some subtasks.
    let (_dir, config) = cluster_file(
        &[("t1", p1), ("t2", p2)],
        "[gateway.offline]\nlatency_ms = 300\n",
    );
    let _n1 = node(&config, "t1", &url);
    let _n2 = node(&config, "t2", &url);
    let (a1, a2) = (Api::new(p1), Api::new(p2));
    a1.wait_healthy();
    a2.wait_healthy();
    for api in [&a1, &a2] {
        eventually(Duration::from_secs(30), "the cluster to form", || {
            (api.get("/health").1["cluster"]["formed"] == true).then_some(())
        });
    }
    let (status, net) = a1.post("/networks", &json!({"name": "traced-cluster"}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap().to_owned();
    // Submitted through the node that does not own the network, so the client's
    // `traceparent` travels with the forwarded request.
    let entry = if a1.served_by(&format!("/networks/{net}")) == "t1" {
        &a2
    } else {
        &a1
    };
    // Enough tasks at once that placement sends subtasks to both nodes.
    let mut tasks = Vec::new();
    let mut clients = HashMap::new();
    for i in 0..6u64 {
        let client = client_traceparent(0x1000 + i);
        let (status, t) = entry.post_with_headers(
            &format!("/networks/{net}/tasks"),
            &json!({"task": "Plan a product launch email for developers", "priority": 3}),
            &[("traceparent", &client)],
        );
        assert_eq!(status, 202, "{t}");
        let id = t["task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            t["client_traceparent"],
            client.as_str(),
            "kept with the task"
        );
        assert_eq!(
            entry
                .post_empty(&format!("/networks/{net}/tasks/{id}/process"))
                .0,
            202
        );
        clients.insert(id.clone(), client);
        tasks.push(id);
    }
    let mut remote = None;
    for id in &tasks {
        let done = eventually(Duration::from_secs(90), "the task to finish", || {
            let (_, t) = a1.get(&format!("/networks/{net}/tasks/{id}"));
            (t["status"] != "queued" && t["status"] != "processing").then_some(t)
        });
        assert_eq!(done["status"], "completed", "{done}");
        let nodes: HashSet<&str> = done["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["node"].as_str())
            .collect();
        if nodes.len() > 1 && remote.is_none() {
            remote = Some(id.clone());
        }
    }
    let Some(task) = remote else {
        panic!("no task had subtasks on both nodes; placement did not spread them");
    };
    let hex = task.replace('-', "");
    eventually(Duration::from_secs(20), "the task's trace", || {
        let spans = collector.trace(&hex);
        let senders: HashSet<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
        (spans.iter().any(|(_, s)| s["name"] == "task") && senders.len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = collector.trace(&hex);
    let by_name = check_trace(&spans, &task, Some(&clients[&task]));
    let subtask_nodes: HashSet<&str> = spans
        .iter()
        .filter(|(_, s)| s["name"] == "subtask")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        subtask_nodes.len(),
        2,
        "subtask spans from both nodes in one trace: {:?}",
        by_name.keys()
    );
}

#[test]
fn tasks_outside_the_sampling_ratio_export_nothing_and_say_so_downstream() {
    let (collector, url) = Collector::start();
    let fake = fake(0);
    let port = free_port();
    let (_dir, config) = cluster_file(&[("unsampled", port)], &provider_section(&fake));
    let _node = node_with(
        &config,
        "unsampled",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("FAKE_KEY", "sk-ant-fake"),
        ],
    );
    let api = Api::new(port);
    api.wait_healthy();
    let (status, net) = api.post("/networks", &json!({"name": "unsampled"}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap().to_owned();
    let task = run_task(&api, &net, None);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        collector.spans.lock().unwrap().is_empty(),
        "nothing is traced at ratio 0"
    );
    let parents = traceparents(&fake);
    assert!(!parents.is_empty(), "the provider got no traceparent");
    let hex = task.replace('-', "");
    for tp in parents {
        // The task's trace, marked not sampled, so downstream services do not trace it either.
        assert!(
            tp.starts_with(&format!("00-{hex}-")) && tp.ends_with("-00"),
            "{tp}"
        );
    }
}
