//! The operator commands (`aimesh nodes`, `actors`, `actor`, `networks`, `tasks`, `task watch`,
//! `memory`, `gateway`, `drain`): a client of a node's admin and mesh APIs. Tables by
//! default, the API's JSON with `--json`; any error is one line and a non-zero exit.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

/// Where and how to reach the node.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's API base URL.
    pub api: String,
    /// The admin token.
    pub token: Option<String>,
    /// Print JSON instead of tables.
    pub json: bool,
}

/// What to do to an actor.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ActorVerb {
    /// Show one actor.
    Inspect,
    /// Take it out of service (agents leave their network).
    Stop,
    /// Crash it now; its supervisor restarts it and its work is redelivered.
    Kill,
    /// Stop it after its current message; its supervisor starts it again.
    Restart,
}

/// `aimesh task ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TaskCommand {
    /// Follow a task live, one line per subtask, until it ends (exit 0 if it completed).
    Watch {
        /// The task id.
        id: String,
        /// Its network (found by asking each network when left out).
        #[arg(long)]
        network: Option<String>,
    },
}

/// `aimesh memory ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum MemoryCommand {
    /// Items per memory shard.
    Stats {
        /// Ask this node (default: the one `--api` names).
        #[arg(long)]
        node: Option<String>,
    },
    /// Semantic search in a network's memory.
    Search {
        /// The network.
        #[arg(long)]
        network: String,
        /// The query text.
        query: String,
        /// How many results.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// Only this type (fact, context, decision, feedback).
        #[arg(long = "type")]
        kind: Option<String>,
    },
}

struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    fn new(target: Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, target })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.api.trim_end_matches('/'))
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.target.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "connection refused or unreachable".to_owned()
            } else if e.is_timeout() {
                "no answer in 30 s".to_owned()
            } else {
                e.to_string()
            };
            anyhow::anyhow!("cannot reach the node at {}: {why}", self.target.api)
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.to_string());
            match status.as_u16() {
                401 => bail!("{message} (pass --token or set AIMESH_ADMIN_TOKEN)"),
                _ => bail!("{message} (HTTP {})", status.as_u16()),
            }
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path).await
    }

    async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path).await
    }
}

/// Percent-encodes one path segment (actor ids hold `/`).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A value as a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Prints rows under headers, columns aligned.
fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_uppercase()).collect())
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.clone()))?;
    }
    Ok(())
}

fn print_json(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// `aimesh nodes`.
pub async fn nodes(t: Target) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let v = c.get("/api/admin/nodes").await?;
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &v);
    }
    let rows: Vec<Vec<String>> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                cell(&n["name"]),
                cell(&n["status"]),
                n["uptime_seconds"]
                    .as_u64()
                    .map(|s| format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60))
                    .unwrap_or_else(|| "-".into()),
                cell(&n["load"]),
                cell(&n["networks"]),
                cell(&n["version"]),
            ]
        })
        .collect();
    table(
        &mut out,
        &["node", "status", "uptime", "load", "networks", "version"],
        &rows,
    )
}

/// `aimesh actors`.
pub async fn actors(
    t: Target,
    node: Option<String>,
    kind: Option<String>,
    tree: bool,
) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let mut path = "/api/admin/actors".to_owned();
    let mut q = Vec::new();
    if let Some(n) = &node {
        q.push(format!("node={}", segment(n)));
    }
    if let Some(k) = &kind {
        q.push(format!("kind={}", segment(k)));
    }
    if !q.is_empty() {
        path = format!("{path}?{}", q.join("&"));
    }
    let v = c.get(&path).await?;
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &v);
    }
    let actors = v["actors"].as_array().cloned().unwrap_or_default();
    // Depth of each actor from its parent chain (the API lists parents before children).
    let mut depth: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let rows: Vec<Vec<String>> = actors
        .iter()
        .map(|a| {
            let id = cell(&a["id"]);
            let d = a["parent"]
                .as_str()
                .and_then(|p| depth.get(p))
                .map_or(0, |d| d + 1);
            depth.insert(id.clone(), d);
            let shown = if tree {
                let label = a["name"]
                    .as_str()
                    .map(|n| format!("{id} ({n})"))
                    .unwrap_or(id);
                format!("{}{label}", "  ".repeat(d))
            } else {
                id
            };
            vec![
                shown,
                cell(&a["kind"]),
                cell(&a["status"]),
                cell(&a["mailbox_depth"]),
                cell(&a["restarts"]),
                cell(&a["messages"]),
            ]
        })
        .collect();
    table(
        &mut out,
        &["actor", "kind", "status", "mailbox", "restarts", "messages"],
        &rows,
    )
}

