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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

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

/// The last lines of a node's log.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let host = base[start..].rfind('@').map_or(start, |at| start + at);
    let path = base[host..].find('/').map_or(base.len(), |p| host + p);
    format!("{}/{name}{query}", &base[..path])
}

/// Runs one statement with `psql` on the server `admin` names (the root crate has no
/// PostgreSQL driver of its own; the nodes' store creates the schema).
async fn psql(admin: &str, sql: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running psql (the PostgreSQL client, e.g. apt-get install postgresql-client) to manage the bench database")?;
    ensure!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A database of its own for one cluster, dropped by [`Cluster::stop`].
struct Database {
    admin: String,
    name: String,
}

/// One `aimesh node` child process (SIGKILLed when dropped).
struct Proc {
    name: &'static str,
    api: String,
    child: tokio::process::Child,
    log: PathBuf,
}

/// An answer: status, the node that served it, the JSON body (`null` if none).
struct Reply {
    status: reqwest::StatusCode,
    node: Option<String>,
    body: Value,
}

impl Reply {
    async fn from(req: reqwest::RequestBuilder) -> anyhow::Result<Self> {
        let r = req.send().await?;
        let status = r.status();
        let node = r
            .headers()
            .get("x-aimesh-node")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = r.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Self { status, node, body })
    }

    fn ok(self, what: &str) -> anyhow::Result<Self> {
        ensure!(
            self.status.is_success(),
            "{what}: HTTP {} {}",
            self.status,
            self.body
        );
        Ok(self)
    }

    fn str(&self, key: &str) -> anyhow::Result<String> {
        self.body[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {key} in {}", self.body))
    }
}

/// Three nodes on loopback, with their temporary files (and database).
struct Cluster {
    procs: Vec<Proc>,
    /// Long requests (`process?wait`).
    http: reqwest::Client,
    /// Polls: a node that does not answer within 2 s is not answering.
    poll: reqwest::Client,
    database: Option<Database>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts three nodes with the offline model's latency at `latency_ms`, on the embedded
    /// store or a fresh database on `postgres`, and waits until the cluster has formed.
    async fn start(latency_ms: u64, postgres: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = match postgres {
            Some(admin) => {
                let name = format!("aimesh_bench_{}", uuid::Uuid::now_v7().simple());
                psql(admin, &format!("CREATE DATABASE {name}")).await?;
                Some(Database {
                    admin: admin.to_owned(),
                    name,
                })
            }
            None => None,
        };
        let mut cluster = Self {
            procs: Vec::new(),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(90))
                .build()?,
            poll: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(2))
                .build()?,
            database,
            dir,
        };
        let started = async {
            cluster.spawn(latency_ms).await?;
            cluster.wait_formed(Duration::from_secs(30)).await
        };
        match started.await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    /// Writes the cluster file and starts the three node processes.
    async fn spawn(&mut self, latency_ms: u64) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let storage = match &self.database {
            Some(db) => format!(
                "backend = \"postgres\"\npostgres_url = {}\n",
                q(&with_database(&db.admin, &db.name))
            ),
            None => format!(
                "backend = \"embedded\"\ndata_dir = {}\n",
                q(&dir.join("data").to_string_lossy())
            ),
        };
        let mut conf = format!(
            "[cluster]\nname = \"bench\"\nheartbeat_ms = {HEARTBEAT_MS}\nfailure_timeout_ms = {FAILURE_TIMEOUT_MS}\n\
             takeover_margin_ms = {TAKEOVER_MARGIN_MS}\n[storage]\n{storage}\
             [limits]\nmax_unfinished_tasks = 100000\n[gateway.offline]\nlatency_ms = {latency_ms}\n"
        );
        let mut apis = Vec::new();
        for name in NAMES {
            let api = format!("127.0.0.1:{}", free_port()?);
            let peer = format!("127.0.0.1:{}", free_port()?);
            conf.push_str(&format!(
                "[[node]]\nname = \"{name}\"\napi = \"{api}\"\ncluster = \"{peer}\"\n"
            ));
            apis.push(api);
        }
        let path = dir.join("cluster.toml");
        std::fs::write(&path, conf)?;
        let exe = std::env::current_exe()?;
        for (name, api) in NAMES.into_iter().zip(apis) {
            let log = dir.join(format!("{name}.log"));
            let child = tokio::process::Command::new(&exe)
                .arg("node")
                .arg("--config")
                .arg(&path)
                .args(["--name", name])
                .env("RUST_LOG", "warn")
                .env_remove("AIMESH_DATABASE_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting node {name}"))?;
            self.procs.push(Proc {
                name,
                api,
                child,
                log,
            });
        }
        Ok(())
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}/api/mesh{path}", self.procs[node].api)
    }

    async fn health(&self, node: usize) -> Option<Value> {
        let r = Reply::from(self.poll.get(self.url(node, "/health")))
            .await
            .ok()?;
        Some(r.body)
    }

    async fn wait_formed(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            for p in &mut self.procs {
                if let Some(status) = p.child.try_wait()? {
                    bail!(
                        "node {} exited ({status}) while the cluster formed; its log:\n{}",
                        p.name,
                        tail(&p.log)
                    );
                }
            }
            let mut formed = true;
            for i in 0..self.procs.len() {
                let h = self.health(i).await;
                formed &= h.is_some_and(|h| h["cluster"]["formed"] == true);
            }
            if formed {
                return Ok(());
            }
            if started.elapsed() > within {
                let mut report = String::new();
                for (i, p) in self.procs.iter().enumerate() {
                    let h = self.health(i).await.unwrap_or(Value::Null);
                    report.push_str(&format!(
                        "\n{}: cluster {}\n{}",
                        p.name,
                        h["cluster"],
                        tail(&p.log)
                    ));
                }
                bail!(
                    "the cluster did not form within {} s:{report}",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a network through n1; returns its id and the index of its owner.
    async fn network(&self) -> anyhow::Result<(String, usize)> {
        let body = json!({"name": "bench", "description": "cluster bench",
            "max_iterations": 3, "timeout_seconds": 120});
        let r = Reply::from(self.http.post(self.url(0, "/networks")).json(&body))
            .await?
            .ok("creating the network")?;
        let id = r.str("network_id")?;
        let owner = r
            .node
            .as_deref()
            .and_then(|n| NAMES.iter().position(|m| *m == n))
            .context("the create response names no owner node (x-aimesh-node)")?;
        Ok((id, owner))
    }

    /// Submits a task through `node` and starts it; returns its id.
    async fn submit(&self, node: usize, net: &str, i: usize) -> anyhow::Result<String> {
        let body = json!({"task": format!("{TASK} (#{i})"), "priority": 3});
        let r = Reply::from(
            self.http
                .post(self.url(node, &format!("/networks/{net}/tasks")))
                .json(&body),
        )
        .await?
        .ok("submitting a task")?;
        let id = r.str("task_id")?;
        Reply::from(
            self.http
                .post(self.url(node, &format!("/networks/{net}/tasks/{id}/process"))),
        )
        .await?
        .ok("starting a task")?;
        Ok(id)
    }

    /// The tasks `ids` as `node` serves them (`None` where it did not answer).
    async fn tasks(&self, node: usize, net: &str, ids: &[String]) -> Vec<Option<Value>> {
        futures::stream::iter(ids)
            .map(|id| async move {
                let url = self.url(node, &format!("/networks/{net}/tasks/{id}"));
                match Reply::from(self.poll.get(url)).await {
                    Ok(r) if r.status.is_success() => Some(r.body),
                    _ => None,
                }
            })
            .buffered(16)
            .collect()
            .await
    }

    /// SIGKILLs node `i`; returns when it is gone.
    async fn kill(&mut self, i: usize) -> anyhow::Result<(Instant, OffsetDateTime)> {
        let p = &mut self.procs[i];
        p.child.start_kill()?;
        let at = (Instant::now(), OffsetDateTime::now_utc());
        p.child.wait().await?;
        Ok(at)
    }

    async fn stop(mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill().await;
        }
        if let Some(db) = self.database.take() {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name);
            let _ = psql(&db.admin, &drop).await;
        }
    }
}

