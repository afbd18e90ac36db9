//! Real `aimesh node` processes and the fake provider, driven only over HTTP and signals.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::netns::Netns;
use crate::proxy::Proxy;

/// One node of the cluster under test.
pub struct Node {
    /// The node's name in the cluster file.
    pub name: String,
    /// Its API address.
    pub api: SocketAddr,
    /// The cluster file it reads.
    pub config: PathBuf,
    /// The running process (None while killed).
    pub child: Option<Child>,
    /// The network namespace it runs in (real partitions).
    pub ns: Option<String>,
}

/// The cluster under test.
pub struct Cluster {
    /// The `aimesh` binary.
    pub bin: PathBuf,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The fake provider's base URL, when the harness runs one.
    pub fake_url: Option<String>,
    /// One proxy per node between that node and the fake provider.
    pub proxies: Vec<Proxy>,
    /// One proxy per node in front of its cluster listener (its peers dial it, `dial = ...`).
    pub cluster_proxies: Vec<Proxy>,
    /// The namespaces nodes run in, when partitions are real (`--netns`).
    pub netns: Option<Netns>,
    /// The admin token the nodes are started with (`AIMESH_ADMIN_TOKEN`, or a fresh one when
    /// nodes bind non-loopback addresses, where the admin API needs one).
    pub admin_token: Option<String>,
    fake: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    logs: PathBuf,
}

/// `AIMESH_ADMIN_TOKEN`, when set and not empty.
pub fn admin_token() -> Option<String> {
    std::env::var("AIMESH_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_port(addr: SocketAddr, limit: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {addr} after {limit:?}")
}