/// `aimesh actor inspect|stop|kill|restart ID`.
pub async fn actor(t: Target, verb: ActorVerb, id: String) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let path = format!("/api/admin/actors/{}", segment(&id));
    let v = match verb {
        ActorVerb::Inspect => c.get(&path).await?,
        ActorVerb::Stop => c.post(&format!("{path}/stop")).await?,
        ActorVerb::Kill => c.post(&format!("{path}/kill")).await?,
        ActorVerb::Restart => c.post(&format!("{path}/restart")).await?,
    };
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &v);
    }
    let a = &v["actor"];
    match verb {
        ActorVerb::Inspect => {
            for key in [
                "id",
                "kind",
                "parent",
                "network",
                "name",
                "status",
                "mailbox_depth",
                "restarts",
                "messages",
                "escalations",
                "pid",
            ] {
                if !a[key].is_null() {
                    writeln!(out, "{key:<14} {}", cell(&a[key]))?;
                }
            }
        }
        _ => writeln!(
            out,
            "{}: {} ({}) on node {}",
            cell(&v["action"]),
            cell(&a["id"]),
            cell(&a["kind"]),
            cell(&v["node"])
        )?,
    }
    Ok(())
}

/// `aimesh networks`.
pub async fn networks(t: Target) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let v = c.get("/api/mesh/networks").await?;
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &v);
    }
    let rows: Vec<Vec<String>> = v["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                cell(&n["network_id"]),
                cell(&n["name"]),
                cell(&n["status"]),
                n["agents"]
                    .as_array()
                    .map_or_else(|| cell(&n["agent_count"]), |a| a.len().to_string()),
                cell(&n["spend"]["spent_usd"]),
                cell(&n["spend"]["budget_usd"]),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "network",
            "name",
            "status",
            "agents",
            "spent_usd",
            "budget_usd",
        ],
        &rows,
    )
}

/// `aimesh tasks`.
pub async fn tasks(
    t: Target,
    network: Option<String>,
    status: Option<String>,
) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let networks: Vec<String> = match network {
        Some(n) => vec![n],
        None => c.get("/api/mesh/networks").await?["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["network_id"].as_str().map(str::to_owned))
            .collect(),
    };
    let mut all = Vec::new();
    for n in &networks {
        let mut path = format!("/api/mesh/networks/{}/tasks?limit=100", segment(n));
        if let Some(s) = &status {
            path.push_str(&format!("&status={}", segment(s)));
        }
        let page = c.get(&path).await?;
        for t in page["tasks"].as_array().into_iter().flatten() {
            all.push(t.clone());
        }
    }
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &Value::Array(all));
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            vec![
                cell(&t["task_id"]),
                cell(&t["network_id"]),
                cell(&t["status"]),
                cell(&t["priority"]),
                format!(
                    "{}/{}",
                    cell(&t["subtasks_completed"]),
                    cell(&t["subtasks"])
                ),
                cell(&t["task"]).chars().take(48).collect(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["task", "network", "status", "priority", "subtasks", "text"],
        &rows,
    )
}

