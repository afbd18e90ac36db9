//! `aimesh bench cluster`: three `aimesh node` processes on 127.0.0.1, driven from outside over
//! HTTP, as users run them.
//!
//! 1. A cross-node call's round trip (`POST /cluster/ping`, n1 → n2 through ractor_cluster)
//!    beside raw loopback TCP (blocking echo in this process) with the same payload, in
//!    alternating rounds of the same run. Target: p50 ≤ 3×.
//! 2. Cross-node subtask throughput: tasks submitted through all three nodes' APIs, and where
//!    placement ran their subtasks.
//! 3. Failure: a node that does not own the network is SIGKILLed while subtasks run on it: the
//!    time until a survivor declares it dead (target ≤ 1.5 s), until every affected task runs
//!    again (target ≤ 5 s), and whether every task still ends.
//! 4. With a PostgreSQL server (`--database-url`, a fresh database per cluster), the owner
//!    itself is killed: the time until the survivors answer for its network, start its work
//!    again, and have every unfinished task processing. Without one the round is skipped:
//!    takeover needs the shared store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod failure;
mod procs;

use failure::*;
use procs::*;

/// `aimesh bench cluster` options.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Sequential round trips for the cross-node call figure (and the raw TCP baseline).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pings: u32,
    /// Payload bytes per round trip.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub bytes: u32,
    /// Rounds of the round-trip figure (raw, then cluster, each round); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Tasks for the throughput figure.
    #[arg(long, default_value_t = 600)]
    pub tasks: usize,
    /// Tasks in flight at once for the throughput figure.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Tasks in flight when a node is killed.
    #[arg(long, default_value_t = 60)]
    pub failure_tasks: usize,
    /// Simulated latency of the offline model in the failure rounds (keeps tasks in flight).
    #[arg(long, default_value_t = 1500)]
    pub failure_latency_ms: u64,
    /// A PostgreSQL server to use (a fresh database per cluster, dropped after); enables the
    /// round that kills the network's owner.
    #[arg(long, env = "AIMESH_TEST_DATABASE_URL")]
    pub database_url: Option<String>,
}

const NAMES: [&str; 3] = ["n1", "n2", "n3"];
const HEARTBEAT_MS: u64 = 200;
const FAILURE_TIMEOUT_MS: u64 = 1000;
const TAKEOVER_MARGIN_MS: u64 = 300;
const TASK: &str = "Create an email campaign for a new product launch targeting tech professionals";

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// p50 and p99 of `v`.
fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (q(0.5), q(0.99))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// p50 and p99 (µs) of `pings` sequential round trips of `bytes` over loopback TCP after a
/// warm-up: an echo server thread and a client thread in this process, blocking sockets (the
/// kernel's floor, without an async scheduler deciding whether both ends share a thread).
async fn raw_tcp(pings: u32, bytes: usize) -> anyhow::Result<(f64, f64)> {
    use std::io::{Read, Write as _};
    tokio::task::spawn_blocking(move || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::scope(|scope| {
            let server = scope.spawn(move || {
                let (mut s, _) = listener.accept()?;
                s.set_nodelay(true)?;
                let mut buf = vec![0u8; bytes];
                while s.read_exact(&mut buf).is_ok() {
                    s.write_all(&buf)?;
                }
                anyhow::Ok(())
            });
            let client = (|| {
                let mut c = std::net::TcpStream::connect(addr)?;
                c.set_nodelay(true)?;
                let payload = vec![0x5a; bytes];
                let mut back = vec![0u8; bytes];
                let warm_up = 1000;
                let mut micros = Vec::with_capacity(pings as usize);
                for i in 0..warm_up + pings {
                    let t = Instant::now();
                    c.write_all(&payload)?;
                    c.read_exact(&mut back)?;
                    if i >= warm_up {
                        micros.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                }
                anyhow::Ok(micros)
            })();
            if client.is_err() {
                // The server may still wait in accept: give it a connection that closes at once.
                let _ = std::net::TcpStream::connect(addr);
            }
            // The client's socket is closed by now, so the server's read ends.
            server
                .join()
                .map_err(|_| anyhow::anyhow!("the echo server thread panicked"))??;
            Ok(quantiles(client?))
        })
    })
    .await?
}

/// Medians over the rounds of each side's p50 and p99 (µs), and the range of the cluster's p50.
struct Rtt {
    raw: (f64, f64),
    cluster: (f64, f64),
    cluster_p50_range: (f64, f64),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `rounds` rounds, each raw TCP then n1 → n2, so both sides see the same machine state.
async fn round_trip(c: &Cluster, args: &ClusterArgs) -> anyhow::Result<Rtt> {
    let ping = |count: u32| {
        let body = json!({"node": "n2", "count": count, "bytes": args.bytes});
        Reply::from(c.http.post(c.url(0, "/cluster/ping")).json(&body))
    };
    ping(500).await?.ok("warming up n1 → n2")?;
    let (mut raw, mut cluster) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        raw.push(raw_tcp(args.pings, args.bytes as usize).await?);
        let r = ping(args.pings).await?.ok("pinging n1 → n2")?;
        let f = |k: &str| r.body[k].as_f64().unwrap_or(f64::NAN);
        cluster.push((f("p50_us"), f("p99_us")));
    }
    let med = |v: &[(f64, f64)]| {
        (
            median(v.iter().map(|r| r.0).collect()),
            median(v.iter().map(|r| r.1).collect()),
        )
    };
    let p50s = cluster.iter().map(|r| r.0);
    Ok(Rtt {
        raw: med(&raw),
        cluster: med(&cluster),
        cluster_p50_range: (
            p50s.clone().fold(f64::INFINITY, f64::min),
            p50s.fold(0.0, f64::max),
        ),
    })
}

