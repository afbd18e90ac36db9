//! The gateway against the fake provider, both as real processes: every wire format streamed
//! and not, each fault class, budgets under concurrency, the cache, cost roll-up, agents on
//! the chain, and the official OpenAI SDK against `/v1`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Proc, cluster_file, eventually, free_port, spawn};

/// A fake provider process and a node whose four providers all point at it.
struct Rig {
    fake: String,
    api: Api,
    client: reqwest::blocking::Client,
    base: String,
    _dir: tempfile::TempDir,
    _procs: Vec<Proc>,
}

impl Rig {
    fn start(extra: &str) -> Self {
        Self::start_with("", extra)
    }

    /// `anthropic` adds keys to the anthropic provider's table.
    fn start_with(anthropic: &str, extra: &str) -> Self {
        let fake_port = free_port();
        let fake = spawn(&["fake-provider", "--port", &fake_port.to_string()]);
        let fake_url = format!("http://127.0.0.1:{fake_port}");
        eventually(Duration::from_secs(20), "the fake provider", || {
            std::net::TcpStream::connect(("127.0.0.1", fake_port)).ok()
        });
        let port = free_port();
        let providers = format!(
            "[gateway.providers.anthropic]\nbase_url = \"{fake_url}\"\napi_key_env = \"FAKE_KEY\"\n{anthropic}\
             [gateway.providers.openai]\nbase_url = \"{fake_url}\"\napi_key_env = \"FAKE_KEY\"\n\
             [gateway.providers.gemini]\nbase_url = \"{fake_url}\"\napi_key_env = \"FAKE_KEY\"\n\
             [gateway.providers.ollama]\nbase_url = \"{fake_url}\"\n{extra}"
        );
        let (dir, config) = cluster_file(&[("gw", port)], &providers);
        let node = Proc(
            std::process::Command::new(crate::support::binary())
                .args(["node", "--config", config.to_str().unwrap(), "--name", "gw"])
                .env("RUST_LOG", "warn")
                .env("FAKE_KEY", "test-key")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let api = Api::new(port);
        api.wait_healthy();
        Rig {
            fake: fake_url,
            api,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
            _procs: vec![fake, node],
        }
    }

    fn fault(&self, rule: Value) {
        let r = self
            .client
            .post(format!("{}/_fake/faults", self.fake))
            .json(&rule)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
    }

    fn calls(&self) -> Value {
        self.client
            .get(format!("{}/_fake/calls", self.fake))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn count(&self, format: &str) -> u64 {
        self.calls()["by_format"][format].as_u64().unwrap_or(0)
    }

    fn chat(&self, model: &str, text: &str) -> (u16, Value) {
        self.chat_with(model, text, &[])
    }

    fn chat_with(&self, model: &str, text: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 200}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// A streamed call: the text pieces and every event.
    fn stream(&self, model: &str, text: &str) -> (String, Vec<Value>, bool) {
        let resp = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(
                &json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": text}], "max_tokens": 200}),
            )
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.text().unwrap();
        let mut text = String::new();
        let mut events = Vec::new();
        let mut done = false;
        for line in body.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
            events.push(v);
        }
        (text, events, done)
    }
}

fn provider(answer: &Value) -> &str {
    answer["aimesh"]["provider"].as_str().unwrap_or("?")
}

#[test]
fn every_wire_format_works_streamed_and_not() {
    let rig = Rig::start("");
    for (model, format) in [
        ("claude-3-7-sonnet", "anthropic"),
        ("gpt-4o", "openai"),
        ("gemini-2.0", "gemini"),
        ("llama3.2", "ollama"),
    ] {
        let (status, answer) = rig.chat(model, &format!("Hello {format}"));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(provider(&answer), format, "{answer}");
        let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains(&format!("Hello {format}")), "{text}");
        assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        let (streamed, events, done) = rig.stream(model, &format!("Stream {format}"));
        assert!(done, "no [DONE] for {format}");
        assert!(
            streamed.contains(&format!("Stream {format}")),
            "{format}: {streamed}"
        );
        let usage = events
            .iter()
            .find(|e| e["usage"].is_object())
            .expect("a usage chunk");
        assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert_eq!(usage["aimesh"]["provider"], format);
        assert_eq!(
            rig.count(format),
            2,
            "{format}: one plain and one streamed call"
        );
    }
    // Costs are priced per model: the Anthropic calls cost something, Ollama's nothing.
    let (_, a) = rig.chat("claude-3-7-sonnet", "priced");
    assert!(a["aimesh"]["cost_usd"].as_f64().unwrap() > 0.0);
    let (_, o) = rig.chat("llama3.2", "free");
    assert_eq!(o["aimesh"]["cost_usd"].as_f64(), Some(0.0));
}

