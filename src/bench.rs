//! `aimesh bench`: the figures behind the foundation's performance targets, in one run.
//!
//! - Agent spawn time and resident memory per idle agent, over N agents (default 100,000),
//!   beside a baseline of N bare tokio tasks each owning an mpsc receiver. Each side runs in its
//!   own child process so one's freed memory cannot flatter the other's RSS.
//! - Tasks per second end to end in-process: the seed's task on a default network (four
//!   specialists + synthesis with the offline model), submitted, processed and awaited.
//! - The same through HTTP on loopback (submit, then process with `?wait`).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use aimesh_actors::node::{NewNetwork, NewTask};
use aimesh_actors::priority::Priority;
use aimesh_actors::store::InMemoryStore;
use aimesh_actors::types::{AgentParameters, AgentSpec, TaskStatus};
use aimesh_actors::{Node, NodeOptions};

/// `aimesh bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Agents to spawn for the spawn/memory figures.
    #[arg(long, default_value_t = 100_000)]
    pub agents: usize,
    /// Tasks for the in-process throughput figure.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Tasks for the HTTP throughput figure.
    #[arg(long, default_value_t = 5_000)]
    pub http_tasks: usize,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one measurement and print it as JSON (used in child processes).
    #[arg(long, hide = true, value_enum)]
    pub part: Option<Part>,
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Spawn agents in a real network.
    Agents,
    /// Spawn bare tokio tasks with an mpsc receiver each.
    Baseline,
}

#[derive(Debug, Serialize, Deserialize)]
struct SpawnFigures {
    count: usize,
    total_ms: f64,
    per_item_us: f64,
    rss_bytes_per_item: f64,
}

#[derive(Debug, Serialize)]
struct Throughput {
    tasks: usize,
    completed: usize,
    seconds: f64,
    tasks_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
}

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared text lib data dt (in pages)
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn node_options(name: &str) -> NodeOptions {
    let mut o = NodeOptions::new(name, Arc::new(InMemoryStore::new()));
    o.max_unfinished_tasks = 1_000_000;
    o.settings.call_timeout = Duration::from_secs(120);
    o
}

async fn spawn_agents(n: usize) -> anyhow::Result<SpawnFigures> {
    let node = Node::start(node_options("bench-agents")).await?;
    let agents: Vec<AgentSpec> = (0..n)
        .map(|i| {
            let mut parameters = AgentParameters::for_kind("content");
            parameters.concurrency = 1;
            AgentSpec {
                agent_id: aimesh_actors::ids::AgentId::new(),
                name: format!("Agent {i}"),
                kind: "content".into(),
                model: "offline".into(),
                description: String::new(),
                parameters,
                capabilities: vec!["copywriting".into()],
            }
        })
        .collect();
    let before = rss_bytes();
    let start = Instant::now();
    node.create_network(NewNetwork {
        name: "spawn".into(),
        description: String::new(),
        max_iterations: 1,
        timeout_seconds: 60,
        agents: Some(agents),
    })
    .await?;
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_bytes();
    Ok(SpawnFigures {
        count: n,
        total_ms: elapsed.as_secs_f64() * 1000.0,
        per_item_us: elapsed.as_secs_f64() * 1e6 / n as f64,
        rss_bytes_per_item: after.saturating_sub(before) as f64 / n as f64,
    })
}

async fn spawn_baseline(n: usize) -> SpawnFigures {
    let before = rss_bytes();
    let start = Instant::now();
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        handles.push(tokio::spawn(async move {
            let mut seen = 0u64;
            while let Some(v) = rx.recv().await {
                seen = seen.wrapping_add(v);
            }
            seen
        }));
        senders.push(tx);
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_bytes();
    drop(senders);
    for h in handles {
        let _ = h.await;
    }
    SpawnFigures {
        count: n,
        total_ms: elapsed.as_secs_f64() * 1000.0,
        per_item_us: elapsed.as_secs_f64() * 1e6 / n as f64,
        rss_bytes_per_item: after.saturating_sub(before) as f64 / n as f64,
    }
}

fn seed_task() -> NewTask {
    NewTask {
        task: "Create an email campaign for a new product launch targeting tech professionals"
            .into(),
        context: serde_json::json!({
            "product_name": "TechPro X1",
            "product_description": "Advanced AI-powered development tool",
            "target_audience": "Software developers and IT professionals",
            "key_features": ["AI code completion", "Automated testing", "Performance optimization"]
        }),
        priority: Priority::DEFAULT,
        max_iterations: None,
        timeout_seconds: None,
    }
}

async fn default_network(node: &Node) -> anyhow::Result<aimesh_actors::ids::NetworkId> {
    Ok(node
        .create_network(NewNetwork {
            name: "Email Campaign Assistant".into(),
            description: "bench".into(),
            max_iterations: 10,
            timeout_seconds: 300,
            agents: None,
        })
        .await?
        .record
        .network_id)
}

