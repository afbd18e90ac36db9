//! One run: a baseline phase without faults, then the same workload under the seeded schedule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::history::{
    History, MemoryRecord, SLOW_HIGH_MS, SLOW_MS, TaskRecord, condense, is_terminal, server_latency,
};
use crate::proxy::{Fault as ProxyFault, Faults};
use crate::report::{FaultEntry, FloodFigures, Phase, Report, quantile};
use crate::schedule::{Fault, FaultKind};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name for the report.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Fault-free phase length.
    pub baseline: Duration,
    /// Chaos phase length.
    pub chaos: Duration,
    /// Number of faults in the chaos phase.
    pub faults: usize,
    /// Task submissions per second.
    pub rate: f64,
    /// Networks to spread the work over.
    pub networks: usize,
    /// Each network's budget, dollars.
    pub budget_usd: f64,
    /// Task timeout (its deadline after acknowledgement), seconds.
    pub task_timeout_s: u64,
    /// Extra time past a deadline before a task counts as lost.
    pub grace: Duration,
    /// Priority-1 p99 during floods must stay under factor x baseline p99 + slack.
    pub flood_bound_factor: f64,
}

fn ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Prints a progress line with the elapsed time.
pub fn say(start: Instant, msg: impl AsRef<str>) {
    #[allow(clippy::print_stdout)]
    {
        println!("[{:>7.1}s] {}", start.elapsed().as_secs_f64(), msg.as_ref());
    }
}

/// A thin HTTP client over the nodes' APIs.
#[derive(Clone)]
pub struct Nodes {
    client: reqwest::Client,
    apis: Arc<Vec<SocketAddr>>,
    admin_token: Option<String>,
}

impl Nodes {
    fn new(apis: Vec<SocketAddr>, admin_token: Option<String>) -> Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(8)
                .build()?,
            apis: Arc::new(apis),
            admin_token,
        })
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.apis[node % self.apis.len()])
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, node: usize, path: &str) -> Result<(u16, Value)> {
        self.send(self.client.get(self.url(node, path))).await
    }

    async fn post(&self, node: usize, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let mut req = self.client.post(self.url(node, path));
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req).await
    }

    async fn admin(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .client
            .request(method, self.url(node, &format!("/api/admin{path}")));
        if let Some(token) = &self.admin_token {
            req = req.bearer_auth(token);
        }
        self.send(req).await
    }

    fn len(&self) -> usize {
        self.apis.len()
    }
}

/// Percent-encodes an actor id as one path segment.
pub fn encode_segment(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits until every node answers its health check.
async fn wait_healthy(nodes: &Nodes, limit: Duration) -> Result<()> {
    let start = Instant::now();
    'outer: while start.elapsed() < limit {
        for i in 0..nodes.len() {
            match nodes.get(i, "/api/mesh/health").await {
                Ok((200, _)) => {}
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'outer;
                }
            }
        }
        return Ok(());
    }
    bail!("the cluster is not healthy after {limit:?}")
}

/// Time until every node is healthy and every network readable, capped at `limit`.
async fn recovery(nodes: &Nodes, networks: &[String], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    'outer: while start.elapsed() < limit {
        for i in 0..nodes.len() {
            if !matches!(nodes.get(i, "/api/mesh/health").await, Ok((200, _))) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'outer;
            }
        }
        for (k, net) in networks.iter().enumerate() {
            if !matches!(
                nodes.get(k, &format!("/api/mesh/networks/{net}")).await,
                Ok((200, _))
            ) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'outer;
            }
        }
        return Some(start.elapsed());
    }
    None
}

