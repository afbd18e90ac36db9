//! Starting node processes and talking to them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `aimesh` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aimesh"))
}

/// A free TCP port on 127.0.0.1, below the ephemeral range ([`aimesh::ports::free_port`]).
pub fn free_port() -> u16 {
    aimesh::ports::free_port().unwrap()
}

/// A temporary directory with a cluster file for `nodes` (name, port).
pub fn cluster_file(nodes: &[(&str, u16)], extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("[cluster]\nname = \"test\"\n");
    for (name, port) in nodes {
        text.push_str(&format!(
            "[[node]]\nname = \"{name}\"\napi = \"127.0.0.1:{port}\"\n"
        ));
        if nodes.len() > 1 {
            text.push_str(&format!("cluster = \"127.0.0.1:{}\"\n", free_port()));
        }
    }
    text.push_str(extra);
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `aimesh <args>` in the background.
pub fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(binary())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Runs `aimesh node --config <config> --name <name>` with `env` on top of `RUST_LOG=warn`,
/// output discarded; killed on drop.
pub fn node_with(config: &std::path::Path, name: &str, env: &[(&str, &str)]) -> Proc {
    Proc(
        Command::new(binary())
            .args(["node", "--config", config.to_str().unwrap(), "--name", name])
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A blocking HTTP client for one node.
pub struct Api {
    base: String,
    client: reqwest::blocking::Client,
}

impl Api {
    pub fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}/api/mesh"),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
    }

    /// [`post`](Self::post) with extra request headers.
    pub fn post_with_headers(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.client.delete(format!("{}{path}", self.base)))
    }

    /// The node that served `GET path` (the `x-aimesh-node` header).
    pub fn served_by(&self, path: &str) -> String {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.headers()["x-aimesh-node"].to_str().unwrap().to_owned()
    }

    /// Waits until the node answers its health check.
    pub fn wait_healthy(&self) {
        eventually(Duration::from_secs(30), "the node to be healthy", || {
            let resp = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .ok()?;
            (resp.status().as_u16() == 200).then_some(())
        });
    }
}

/// A fake provider process (`aimesh fake-provider`) on a free port, stopped on drop.
pub struct Fake {
    pub url: String,
    _proc: Proc,
}

/// Starts a fake provider answering after `latency_ms`.
pub fn fake(latency_ms: u64) -> Fake {
    let port = free_port();
    let proc = spawn(&[
        "fake-provider",
        "--port",
        &port.to_string(),
        "--latency-ms",
        &latency_ms.to_string(),
    ]);
    eventually(Duration::from_secs(20), "the fake provider", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Fake {
        url: format!("http://127.0.0.1:{port}"),
        _proc: proc,
    }
}

impl Fake {
    /// Calls received, by idempotency key.
    pub fn calls_by_key(&self) -> std::collections::HashMap<String, u64> {
        let v: Value = reqwest::blocking::get(format!("{}/_fake/calls", self.url))
            .unwrap()
            .json()
            .unwrap();
        v["by_idempotency_key"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect()
    }
}