struct Throughput {
    owner: usize,
    seconds: f64,
    statuses: BTreeMap<String, usize>,
    subtasks: usize,
    per_node: BTreeMap<String, usize>,
    off_owner: usize,
}

async fn throughput(c: &Cluster, args: &ClusterArgs) -> anyhow::Result<Throughput> {
    let (net, owner) = c.network().await?;
    let n = args.tasks;
    let workers = args.concurrency.clamp(1, n.max(1));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (http, net) = (c.http.clone(), net.clone());
        let urls: Vec<String> = (0..NAMES.len()).map(|i| c.url(i, "")).collect();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in (w..n).step_by(workers) {
                let base = &urls[i % urls.len()];
                let body = json!({"task": format!("{TASK} (#{i})"), "priority": 3});
                let r = Reply::from(
                    http.post(format!("{base}/networks/{net}/tasks"))
                        .json(&body),
                )
                .await?
                .ok("submitting a task")?;
                let id = r.str("task_id")?;
                let url = format!("{base}/networks/{net}/tasks/{id}/process?wait=60");
                out.push(
                    Reply::from(http.post(url))
                        .await?
                        .ok("running a task")?
                        .body,
                );
            }
            anyhow::Ok(out)
        });
    }
    let mut done = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        done.extend(joined??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut t = Throughput {
        owner,
        seconds,
        statuses: BTreeMap::new(),
        subtasks: 0,
        per_node: BTreeMap::new(),
        off_owner: 0,
    };
    for task in &done {
        let status = task["status"].as_str().unwrap_or("?").to_owned();
        *t.statuses.entry(status).or_default() += 1;
        for sub in task["subtasks"].as_array().into_iter().flatten() {
            let node = sub["node"].as_str().unwrap_or("(none)");
            t.subtasks += 1;
            t.off_owner += usize::from(node != NAMES[owner]);
            *t.per_node.entry(node.to_owned()).or_default() += 1;
        }
    }
    Ok(t)
}

/// Runs the cluster benchmark and prints its figures.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let pg = args.database_url.as_deref();
    writeln!(
        out,
        "aimesh bench cluster — 3 nodes on 127.0.0.1 ({} store; heartbeat {HEARTBEAT_MS} ms, failure timeout {FAILURE_TIMEOUT_MS} ms, takeover margin {TAKEOVER_MARGIN_MS} ms)",
        if pg.is_some() { "postgres" } else { "embedded" }
    )?;
    let (rtt, tp) = with_cluster(0, pg, async |c: &mut Cluster| {
        let rtt = round_trip(c, &args).await?;
        let tp = throughput(c, &args).await?;
        anyhow::Ok((rtt, tp))
    })
    .await?;
    let ratio = rtt.cluster.0 / rtt.raw.0;
    writeln!(
        out,
        "1. cross-node call round trip, {} B payload, {} sequential calls per round after a warm-up, median of {} rounds (target: cluster p50 ≤ 3× raw TCP p50)",
        args.bytes,
        args.pings,
        args.rounds.max(1)
    )?;
    writeln!(
        out,
        "   raw loopback TCP echo (this process, TCP_NODELAY): p50 {:>7.1} µs, p99 {:>7.1} µs",
        rtt.raw.0, rtt.raw.1
    )?;
    writeln!(
        out,
        "   n1 → n2 through ractor_cluster (/cluster/ping):    p50 {:>7.1} µs, p99 {:>7.1} µs (p50 {:.1}–{:.1} µs across rounds)",
        rtt.cluster.0, rtt.cluster.1, rtt.cluster_p50_range.0, rtt.cluster_p50_range.1
    )?;
    writeln!(
        out,
        "   ratio of p50s: {ratio:.2}× — {}",
        verdict(ratio <= 3.0)
    )?;
    writeln!(
        out,
        "2. cross-node subtask throughput: {} tasks through n1/n2/n3 in turn, {} in flight, offline model at 0 ms (no target; figures)",
        args.tasks, args.concurrency
    )?;
    writeln!(
        out,
        "   {:.0} tasks/s, {:.0} subtasks/s ({:.2} s; {})",
        args.tasks as f64 / tp.seconds,
        tp.subtasks as f64 / tp.seconds,
        tp.seconds,
        counts(&tp.statuses)
    )?;
    writeln!(
        out,
        "   subtasks per node: {}; {} of {} ran off the owner {} ({:.0}%)",
        tp.per_node
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        tp.off_owner,
        tp.subtasks,
        NAMES[tp.owner],
        100.0 * tp.off_owner as f64 / tp.subtasks.max(1) as f64
    )?;
    writeln!(
        out,
        "3. failure of a node that does not own the network, offline model at {} ms",
        args.failure_latency_ms
    )?;
    let f = with_cluster(args.failure_latency_ms, pg, async |c: &mut Cluster| {
        failure(c, &args, Victim::NotOwner).await
    })
    .await?;
    print_failure(&mut out, &f, &args)?;
    match pg {
        None => writeln!(
            out,
            "4. failure of the network's owner: skipped — takeover needs the shared store (set --database-url or AIMESH_TEST_DATABASE_URL)"
        )?,
        Some(_) => {
            writeln!(
                out,
                "4. failure of the network's owner (shared PostgreSQL store), offline model at {} ms",
                args.failure_latency_ms
            )?;
            let f = with_cluster(args.failure_latency_ms, pg, async |c: &mut Cluster| {
                failure(c, &args, Victim::Owner).await
            })
            .await?;
            print_failure(&mut out, &f, &args)?;
        }
    }
    Ok(())
}
