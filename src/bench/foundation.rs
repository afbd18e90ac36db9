//! `aimesh bench` (the foundation suite): the figures behind the foundation's performance
//! targets, in one run.
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
pub struct FoundationArgs {
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
    /// Child processes per spawn figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
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
    /// Spawn empty ractor actors: the floor any ractor-based agent stands on.
    Ractor,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SpawnFigures {
    count: usize,
    total_ms: f64,
    per_item_us: f64,
    rss_bytes_per_item: f64,
}

/// A spawn measurement twice in one process: `cold` touches fresh memory (page faults are
/// part of the cost, and are slow on virtual machines), `warm` repeats it after the first
/// round was stopped, so the allocator reuses memory already mapped.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SpawnRun {
    cold: SpawnFigures,
    warm: SpawnFigures,
}

/// Waits until the process's RSS stops shrinking (stopped actors are torn down in the
/// background), at most 10 s.
async fn settle() {
    let mut last = rss_bytes();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_bytes();
        if now >= last {
            return;
        }
        last = now;
    }
}

fn figures(count: usize, elapsed: Duration, before: u64, after: u64) -> SpawnFigures {
    SpawnFigures {
        count,
        total_ms: elapsed.as_secs_f64() * 1000.0,
        per_item_us: elapsed.as_secs_f64() * 1e6 / count.max(1) as f64,
        rss_bytes_per_item: after.saturating_sub(before) as f64 / count.max(1) as f64,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Throughput {
    pub tasks: usize,
    pub completed: usize,
    pub seconds: f64,
    pub tasks_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
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

pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub(super) fn node_options(name: &str) -> NodeOptions {
    let mut o = NodeOptions::new(name, Arc::new(InMemoryStore::new()));
    o.max_unfinished_tasks = 1_000_000;
    o.settings.call_timeout = Duration::from_secs(120);
    o.settings.max_active_tasks = 1024;
    o
}

pub(super) fn spawn_specs(n: usize) -> Vec<AgentSpec> {
    (0..n)
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
        .collect()
}

async fn spawn_agents(n: usize) -> anyhow::Result<SpawnRun> {
    let node = Node::start(node_options("bench-agents")).await?;
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let agents = spawn_specs(n);
        let before = rss_bytes();
        let start = Instant::now();
        let network = node
            .create_network(NewNetwork {
                name: "spawn".into(),
                description: String::new(),
                max_iterations: 1,
                timeout_seconds: 60,
                agents: Some(agents),
                budget_usd: None,
                retention: None,
                network_id: None,
            })
            .await?;
        let elapsed = start.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        rounds.push(figures(n, elapsed, before, rss_bytes()));
        node.delete_network(network.record.network_id).await?;
        settle().await;
    }
    Ok(SpawnRun {
        cold: rounds[0],
        warm: rounds[1],
    })
}

async fn spawn_baseline(n: usize) -> SpawnRun {
    let mut rounds = Vec::new();
    for _ in 0..2 {
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
        rounds.push(figures(n, elapsed, before, rss_bytes()));
        drop(senders);
        for h in handles {
            let _ = h.await;
        }
        settle().await;
    }
    SpawnRun {
        cold: rounds[0],
        warm: rounds[1],
    }
}

struct Idle;

impl ractor::Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

async fn spawn_ractor(n: usize) -> anyhow::Result<SpawnRun> {
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let before = rss_bytes();
        let start = Instant::now();
        let mut actors = Vec::with_capacity(n);
        // In batches, concurrently, as a network supervisor starts its agents.
        for batch in (0..n).collect::<Vec<_>>().chunks(256) {
            let started = futures::future::join_all(
                batch.iter().map(|_| ractor::Actor::spawn(None, Idle, ())),
            )
            .await;
            for s in started {
                actors.push(s?);
            }
        }
        let elapsed = start.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        rounds.push(figures(n, elapsed, before, rss_bytes()));
        for (a, h) in actors {
            a.stop(None);
            let _ = h.await;
        }
        settle().await;
    }
    Ok(SpawnRun {
        cold: rounds[0],
        warm: rounds[1],
    })
}

pub(super) fn seed_task() -> NewTask {
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
        client_traceparent: None,
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
            budget_usd: None,
            retention: None,
            network_id: None,
        })
        .await?
        .record
        .network_id)
}

