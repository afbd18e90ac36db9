//! `aimesh bench storage`: durable memory writes and reads per node, search latency at 10,000
//! and 100,000 items, and task submit-to-durable latency, on the embedded store (and on
//! PostgreSQL when `AIMESH_DATABASE_URL` is set), beside redis-server with
//! `appendfsync everysec` on the same payload in the same run (when redis is installed).
//!
//! The comparison is not like for like, and the table says so: an aimesh write is acknowledged
//! after its commit is fsynced; redis `everysec` acknowledges before, and may lose the last
//! second of writes.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use aimesh_actors::ids::{MemoryId, NetworkId};
use aimesh_actors::node::{NewNetwork, NewTask};
use aimesh_actors::priority::Priority;
use aimesh_actors::store::{EmbeddedStore, Store};
use aimesh_actors::types::{MemoryItem, MemoryKind, MemoryQuery, now};
use aimesh_actors::{Node, NodeOptions};

/// `aimesh bench storage` options.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Memory writes to time.
    #[arg(long, default_value_t = 20_000)]
    pub writes: usize,
    /// Writes (and reads) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Bytes of content per item (also redis's value size).
    #[arg(long, default_value_t = 300)]
    pub payload: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let q = |p: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .map_or(f64::NAN, ms)
    };
    (q(0.5), q(0.99))
}

const WORDS: &[&str] = &[
    "invoice",
    "billing",
    "deploy",
    "canary",
    "brand",
    "voice",
    "pricing",
    "seat",
    "trial",
    "customer",
    "security",
    "encryption",
    "onboarding",
    "email",
    "campaign",
    "launch",
    "metric",
    "retention",
    "churn",
    "support",
    "ticket",
    "roadmap",
    "feature",
    "release",
    "incident",
    "latency",
    "database",
    "backup",
    "region",
    "quota",
    "contract",
    "renewal",
    "discount",
];

fn text(i: usize, payload: usize) -> String {
    let mut s = String::with_capacity(payload + 16);
    let mut x = i.wrapping_mul(2_654_435_761) | 1;
    while s.len() < payload {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[x % WORDS.len()]);
        s.push(' ');
    }
    s.truncate(payload);
    s
}

fn item(net: NetworkId, i: usize, payload: usize) -> MemoryItem {
    let at = now();
    MemoryItem {
        memory_id: MemoryId::new(),
        network_id: net,
        kind: MemoryKind::Fact,
        content: Value::String(text(i, payload)),
        metadata: Default::default(),
        agent_id: None,
        task_id: None,
        session_id: None,
        created_at: at,
        updated_at: at,
        expires_at: None,
    }
}

async fn node(store: Arc<dyn Store>, name: &str) -> anyhow::Result<Node> {
    let mut o = NodeOptions::new(name, store);
    o.sweep_interval = None;
    o.max_unfinished_tasks = 10_000_000;
    o.settings.call_timeout = Duration::from_secs(120);
    Ok(Node::start(o).await?)
}

async fn network(node: &Node) -> anyhow::Result<NetworkId> {
    Ok(node
        .create_network(NewNetwork {
            name: "bench".into(),
            description: String::new(),
            max_iterations: 1,
            timeout_seconds: 60,
            agents: None,
            budget_usd: None,
            retention: None,
            network_id: None,
        })
        .await?
        .record
        .network_id)
}

/// Runs `n` operations, `concurrency` at a time; returns (ops/s, latencies).
async fn drive<F, Fut>(n: usize, concurrency: usize, op: F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w;
                while i < n {
                    let t = Instant::now();
                    op(i).await?;
                    lat.push(t.elapsed());
                    i += concurrency.max(1);
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await??);
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), all))
}