struct Shared {
    history: Mutex<History>,
    /// Per task: whether `/process` was accepted.
    processed: Mutex<Vec<bool>>,
    stop: AtomicBool,
    start: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn submit(
    nodes: Nodes,
    shared: Arc<Shared>,
    net: String,
    node: usize,
    priority: u8,
    flood: bool,
    n: u64,
    timeout_s: u64,
) {
    let submitted_ms = ms(shared.start);
    let body = json!({
        "task": format!("Write a short product note number {n} for developers"),
        "context": {"chaos": n},
        "priority": priority,
        "max_iterations": 2,
        "timeout_seconds": timeout_s,
    });
    let r = nodes
        .post(
            node,
            &format!("/api/mesh/networks/{net}/tasks"),
            Some(&body),
        )
        .await;
    let mut rec = TaskRecord {
        network: net.clone(),
        priority,
        submitted_ms,
        flood,
        ..TaskRecord::default()
    };
    let id = match r {
        Ok((202, v)) => v["task_id"].as_str().map(str::to_string),
        _ => None,
    };
    let now = ms(shared.start);
    if let Some(id) = &id {
        rec.acked_ms = Some(now);
        rec.task_id = Some(id.clone());
        rec.deadline_ms = now + timeout_s * 1000;
    }
    let idx = {
        let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        h.tasks.push(rec);
        let mut p = shared.processed.lock().unwrap_or_else(|e| e.into_inner());
        p.push(false);
        h.tasks.len() - 1
    };
    if let Some(id) = id
        && let Ok((202 | 200, _)) = nodes
            .post(
                node,
                &format!("/api/mesh/networks/{net}/tasks/{id}/process"),
                None,
            )
            .await
    {
        let mut p = shared.processed.lock().unwrap_or_else(|e| e.into_inner());
        p[idx] = true;
    }
}

/// Polls every unfinished acknowledged task once; `all` re-reads finished ones too.
async fn poll_once(nodes: &Nodes, shared: &Arc<Shared>, all: bool, rr: &mut usize) {
    let pending: Vec<(usize, String, String, bool)> = {
        let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        let p = shared.processed.lock().unwrap_or_else(|e| e.into_inner());
        h.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.acked_ms.is_some() && !t.vanished && (all || t.terminals.is_empty()))
            .filter_map(|(i, t)| {
                Some((
                    i,
                    t.network.clone(),
                    t.task_id.clone()?,
                    p.get(i).copied().unwrap_or(true),
                ))
            })
            .collect()
    };
    for chunk in pending.chunks(16) {
        let futs = chunk.iter().map(|(i, net, id, processed)| {
            *rr += 1;
            let node = *rr;
            let nodes = nodes.clone();
            async move {
                let r = nodes
                    .get(node, &format!("/api/mesh/networks/{net}/tasks/{id}"))
                    .await;
                let mut reprocess = false;
                let mut body = None;
                let outcome = match r {
                    Ok((200, v)) => {
                        let s = v["status"].as_str().unwrap_or("").to_string();
                        if s == "queued" && !processed {
                            reprocess = true;
                        }
                        body = Some(v);
                        Some(s)
                    }
                    Ok((404, v))
                        if v["error"]["field"]
                            .as_str()
                            .is_some_and(|f| f.contains("task")) =>
                    {
                        Some("__vanished".to_string())
                    }
                    _ => None,
                };
                let accepted = if reprocess {
                    matches!(
                        nodes
                            .post(
                                node,
                                &format!("/api/mesh/networks/{net}/tasks/{id}/process"),
                                None
                            )
                            .await,
                        Ok((202 | 200 | 409, _))
                    )
                } else {
                    false
                };
                (*i, outcome, accepted, body)
            }
        });
        let results = futures::future::join_all(futs).await;
        let now = ms(shared.start);
        let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = shared.processed.lock().unwrap_or_else(|e| e.into_inner());
        for (i, outcome, accepted, body) in results {
            if accepted {
                p[i] = true;
            }
            match outcome.as_deref() {
                Some("__vanished") => h.tasks[i].vanished = true,
                Some(s) if is_terminal(s) => {
                    h.observe_terminal(i, s, now);
                    let t = &mut h.tasks[i];
                    if t.server_ms.is_none() {
                        t.server_ms = body.as_ref().and_then(server_latency);
                    }
                    let took = t.latency_ms();
                    if t.detail.is_none()
                        && took.is_some_and(|d| {
                            d > if t.priority == 1 {
                                SLOW_HIGH_MS
                            } else {
                                SLOW_MS
                            }
                        })
                        && let Some(v) = &body
                    {
                        t.detail = Some(condense(v));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Creates the networks (retrying while the cluster settles).
async fn create_networks(nodes: &Nodes, plan: &Plan) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for k in 0..plan.networks {
        let body = json!({
            "name": format!("chaos-{}-{k}", plan.seed),
            "description": "aimesh-chaos workload",
            "max_iterations": 2,
            "timeout_seconds": plan.task_timeout_s,
            "budget_usd": plan.budget_usd,
        });
        let start = Instant::now();
        loop {
            match nodes.post(k, "/api/mesh/networks", Some(&body)).await {
                Ok((201, v)) => {
                    out.push(
                        v["network_id"]
                            .as_str()
                            .context("network_id missing")?
                            .to_string(),
                    );
                    break;
                }
                other if start.elapsed() > Duration::from_secs(60) => {
                    bail!("creating a network: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    Ok(out)
}

/// Budget and spend per network, as the API reports them.
async fn spends(nodes: &Nodes, networks: &[String]) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for (k, net) in networks.iter().enumerate() {
        if let Ok((200, v)) = nodes.get(k, &format!("/api/mesh/networks/{net}")).await {
            let budget = v["spend"]["budget_usd"].as_f64().unwrap_or(f64::INFINITY);
            let spent = v["spend"]["spent_usd"].as_f64().unwrap_or(0.0);
            out.insert(net.clone(), (budget, spent));
        }
    }
    out
}

/// Finds acknowledged memory writes again (paging through each network's list).
async fn check_memory(nodes: &Nodes, shared: &Arc<Shared>) {
    let nets: Vec<String> = {
        let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = h.memory.iter().map(|m| m.network.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut seen = std::collections::HashSet::new();
    for net in nets {
        let mut offset = 0;
        loop {
            let path = format!("/api/mesh/networks/{net}/memory?limit=100&offset={offset}");
            let mut got = None;
            for attempt in 0..20 {
                if let Ok((200, v)) = nodes.get(attempt, &path).await {
                    got = Some(v);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let Some(v) = got else { break };
            let items = v["items"].as_array().cloned().unwrap_or_default();
            for it in &items {
                if let Some(c) = it["content"].as_str() {
                    seen.insert((net.clone(), c.to_string()));
                }
            }
            if items.len() < 100 {
                break;
            }
            offset += 100;
        }
    }
    let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    for m in h.memory.iter_mut() {
        m.found = seen.contains(&(m.network.clone(), m.content.clone()));
    }
}

/// Runs one phase: the workload for `length`, the faults in `schedule`, then the final checks.
#[allow(clippy::too_many_arguments)]
async fn phase(
    name: &str,
    cluster: &mut Cluster,
    nodes: &Nodes,
    networks: &[String],
    plan: &Plan,
    length: Duration,
    schedule: &[Fault],
    report: &mut Report,
    run_start: Instant,
) -> Result<(Phase, Vec<u64>, FloodFigures)> {
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        processed: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        start: Instant::now(),
    });
    say(
        run_start,
        format!(
            "{name}: {}s of workload, {} fault(s)",
            length.as_secs(),
            schedule.len()
        ),
    );
    // Workload: constant rate, mixed priorities, several networks.
    let workload = {
        let (nodes, shared, networks) = (nodes.clone(), shared.clone(), networks.to_vec());
        let (rate, timeout_s, seed) = (plan.rate, plan.task_timeout_s, plan.seed);
        tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(17));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut n = 0u64;
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let p: u8 = match rng.random_range(0..10) {
                    0 | 1 => 1,
                    2..=6 => rng.random_range(2..=4),
                    _ => 5,
                };
                let net = networks[rng.random_range(0..networks.len())].clone();
                let node = rng.random_range(0..nodes.len());
                n += 1;
                tokio::spawn(submit(
                    nodes.clone(),
                    shared.clone(),
                    net,
                    node,
                    p,
                    false,
                    n,
                    timeout_s,
                ));
            }
        })
    };
    // Memory writes: one a second, each unique.
    let memory = {
        let (nodes, shared, networks, seed) =
            (nodes.clone(), shared.clone(), networks.to_vec(), plan.seed);
        let tag = name.to_string();
        tokio::spawn(async move {
            let mut n = 0usize;
            while !shared.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                n += 1;
                let net = networks[n % networks.len()].clone();
                let content = format!("chaos fact {tag} seed {seed} number {n}");
                let body = json!({"type": "fact", "content": content});
                match nodes
                    .post(n, &format!("/api/mesh/networks/{net}/memory"), Some(&body))
                    .await
                {
                    Ok((201, _)) => {
                        let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
                        h.memory.push(MemoryRecord {
                            network: net,
                            content,
                            found: false,
                        });
                    }
                    _ => {
                        let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
                        h.memory_refused += 1;
                    }
                }
            }
        })
    };
    // Poller: follows every acknowledged task to its terminal state; prints progress.
    let poller = {
        let (nodes, shared) = (nodes.clone(), shared.clone());
        let grace = plan.grace.as_millis() as u64;
        tokio::spawn(async move {
            let mut rr = 0usize;
            let mut last = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) {
                poll_once(&nodes, &shared, false, &mut rr).await;
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    let o = shared
                        .history
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .check(ms(shared.start), grace);
                    let pending = o.acknowledged - o.completed - o.failed - o.lost;
                    say(
                        run_start,
                        format!(
                            "  acked {} completed {} failed {} pending {} refused {} lost {} dup {}",
                            o.acknowledged,
                            o.completed,
                            o.failed,
                            pending,
                            o.refused,
                            o.lost,
                            o.duplicated
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // Faults.
    let mut recoveries = Vec::new();
    let mut flood_windows: Vec<(u64, u64)> = Vec::new();
    // Every other fault, from injection to recovery: a priority-1 task that lived through one
    // of these measures that fault, not the flood.
    let mut other_windows: Vec<(u64, u64)> = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_add(99));
    let mut admin_disabled = report.skipped.contains_key(FaultKind::KillActor.name());
    for f in schedule {
        let at = Duration::from_millis(f.at_ms);
        let elapsed = shared.start.elapsed();
        if at > elapsed {
            tokio::time::sleep(at - elapsed).await;
        }
        let hold = Duration::from_millis(f.duration_ms);
        let node = f.node % cluster.nodes.len();
        let mut injected = true;
        let began = ms(shared.start);
        match f.kind {
            FaultKind::KillNode => {
                say(
                    run_start,
                    format!(
                        "fault: SIGKILL {} for {} ms",
                        cluster.nodes[node].name, f.duration_ms
                    ),
                );
                cluster.kill(node).await?;
                tokio::time::sleep(hold).await;
                cluster.start(node)?;
            }
            FaultKind::PauseNode => {
                say(
                    run_start,
                    format!(
                        "fault: SIGSTOP {} for {} ms",
                        cluster.nodes[node].name, f.duration_ms
                    ),
                );
                cluster.signal(node, Signal::SIGSTOP)?;
                tokio::time::sleep(hold).await;
                cluster.signal(node, Signal::SIGCONT)?;
            }
            FaultKind::KillActor if admin_disabled => injected = false,
            FaultKind::KillActor => {
                match nodes
                    .admin(node, reqwest::Method::GET, "/actors?kind=agent")
                    .await
                {
                    Ok((200, v)) => {
                        let ids: Vec<String> = v["actors"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x["id"].as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        if ids.is_empty() {
                            injected = false;
                        } else {
                            let id = &ids[rng.random_range(0..ids.len())];
                            say(run_start, format!("fault: kill actor {id}"));
                            let r = nodes
                                .admin(
                                    node,
                                    reqwest::Method::POST,
                                    &format!("/actors/{}/kill", encode_segment(id)),
                                )
                                .await;
                            injected = matches!(r, Ok((200 | 202, _)));
                            tokio::time::sleep(hold).await;
                        }
                    }
                    Ok((404, _)) => {
                        say(
                            run_start,
                            "notice: /api/admin answers 404, actor faults disabled (skipped: admin API unavailable)",
                        );
                        report.skipped.insert(
                            FaultKind::KillActor.name().into(),
                            "admin API unavailable".into(),
                        );
                        admin_disabled = true;
                        injected = false;
                    }
                    Ok((401 | 403, _)) => {
                        say(
                            run_start,
                            "notice: /api/admin refused the token, actor faults disabled (set AIMESH_ADMIN_TOKEN)",
                        );
                        report.skipped.insert(
                            FaultKind::KillActor.name().into(),
                            "admin API refused the token".into(),
                        );
                        admin_disabled = true;
                        injected = false;
                    }
                    _ => injected = false,
                }
            }
            FaultKind::Provider429
            | FaultKind::Provider5xx
            | FaultKind::ProviderLatency
            | FaultKind::ProviderCut => {
                let Some(url) = cluster.fake_url.clone() else {
                    report
                        .skipped
                        .insert("provider".into(), "no fake provider in this cluster".into());
                    continue;
                };
                let fault = match f.kind {
                    FaultKind::Provider429 => {
                        json!({"kind": "status", "status": 429, "retry_after_seconds": 1})
                    }
                    FaultKind::Provider5xx => json!({"kind": "status", "status": 503}),
                    FaultKind::ProviderLatency => json!({"kind": "latency", "ms": 1500}),
                    _ => json!({"kind": "cut", "after_chunks": 1}),
                };
                say(
                    run_start,
                    format!("fault: provider {} for {} ms", f.kind.name(), f.duration_ms),
                );
                let client = reqwest::Client::new();
                client
                    .post(format!("{url}/_fake/faults"))
                    .json(&json!({"fault": fault}))
                    .send()
                    .await?;
                tokio::time::sleep(hold).await;
                client.delete(format!("{url}/_fake/faults")).send().await?;
            }
            FaultKind::ProxyDelay | FaultKind::ProxyReset | FaultKind::ProxyBlackhole => {
                let Some(proxy) = cluster.proxies.get(node).cloned() else {
                    report
                        .skipped
                        .insert("proxy".into(), "no proxy in this cluster".into());
                    continue;
                };
                let faults = match f.kind {
                    FaultKind::ProxyDelay => Faults {
                        up: ProxyFault::Delay {
                            base_ms: 300,
                            jitter_ms: 200,
                        },
                        down: ProxyFault::Bandwidth {
                            bytes_per_sec: 50_000,
                        },
                        drop_new: false,
                    },
                    FaultKind::ProxyReset => Faults {
                        up: ProxyFault::Reset,
                        down: ProxyFault::Reset,
                        drop_new: true,
                    },
                    _ => Faults {
                        up: ProxyFault::None,
                        down: ProxyFault::Blackhole,
                        drop_new: false,
                    },
                };
                say(
                    run_start,
                    format!(
                        "fault: {} on {}'s provider{} link(s) for {} ms",
                        f.kind.name(),
                        cluster.nodes[node].name,
                        if cluster.cluster_proxies.is_empty() {
                            ""
                        } else {
                            " and peer"
                        },
                        f.duration_ms
                    ),
                );
                let peer = cluster.cluster_proxies.get(node).cloned();
                proxy.set(faults);
                if let Some(p) = &peer {
                    p.set(faults);
                }
                tokio::time::sleep(hold).await;
                proxy.heal();
                if let Some(p) = &peer {
                    p.heal();
                }
            }
            FaultKind::Partition => {
                let Some(net) = &cluster.netns else {
                    continue;
                };
                let peers: Vec<usize> = (0..cluster.nodes.len()).filter(|p| *p != node).collect();
                say(
                    run_start,
                    format!(
                        "fault: partition {} from its peers for {} ms",
                        cluster.nodes[node].name, f.duration_ms
                    ),
                );
                net.partition(node, &peers)?;
                tokio::time::sleep(hold).await;
                net.heal(node)?;
            }
            FaultKind::Flood => {
                let count = ((plan.rate * 5.0) * hold.as_secs_f64()).ceil() as u64;
                say(
                    run_start,
                    format!(
                        "fault: flood of {count} priority-5 tasks over {} ms",
                        f.duration_ms
                    ),
                );
                let from = ms(shared.start);
                let per = hold / (count.max(1) as u32);
                for k in 0..count {
                    let net = networks[(k as usize) % networks.len()].clone();
                    tokio::spawn(submit(
                        nodes.clone(),
                        shared.clone(),
                        net,
                        k as usize,
                        5,
                        true,
                        1_000_000 + k,
                        plan.task_timeout_s,
                    ));
                    tokio::time::sleep(per).await;
                }
                flood_windows.push((from, ms(shared.start) + 5_000));
            }
        }
        if injected {
            *report.faults.entry(f.kind.name().to_string()).or_default() += 1;
            let recovered = recovery(nodes, networks, Duration::from_secs(120)).await;
            match recovered {
                Some(d) => recoveries.push(d.as_millis() as u64),
                None => report.violations.push(format!(
                    "no recovery within 120 s after {} on {}",
                    f.kind.name(),
                    cluster.nodes[node].name
                )),
            }
            let ended = ms(shared.start);
            report.fault_log.push(FaultEntry {
                at_ms: began,
                until_ms: ended,
                kind: f.kind.name().to_string(),
                node: cluster.nodes[node].name.clone(),
                recovery_ms: recovered.map(|d| d.as_millis() as u64),
            });
            if f.kind != FaultKind::Flood {
                other_windows.push((began, ended));
            }
        }
    }
    let elapsed = shared.start.elapsed();
    if length > elapsed {
        tokio::time::sleep(length - elapsed).await;
    }
    let active = shared.start.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    let _ = workload.await;
    let _ = memory.await;
    let _ = poller.await;
    // Let in-flight submissions land, then follow every acknowledged task to the end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    say(
        run_start,
        format!("{name}: workload stopped, waiting for every acknowledged task"),
    );
    let grace = plan.grace.as_millis() as u64;
    let mut rr = 0usize;
    loop {
        poll_once(nodes, &shared, false, &mut rr).await;
        let (pending, last_deadline) = {
            let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
            let pending: Vec<&TaskRecord> = h
                .tasks
                .iter()
                .filter(|t| t.acked_ms.is_some() && t.terminals.is_empty() && !t.vanished)
                .collect();
            (
                pending.len(),
                pending.iter().map(|t| t.deadline_ms).max().unwrap_or(0),
            )
        };
        if pending == 0 || ms(shared.start) > last_deadline + grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Re-read every task once more: a terminal state must not change.
    poll_once(nodes, &shared, true, &mut rr).await;
    check_memory(nodes, &shared).await;
    let budgets = spends(nodes, networks).await;
    let mut h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    h.budgets = budgets;
    let outcome = h.check(ms(shared.start), grace);
    let (mut high, flood) = high_latencies(&h.tasks, &flood_windows, &other_windows);
    for (took, i) in &flood.worst {
        let t = &h.tasks[*i];
        report.flood_slowest.push(json!({
            "acked_ms": t.acked_ms,
            "latency_ms": took,
            "flood_window": flood_windows.iter().find(|(f, to)| t.acked_ms.is_some_and(|a| a >= *f && a <= *to)),
            "detail": t.detail,
        }));
    }
    // The slowest acknowledged tasks, with the nodes' account of each.
    let mut slow: Vec<(u64, &TaskRecord)> = h
        .tasks
        .iter()
        .filter_map(|t| Some((t.latency_ms()?, t)))
        .filter(|(d, _)| *d > SLOW_MS)
        .collect();
    slow.sort_by_key(|x| std::cmp::Reverse(x.0));
    for (d, t) in slow.iter().take(10) {
        report.slowest.push(json!({
            "phase": name,
            "network": t.network,
            "priority": t.priority,
            "flood": t.flood,
            "acked_ms": t.acked_ms,
            "terminal": t.terminals.first(),
            "latency_ms": d,
            "detail": t.detail,
        }));
    }
    let secs = active.as_secs_f64().max(0.001);
    // Goodput counts only the steady workload (not floods), completed per second.
    let completed_steady = h
        .tasks
        .iter()
        .filter(|t| !t.flood && t.terminals.first().is_some_and(|(s, _)| s == "completed"))
        .count();
    let p = Phase {
        seconds: secs,
        goodput: completed_steady as f64 / secs,
        high_p50_ms: quantile(&mut high.clone(), 0.5),
        high_p99_ms: quantile(&mut high, 0.99),
        outcome,
    };
    say(
        run_start,
        format!(
            "{name}: acked {} completed {} failed {} lost {} duplicated {} refused {}",
            p.outcome.acknowledged,
            p.outcome.completed,
            p.outcome.failed,
            p.outcome.lost,
            p.outcome.duplicated,
            p.outcome.refused
        ),
    );
    Ok((p, recoveries, flood))
}

/// Priority-1 latencies (acknowledged -> completed) of the steady workload: all of them, and
/// those acknowledged inside a flood window, split by whether their lifetime also overlapped
/// another fault's window (injection to recovery).
fn high_latencies(
    tasks: &[TaskRecord],
    flood_windows: &[(u64, u64)],
    other_windows: &[(u64, u64)],
) -> (Vec<u64>, FloodFigures) {
    let mut high = Vec::new();
    let mut flood = FloodFigures::default();
    for (i, t) in tasks.iter().enumerate() {
        if t.priority == 1
            && !t.flood
            && let (Some(a), Some((s, _)), Some(took)) =
                (t.acked_ms, t.terminals.first(), t.latency_ms())
            && s == "completed"
        {
            let at = &(a + took);
            high.push(took);
            if flood_windows
                .iter()
                .any(|(from, to)| a >= *from && a <= *to)
            {
                flood.all.push(took);
                if other_windows
                    .iter()
                    .all(|(from, to)| *at < *from || a > *to)
                {
                    flood.isolated.push(took);
                    flood.worst.push((took, i));
                }
            }
        }
    }
    flood
        .worst
        .sort_by_key(|(took, _)| std::cmp::Reverse(*took));
    flood.worst.truncate(5);
    (high, flood)
}

/// Runs the whole plan against `cluster`; the report (violations inside).
pub async fn run(
    cluster: &mut Cluster,
    plan: &Plan,
    kinds: &[FaultKind],
    run_start: Instant,
) -> Result<Report> {
    let nodes = Nodes::new(
        cluster.nodes.iter().map(|n| n.api).collect(),
        cluster.admin_token.clone(),
    )?;
    let mut report = Report {
        seed: plan.seed,
        scenario: plan.scenario.clone(),
        ..Report::default()
    };
    say(
        run_start,
        format!(
            "waiting for {} node(s) to be healthy (logs in {})",
            cluster.nodes.len(),
            cluster.logs().display()
        ),
    );
    wait_healthy(&nodes, Duration::from_secs(120)).await?;
    let networks = create_networks(&nodes, plan).await?;
    say(run_start, format!("{} networks created", networks.len()));
    let mut kinds = kinds.to_vec();
    if cluster.fake_url.is_none() {
        kinds.retain(|k| {
            !matches!(
                k,
                FaultKind::Provider429
                    | FaultKind::Provider5xx
                    | FaultKind::ProviderLatency
                    | FaultKind::ProviderCut
            )
        });
        report.skipped.insert(
            "provider_*".into(),
            "the cluster file's own providers are used".into(),
        );
    }
    if cluster.netns.is_none() {
        kinds.retain(|k| *k != FaultKind::Partition);
        let why = match crate::netns::unavailable() {
            Some(why) => why,
            None => "real partitions are off (pass --netns)".into(),
        };
        report
            .skipped
            .insert(FaultKind::Partition.name().into(), why);
    }
    if cluster.proxies.is_empty() {
        kinds.retain(|k| {
            !matches!(
                k,
                FaultKind::ProxyDelay | FaultKind::ProxyReset | FaultKind::ProxyBlackhole
            )
        });
        report
            .skipped
            .insert("proxy_*".into(), "no proxy in a user's cluster file".into());
    }
    let schedule = crate::schedule::generate(
        plan.seed,
        plan.chaos.as_millis() as u64,
        cluster.nodes.len(),
        plan.faults,
        &kinds,
    );
    let (baseline, _, _) = phase(
        "baseline",
        cluster,
        &nodes,
        &networks,
        plan,
        plan.baseline,
        &[],
        &mut report,
        run_start,
    )
    .await?;
    let (chaos, mut rec, mut flood_high) = phase(
        "chaos",
        cluster,
        &nodes,
        &networks,
        plan,
        plan.chaos,
        &schedule,
        &mut report,
        run_start,
    )
    .await?;
    report.goodput_ratio = if baseline.goodput > 0.0 {
        chaos.goodput / baseline.goodput
    } else {
        0.0
    };
    report.recovery_p50_ms = quantile(&mut rec, 0.5);
    report.recovery_p99_ms = quantile(&mut rec, 0.99);
    report.recovery_max_ms = rec.iter().copied().max().unwrap_or(0);
    report.flood_high_samples = flood_high.isolated.len() as u64;
    report.flood_high_p99_ms = quantile(&mut flood_high.isolated, 0.99);
    report.flood_high_all_p99_ms = quantile(&mut flood_high.all, 0.99);
    report.flood_high_bound_ms =
        (baseline.high_p99_ms as f64 * plan.flood_bound_factor) as u64 + 5_000;
    if report.flood_high_p99_ms > report.flood_high_bound_ms {
        report.violations.push(format!(
            "priority-1 p99 during floods {} ms exceeds the bound {} ms ({}x the fault-free p99 {} ms + 5 s)",
            report.flood_high_p99_ms, report.flood_high_bound_ms, plan.flood_bound_factor, baseline.high_p99_ms
        ));
    }
    for (phase_name, p) in [("baseline", &baseline), ("chaos", &chaos)] {
        for v in &p.outcome.violations {
            report.violations.push(format!("{phase_name}: {v}"));
        }
    }
    report.baseline = baseline;
    report.chaos = chaos;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p1(acked: u64, done: u64) -> TaskRecord {
        TaskRecord {
            priority: 1,
            acked_ms: Some(acked),
            terminals: vec![("completed".into(), done)],
            ..TaskRecord::default()
        }
    }

    #[test]
    fn flood_latency_excludes_tasks_that_lived_through_other_faults() {
        let tasks = vec![
            p1(100, 400),     // before the flood
            p1(1_000, 1_300), // in the flood, clean
            p1(1_500, 9_000), // in the flood, through the SIGKILL at 5-7 s
            p1(6_000, 6_500), // during the SIGKILL, not in a flood window
            TaskRecord {
                flood: true,
                ..p1(1_200, 1_250)
            },
            TaskRecord {
                priority: 3,
                ..p1(1_100, 1_150)
            },
        ];
        let (high, flood) = high_latencies(&tasks, &[(900, 4_000)], &[(5_000, 7_000)]);
        assert_eq!(high, vec![300, 300, 7_500, 500]);
        assert_eq!(flood.all, vec![300, 7_500]);
        assert_eq!(flood.isolated, vec![300]);
    }

    #[test]
    fn actor_ids_encode_as_one_segment() {
        assert_eq!(
            encode_segment("n1/net/ab-12/agent/x y"),
            "n1%2Fnet%2Fab-12%2Fagent%2Fx%20y"
        );
    }
}