#[test]
fn a_429_falls_back_and_cools_the_provider_down_for_its_retry_after() {
    let rig = Rig::start("");
    rig.fault(json!({"format": "anthropic", "times": 1, "fault": {"kind": "status", "status": 429, "retry_after_seconds": 2}}));
    let (_, a) = rig.chat("claude-3-7-sonnet", "one");
    assert_eq!(provider(&a), "openai", "{a}");
    let attempts = &a["aimesh"]["route"]["attempts"];
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("rate limited"),
        "{attempts}"
    );
    // During the Retry-After the link is skipped without a call.
    let (_, b) = rig.chat("claude-3-7-sonnet", "two");
    assert_eq!(provider(&b), "openai");
    assert!(
        b["aimesh"]["route"]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("circuit open")
    );
    assert_eq!(rig.count("anthropic"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let (_, c) = rig.chat("claude-3-7-sonnet", "three");
    assert_eq!(
        provider(&c),
        "anthropic",
        "the half-open probe goes through and succeeds"
    );
}

#[test]
fn server_errors_fall_back_and_open_the_breaker_after_three() {
    let rig = Rig::start("");
    rig.fault(json!({"format": "openai", "fault": {"kind": "status", "status": 500}}));
    for i in 0..3 {
        let (_, a) = rig.chat("gpt-4o", &format!("call {i}"));
        assert_eq!(provider(&a), "anthropic", "{a}");
    }
    assert_eq!(rig.count("openai"), 3);
    let (_, a) = rig.chat("gpt-4o", "skipped");
    assert_eq!(provider(&a), "anthropic");
    assert_eq!(rig.count("openai"), 3, "an open breaker sends nothing");
    let (_, gw) = rig.api.get("/gateway");
    let link = gw["status"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["link"] == "openai/gpt-4o")
        .unwrap();
    assert_eq!(link["circuit"], "open");
}

#[test]
fn transport_and_format_faults_each_fall_back_to_the_next_link() {
    let rig = Rig::start("[gateway.circuit]\nfailures = 10\n");
    // A content filter is the answer, not a provider failure: no fallback.
    rig.fault(json!({"format": "anthropic", "times": 1, "fault": {"kind": "content_filter"}}));
    let (status, e) = rig.chat("claude-3-7-sonnet", "filtered");
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "content_filter");
    for (i, fault) in [
        json!({"kind": "status", "status": 529}),
        json!({"kind": "status", "status": 503}),
        json!({"kind": "reset"}),
        json!({"kind": "malformed"}),
    ]
    .into_iter()
    .enumerate()
    {
        rig.fault(json!({"format": "anthropic", "times": 1, "fault": fault}));
        let (status, a) = rig.chat("claude-3-7-sonnet", &format!("fault {i}"));
        assert_eq!(status, 200, "{a}");
        assert_eq!(provider(&a), "openai", "fault {i}: {a}");
    }
}

