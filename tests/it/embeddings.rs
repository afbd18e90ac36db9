//! Memory search with a provider's embeddings, end to end: a node whose `[memory] embedder` is
//! `openai:text-embedding-3-small`, its openai provider pointed at the fake provider process.
//! Search ranks the related item first, the provider saw the embedding calls, a provider fault
//! makes search answer 503 naming the provider while writes still succeed, items written during
//! the outage become searchable once it ends, and a restarted node re-embeds what it loads.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Proc, binary, cluster_file, eventually, free_port, node_with, spawn};

const MODEL: &str = "text-embedding-3-small";

fn node(config: &std::path::Path) -> Proc {
    node_with(config, "emb", &[("FAKE_KEY", "test-key")])
}

struct Fake {
    url: String,
    client: reqwest::blocking::Client,
    _proc: Proc,
}

impl Fake {
    fn start() -> Self {
        let port = free_port();
        let proc = spawn(&["fake-provider", "--port", &port.to_string()]);
        eventually(Duration::from_secs(20), "the fake provider", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Fake {
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::blocking::Client::new(),
            _proc: proc,
        }
    }

    fn calls(&self) -> Value {
        self.client
            .get(format!("{}/_fake/calls", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn embedding_calls(&self) -> u64 {
        self.calls()["by_format_model"]["openai"][MODEL]
            .as_u64()
            .unwrap_or(0)
    }

    fn fault(&self, rule: Value) {
        let r = self
            .client
            .post(format!("{}/_fake/faults", self.url))
            .json(&rule)
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }

    fn clear_faults(&self) {
        self.client
            .delete(format!("{}/_fake/faults", self.url))
            .send()
            .unwrap();
    }
}

fn search(api: &Api, net: &str, text: &str) -> (u16, Value) {
    let q: String = text
        .chars()
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    api.get(&format!("/networks/{net}/memory?query={q}&k=3"))
}

/// Waits until a search for `text` answers with `expected` in the first item's content.
fn first_hit(api: &Api, net: &str, text: &str, expected: &str) -> Value {
    eventually(Duration::from_secs(30), "the item to be searchable", || {
        let (status, body) = search(api, net, text);
        let first = body["items"][0]["content"].as_str().unwrap_or("");
        (status == 200 && first.contains(expected)).then_some(body)
    })
}

#[test]
fn provider_embeddings_rank_search_and_a_provider_outage_fails_searches_not_writes() {
    let fake = Fake::start();
    let port = free_port();
    let extra = format!(
        "[gateway.providers.openai]\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\ntimeout_seconds = 5\n\
         [memory]\nembedder = \"openai:{MODEL}\"\nshards = 2\n",
        fake.url
    );
    let (_dir, config) = cluster_file(&[("emb", port)], &extra);
    let mut proc = node(&config);
    let api = Api::new(port);
    api.wait_healthy();
    let (_, net) = api.post("/networks", &json!({"name": "embeddings"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    for text in [
        "Refunds are issued within 14 days of a returned order",
        "The brand voice is friendly, direct and free of jargon",
        "Deployments happen on Tuesdays after the canary passes",
    ] {
        let (status, body) = api.post(
            &format!("/networks/{net}/memory"),
            &json!({"type": "fact", "content": text}),
        );
        assert_eq!(status, 201, "{body}");
    }

    // The related item comes first, ranked in the provider's vector space.
    let body = first_hit(
        &api,
        &net,
        "how many days until a refund is issued",
        "Refunds",
    );
    assert_eq!(body["embedder"], format!("openai:{MODEL}"));
    first_hit(&api, &net, "what voice should the brand use", "brand voice");
    let calls = fake.calls();
    assert!(calls["embeddings"].as_u64().unwrap() >= 3, "{calls}");
    assert!(
        fake.embedding_calls() >= 3,
        "items and queries were embedded"
    );
    assert!(
        calls["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["body"]["input"].as_array().is_some_and(|i| i
                .iter()
                .any(|t| t.as_str().unwrap_or("").contains("Deployments")))),
        "the items' text went to the provider: {calls}"
    );

    // The provider fails: searches answer 503 naming it; writes still succeed.
    fake.fault(json!({"model": MODEL, "fault": {"kind": "status", "status": 500}}));
    let (status, body) = search(&api, &net, "refund days");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "embedding_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("openai") && message.contains(MODEL),
        "{message}"
    );
    let (status, body) = api.post(
        &format!("/networks/{net}/memory"),
        &json!({"type": "fact", "content": "Invoices are sent on the first business day of the month"}),
    );
    assert_eq!(status, 201, "{body}");
    let (_, listing) = api.get(&format!("/networks/{net}/memory"));
    assert_eq!(listing["total"], 4);

    // Once the provider is back, the item written during the outage is found too.
    fake.clear_faults();
    first_hit(&api, &net, "when are invoices sent", "Invoices");

    // A restarted node re-embeds the items it loads (its cache died with the process).
    let before = fake.embedding_calls();
    drop(proc);
    proc = node(&config);
    api.wait_healthy();
    first_hit(&api, &net, "friendly brand voice", "brand voice");
    assert!(
        fake.embedding_calls() > before + 1,
        "items re-embedded at start"
    );
    drop(proc);
}

#[test]
fn an_embedder_naming_an_unconfigured_provider_is_a_config_error() {
    let (_dir, config) = cluster_file(
        &[("emb", free_port())],
        "[memory]\nembedder = \"gemini:text-embedding-004\"\n",
    );
    let out = Command::new(binary())
        .args([
            "node",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "emb",
        ])
        .env_remove("GEMINI_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory.embedder"), "{stderr}");
    assert!(stderr.contains("GEMINI_API_KEY"), "{stderr}");
}
