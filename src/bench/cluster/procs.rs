//! The benchmark's cluster: three `aimesh node` processes (and a fresh PostgreSQL database
//! when one is given), their HTTP replies, and stopping them whatever the outcome.

use super::*;

/// The last lines of a node's log.
pub(super) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `url` with its database replaced by `name`.
pub(super) fn with_database(url: &str, name: &str) -> String {
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
pub(super) async fn psql(admin: &str, sql: &str) -> anyhow::Result<()> {
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
pub(super) struct Database {
    pub(super) admin: String,
    pub(super) name: String,
}

/// One `aimesh node` child process (SIGKILLed when dropped).
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) api: String,
    pub(super) child: tokio::process::Child,
    pub(super) log: PathBuf,
}

/// An answer: status, the node that served it, the JSON body (`null` if none).
pub(super) struct Reply {
    pub(super) status: reqwest::StatusCode,
    pub(super) node: Option<String>,
    pub(super) body: Value,
}

impl Reply {
    pub(super) async fn from(req: reqwest::RequestBuilder) -> anyhow::Result<Self> {
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

    pub(super) fn ok(self, what: &str) -> anyhow::Result<Self> {
        ensure!(
            self.status.is_success(),
            "{what}: HTTP {} {}",
            self.status,
            self.body
        );
        Ok(self)
    }

    pub(super) fn str(&self, key: &str) -> anyhow::Result<String> {
        self.body[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {key} in {}", self.body))
    }
}

/// Three nodes on loopback, with their temporary files (and database).
pub(super) struct Cluster {
    pub(super) procs: Vec<Proc>,
    /// Long requests (`process?wait`).
    pub(super) http: reqwest::Client,
    /// Polls: a node that does not answer within 2 s is not answering.
    pub(super) poll: reqwest::Client,
    pub(super) database: Option<Database>,
    pub(super) dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts three nodes with the offline model's latency at `latency_ms`, on the embedded
    /// store or a fresh database on `postgres`, and waits until the cluster has formed.
    pub(super) async fn start(latency_ms: u64, postgres: Option<&str>) -> anyhow::Result<Self> {
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
    pub(super) async fn spawn(&mut self, latency_ms: u64) -> anyhow::Result<()> {
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
            let api = format!("127.0.0.1:{}", crate::ports::free_port()?);
            let peer = format!("127.0.0.1:{}", crate::ports::free_port()?);
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

    pub(super) fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}/api/mesh{path}", self.procs[node].api)
    }

    pub(super) async fn health(&self, node: usize) -> Option<Value> {
        let r = Reply::from(self.poll.get(self.url(node, "/health")))
            .await
            .ok()?;
        Some(r.body)
    }

    pub(super) async fn wait_formed(&mut self, within: Duration) -> anyhow::Result<()> {
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
    pub(super) async fn network(&self) -> anyhow::Result<(String, usize)> {
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
    pub(super) async fn submit(&self, node: usize, net: &str, i: usize) -> anyhow::Result<String> {
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
    pub(super) async fn tasks(&self, node: usize, net: &str, ids: &[String]) -> Vec<Option<Value>> {
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
    pub(super) async fn kill(&mut self, i: usize) -> anyhow::Result<(Instant, OffsetDateTime)> {
        let p = &mut self.procs[i];
        p.child.start_kill()?;
        let at = (Instant::now(), OffsetDateTime::now_utc());
        p.child.wait().await?;
        Ok(at)
    }

    pub(super) async fn stop(mut self) {
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
pub(super) async fn with_cluster<T>(
    latency_ms: u64,
    postgres: Option<&str>,
    part: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut cluster = Cluster::start(latency_ms, postgres).await?;
    let result = part(&mut cluster).await;
    cluster.stop().await;
    result
}
