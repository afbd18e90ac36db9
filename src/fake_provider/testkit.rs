//! Test helpers: requests in each format, a one-shot sender through the router,
//! SSE / NDJSON parsers, and a real TCP server.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::{FakeOptions, FakeProvider};

/// A JSON string value is sent raw (for malformed bodies); anything else as JSON.
fn raw(body: Value) -> Body {
    match body {
        Value::String(raw) => Body::from(raw),
        other => Body::from(other.to_string()),
    }
}

pub(crate) fn anthropic_request(body: Value, with_key: bool) -> Request {
    let mut req = axum::http::Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    if with_key {
        req = req.header("x-api-key", "sk-ant-test");
    }
    req.body(raw(body)).unwrap()
}

pub(crate) fn openai_request(body: Value) -> Request {
    axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(raw(body))
        .unwrap()
}

/// `target` is `model:method` plus any query string.
pub(crate) fn gemini_request(target: &str, key: Option<&str>, body: Value) -> Request {
    let mut req = axum::http::Request::post(format!("/v1beta/models/{target}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("x-goog-api-key", key);
    }
    req.body(raw(body)).unwrap()
}

pub(crate) fn ollama_request(body: Value) -> Request {
    axum::http::Request::post("/api/chat")
        .header("content-type", "application/json")
        .body(raw(body))
        .unwrap()
}

/// Sends one request through the router and collects the whole response.
pub(crate) async fn send(fake: &FakeProvider, req: Request) -> (StatusCode, HeaderMap, Bytes) {
    let response = fake.router().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

pub(crate) fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Parses an SSE body into (event name, data) pairs; `[DONE]` becomes a JSON string.
/// Panics on bad framing or non-JSON data.
pub(crate) fn sse_events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "SSE body must end with a blank line: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(if d == "[DONE]" {
                        Value::String(d.to_owned())
                    } else {
                        body_json(d.as_bytes())
                    });
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.unwrap())
        })
        .collect()
}

pub(crate) fn ndjson(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().map(|l| body_json(l.as_bytes())).collect()
}

/// A fake provider served on a loopback port.
pub(crate) struct Server {
    pub fake: FakeProvider,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(options: FakeOptions) -> Self {
        let fake = FakeProvider::new(options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(fake.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            fake,
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}
