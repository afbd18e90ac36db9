//! `aimesh bench gateway`: what the model gateway adds in front of a fast upstream.
//!
//! The upstream is nginx serving a fixed OpenAI completion (and a fixed event stream), so the
//! upstream is not what is measured; without nginx on the machine the built-in fake provider
//! stands in (and the figures say so). An `aimesh node` runs as its own process. Each
//! scenario alternates rounds straight to the upstream and through aimesh's
//! `/v1/chat/completions`, and reports p50 / p99 of both and their difference: closed loop at
//! concurrency 1 and at 32 connections, open loop at 1,000 and 5,000 requests/s, time to first
//! token when streaming, and the highest open-loop rate served with zero errors.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use serde_json::json;

use super::load::{self, Run, Target, quantile_ms};

/// `aimesh bench gateway` options.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Seconds per round.
    #[arg(long, default_value_t = 2.0)]
    pub round_seconds: f64,
    /// Rounds per path and scenario (alternating direct and through aimesh).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

fn sse_body() -> String {
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"c","object":"chat.completion.chunk","created":0,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}\n\n"#
        )
    };
    let mut body = chunk(r#"{"role":"assistant","content":"Hello"}"#, "null");
    body.push_str(&chunk(
        r#"{"content":" from the benchmark upstream."}"#,
        "null",
    ));
    body.push_str(&chunk("{}", r#""stop""#));
    body.push_str(r#"data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\n"#);
    body.push_str(r"data: [DONE]\n\n");
    body
}

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("nothing listens on port {port}")
}

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

async fn start_nginx(dir: &Path, port: u16) -> anyhow::Result<Option<Child>> {
    let Some(nginx) = nginx_binary() else {
        return Ok(None);
    };
    let escape = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
    let conf = format!(
        "master_process off;\ndaemon off;\nerror_log stderr crit;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           keepalive_requests 10000000;\n  keepalive_timeout 300s;\n  tcp_nodelay on;\n\
           server {{\n    listen 127.0.0.1:{port};\n\
             location /sse/ {{ default_type text/event-stream; return 200 '{sse}'; }}\n\
             location / {{ default_type application/json; return 200 '{json}'; }}\n  }}\n}}\n",
        dir = dir.display(),
        sse = escape(&sse_body()),
        json = escape(COMPLETION),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = tokio::process::Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting nginx")?;
    wait_port(port).await?;
    Ok(Some(Child(child)))
}

async fn start_fake(port: u16) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args(["fake-provider", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the fake provider")?;
    wait_port(port).await?;
    Ok(Child(child))
}

async fn start_node(
    dir: &Path,
    port: u16,
    upstream: u16,
    sse_prefix: &str,
) -> anyhow::Result<Child> {
    let conf = format!(
        "[[node]]\nname = \"bench\"\napi = \"127.0.0.1:{port}\"\n\
         [gateway]\nmax_in_flight = 100000\noffline_fallback = false\n\
         [gateway.cache]\nenabled = false\n\
         [gateway.providers.upstream]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:{upstream}\"\n\
         [gateway.providers.upstream-sse]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:{upstream}{sse_prefix}\"\n\
         [gateway.models.bench]\nprovider = \"upstream\"\nmodel = \"bench-model\"\n\
         [gateway.models.bench-sse]\nprovider = \"upstream-sse\"\nmodel = \"bench-model\"\n\
         [gateway.chains]\nbench = [\"bench\"]\nbench-sse = [\"bench-sse\"]\n"
    );
    let path = dir.join("bench.toml");
    std::fs::write(&path, conf)?;
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .arg("node")
        .arg("--config")
        .arg(&path)
        .arg("--name")
        .arg("bench")
        .env("RUST_LOG", "warn")
        .envs(
            std::env::var("AIMESH_BENCH_NODE_THREADS")
                .ok()
                .map(|t| ("TOKIO_WORKER_THREADS", t)),
        )
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the aimesh node")?;
    wait_port(port).await?;
    Ok(Child(child))
}

fn body(model: &str, stream: bool) -> Bytes {
    let mut b = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Say hello to the benchmark."}
        ],
        "max_tokens": 64
    });
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(b.to_string())
}

#[derive(Debug, serde::Serialize)]
struct Row {
    scenario: String,
    direct_p50_ms: f64,
    direct_p99_ms: f64,
    aimesh_p50_ms: f64,
    aimesh_p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
    direct_rps: f64,
    aimesh_rps: f64,
    errors: u64,
}

enum Load {
    Closed(usize),
    Open(f64),
}

async fn scenario(
    name: &str,
    direct: &Target,
    through: &Target,
    how: &Load,
    args: &GatewayArgs,
) -> anyhow::Result<Row> {
    let round = Duration::from_secs_f64(args.round_seconds);
    let run = |t: Target| async move {
        match how {
            Load::Closed(c) => load::closed(&t, *c, round).await,
            Load::Open(rate) => load::open(&t, *rate, round, 256).await,
        }
    };
    let (mut d, mut a) = (Run::default(), Run::default());
    for _ in 0..args.rounds.max(1) {
        d.merge(run(direct.clone()).await?);
        a.merge(run(through.clone()).await?);
    }
    let streamed = direct.stream;
    let (dl, al) = if streamed {
        (&mut d.first_token, &mut a.first_token)
    } else {
        (&mut d.latency, &mut a.latency)
    };
    let (d50, d99) = (quantile_ms(dl, 0.5), quantile_ms(dl, 0.99));
    let (a50, a99) = (quantile_ms(al, 0.5), quantile_ms(al, 0.99));
    Ok(Row {
        scenario: name.to_owned(),
        direct_p50_ms: d50,
        direct_p99_ms: d99,
        aimesh_p50_ms: a50,
        aimesh_p99_ms: a99,
        added_p50_ms: a50 - d50,
        added_p99_ms: a99 - d99,
        direct_rps: d.rate(),
        aimesh_rps: a.rate(),
        errors: d.errors + a.errors,
    })
}

/// Runs the gateway benchmark and prints its figures.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let upstream_port = crate::ports::free_port()?;
    let (_upstream, upstream_kind, sse_prefix) =
        match start_nginx(dir.path(), upstream_port).await? {
            Some(nginx) => (nginx, "nginx (fixed completion)", "/sse"),
            None => (
                start_fake(upstream_port).await?,
                "aimesh fake-provider (nginx not installed)",
                "",
            ),
        };
    let node_port = crate::ports::free_port()?;
    let _node = start_node(dir.path(), node_port, upstream_port, sse_prefix).await?;
    let up: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
    let node: SocketAddr = ([127, 0, 0, 1], node_port).into();
    let target = |addr, path: &str, model: &str, stream: bool| Target {
        addr,
        path: path.to_owned(),
        body: body(model, stream),
        stream,
    };
    let direct = target(up, "/v1/chat/completions", "bench-model", false);
    let through = target(node, "/v1/chat/completions", "bench", false);
    let direct_sse = target(
        up,
        &format!("{sse_prefix}/v1/chat/completions"),
        "bench-model",
        true,
    );
    let through_sse = target(node, "/v1/chat/completions", "bench-sse", true);
    // Warm both paths (connections, pools, caches).
    load::closed(&direct, 4, Duration::from_millis(300)).await?;
    load::closed(&through, 4, Duration::from_millis(300)).await?;

    let mut rows = Vec::new();
    rows.push(scenario("concurrency 1", &direct, &through, &Load::Closed(1), &args).await?);
    rows.push(
        scenario(
            "32 connections",
            &direct,
            &through,
            &Load::Closed(32),
            &args,
        )
        .await?,
    );
    rows.push(
        scenario(
            "open loop 1,000/s",
            &direct,
            &through,
            &Load::Open(1000.0),
            &args,
        )
        .await?,
    );
    rows.push(
        scenario(
            "open loop 5,000/s",
            &direct,
            &through,
            &Load::Open(5000.0),
            &args,
        )
        .await?,
    );
    rows.push(
        scenario(
            "stream TTFT, concurrency 1",
            &direct_sse,
            &through_sse,
            &Load::Closed(1),
            &args,
        )
        .await?,
    );
    rows.push(
        scenario(
            "stream TTFT, 32 connections",
            &direct_sse,
            &through_sse,
            &Load::Closed(32),
            &args,
        )
        .await?,
    );

    // The highest open-loop rate through aimesh with zero errors (and p99 under 100 ms).
    let mut best = 0.0;
    for rate in [
        2_000.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 25_000.0, 30_000.0, 40_000.0,
    ] {
        let mut r = load::open(
            &through,
            rate,
            Duration::from_secs_f64(args.round_seconds),
            512,
        )
        .await?;
        let p99 = quantile_ms(&mut r.latency, 0.99);
        if r.errors > 0 || p99 > 100.0 || r.rate() < rate * 0.95 {
            break;
        }
        best = rate;
    }

    let mut out = std::io::stdout();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "upstream": upstream_kind, "scenarios": rows, "max_zero_error_rate": best,
            }))?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "aimesh bench gateway — upstream: {upstream_kind}; {} × {:.1} s rounds per path, interleaved",
        args.rounds, args.round_seconds
    )?;
    writeln!(
        out,
        "{:<30} {:>16} {:>16} {:>16} {:>10} {:>10} {:>6}",
        "scenario",
        "direct p50/p99",
        "aimesh p50/p99",
        "added p50/p99",
        "direct/s",
        "aimesh/s",
        "errors"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<30} {:>7.3}/{:<8.3} {:>7.3}/{:<8.3} {:>7.3}/{:<8.3} {:>10.0} {:>10.0} {:>6}",
            r.scenario,
            r.direct_p50_ms,
            r.direct_p99_ms,
            r.aimesh_p50_ms,
            r.aimesh_p99_ms,
            r.added_p50_ms,
            r.added_p99_ms,
            r.direct_rps,
            r.aimesh_rps,
            r.errors
        )?;
    }
    writeln!(out, "(milliseconds; stream rows are time to first token)")?;
    writeln!(
        out,
        "highest open-loop rate through aimesh with zero errors and p99 < 100 ms: {best:.0} requests/s"
    )?;
    Ok(())
}
