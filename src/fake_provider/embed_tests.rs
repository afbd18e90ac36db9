//! The provider embedder of `aimesh-actors` against the fake provider's embedding routes, over
//! real TCP: each wire format, batching, blank texts, normalisation, and faults becoming errors
//! that name the provider. Also the routes' own shapes (base64, `embedContent`, refusals).

use std::time::Duration;

use serde_json::{Value, json};

use aimesh_actors::embedding::{EmbedFailure, ProviderEmbedder};
use aimesh_actors::gateway::catalog::{Backend, Price, ProviderSpec};
use aimesh_actors::search::embeddings::EmbedError;

use super::embed::FAKE_DIMS;
use super::testkit::{Server, body_json, gemini_request, send};
use super::{FakeOptions, Fault, FaultRule, Format};

fn spec(server: &Server, kind: &str, key: Option<&str>, timeout: Duration) -> ProviderSpec {
    ProviderSpec {
        name: format!("fake-{kind}"),
        backend: Backend::Http {
            kind: kind.to_owned(),
            base_url: server.url(""),
            api_key: key.map(str::to_owned),
        },
        timeout,
        stall_timeout: timeout,
        max_response_bytes: 16 << 20,
    }
}

fn embedder(server: &Server, kind: &str, model: &str) -> ProviderEmbedder {
    let key = (kind != "ollama").then_some("sk-test");
    ProviderEmbedder::new(
        &spec(server, kind, key, Duration::from_secs(10)),
        model,
        Some(Price::per_mtok(0.02, 0.0, 0.0)),
    )
    .unwrap()
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn unit(v: &[f32]) -> bool {
    (dot(v, v) - 1.0).abs() < 1e-4
}

const RELATED: [&str; 3] = [
    "Refunds are issued within 14 days of a return",
    "how many days until my refund is issued",
    "Deployments happen on Tuesdays after the canary passes",
];

#[tokio::test]
async fn every_wire_format_embeds_related_texts_close_together() {
    let server = Server::start(FakeOptions::default()).await;
    let cases = [
        ("openai", "text-embedding-3-small", Format::Openai),
        ("ollama", "nomic-embed-text", Format::Ollama),
        ("gemini", "text-embedding-004", Format::Gemini),
    ];
    for (kind, model, format) in cases {
        let e = embedder(&server, kind, model);
        assert_eq!(e.name(), format!("fake-{kind}:{model}"));
        let v = e.embed(&texts(&RELATED)).await.unwrap();
        assert_eq!(v.len(), 3, "{kind}");
        assert!(v.iter().all(|v| v.len() == FAKE_DIMS && unit(v)), "{kind}");
        assert!(
            dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.1,
            "{kind}: related texts are closer"
        );
        let calls = server.fake.calls();
        assert_eq!(calls.count(format, model), 1, "{kind}: one request");
    }
    let calls = server.fake.calls();
    assert_eq!(calls.embeddings, 3);
    assert_eq!(calls.embedded_inputs, 9);
    // Keys go where each API wants them, and the bodies are each API's own.
    let openai = &calls.recent[0];
    assert_eq!(openai.api_key.as_deref(), Some("sk-test"));
    assert_eq!(openai.body["input"][2], RELATED[2]);
    let ollama = &calls.recent[1];
    assert_eq!(ollama.api_key, None);
    assert_eq!(ollama.body["model"], "nomic-embed-text");
    let gemini = &calls.recent[2];
    assert_eq!(gemini.api_key.as_deref(), Some("sk-test"));
    assert_eq!(
        gemini.body["requests"][1]["model"],
        "models/text-embedding-004"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn large_inputs_go_in_batches_of_the_providers_size_and_blank_texts_stay_home() {
    let server = Server::start(FakeOptions::default()).await;
    let many: Vec<String> = (0..300)
        .map(|i| format!("memory item number {i}"))
        .collect();
    let ollama = embedder(&server, "ollama", "nomic-embed-text");
    let v = ollama.embed(&many).await.unwrap();
    assert_eq!(v.len(), 300);
    assert_eq!(
        server
            .fake
            .calls()
            .count(Format::Ollama, "nomic-embed-text"),
        2
    );
    let gemini = embedder(&server, "gemini", "text-embedding-004");
    gemini.embed(&many).await.unwrap();
    assert_eq!(
        server
            .fake
            .calls()
            .count(Format::Gemini, "text-embedding-004"),
        3
    );
    // Input order survives batching.
    let one = ollama.embed(&many[299..]).await.unwrap();
    assert_eq!(one[0], v[299]);
    // Blank texts are not sent (OpenAI refuses empty strings); their vector is empty.
    server.fake.reset();
    let openai = embedder(&server, "openai", "text-embedding-3-small");
    let v = openai
        .embed(&texts(&["", "  ", "brand voice"]))
        .await
        .unwrap();
    assert!(v[0].is_empty() && v[1].is_empty() && v[2].len() == FAKE_DIMS);
    assert_eq!(server.fake.calls().embedded_inputs, 1);
    let none = openai.embed(&texts(&[""])).await.unwrap();
    assert!(none[0].is_empty());
    assert_eq!(
        server.fake.calls().embeddings,
        1,
        "nothing to send, no call"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn provider_faults_become_errors_that_name_the_provider() {
    let server = Server::start(FakeOptions::default()).await;
    let model = "text-embedding-3-small";
    let e = ProviderEmbedder::new(
        &spec(
            &server,
            "openai",
            Some("sk-test"),
            Duration::from_millis(300),
        ),
        model,
        None,
    )
    .unwrap();
    let status = |status: u16| Fault::Status {
        status,
        retry_after_seconds: None,
        body: None,
    };
    let cases = [
        (status(500), "server"),
        (status(429), "rate_limited"),
        (status(401), "auth"),
        (Fault::Malformed, "malformed"),
        (Fault::Latency { ms: 2_000 }, "timeout"),
        (Fault::Reset, "transport"),
    ];
    for (fault, code) in cases {
        server
            .fake
            .push_fault(FaultRule::always(fault).model(model).times(1));
        let err = e.embed(&texts(&["refund policy"])).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(err.provider, "fake-openai");
        assert!(err.to_string().contains("fake-openai"), "{err}");
        assert!(!err.to_string().contains("sk-test"), "{err}");
    }
    assert!(matches!(
        e.embed(&texts(&["x y"])).await,
        Ok(v) if v.len() == 1
    ));
    // A chat fault for another model leaves embeddings alone.
    server.fake.push_fault(
        FaultRule::always(status(500))
            .format(Format::Openai)
            .model("gpt-4o"),
    );
    assert!(e.embed(&texts(&["refund policy"])).await.is_ok());
    // Gemini refuses a caller without a key.
    let keyless = ProviderEmbedder::new(
        &spec(&server, "gemini", None, Duration::from_secs(5)),
        "text-embedding-004",
        None,
    )
    .unwrap();
    let err = keyless.embed(&texts(&["x"])).await.unwrap_err();
    assert!(
        matches!(
            err.failure,
            EmbedFailure::Answer(EmbedError::Auth { status: 403 })
        ),
        "{err}"
    );
    server.shutdown().await;
}

fn post(path: &str, body: Value) -> axum::extract::Request {
    axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_routes_answer_in_each_apis_shape() {
    let fake = super::FakeProvider::new(FakeOptions::default());
    // OpenAI: floats, or base64 little-endian floats (the SDKs' default), and usage.
    let (status, _, body) = send(
        &fake,
        post(
            "/v1/embeddings",
            json!({"model": "m", "input": "brand voice", "dimensions": 8}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let floats = body_json(&body);
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert!(floats["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (_, _, body) = send(
        &fake,
        post(
            "/v1/embeddings",
            json!({"model": "m", "input": ["brand voice"], "dimensions": 8, "encoding_format": "base64"}),
        ),
    )
    .await;
    let encoded = body_json(&body)["data"][0]["embedding"].clone();
    assert_eq!(encoded.as_str().unwrap().len(), 44, "32 bytes in base64");
    for bad in [
        json!({"model": "m", "input": ""}),
        json!({"model": "m", "input": []}),
        json!({"model": "m"}),
        json!({"input": "x"}),
        json!({"model": "m", "input": "x", "dimensions": 0}),
    ] {
        let (status, _, body) = send(&fake, post("/v1/embeddings", bad.clone())).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body_json(&body)["error"]["message"].is_string());
    }
    // Ollama.
    let (status, _, body) = send(
        &fake,
        post(
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": ["a b", "c d"]}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let ollama = body_json(&body);
    assert_eq!(ollama["embeddings"].as_array().unwrap().len(), 2);
    assert!(ollama["prompt_eval_count"].as_u64().is_some());
    let (status, _, body) = send(&fake, post("/api/embed", json!({"input": "x"}))).await;
    assert_eq!(
        (status.as_u16(), body_json(&body)["error"].clone()),
        (400, json!("model is required"))
    );
    // Gemini: one text, a batch, and a batch naming another model.
    let one = json!({"content": {"parts": [{"text": "brand voice"}]}});
    let (status, _, body) = send(
        &fake,
        gemini_request("text-embedding-004:embedContent", Some("k"), one),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&body)["embedding"]["values"]
            .as_array()
            .unwrap()
            .len(),
        FAKE_DIMS
    );
    let batch = |model: &str| json!({"requests": [{"model": model, "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 16}]});
    let (status, _, body) = send(
        &fake,
        gemini_request(
            "text-embedding-004:batchEmbedContents",
            Some("k"),
            batch("models/text-embedding-004"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&body)["embeddings"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
    let (status, _, _) = send(
        &fake,
        gemini_request(
            "text-embedding-004:batchEmbedContents",
            Some("k"),
            batch("models/other"),
        ),
    )
    .await;
    assert_eq!(status, 400);
    let calls = fake.calls();
    assert_eq!(calls.embeddings, 12);
    assert_eq!(calls.rejected, 7);
}

#[tokio::test]
async fn embedding_calls_are_charged_to_the_global_budget_and_refused_past_it() {
    use aimesh_actors::gateway::ledger::Ledger;
    use aimesh_actors::types::Usd;
    let server = Server::start(FakeOptions::default()).await;
    let one = texts(&["Refunds are issued within 14 days of it."]);
    // $0.02 per million tokens is 20,000 pico-dollars a token: 40 bytes reserve 800,000.
    assert_eq!(one[0].len(), 40);
    let worst = Usd(800_000);
    // What one call really costs (the tokens the provider reports).
    let probe = embedder(&server, "openai", "text-embedding-3-small");
    let unlimited = std::sync::Arc::new(Ledger::new(None, None));
    probe.charge_to(unlimited.clone());
    probe.embed(&one).await.unwrap();
    let cost = unlimited.global().spent;
    assert!(
        cost > Usd(0) && cost <= worst,
        "charged {cost:?}, at most its worst case"
    );
    assert_eq!(
        unlimited.global().reserved,
        Usd(0),
        "its reservation is settled"
    );
    // A budget with room for the worst case after one call, not after two.
    let e = embedder(&server, "openai", "text-embedding-3-small");
    let ledger = std::sync::Arc::new(Ledger::new(Some(Usd(worst.0 + cost.0 + cost.0 / 2)), None));
    e.charge_to(ledger.clone());
    e.embed(&one).await.unwrap();
    e.embed(&one).await.unwrap();
    assert_eq!(ledger.global().spent.0, cost.0 * 2);
    let sent = server
        .fake
        .calls()
        .count(Format::Openai, "text-embedding-3-small");
    let refused = e.embed(&one).await.unwrap_err();
    assert!(
        matches!(refused.failure, EmbedFailure::Budget(_)),
        "{refused}"
    );
    assert_eq!(refused.code(), "budget_exceeded");
    assert_eq!(
        server
            .fake
            .calls()
            .count(Format::Openai, "text-embedding-3-small"),
        sent,
        "no request past the budget"
    );
    assert_eq!(ledger.global().spent.0, cost.0 * 2);
    assert_eq!(ledger.global().reserved, Usd(0));
}