impl Cluster {
    /// A fresh cluster of `n` nodes on free ports in a temporary directory, with the fake
    /// provider behind one fault proxy per node. `extra` is appended to every cluster file.
    /// With `netns`, each node runs in a network namespace of its own (real partitions) and
    /// dials its peers directly; otherwise all run on 127.0.0.1 with a fault proxy in front of
    /// each node's cluster listener. With `postgres` (a database URL), the nodes share that
    /// database instead of an embedded store each, so survivors take over a dead node's tasks.
    pub async fn launch_local(
        bin: &Path,
        n: usize,
        extra: &str,
        seed: u64,
        netns: bool,
        postgres: Option<&str>,
    ) -> Result<Self> {
        let netns = if netns {
            Some(Netns::create(n, seed ^ u64::from(std::process::id()))?)
        } else {
            None
        };
        let dir = tempfile::tempdir()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let fake_port = free_port()?;
        let fake = Command::new(bin)
            .args([
                "fake-provider",
                "--port",
                &fake_port.to_string(),
                "--latency-ms",
                "20",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join("fake.log"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} fake-provider", bin.display()))?;
        let fake_addr: SocketAddr = ([127, 0, 0, 1], fake_port).into();
        wait_port(fake_addr, Duration::from_secs(30)).await?;
        let mut text = String::from(
            "[cluster]\nname = \"chaos\"\nheartbeat_ms = 100\nfailure_timeout_ms = 1500\ntakeover_margin_ms = 300\n",
        );
        text.push_str(extra);
        text.push('\n');
        let mut members = String::new();
        let mut cluster_proxies = Vec::new();
        let mut addrs = Vec::new();
        for i in 1..=n {
            if let Some(net) = &netns {
                // Each node has its own stack: the same ports everywhere.
                let ip = net.addr(i - 1);
                addrs.push(SocketAddr::from((ip, 8080)));
                members.push_str(&format!(
                    "[[node]]\nname = \"n{i}\"\napi = \"{ip}:8080\"\ncluster = \"{ip}:7000\"\n"
                ));
                continue;
            }
            let api = free_port()?;
            addrs.push(SocketAddr::from(([127, 0, 0, 1], api)));
            members.push_str(&format!(
                "[[node]]\nname = \"n{i}\"\napi = \"127.0.0.1:{api}\"\n"
            ));
            if n > 1 {
                let port = free_port()?;
                let proxy = Proxy::start(
                    ([127, 0, 0, 1], 0).into(),
                    ([127, 0, 0, 1], port).into(),
                    seed.wrapping_add(1000 + i as u64),
                )
                .await?;
                members.push_str(&format!(
                    "cluster = \"127.0.0.1:{port}\"\ndial = \"{}\"\n",
                    proxy.listen
                ));
                cluster_proxies.push(proxy);
            }
        }
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for i in 1..=n {
            let listen = match &netns {
                Some(net) => SocketAddr::from((net.host(), 0)),
                None => SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            let proxy = Proxy::start(listen, fake_addr, seed ^ i as u64).await?;
            let config = dir.path().join(format!("cluster-n{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "{text}[gateway.providers.anthropic]\nbase_url = \"http://{}\"\napi_key_env = \"FAKE_KEY\"\n\
                     {storage}{members}",
                    proxy.listen,
                    storage = match postgres {
                        Some(url) => format!(
                            "[storage]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n",
                            url.replace('\\', "\\\\").replace('"', "\\\"")
                        ),
                        None =>
                            format!("[storage]\nbackend = \"embedded\"\ndata_dir = \"data-n{i}\"\n"),
                    }
                ),
            )?;
            proxies.push(proxy);
            nodes.push(Node {
                name: format!("n{i}"),
                api: addrs[i - 1],
                config,
                child: None,
                ns: netns.as_ref().map(|net| net.ns(i - 1)),
            });
        }
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            nodes,
            fake_url: Some(format!("http://{fake_addr}")),
            proxies,
            cluster_proxies,
            admin_token: admin_token().or_else(|| {
                netns
                    .is_some()
                    .then(|| format!("chaos-{:016x}", rand::random::<u64>()))
            }),
            netns,
            fake: Some(fake),
            _dir: Some(dir),
            logs,
        };
        for i in 0..n {
            cluster.start(i)?;
        }
        Ok(cluster)
    }

    /// The nodes of a user's cluster file, started as they are configured.
    pub async fn launch_from(bin: &Path, config: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
        let list = value
            .get("node")
            .and_then(|n| n.as_array())
            .context("the cluster file lists no [[node]]")?;
        let mut nodes = Vec::new();
        for (i, n) in list.iter().enumerate() {
            let name = n
                .get("name")
                .and_then(|v| v.as_str())
                .with_context(|| format!("node[{i}].name missing"))?;
            let api = n
                .get("api")
                .and_then(|v| v.as_str())
                .with_context(|| format!("node[{i}].api missing"))?;
            let api: SocketAddr = api
                .parse()
                .with_context(|| format!("node[{i}].api: {api:?} is not host:port with an IP"))?;
            let api = if api.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], api.port()))
            } else {
                api
            };
            nodes.push(Node {
                name: name.to_string(),
                api,
                config: config.to_path_buf(),
                child: None,
                ns: None,
            });
        }
        let dir = tempfile::tempdir()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut cluster = Self {
            bin: bin.to_path_buf(),
            nodes,
            fake_url: None,
            proxies: Vec::new(),
            cluster_proxies: Vec::new(),
            netns: None,
            admin_token: admin_token(),
            fake: None,
            _dir: Some(dir),
            logs,
        };
        for i in 0..cluster.nodes.len() {
            cluster.start(i)?;
        }
        Ok(cluster)
    }

    /// Starts node `i` (again).
    pub fn start(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", node.name)))?;
        let cookie = std::env::var("AIMESH_COOKIE").unwrap_or_else(|_| "chaos-cookie".into());
        // In a namespace, `ip netns exec` execs the node: the child's pid is the node's.
        let mut cmd = match &node.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .args(["node", "--config"])
            .arg(&node.config)
            .args(["--name", &node.name])
            .env(
                "RUST_LOG",
                std::env::var("AIMESH_CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("AIMESH_COOKIE", cookie)
            .envs(
                self.admin_token
                    .as_ref()
                    .map(|t| ("AIMESH_ADMIN_TOKEN", t.as_str())),
            )
            .env("FAKE_KEY", "k")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} node {}", self.bin.display(), node.name))?;
        node.child = Some(child);
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<Pid> {
        self.nodes[i]
            .child
            .as_ref()
            .and_then(|c| c.id())
            .map(|p| Pid::from_raw(p as i32))
    }

    /// SIGKILLs node `i` and reaps it.
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(pid) = self.pid(i) {
            kill(pid, Signal::SIGKILL)?;
        }
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait().await;
        }
        Ok(())
    }

    /// Sends `signal` (SIGSTOP / SIGCONT) to node `i`.
    pub fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        if let Some(pid) = self.pid(i) {
            kill(pid, signal)?;
        }
        Ok(())
    }

    /// Stops everything the harness started.
    pub async fn shutdown(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, Signal::SIGCONT);
            let _ = self.kill(i).await;
        }
        if let Some(mut fake) = self.fake.take() {
            let _ = fake.kill().await;
        }
    }

    /// Where node logs go.
    pub fn logs(&self) -> &Path {
        &self.logs
    }
}