#[test]
fn refused_connections_and_slow_or_cut_streams_fall_back() {
    let closed = free_port();
    let rig = Rig::start(&format!(
        "[gateway.providers.dead]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:{closed}\"\n\
         [gateway.models.dead-model]\nprovider = \"dead\"\n\
         [gateway.chains]\ndead-first = [\"dead-model\", \"gpt-4o\"]\n"
    ));
    let (_, a) = rig.chat("dead-first", "refused");
    assert_eq!(provider(&a), "openai", "{a}");
    assert!(
        a["aimesh"]["route"]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connection")
    );
    // A stream cut before any text: the next link serves the whole answer.
    rig.fault(json!({"format": "anthropic", "stream": true, "times": 1, "fault": {"kind": "cut", "after_chunks": 1}}));
    let (text, events, done) = rig.stream("claude-3-7-sonnet", "cut early");
    assert!(done && text.contains("cut early"), "{text}");
    let usage = events.iter().find(|e| e["usage"].is_object()).unwrap();
    assert_eq!(usage["aimesh"]["provider"], "openai");
    // A stream cut after text was sent cannot move: it ends with an error event.
    rig.fault(json!({"format": "anthropic", "stream": true, "times": 1, "fault": {"kind": "cut", "after_chunks": 6}}));
    let (_, events, done) = rig.stream(
        "claude-3-7-sonnet",
        "a long enough answer to be cut after some text went out",
    );
    assert!(done);
    assert!(
        events.iter().any(|e| e["error"]["code"].is_string()),
        "{events:?}"
    );
}

#[test]
fn stalled_streams_and_slow_providers_time_out_and_fall_back() {
    let rig = Rig::start_with("timeout_seconds = 2\nstall_timeout_seconds = 1\n", "");
    rig.fault(json!({"format": "anthropic", "stream": true, "times": 1, "fault": {"kind": "stall", "after_chunks": 1}}));
    let (text, events, done) = rig.stream("claude-3-7-sonnet", "stalled");
    assert!(done && text.contains("stalled"), "{text}");
    let usage = events.iter().find(|e| e["usage"].is_object()).unwrap();
    assert_eq!(usage["aimesh"]["provider"], "openai");
    let attempts = usage["aimesh"]["route"]["attempts"].as_array().unwrap();
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{attempts:?}"
    );
    rig.fault(json!({"format": "anthropic", "times": 1, "fault": {"kind": "slow_first_byte", "delay_ms": 4000}}));
    let started = std::time::Instant::now();
    let (_, a) = rig.chat("claude-3-7-sonnet", "slow");
    assert_eq!(provider(&a), "openai", "{a}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the slow provider was cut off at its timeout"
    );
}