async fn backend(label: &str, store: Arc<dyn Store>, args: &StorageArgs) -> anyhow::Result<Value> {
    let node = node(store, &format!("bench-{label}")).await?;
    let net = network(&node).await?;
    let payload = args.payload;
    let (write_rate, write_lat) = {
        let node = node.clone();
        drive(args.writes, args.concurrency, move |i| {
            let node = node.clone();
            async move {
                node.add_memory(item(net, i, payload)).await?;
                Ok(())
            }
        })
        .await?
    };
    let (read_rate, read_lat) = {
        let node = node.clone();
        drive(args.writes, args.concurrency, move |i| {
            let node = node.clone();
            async move {
                let q = MemoryQuery {
                    limit: 10,
                    offset: i % 100,
                    kinds: vec![MemoryKind::Fact],
                    ..Default::default()
                };
                node.memory(net, &q).await?;
                Ok(())
            }
        })
        .await?
    };
    let (submit_rate, submit_lat) = {
        let node = node.clone();
        drive(args.writes / 4, args.concurrency, move |i| {
            let node = node.clone();
            async move {
                node.submit_task(
                    net,
                    NewTask {
                        task: format!("Write launch email {i}"),
                        context: json!({}),
                        priority: Priority::DEFAULT,
                        max_iterations: None,
                        timeout_seconds: None,
                        client_traceparent: None,
                    },
                )
                .await?;
                Ok(())
            }
        })
        .await?
    };
    let (_, submit_alone) = {
        let node = node.clone();
        drive(500, 1, move |i| {
            let node = node.clone();
            async move {
                node.submit_task(
                    net,
                    NewTask {
                        task: format!("Write one email {i}"),
                        context: json!({}),
                        priority: Priority::DEFAULT,
                        max_iterations: None,
                        timeout_seconds: None,
                        client_traceparent: None,
                    },
                )
                .await?;
                Ok(())
            }
        })
        .await?
    };
    node.shutdown().await;
    let (w50, w99) = quantiles(write_lat);
    let (r50, r99) = quantiles(read_lat);
    let (s50, s99) = quantiles(submit_lat);
    let (a50, a99) = quantiles(submit_alone);
    Ok(json!({
        "backend": label,
        "durable_writes_per_s": write_rate, "write_p50_ms": w50, "write_p99_ms": w99,
        "reads_per_s": read_rate, "read_p50_ms": r50, "read_p99_ms": r99,
        "submits_per_s": submit_rate, "submit_to_durable_p50_ms": s50, "submit_to_durable_p99_ms": s99,
        "submit_to_durable_alone_p50_ms": a50, "submit_to_durable_alone_p99_ms": a99,
    }))
}

async fn search(items: usize, store: Arc<dyn Store>, index: &str) -> anyhow::Result<Value> {
    let node = node(store.clone(), &format!("bench-search-{index}-{items}")).await?;
    let net = network(&node).await?;
    let started = Instant::now();
    {
        let node = node.clone();
        drive(items, 64, move |i| {
            let node = node.clone();
            async move {
                node.add_memory(item(net, i, 200)).await?;
                Ok(())
            }
        })
        .await?;
    }
    // With pgvector the vectors are indexed behind the writes: search at steady state, and
    // report how fast they were indexed.
    let mut indexed_per_s = None;
    if let Some(vs) = store.vectors() {
        while !vs.flush().await {}
        indexed_per_s = Some(items as f64 / started.elapsed().as_secs_f64());
    }
    let (_, lat) = {
        let node = node.clone();
        drive(1000, 1, move |i| {
            let node = node.clone();
            async move {
                let q = MemoryQuery {
                    limit: 10,
                    ..Default::default()
                };
                node.search_memory(net, &text(i * 7919, 60), &q).await?;
                Ok(())
            }
        })
        .await?
    };
    node.shutdown().await;
    let (p50, p99) = quantiles(lat);
    Ok(
        json!({"items": items, "index": index, "search_p50_ms": p50, "search_p99_ms": p99,
        "vectors_indexed_per_s": indexed_per_s}),
    )
}

async fn redis(args: &StorageArgs, dir: &Path) -> anyhow::Result<Option<Value>> {
    let (Ok(server), Ok(bench)) = (which("redis-server"), which("redis-benchmark")) else {
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = tokio::process::Command::new(bench)
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "set,get",
            "-d",
            &args.payload.to_string(),
            "-c",
            &args.concurrency.to_string(),
            "-n",
            &(args.writes * 5).to_string(),
            "-r",
            "1000000",
            "--csv",
        ])
        .output()
        .await?;
    let _ = child.kill().await;
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut result = json!({"appendfsync": "everysec", "payload": args.payload});
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
        if let [name, rps, _avg, _min, p50, _p95, p99, ..] = cols.as_slice() {
            result[name.to_lowercase()] = json!({"per_s": rps.parse::<f64>().unwrap_or(0.0), "p50_ms": p50.parse::<f64>().unwrap_or(0.0), "p99_ms": p99.parse::<f64>().unwrap_or(0.0)});
        }
    }
    Ok(Some(result))
}

