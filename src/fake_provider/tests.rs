//! Faults seen from a client's side (over real TCP where the wire matters),
//! the control routes, and counting under concurrency.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::testkit::{
    Server, anthropic_request, body_json, gemini_request, ndjson, ollama_request, openai_request,
    send, sse_events,
};
use super::{CallStats, FakeOptions, FakeProvider, Fault, FaultRule, Format};

fn openai_body(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": "Hello"}]})
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 512, "stream": stream,
        "messages": [{"role": "user", "content": "Hello"}]})
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

fn post_anthropic(server: &Server, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(server.url("/v1/messages"))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// Reads the body until it ends, errors, or stays silent for `quiet`.
/// Returns the bytes and how it finished: "end", "error" or "silent".
async fn read_until_quiet(
    mut response: reqwest::Response,
    quiet: Duration,
) -> (Vec<u8>, &'static str) {
    let mut bytes = Vec::new();
    loop {
        match tokio::time::timeout(quiet, response.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            Ok(Ok(None)) => return (bytes, "end"),
            Ok(Err(_)) => return (bytes, "error"),
            Err(_) => return (bytes, "silent"),
        }
    }
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_byte() {
    let server = Server::start(FakeOptions::default()).await;
    server.fake.push_fault(
        FaultRule::always(Fault::Reset)
            .format(Format::Openai)
            .times(2),
    );

    // Raw TCP: the server closes without writing anything.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = openai_body(false).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(
        received.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&received)
    );

    // reqwest: a transport error, not a response.
    let err = client()
        .post(server.url("/v1/chat/completions"))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err}");

    // The rule is used up: the next request is answered.
    let ok = client()
        .post(server.url("/v1/chat/completions"))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let calls = server.fake.calls();
    assert_eq!(
        (calls.total, calls.faulted, calls.faults_by_kind["reset"]),
        (3, 2, 2)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reset_outside_serve_is_a_failing_body() {
    let fake = FakeProvider::new(FakeOptions::default());
    fake.push_fault(FaultRule::always(Fault::Reset));
    let response = tower::ServiceExt::oneshot(fake.router(), openai_request(openai_body(false)))
        .await
        .unwrap();
    assert_ne!(response.status(), 200);
    assert!(
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stall_keeps_the_stream_open_until_shutdown() {
    let server = Server::start(FakeOptions::default()).await;
    server
        .fake
        .push_fault(FaultRule::always(Fault::Stall { after_chunks: 2 }).times(1));
    let response = post_anthropic(&server, &anthropic_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(read_until_quiet(response, Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "a stalled stream must stay open");

    // A client with a short timeout sees the stall as a timeout.
    server
        .fake
        .push_fault(FaultRule::always(Fault::Stall { after_chunks: 2 }).times(1));
    let response = post_anthropic(&server, &anthropic_body(true))
        .send()
        .await
        .unwrap();
    let (bytes, how) = read_until_quiet(response, Duration::from_millis(300)).await;
    assert_eq!(how, "silent");
    let events = sse_events(&bytes);
    let names: Vec<_> = events.iter().map(|(n, _)| n.clone().unwrap()).collect();
    assert_eq!(names, ["message_start", "content_block_start"]);

    // Shutdown releases the first stalled stream: serve returns and the client sees an error.
    server.shutdown().await;
    let (bytes, how) = reader.await.unwrap();
    assert_eq!(how, "error");
    assert_eq!(sse_events(&bytes).len(), 2);
}

#[tokio::test]
async fn cut_ends_the_stream_without_its_terminal_event() {
    let server = Server::start(FakeOptions::default()).await;
    server
        .fake
        .push_fault(FaultRule::always(Fault::Cut { after_chunks: 5 }).format(Format::Anthropic));
    server
        .fake
        .push_fault(FaultRule::always(Fault::Cut { after_chunks: 1000 }).format(Format::Openai));
    server
        .fake
        .push_fault(FaultRule::always(Fault::Cut { after_chunks: 2 }).format(Format::Ollama));

    let response = post_anthropic(&server, &anthropic_body(true))
        .send()
        .await
        .unwrap();
    let (bytes, how) = read_until_quiet(response, Duration::from_secs(5)).await;
    assert_eq!(how, "end");
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 5);
    assert!(
        events
            .iter()
            .all(|(n, _)| n.as_deref() != Some("message_stop"))
    );

    // A large after_chunks still withholds the terminal `[DONE]`.
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap();
    let events = sse_events(&response.bytes().await.unwrap());
    assert_eq!(
        events.last().unwrap().1["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(events.iter().all(|(_, d)| d != "[DONE]"));

    let response = client()
        .post(server.url("/api/chat"))
        .json(&json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    let lines = ndjson(&response.bytes().await.unwrap());
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["done"] == false));

    // Non-streaming: half a JSON body.
    let response = post_anthropic(&server, &anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.starts_with(b"{\"id\":\"msg_"));
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn slow_first_byte_sends_headers_then_waits() {
    let server = Server::start(FakeOptions::default()).await;
    server
        .fake
        .push_fault(FaultRule::always(Fault::SlowFirstByte { delay_ms: 600 }));
    let started = Instant::now();
    let response = post_anthropic(&server, &anthropic_body(true))
        .send()
        .await
        .unwrap();
    let headers_at = started.elapsed();
    assert!(
        headers_at < Duration::from_millis(400),
        "headers took {headers_at:?}"
    );
    let bytes = response.bytes().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(
        sse_events(&bytes).last().unwrap().0.as_deref(),
        Some("message_stop")
    );

    let started = Instant::now();
    let response = post_anthropic(&server, &anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));
    let v = body_json(&response.bytes().await.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(v["type"], "message");
    server.shutdown().await;
}

#[tokio::test]
async fn latency_fault_and_options_delay_the_answer() {
    let server = Server::start(FakeOptions {
        latency: Duration::from_millis(100),
        chunk_delay: Duration::from_millis(30),
    })
    .await;
    server
        .fake
        .push_fault(FaultRule::always(Fault::Latency { ms: 300 }).model("slow"));
    let started = Instant::now();
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "slow", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);

    let started = Instant::now();
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap();
    let headers_at = started.elapsed();
    assert!(headers_at >= Duration::from_millis(100) && headers_at < Duration::from_millis(300));
    let events = sse_events(&response.bytes().await.unwrap());
    let gaps = events.len() as u32 - 1;
    assert!(started.elapsed() >= Duration::from_millis(100) + gaps * Duration::from_millis(30));
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_and_streams() {
    let fake = FakeProvider::new(FakeOptions::default());
    fake.push_fault(FaultRule::always(Fault::Malformed));
    let (status, _, bytes) = send(&fake, openai_request(openai_body(false))).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    let (status, headers, bytes) = send(&fake, anthropic_request(anthropic_body(true), true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(events[0].starts_with("event: message_start\ndata: "));
    let garbage = events[1]
        .strip_prefix("event: content_block_delta\ndata: ")
        .unwrap();
    assert!(serde_json::from_str::<Value>(garbage).is_err());
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    let (_, _, bytes) = send(
        &fake,
        ollama_request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
    )
    .await;
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(serde_json::from_str::<Value>(lines[0]).is_ok());
    assert!(serde_json::from_str::<Value>(lines[1]).is_err());
}

#[tokio::test]
async fn status_faults_use_each_formats_error_body() {
    let fake = FakeProvider::new(FakeOptions::default());
    let status = |status, retry: Option<f64>| Fault::Status {
        status,
        retry_after_seconds: retry,
        body: None,
    };
    fake.push_fault(
        FaultRule::always(status(529, None))
            .format(Format::Anthropic)
            .model("busy"),
    );
    fake.push_fault(FaultRule::always(status(429, Some(2.0))).format(Format::Anthropic));
    fake.push_fault(FaultRule::always(status(429, Some(1.5))).format(Format::Openai));
    fake.push_fault(FaultRule::always(status(429, Some(7.0))).format(Format::Gemini));
    fake.push_fault(FaultRule::always(status(503, None)).format(Format::Ollama));

    let mut busy = anthropic_body(false);
    busy["model"] = json!("busy");
    let (code, _, bytes) = send(&fake, anthropic_request(busy, true)).await;
    assert_eq!(code, 529);
    assert_eq!(body_json(&bytes)["error"]["type"], "overloaded_error");

    let (code, headers, bytes) = send(&fake, anthropic_request(anthropic_body(true), true)).await;
    assert_eq!(code, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(headers["content-type"], "application/json");
    let v = body_json(&bytes);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["request_id"], headers["request-id"].to_str().unwrap());

    let (code, headers, bytes) = send(&fake, openai_request(openai_body(false))).await;
    assert_eq!(code, 429);
    assert_eq!(
        (&headers["retry-after"], &headers["retry-after-ms"]),
        (&"2".parse().unwrap(), &"1500".parse().unwrap())
    );
    let v = body_json(&bytes);
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");

    let gemini_body = json!({"contents": [{"parts": [{"text": "x"}]}]});
    let (code, headers, bytes) = send(
        &fake,
        gemini_request("g:generateContent", Some("k"), gemini_body),
    )
    .await;
    assert_eq!(code, 429);
    assert_eq!(headers["retry-after"], "7");
    let v = body_json(&bytes);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["details"][0]["retryDelay"], "7s");

    let (code, _, bytes) = send(&fake, ollama_request(json!({"model": "m", "messages": []}))).await;
    assert_eq!(code, 503);
    assert!(
        body_json(&bytes)["error"]
            .as_str()
            .unwrap()
            .contains("busy")
    );

    fake.reset();
    fake.push_fault(FaultRule::always(Fault::Status {
        status: 500,
        retry_after_seconds: None,
        body: Some(json!({"custom": true})),
    }));
    let (code, _, bytes) = send(&fake, openai_request(openai_body(false))).await;
    assert_eq!(code, 500);
    assert_eq!(body_json(&bytes), json!({"custom": true}));
}

#[tokio::test]
async fn content_filter_is_format_correct() {
    let fake = FakeProvider::new(FakeOptions::default());
    fake.push_fault(FaultRule::always(Fault::ContentFilter));
    let v = body_json(
        &send(&fake, anthropic_request(anthropic_body(false), true))
            .await
            .2,
    );
    assert_eq!(v["stop_reason"], "refusal");
    let events = sse_events(
        &send(&fake, anthropic_request(anthropic_body(true), true))
            .await
            .2,
    );
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "refusal"
    );

    let v = body_json(&send(&fake, openai_request(openai_body(false))).await.2);
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let events = sse_events(&send(&fake, openai_request(openai_body(true))).await.2);
    assert_eq!(
        events[events.len() - 2].1["choices"][0]["finish_reason"],
        "content_filter"
    );

    let body = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]});
    let v = body_json(
        &send(
            &fake,
            gemini_request("g:generateContent", Some("k"), body.clone()),
        )
        .await
        .2,
    );
    let cand = &v["candidates"][0];
    assert_eq!(cand["finishReason"], "SAFETY");
    assert!(cand.get("content").is_none());
    assert!(
        cand["safetyRatings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["blocked"] == true)
    );
    let events = sse_events(
        &send(
            &fake,
            gemini_request("g:streamGenerateContent?alt=sse", Some("k"), body),
        )
        .await
        .2,
    );
    let last = &events.last().unwrap().1["candidates"][0];
    assert_eq!(last["finishReason"], "SAFETY");
    assert!(last.get("content").is_none());

    let v = body_json(
        &send(&fake, ollama_request(json!({"model": "m", "stream": false, "messages": [{"role": "user", "content": "x"}]})))
            .await
            .2,
    );
    assert_eq!(v["message"]["content"], "I can't help with that.");
    assert_eq!(fake.calls().faults_by_kind["content_filter"], 7);
}

#[tokio::test]
async fn times_is_exact_under_200_concurrent_requests() {
    let server = Server::start(FakeOptions::default()).await;
    server.fake.push_fault(
        FaultRule::always(Fault::Status {
            status: 503,
            retry_after_seconds: None,
            body: None,
        })
        .times(5),
    );
    let client = client();
    let requests = (0..200).map(|i| {
        let client = client.clone();
        let url = server.url("/v1/chat/completions");
        async move {
            let body = json!({"model": format!("m{}", i % 4), "messages": [{"role": "user", "content": "x"}]});
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 195);
    let calls = server.fake.calls();
    assert_eq!((calls.total, calls.faulted), (200, 5));
    assert_eq!(calls.by_format[&Format::Openai], 200);
    for m in 0..4 {
        assert_eq!(calls.count(Format::Openai, &format!("m{m}")), 50);
        assert_eq!(calls.by_model[&format!("m{m}")], 50);
    }
    assert_eq!(calls.recent.len(), super::RECENT_CAPACITY);
    server.shutdown().await;
}

#[tokio::test]
async fn control_routes_over_http() {
    let server = Server::start(FakeOptions::default()).await;
    let client = client();
    let rules = json!([
        {"format": "openai", "model": "a", "times": 2, "fault": {"kind": "status", "status": 429}},
        {"format": "ollama", "fault": {"kind": "malformed"}}
    ]);
    let added: Value = client
        .post(server.url("/_fake/faults"))
        .json(&rules)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added, json!({"added": 2, "active": 2}));
    let one = json!({"fault": {"kind": "latency", "ms": 1}, "stream": true});
    let added: Value = client
        .post(server.url("/_fake/faults"))
        .json(&one)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["active"], 3);
    for bad in [
        json!({"fault": {"kind": "nope"}}),
        json!({"fault": {"kind": "status", "status": 200}}),
        json!([{"times": 1}]),
    ] {
        let response = client
            .post(server.url("/_fake/faults"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }

    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    let post = |model: &str| {
        client
            .post(server.url("/v1/chat/completions"))
            .json(&body(model))
            .send()
    };
    assert_eq!(post("b").await.unwrap().status(), 200);
    assert_eq!(post("a").await.unwrap().status(), 429);

    let listed: Value = client
        .get(server.url("/_fake/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["remaining"], 1);
    assert_eq!(listed[0]["fault"]["kind"], "status");
    assert_eq!(listed[1]["remaining"], Value::Null);

    let calls: CallStats = client
        .get(server.url("/_fake/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((calls.total, calls.faulted), (2, 1));
    assert_eq!(calls.count(Format::Openai, "a"), 1);
    assert_eq!(calls.recent[1].body["model"], "a");
    assert_eq!(calls, server.fake.calls());

    let cleared: Value = client
        .delete(server.url("/_fake/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared, json!({"cleared": 3}));
    assert_eq!(post("a").await.unwrap().status(), 200);

    let reset = client
        .post(server.url("/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(server.fake.calls().total, 0);
    let missing = client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn every_format_streams_over_tcp() {
    let server = Server::start(FakeOptions::default()).await;
    let client = client();
    let response = post_anthropic(&server, &anthropic_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(
        sse_events(&response.bytes().await.unwrap())
            .last()
            .unwrap()
            .1["type"],
        "message_stop"
    );
    let response = client
        .post(server.url("/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sse_events(&response.bytes().await.unwrap())
            .last()
            .unwrap()
            .1,
        "[DONE]"
    );
    let response = client
        .post(server.url("/v1beta/models/gemini-test:streamGenerateContent?alt=sse&key=k"))
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    let events = sse_events(&response.bytes().await.unwrap());
    assert_eq!(
        events.last().unwrap().1["candidates"][0]["finishReason"],
        "STOP"
    );
    let response = client
        .post(server.url("/api/chat"))
        .json(&json!({"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        ndjson(&response.bytes().await.unwrap()).last().unwrap()["done"],
        true
    );
    let calls = server.fake.calls();
    assert!(Format::ALL.iter().all(|f| calls.by_format[f] == 1));
    server.shutdown().await;
}