pub(super) async fn tasks_in_process(n: usize, concurrency: usize) -> anyhow::Result<Throughput> {
    let node = Node::start(node_options("bench-tasks")).await?;
    let net = default_network(&node).await?;
    let start = Instant::now();
    // One spawned task per client, so the clients run on every core.
    let results = futures::future::join_all((0..concurrency.max(1)).map(|w| {
        let node = node.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                let t0 = Instant::now();
                let t = node.submit_task(net, seed_task()).await?;
                node.process_task(net, t.task_id).await?;
                let status = node
                    .wait_status(net, t.task_id, Duration::from_secs(60))
                    .await?;
                out.push((status == TaskStatus::Completed, t0.elapsed()));
                i += concurrency;
            }
            anyhow::Ok(out)
        })
    }))
    .await
    .into_iter()
    .map(|joined| joined.map_err(anyhow::Error::from).and_then(|r| r))
    .collect();
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
        tokio::spawn(async move {
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
        })
    }))
    .await
    .into_iter()
    .map(|joined| joined.map_err(anyhow::Error::from).and_then(|r| r))
    .collect();
    let seconds = start.elapsed().as_secs_f64();
    server.abort();
    node.shutdown().await;
    summarize(n, seconds, results)
}

async fn in_child(part: &str, n: usize) -> anyhow::Result<SpawnRun> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .args([
            "bench",
            "foundation",
            "--part",
            part,
            "--agents",
            &n.to_string(),
        ])
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

/// The median run of `runs` child processes, by cold spawn time.
async fn median_of(part: &str, n: usize, runs: usize) -> anyhow::Result<SpawnRun> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        all.push(in_child(part, n).await?);
    }
    all.sort_by(|a, b| a.cold.per_item_us.total_cmp(&b.cold.per_item_us));
    let mut warm: Vec<SpawnFigures> = all.iter().map(|r| r.warm).collect();
    warm.sort_by(|a, b| a.per_item_us.total_cmp(&b.per_item_us));
    Ok(SpawnRun {
        cold: all[all.len() / 2].cold,
        warm: warm[warm.len() / 2],
    })
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: FoundationArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    if let Some(part) = args.part {
        let figures = match part {
            Part::Agents => spawn_agents(args.agents).await?,
            Part::Baseline => spawn_baseline(args.agents).await,
            Part::Ractor => spawn_ractor(args.agents).await?,
        };
        writeln!(out, "{}", serde_json::to_string(&figures)?)?;
        return Ok(());
    }
    let agents = median_of("agents", args.agents, args.runs).await?;
    let baseline = median_of("baseline", args.agents, args.runs).await?;
    let floor = median_of("ractor", args.agents, args.runs).await?;
    let local = tasks_in_process(args.tasks, args.concurrency).await?;
    let http = tasks_over_http(args.http_tasks, args.concurrency.min(64)).await?;
    let ratio = |a: &SpawnFigures, b: &SpawnFigures| a.per_item_us / b.per_item_us.max(1e-9);
    let report = serde_json::json!({
        "agents": agents,
        "baseline": baseline,
        "ractor_floor": floor,
        "spawn_ratio_cold": ratio(&agents.cold, &baseline.cold),
        "spawn_ratio_warm": ratio(&agents.warm, &baseline.warm),
        "in_process": local,
        "http": http,
    });
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    writeln!(
        out,
        "aimesh bench ({cores} cores; spawn figures are the median of {} child processes)",
        args.runs.max(1)
    )?;
    writeln!(
        out,
        "spawn + idle memory, {} of each        cold (fresh memory)        warm (memory reused)",
        agents.cold.count
    )?;
    for (label, r) in [
        ("aimesh agent in a network", &agents),
        ("empty ractor actor (floor)", &floor),
        ("tokio task + mpsc baseline", &baseline),
    ] {
        writeln!(
            out,
            "  {label:<28} {:>7.2} µs {:>7.0} B/agent   {:>7.2} µs {:>7.0} B/agent",
            r.cold.per_item_us,
            r.cold.rss_bytes_per_item,
            r.warm.per_item_us,
            r.warm.rss_bytes_per_item
        )?;
    }
    writeln!(
        out,
        "  agent / baseline            {:>7.1}×                   {:>7.1}×",
        ratio(&agents.cold, &baseline.cold),
        ratio(&agents.warm, &baseline.warm)
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