fn which(cmd: &str) -> anyhow::Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(cmd))
                .find(|p| p.exists())
        })
        .ok_or_else(|| anyhow::anyhow!("{cmd} not found"))
}

/// Runs the storage benchmark and prints its figures.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let embedded: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("bench.redb"), 4096)?);
    let mut backends = vec![backend("embedded", embedded, &args).await?];
    let mut postgres = None;
    if let Ok(url) = std::env::var("AIMESH_DATABASE_URL") {
        let store = crate::server::open_postgres(&url, 4096).await?;
        backends.push(backend("postgres", store.clone(), &args).await?);
        postgres = Some(store);
    }
    let mut searches = Vec::new();
    for items in [10_000, 100_000] {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(
            &dir.path().join(format!("search-{items}.redb")),
            4096,
        )?);
        searches.push(search(items, store, "shards").await?);
        if let Some(pg) = postgres.as_ref().filter(|s| s.vectors().is_some()) {
            searches.push(search(items, pg.clone(), "pgvector").await?);
        }
    }
    let redis = redis(&args, dir.path()).await?;
    let report = json!({"backends": backends, "search": searches, "redis": redis});
    let mut out = std::io::stdout();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "aimesh bench storage — {} items of {} bytes, {} in flight",
        args.writes, args.payload, args.concurrency
    )?;
    for b in &backends {
        writeln!(
            out,
            "{:>9}: durable memory writes {:>8.0}/s (p50 {:.2} ms, p99 {:.2} ms); reads {:>8.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
            b["backend"].as_str().unwrap_or(""),
            b["durable_writes_per_s"].as_f64().unwrap_or(0.0),
            b["write_p50_ms"].as_f64().unwrap_or(0.0),
            b["write_p99_ms"].as_f64().unwrap_or(0.0),
            b["reads_per_s"].as_f64().unwrap_or(0.0),
            b["read_p50_ms"].as_f64().unwrap_or(0.0),
            b["read_p99_ms"].as_f64().unwrap_or(0.0)
        )?;
        writeln!(
            out,
            "           task submit-to-durable: alone p50 {:.2} ms / p99 {:.2} ms; {} in flight {:.0}/s, p50 {:.2} ms / p99 {:.2} ms",
            b["submit_to_durable_alone_p50_ms"].as_f64().unwrap_or(0.0),
            b["submit_to_durable_alone_p99_ms"].as_f64().unwrap_or(0.0),
            args.concurrency,
            b["submits_per_s"].as_f64().unwrap_or(0.0),
            b["submit_to_durable_p50_ms"].as_f64().unwrap_or(0.0),
            b["submit_to_durable_p99_ms"].as_f64().unwrap_or(0.0)
        )?;
    }
    for s in &searches {
        writeln!(
            out,
            "search over {:>7} items ({}): p50 {:.2} ms, p99 {:.2} ms{}",
            s["items"],
            s["index"].as_str().unwrap_or(""),
            s["search_p50_ms"].as_f64().unwrap_or(0.0),
            s["search_p99_ms"].as_f64().unwrap_or(0.0),
            s["vectors_indexed_per_s"]
                .as_f64()
                .map(|r| format!(" (items written and their vectors indexed: {r:.0}/s)"))
                .unwrap_or_default()
        )?;
    }
    match &redis {
        Some(r) => writeln!(
            out,
            "redis-server (appendfsync everysec, acknowledged before fsync): SET {:.0}/s (p50 {} ms, p99 {} ms), GET {:.0}/s (p50 {} ms, p99 {} ms)",
            r["set"]["per_s"].as_f64().unwrap_or(0.0),
            r["set"]["p50_ms"],
            r["set"]["p99_ms"],
            r["get"]["per_s"].as_f64().unwrap_or(0.0),
            r["get"]["p50_ms"],
            r["get"]["p99_ms"]
        )?,
        None => writeln!(
            out,
            "redis-server not installed (apt-get install redis-server) — no comparison"
        )?,
    }
    Ok(())
}