/// Starts a cluster, runs `part` on it, and stops it whatever the outcome.
async fn with_cluster<T>(
    latency_ms: u64,
    postgres: Option<&str>,
    part: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut cluster = Cluster::start(latency_ms, postgres).await?;
    let result = part(&mut cluster).await;
    cluster.stop().await;
    result
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

fn terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

fn subtasks(task: &Value) -> impl Iterator<Item = &Value> {
    task["subtasks"].as_array().into_iter().flatten()
}

fn open_sub(sub: &Value) -> bool {
    matches!(sub["status"].as_str(), Some("pending" | "running"))
}

fn on(sub: &Value, node: &str) -> bool {
    sub["node"].as_str() == Some(node)
}

/// Which node is killed in a failure round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// A node other than the network's owner: its subtasks are redelivered.
    NotOwner,
    /// The owner: the survivors adopt its network from the shared store.
    Owner,
}

#[derive(Default)]
struct Failure {
    victim: String,
    owner: String,
    /// Kill → first survivor reports the victim suspect / dead; every survivor reports it dead.
    suspect: Option<Duration>,
    dead: Option<Duration>,
    all_dead: Option<Duration>,
    affected_tasks: usize,
    affected_subtasks: usize,
    /// Kill → every affected subtask redelivered (attempt up) / started on a live node (or its
    /// task ended).
    redelivered: Option<Duration>,
    running: Option<Duration>,
    /// Owner round: kill → a survivor serves the network; → every unfinished task progresses.
    served: Option<(Duration, String)>,
    first_start: Option<Duration>,
    resumed: Option<Duration>,
    /// Where the moved work ran: redelivered subtasks (non-owner round) or subtasks started
    /// after the kill (owner round), by node.
    moved_to: BTreeMap<String, usize>,
    stuck: usize,
    /// Every task of the batch at the end, by status ("lost": never ended or not found).
    statuses: BTreeMap<String, usize>,
    ended: Duration,
}

