//! `aimesh up`: runs every node of a cluster file. One node runs in this process; several run
//! as child processes (`aimesh node --name ...`), each line of their output prefixed with the
//! node's name, all stopped together on Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::server;

/// Runs the cluster described by `path` until Ctrl-C.
pub async fn up(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    if let [only] = config.nodes.as_slice() {
        return server::run(&config, &only.name, server::shutdown_signal()).await;
    }
    let exe = std::env::current_exe().context("locating the aimesh binary")?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for node in &config.nodes {
        let mut child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(path)
            .arg("--name")
            .arg(&node.name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", node.name))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix(node.name.clone(), out, false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix(node.name.clone(), err, true));
        }
        children.push((node.name.clone(), child));
    }
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "aimesh up: {} nodes of cluster {:?} ({}); Ctrl-C stops them all",
        children.len(),
        config.cluster,
        config
            .nodes
            .iter()
            .map(|n| format!("{} http://{}/api/mesh", n.name, n.api))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // A node that exits cleanly (drained out of the cluster) leaves the others running; one
    // that fails stops them all.
    let first_failure = async {
        let mut waits: Vec<_> = children
            .iter_mut()
            .map(|(name, c)| Box::pin(async move { (name.clone(), c.wait().await) }))
            .collect();
        while !waits.is_empty() {
            let ((name, status), _, rest) = futures::future::select_all(waits).await;
            waits = rest;
            match status {
                Ok(s) if s.success() => {
                    let _ = writeln!(
                        std::io::stdout(),
                        "aimesh up: node {name} left the cluster (drained); {} still running",
                        waits.len()
                    );
                }
                other => return Some((name, other)),
            }
        }
        None
    };
    let formation = async {
        report_formation(&config).await;
        std::future::pending::<()>().await;
    };
    let outcome = tokio::select! {
        () = server::shutdown_signal() => Ok(()),
        failed = first_failure => match failed {
            Some((name, status)) => Err(anyhow::anyhow!("node {name} exited: {status:?}")),
            None => Ok(()),
        },
        () = formation => Ok(()),
    };
    for (name, child) in &mut children {
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
                tracing::debug!(node = %name, error = %e, "node already gone");
            }
        }
    }
    for (name, child) in &mut children {
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
        if waited.is_err() {
            tracing::warn!(node = %name, "node did not stop within 10 s; killing it");
            let _ = child.kill().await;
        }
    }
    outcome
}

/// Polls every node's `/api/mesh/health` until each reports the cluster formed (every
/// configured node alive and mutually connected), then prints it once with the time taken.
async fn report_formation(config: &Config) {
    let started = std::time::Instant::now();
    let Ok(http) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return;
    };
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        ticks.tick().await;
        let mut formed = true;
        for node in &config.nodes {
            let url = format!("http://{}/api/mesh/health", node.api);
            let health: Option<serde_json::Value> = match http.get(&url).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let node_formed = health
                .as_ref()
                .and_then(|h| h.pointer("/cluster/formed"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if !node_formed {
                formed = false;
                break;
            }
        }
        if formed {
            let _ = writeln!(
                std::io::stdout(),
                "aimesh up: cluster formed: {} nodes up and connected in {:.1} s",
                config.nodes.len(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
    }
}

async fn prefix(name: String, stream: impl AsyncRead + Unpin, stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let text = format!("[{name}] {line}\n");
        let _ = if stderr {
            std::io::stderr().write_all(text.as_bytes())
        } else {
            std::io::stdout().write_all(text.as_bytes())
        };
    }
}