#[test]
fn a_budget_holds_under_200_concurrent_calls_and_spend_is_exact() {
    let rig = Rig::start("[gateway]\nbudget_usd = 0.05\n[gateway.cache]\nenabled = false\n");
    let client = rig.client.clone();
    let base = rig.base.clone();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/v1/chat/completions");
            std::thread::spawn(move || {
                let r = client
                    .post(url)
                    .json(&json!({"model": "claude-3-7-sonnet", "max_tokens": 100,
                        "messages": [{"role": "user", "content": format!("budget call {i}")}]}))
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().unwrap())
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = calls.into_iter().map(|h| h.join().unwrap()).collect();
    let ok: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v)
        .collect();
    let refused = results
        .iter()
        .filter(|(s, v)| *s == 429 && v["error"]["code"] == "budget_exceeded")
        .count();
    assert_eq!(
        ok.len() + refused,
        200,
        "each call ran or was refused for budget"
    );
    assert!(
        !ok.is_empty() && refused > 0,
        "{} ok, {refused} refused",
        ok.len()
    );
    // No call fell back to the (free) offline model to dodge the budget.
    assert!(ok.iter().all(|a| provider(a) == "anthropic"));
    let (_, gw) = rig.api.get("/gateway");
    let spent = gw["spend"]["spent_usd"].as_f64().unwrap();
    let sum: f64 = ok
        .iter()
        .map(|a| a["aimesh"]["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(spent <= 0.05 + 1e-12, "spent {spent}");
    assert!(
        (spent - sum).abs() < 1e-9,
        "ledger {spent} vs answers {sum}"
    );
    assert_eq!(gw["spend"]["reserved_usd"].as_f64(), Some(0.0));
    assert_eq!(
        rig.count("anthropic") as usize,
        ok.len(),
        "refused calls never reached the provider"
    );
}

#[test]
fn repeated_calls_hit_the_cache_for_free_and_can_opt_out() {
    let rig = Rig::start("");
    let (_, a) = rig.chat("gpt-4o", "cache me");
    assert_eq!(a["aimesh"]["route"]["cached"], false);
    let (_, b) = rig.chat("gpt-4o", "cache me");
    assert_eq!(b["aimesh"]["route"]["cached"], true);
    assert_eq!(b["aimesh"]["cost_usd"].as_f64(), Some(0.0));
    assert_eq!(
        b["choices"][0]["message"]["content"],
        a["choices"][0]["message"]["content"]
    );
    assert_eq!(rig.count("openai"), 1);
    let (_, c) = rig.chat_with("gpt-4o", "cache me", &[("x-aimesh-cache", "off")]);
    assert_eq!(c["aimesh"]["route"]["cached"], false);
    assert_eq!(rig.count("openai"), 2);
    let (_, gw) = rig.api.get("/gateway");
    assert_eq!(gw["status"]["cache_hits"], 1);
}

#[test]
fn agents_use_the_chain_and_task_cost_rolls_up_exactly() {
    let rig = Rig::start("");
    // The primary model fails for this test: every agent's calls fall back to gpt-4o.
    rig.fault(json!({"format": "anthropic", "fault": {"kind": "status", "status": 500}}));
    let (_, net) = rig
        .api
        .post("/networks", &json!({"name": "chain", "budget_usd": 5.0}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let (_, t) = rig.api.post(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Create an email campaign for a product launch targeting developers",
                "context": {"product_name": "TechPro X1"}}),
    );
    let id = t["task_id"].as_str().unwrap();
    let (status, done) = rig
        .api
        .post_empty(&format!("/networks/{net}/tasks/{id}/process?wait=60"));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    let subtasks = done["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 4);
    let mut sum = 0.0;
    for s in subtasks {
        assert_eq!(s["provider"], "openai", "{s}");
        assert_eq!(s["route"]["chain"], "claude-3-7-sonnet");
        assert!(s["route"]["attempts"][0]["error"].is_string());
        sum += s["usage"]["cost_usd"].as_f64().unwrap();
    }
    sum += done["result"]["usage"]["cost_usd"].as_f64().unwrap();
    let task_cost = done["usage"]["cost_usd"].as_f64().unwrap();
    assert!(task_cost > 0.0);
    assert!(
        (task_cost - sum).abs() < 1e-12,
        "task {task_cost} vs parts {sum}"
    );
    let (_, view) = rig.api.get(&format!("/networks/{net}"));
    assert!(
        (view["spend"]["spent_usd"].as_f64().unwrap() - task_cost).abs() < 1e-12,
        "{view}"
    );
    assert_eq!(view["spend"]["budget_usd"].as_f64(), Some(5.0));
}

#[test]
fn bad_requests_on_v1_get_openai_style_errors() {
    let rig = Rig::start("");
    let post = |body: &str| {
        let r = rig
            .client
            .post(format!("{}/v1/chat/completions", rig.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    for (body, status, param) in [
        ("{not json", 400, "body"),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            400,
            "model",
        ),
        (r#"{"model":"gpt-4o","messages":[]}"#, 400, "messages"),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"temperature":9}"#,
            400,
            "temperature",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"n":3}"#,
            400,
            "n",
        ),
    ] {
        let (s, e) = post(body);
        assert_eq!(s, status, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    let (s, e) = post(r#"{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(s, 404);
    assert_eq!(e["error"]["code"], "model_not_found");
    let models: Value = rig
        .client
        .get(format!("{}/v1/models", rig.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o")
    );
}

#[test]
fn the_official_openai_and_anthropic_sdks_work_against_aimesh_and_the_fake() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openai, anthropic"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: the Python openai and anthropic SDKs are not installed (.ci/run installs them)"
        );
        return;
    }
    let rig = Rig::start("");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/official_sdks.py");
    let out = std::process::Command::new("python3")
        .args([script, &format!("{}/v1", rig.base), &rig.fake])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