/// `aimesh task watch`.
pub async fn task(t: Target, cmd: TaskCommand) -> anyhow::Result<()> {
    let TaskCommand::Watch { id, network } = cmd;
    let c = Client::new(t)?;
    let network = match network {
        Some(n) => n,
        None => find_network(&c, &id).await?,
    };
    let path = format!(
        "/api/mesh/networks/{}/tasks/{}",
        segment(&network),
        segment(&id)
    );
    let mut out = std::io::stdout();
    let mut last = String::new();
    loop {
        let v = c.get(&path).await?;
        let status = v["status"].as_str().unwrap_or("unknown").to_owned();
        let terminal = matches!(status.as_str(), "completed" | "failed" | "cancelled");
        if c.target.json {
            if terminal {
                print_json(&mut out, &v)?;
            }
        } else {
            let mut screen = Vec::new();
            writeln!(
                screen,
                "task {id} ({}) — {status}, priority {}",
                cell(&v["task"]).chars().take(60).collect::<String>(),
                cell(&v["priority"])
            )?;
            let rows: Vec<Vec<String>> = v["subtasks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        cell(&s["step"]),
                        cell(&s["agent"]),
                        cell(&s["status"]),
                        cell(&s["attempts"]),
                        cell(&s["node"]),
                        s["duration_ms"]
                            .as_u64()
                            .map(|d| format!("{d} ms"))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(
                &mut screen,
                &["step", "agent", "status", "attempts", "node", "took"],
                &rows,
            )?;
            if let Some(e) = v["error"]["message"].as_str() {
                writeln!(screen, "error: {e}")?;
            }
            let screen = String::from_utf8_lossy(&screen).into_owned();
            if screen != last {
                if std::io::IsTerminal::is_terminal(&out) {
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                write!(out, "{screen}")?;
                out.flush()?;
                last = screen;
            }
        }
        if terminal {
            if status == "completed" {
                return Ok(());
            }
            bail!("task {id} ended {status}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn find_network(c: &Client, task: &str) -> anyhow::Result<String> {
    let v = c.get("/api/mesh/networks").await?;
    for n in v["networks"].as_array().into_iter().flatten() {
        let Some(id) = n["network_id"].as_str() else {
            continue;
        };
        let path = format!("/api/mesh/networks/{}/tasks/{}", segment(id), segment(task));
        if c.get(&path).await.is_ok() {
            return Ok(id.to_owned());
        }
    }
    bail!("no task {task} in any network (give --network if it is elsewhere)")
}

/// `aimesh memory ...`.
pub async fn memory(t: Target, cmd: MemoryCommand) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let mut out = std::io::stdout();
    match cmd {
        MemoryCommand::Stats { node } => {
            let path = match &node {
                Some(n) => format!("/api/admin/memory/stats?node={}", segment(n)),
                None => "/api/admin/memory/stats".into(),
            };
            let v = c.get(&path).await?;
            if c.target.json {
                return print_json(&mut out, &v);
            }
            writeln!(
                out,
                "node {}: {} items ({} waiting for vectors), embedder {}",
                cell(&v["node"]),
                cell(&v["items"]),
                cell(&v["unembedded"]),
                cell(&v["embedder"])
            )?;
            let rows: Vec<Vec<String>> = v["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| {
                    vec![
                        i.to_string(),
                        cell(&s["items"]),
                        cell(&s["networks"]),
                        cell(&s["unembedded"]),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["shard", "items", "networks", "unembedded"],
                &rows,
            )
        }
        MemoryCommand::Search {
            network,
            query,
            k,
            kind,
        } => {
            let mut path = format!(
                "/api/mesh/networks/{}/memory?query={}&k={k}",
                segment(&network),
                segment(&query)
            );
            if let Some(kind) = kind {
                path.push_str(&format!("&type={}", segment(&kind)));
            }
            let v = c.get(&path).await?;
            if c.target.json {
                return print_json(&mut out, &v);
            }
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        i["score"]
                            .as_f64()
                            .map(|s| format!("{s:.3}"))
                            .unwrap_or_else(|| "-".into()),
                        cell(&i["type"]),
                        cell(&i["content"]).chars().take(70).collect(),
                    ]
                })
                .collect();
            table(&mut out, &["score", "type", "content"], &rows)
        }
    }
}

/// `aimesh gateway`.
pub async fn gateway(t: Target) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let v = c.get("/api/mesh/gateway").await?;
    let mut out = std::io::stdout();
    if c.target.json {
        return print_json(&mut out, &v);
    }
    let st = &v["status"];
    let hits = st["cache_hits"].as_f64().unwrap_or(0.0);
    let misses = st["cache_misses"].as_f64().unwrap_or(0.0);
    writeln!(
        out,
        "spend ${} of {} (reserved ${}); calls in flight {}, waiting {}; cache hit rate {}",
        cell(&v["spend"]["spent_usd"]),
        v["spend"]["budget_usd"]
            .as_f64()
            .map(|b| format!("${b:.2}"))
            .unwrap_or_else(|| "no budget".into()),
        cell(&v["spend"]["reserved_usd"]),
        cell(&st["in_flight"]),
        cell(&st["waiting"]),
        if hits + misses > 0.0 {
            format!("{:.1}%", 100.0 * hits / (hits + misses))
        } else {
            "-".into()
        }
    )?;
    let providers: Vec<Vec<String>> = st["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                cell(&p["name"]),
                cell(&p["kind"]),
                cell(&p["restarts"]),
                cell(&p["in_flight"]),
            ]
        })
        .collect();
    table(
        &mut out,
        &["provider", "kind", "restarts", "in_flight"],
        &providers,
    )?;
    let links: Vec<Vec<String>> = st["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                cell(&l["link"]),
                cell(&l["circuit"]),
                cell(&l["opened"]),
                cell(&l["waiting"]),
                cell(&l["rate_limit_headroom"]),
            ]
        })
        .collect();
    if !links.is_empty() {
        writeln!(out)?;
        table(
            &mut out,
            &["link", "circuit", "opened", "waiting", "headroom"],
            &links,
        )?;
    }
    Ok(())
}

/// `aimesh drain NODE`.
pub async fn drain(t: Target, node: String, force: bool, wait: bool) -> anyhow::Result<()> {
    let c = Client::new(t)?;
    let q = if force { "?force=true" } else { "" };
    let path = format!("/api/admin/nodes/{}/drain", segment(&node));
    let v = c.post(&format!("{path}{q}")).await?;
    let mut out = std::io::stdout();
    if c.target.json && !wait {
        return print_json(&mut out, &v);
    }
    writeln!(
        out,
        "draining {node}: no new work goes there; {} subtasks in flight",
        cell(&v["in_flight"])
    )?;
    if !wait {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match c.get(&path).await {
            Ok(s) => {
                writeln!(out, "  {} in flight", cell(&s["in_flight"]))?;
            }
            Err(_) => {
                writeln!(out, "{node} has left the cluster")?;
                return Ok(());
            }
        }
    }
}