async fn tasks_in_process(n: usize, concurrency: usize) -> anyhow::Result<Throughput> {
    let node = Node::start(node_options("bench-tasks")).await?;
    let net = default_network(&node).await?;
    let start = Instant::now();
    let results = futures::future::join_all((0..concurrency.max(1)).map(|w| {
        let node = node.clone();
        async move {
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                let t0 = Instant::now();
                let t = node.submit_task(net, seed_task()).await?;
                node.process_task(net, t.task_id).await?;
                let done = node
                    .wait_task(net, t.task_id, Duration::from_secs(60))
                    .await?;
                out.push((done.status == TaskStatus::Completed, t0.elapsed()));
                i += concurrency;
            }
            anyhow::Ok(out)
        }
    }))
    .await;
    let seconds = start.elapsed().as_secs_f64();
    node.shutdown().await;
    summarize(n, seconds, results)
}

fn summarize(
    n: usize,
    seconds: f64,
    results: Vec<anyhow::Result<Vec<(bool, Duration)>>>,
) -> anyhow::Result<Throughput> {
    let mut latencies = Vec::with_capacity(n);
    let mut completed = 0;
    for r in results {
        for (ok, d) in r? {
            completed += usize::from(ok);
            latencies.push(d);
        }
    }
    latencies.sort();
    Ok(Throughput {
        tasks: n,
        completed,
        seconds,
        tasks_per_second: n as f64 / seconds,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
    })
}

async fn tasks_over_http(n: usize, concurrency: usize) -> anyhow::Result<Throughput> {
    let config = crate::config::Config::parse(
        std::path::Path::new("bench.toml"),
        "[[node]]\nname = \"bench-http\"\napi = \"127.0.0.1:0\"\n[limits]\nmax_unfinished_tasks = 1000000\n",
    )?;
    let node_config = config.nodes[0].clone();
    let (node, app) = crate::server::start(&config, &node_config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}/api/mesh");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let created: serde_json::Value = client
        .post(format!("{base}/networks"))
        .json(&serde_json::json!({"name": "bench", "description": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let net = created["network_id"]
        .as_str()
        .context("no network_id in the create response")?
        .to_owned();
    let body = serde_json::json!({
        "task": "Create an email campaign for a new product launch targeting tech professionals",
        "context": {
            "product_name": "TechPro X1",
            "product_description": "Advanced AI-powered development tool",
            "target_audience": "Software developers and IT professionals",
            "key_features": ["AI code completion", "Automated testing", "Performance optimization"]
        },
        "priority": 3
    });
    let start = Instant::now();
    let results = futures::future::join_all((0..concurrency.max(1)).map(|w| {
        let client = client.clone();
        let base = base.clone();
        let net = net.clone();
        let body = body.clone();
        async move {
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                let t0 = Instant::now();
                let task: serde_json::Value = client
                    .post(format!("{base}/networks/{net}/tasks"))
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = task["task_id"].as_str().context("no task_id")?.to_owned();
                let done: serde_json::Value = client
                    .post(format!("{base}/networks/{net}/tasks/{id}/process?wait=60"))
                    .send()
                    .await?
                    .json()
                    .await?;
                out.push((done["status"] == "completed", t0.elapsed()));
                i += concurrency;
            }
            anyhow::Ok(out)
        }
    }))
    .await;
    let seconds = start.elapsed().as_secs_f64();
    server.abort();
    node.shutdown().await;
    summarize(n, seconds, results)
}

async fn in_child(part: &str, n: usize) -> anyhow::Result<SpawnFigures> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .args(["bench", "--part", part, "--agents", &n.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "bench part {part} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    if let Some(part) = args.part {
        let figures = match part {
            Part::Agents => spawn_agents(args.agents).await?,
            Part::Baseline => spawn_baseline(args.agents).await,
        };
        writeln!(out, "{}", serde_json::to_string(&figures)?)?;
        return Ok(());
    }
    let agents = in_child("agents", args.agents).await?;
    let baseline = in_child("baseline", args.agents).await?;
    let local = tasks_in_process(args.tasks, args.concurrency).await?;
    let http = tasks_over_http(args.http_tasks, args.concurrency.min(64)).await?;
    let report = serde_json::json!({
        "agents": agents,
        "baseline": baseline,
        "spawn_ratio": agents.per_item_us / baseline.per_item_us.max(1e-9),
        "in_process": local,
        "http": http,
    });
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "aimesh bench ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )?;
    writeln!(out, "spawn + idle memory, {} of each:", agents.count)?;
    writeln!(
        out,
        "  aimesh agent (in a network)  {:>8.2} µs/spawn  {:>8.0} B RSS each",
        agents.per_item_us, agents.rss_bytes_per_item
    )?;
    writeln!(
        out,
        "  tokio task + mpsc baseline   {:>8.2} µs/spawn  {:>8.0} B RSS each",
        baseline.per_item_us, baseline.rss_bytes_per_item
    )?;
    writeln!(
        out,
        "  ratio                        {:>8.1}×           {:>8.1}×",
        agents.per_item_us / baseline.per_item_us.max(1e-9),
        agents.rss_bytes_per_item / baseline.rss_bytes_per_item.max(1.0)
    )?;
    for (label, t) in [("in-process", &local), ("HTTP loopback", &http)] {
        writeln!(
            out,
            "tasks end to end, {label}: {:.0} tasks/s ({} tasks, {} completed, {:.2} s; latency p50 {:.1} ms, p99 {:.1} ms)",
            t.tasks_per_second, t.tasks, t.completed, t.seconds, t.latency_p50_ms, t.latency_p99_ms
        )?;
    }
    Ok(())
}