/// Polls the survivors' health every 10 ms until each reports `victim` dead (at most 15 s).
async fn detect(c: &Cluster, survivors: &[usize], victim: &str, killed: Instant, f: &mut Failure) {
    let mut first_suspect: Vec<Option<Duration>> = vec![None; survivors.len()];
    let mut first_dead: Vec<Option<Duration>> = vec![None; survivors.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while first_dead.iter().any(Option::is_none) && killed.elapsed() < Duration::from_secs(15) {
        tick.tick().await;
        let healths = futures::future::join_all(survivors.iter().map(|&s| c.health(s))).await;
        let at = killed.elapsed();
        for (k, h) in healths.iter().enumerate() {
            let members = h.as_ref().and_then(|h| h["cluster"]["members"].as_array());
            let status = members
                .into_iter()
                .flatten()
                .find(|m| m["name"] == victim)
                .and_then(|m| m["status"].as_str());
            if matches!(status, Some("suspect" | "dead")) && first_suspect[k].is_none() {
                first_suspect[k] = Some(at);
            }
            if status == Some("dead") && first_dead[k].is_none() {
                first_dead[k] = Some(at);
            }
        }
    }
    f.suspect = first_suspect.iter().flatten().min().copied();
    f.dead = first_dead.iter().flatten().min().copied();
    f.all_dead = first_dead
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
}

/// Open subtasks on a node, by task: subtask id → its delivery attempt.
type OpenOn = BTreeMap<String, BTreeMap<String, u64>>;

/// Non-owner round: polls the affected tasks until each affected subtask was redelivered
/// (its attempt went up; the store names the new node only once the subtask starts there) and
/// started on a live node, or its task ended (at most 30 s).
async fn redelivery(
    c: &Cluster,
    via: usize,
    net: &str,
    affected: &OpenOn,
    victim: &str,
    killed: Instant,
    f: &mut Failure,
) {
    let ids: Vec<String> = affected.keys().cloned().collect();
    let mut redelivered: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut started: BTreeMap<&str, Duration> = BTreeMap::new();
    while started.len() < ids.len() && killed.elapsed() < Duration::from_secs(30) {
        let tasks = c.tasks(via, net, &ids).await;
        let at = killed.elapsed();
        f.moved_to.clear();
        for (id, task) in ids.iter().zip(&tasks) {
            let (Some(task), Some(subs)) = (task, affected.get(id)) else {
                continue;
            };
            let mine = || {
                subtasks(task).filter_map(|s| {
                    let base = subs.get(s["subtask_id"].as_str()?)?;
                    Some((s, *base))
                })
            };
            let live = |s: &Value| !open_sub(s) || (s["status"] == "running" && !on(s, victim));
            for (s, _) in mine().filter(|(s, _)| !on(s, victim)) {
                let node = s["node"].as_str().unwrap_or("(none)");
                *f.moved_to.entry(node.to_owned()).or_default() += 1;
            }
            let ended = terminal(task);
            if ended || mine().all(|(s, base)| live(s) || s["attempts"].as_u64() > Some(base)) {
                redelivered.entry(id).or_insert(at);
            }
            if ended || mine().all(|(s, _)| live(s)) {
                started.entry(id).or_insert(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = |m: &BTreeMap<&str, Duration>| {
        (m.len() == ids.len()).then(|| m.values().max().copied().unwrap_or_default())
    };
    f.redelivered = all(&redelivered);
    f.running = all(&started);
    f.stuck = ids.len() - started.len();
}

/// Owner round: polls until a survivor serves the network, then until every task unfinished at
/// the kill is progressing again: ended, or a subtask started after the kill with none left open
/// on the dead node (at most 30 s).
async fn takeover(
    c: &Cluster,
    survivors: &[usize],
    net: &str,
    unfinished: &[String],
    victim: &str,
    killed: (Instant, OffsetDateTime),
    f: &mut Failure,
) {
    let deadline = Duration::from_secs(30);
    while f.served.is_none() && killed.0.elapsed() < deadline {
        for &s in survivors {
            let r = Reply::from(c.poll.get(c.url(s, &format!("/networks/{net}")))).await;
            if let Ok(r) = r
                && r.status.is_success()
                && r.node.as_deref().is_some_and(|n| n != victim)
            {
                f.served = Some((killed.0.elapsed(), r.node.unwrap_or_default()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = |s: &Value| {
        s["started_at"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .is_some_and(|t| t > killed.1)
    };
    let mut resumed: BTreeMap<&str, Duration> = BTreeMap::new();
    while resumed.len() < unfinished.len() && killed.0.elapsed() < deadline {
        let tasks = c.tasks(survivors[0], net, unfinished).await;
        let at = killed.0.elapsed();
        f.moved_to.clear();
        for s in tasks
            .iter()
            .flatten()
            .flat_map(subtasks)
            .filter(|s| after(s))
        {
            let node = s["node"].as_str().unwrap_or("(none)");
            *f.moved_to.entry(node.to_owned()).or_default() += 1;
            let started = s["started_at"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            if let Some(since) = started.and_then(|t| Duration::try_from(t - killed.1).ok()) {
                f.first_start = Some(f.first_start.map_or(since, |d| d.min(since)));
            }
        }
        for (id, task) in unfinished.iter().zip(&tasks) {
            let Some(task) = task else { continue };
            let progressing =
                subtasks(task).any(after) && !subtasks(task).any(|s| open_sub(s) && on(s, victim));
            if terminal(task) || progressing {
                resumed.entry(id).or_insert(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.resumed = (resumed.len() == unfinished.len())
        .then(|| resumed.values().max().copied().unwrap_or_default());
    f.stuck = unfinished.len() - resumed.len();
}

async fn failure(c: &mut Cluster, args: &ClusterArgs, kind: Victim) -> anyhow::Result<Failure> {
    let (net, owner) = c.network().await?;
    let ids: Vec<String> = futures::stream::iter(0..args.failure_tasks)
        .map(|i| c.submit(i % NAMES.len(), &net, i))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    // Wait until subtasks run on every node.
    let started = Instant::now();
    let snapshot = loop {
        let tasks: Vec<Value> = c
            .tasks(owner, &net, &ids)
            .await
            .into_iter()
            .flatten()
            .collect();
        let running = |n: &str| {
            tasks
                .iter()
                .flat_map(subtasks)
                .filter(|s| s["status"] == "running" && on(s, n))
                .count()
        };
        if NAMES.iter().all(|n| running(n) > 0) {
            break tasks;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let per: Vec<String> = NAMES
                .iter()
                .map(|n| format!("{n}: {}", running(n)))
                .collect();
            bail!(
                "subtasks never ran on all three nodes at once (running: {})",
                per.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let open_on = |tasks: &[Value], n: &str| -> OpenOn {
        tasks
            .iter()
            .map(|t| {
                let subs: BTreeMap<String, u64> = subtasks(t)
                    .filter(|s| open_sub(s) && on(s, n))
                    .filter_map(|s| {
                        let id = s["subtask_id"].as_str()?.to_owned();
                        Some((id, s["attempts"].as_u64().unwrap_or(0)))
                    })
                    .collect();
                (t["task_id"].as_str().unwrap_or_default().to_owned(), subs)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect()
    };
    let victim = match kind {
        Victim::Owner => owner,
        Victim::NotOwner => (0..NAMES.len())
            .filter(|&i| i != owner)
            .max_by_key(|&i| {
                open_on(&snapshot, NAMES[i])
                    .values()
                    .map(BTreeMap::len)
                    .sum::<usize>()
            })
            .unwrap_or((owner + 1) % NAMES.len()),
    };
    let name = NAMES[victim];
    let survivors: Vec<usize> = (0..NAMES.len()).filter(|&i| i != victim).collect();
    let mut f = Failure {
        victim: name.to_owned(),
        owner: NAMES[owner].to_owned(),
        ..Failure::default()
    };
    let killed = c.kill(victim).await?;
    let c = &*c;
    match kind {
        Victim::NotOwner => {
            // The owner still shows the dead node's subtasks as they were at the kill.
            let mut affected = open_on(&snapshot, name);
            let now: Vec<Value> = c
                .tasks(owner, &net, &ids)
                .await
                .into_iter()
                .flatten()
                .collect();
            for (task, subs) in open_on(&now, name) {
                let known = affected.entry(task).or_default();
                for (sub, attempt) in subs {
                    known.entry(sub).or_insert(attempt);
                }
            }
            f.affected_tasks = affected.len();
            f.affected_subtasks = affected.values().map(BTreeMap::len).sum();
            let (mut d, mut r) = (Failure::default(), Failure::default());
            tokio::join!(
                detect(c, &survivors, name, killed.0, &mut d),
                redelivery(c, survivors[0], &net, &affected, name, killed.0, &mut r),
            );
            (f.suspect, f.dead, f.all_dead) = (d.suspect, d.dead, d.all_dead);
            (f.redelivered, f.running, f.stuck) = (r.redelivered, r.running, r.stuck);
            f.moved_to = r.moved_to;
        }
        Victim::Owner => {
            let unfinished: Vec<String> = snapshot
                .iter()
                .filter(|t| !terminal(t))
                .filter_map(|t| t["task_id"].as_str().map(str::to_owned))
                .collect();
            f.affected_tasks = unfinished.len();
            let (mut d, mut r) = (Failure::default(), Failure::default());
            tokio::join!(
                detect(c, &survivors, name, killed.0, &mut d),
                takeover(c, &survivors, &net, &unfinished, name, killed, &mut r),
            );
            (f.suspect, f.dead, f.all_dead) = (d.suspect, d.dead, d.all_dead);
            (f.served, f.resumed, f.stuck) = (r.served, r.resumed, r.stuck);
            (f.first_start, f.moved_to) = (r.first_start, r.moved_to);
        }
    }
    // Every task of the batch must still end.
    let deadline = Duration::from_secs(90);
    let last = loop {
        let tasks = c.tasks(survivors[0], &net, &ids).await;
        if tasks.iter().all(|t| t.as_ref().is_some_and(terminal)) || killed.0.elapsed() > deadline {
            break tasks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    f.ended = killed.0.elapsed();
    for t in &last {
        let status = match t {
            Some(t) if terminal(t) => t["status"].as_str().unwrap_or("?"),
            _ => "lost",
        };
        *f.statuses.entry(status.to_owned()).or_default() += 1;
    }
    Ok(f)
}

fn fmt_s(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never (within the deadline)".into(),
        |d| format!("{:.2} s", secs(d)),
    )
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_failure(out: &mut impl Write, f: &Failure, args: &ClusterArgs) -> anyhow::Result<()> {
    let within = |d: Option<Duration>, target: f64| verdict(d.is_some_and(|d| secs(d) <= target));
    writeln!(
        out,
        "   SIGKILLed {} (owner {}); {} tasks in flight",
        f.victim, f.owner, args.failure_tasks
    )?;
    writeln!(
        out,
        "   detection (kill → a survivor's /health says dead; polled every 10 ms), target ≤ 1.5 s:"
    )?;
    writeln!(
        out,
        "     suspect after {}, dead after {} ({}); every survivor agrees after {}",
        fmt_s(f.suspect),
        fmt_s(f.dead),
        within(f.dead, 1.5),
        fmt_s(f.all_dead)
    )?;
    let moved = f
        .moved_to
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stuck = |what: &str| {
        if f.stuck > 0 {
            format!(" — {} {what}", f.stuck)
        } else {
            String::new()
        }
    };
    if f.victim == f.owner {
        writeln!(
            out,
            "   takeover (kill → a survivor answers for the network; → the new owner starts a subtask; → each of the {} unfinished tasks ended or has a subtask started after the kill, none open on {}):",
            f.affected_tasks, f.victim
        )?;
        let served = f.served.as_ref().map_or_else(
            || "never (within 30 s)".into(),
            |(d, n)| format!("{:.2} s (by {n})", secs(*d)),
        );
        writeln!(
            out,
            "     network answered again after {served}; first resumed subtask started after {}; all tasks processing again after {}{}",
            fmt_s(f.first_start),
            fmt_s(f.resumed),
            stuck("did not resume")
        )?;
        writeln!(
            out,
            "     subtasks started after the kill, by node: {moved}"
        )?;
    } else {
        writeln!(
            out,
            "   redelivery ({} tasks had {} open subtasks on {}; kill → each redelivered (attempt up), and running on a live node or its task ended), target ≤ 5 s:",
            f.affected_tasks, f.affected_subtasks, f.victim
        )?;
        writeln!(
            out,
            "     all redelivered after {}; all running again after {} ({}){}",
            fmt_s(f.redelivered),
            fmt_s(f.running),
            within(f.running, 5.0),
            stuck("tasks still stuck")
        )?;
        writeln!(out, "     redelivered subtasks ran on: {moved}")?;
    }
    let lost = f.statuses.get("lost").copied().unwrap_or(0);
    writeln!(
        out,
        "   every task ends (none lost): {} of {} ({}), {:.1} s after the kill — {}",
        args.failure_tasks - lost,
        args.failure_tasks,
        counts(&f.statuses),
        secs(f.ended),
        if lost == 0 { "ok" } else { "TASKS LOST" }
    )?;
    Ok(())
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
