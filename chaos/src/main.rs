//! `aimesh-chaos`: launches an aimesh cluster, injects faults from a seeded schedule and checks
//! that nothing acknowledged is lost, talking to the nodes only over HTTP and with signals.

mod cluster;
mod history;
mod netns;
mod proxy;
mod report;
mod run;
mod schedule;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::run::{Plan, say};
use crate::schedule::FaultKind;

#[derive(Parser)]
#[command(
    name = "aimesh-chaos",
    version,
    about = "Fault injection and invariant checks for aimesh clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// About 2 minutes on a fresh 3-node cluster (run by CI).
    Smoke(Common),
    /// 30 minutes, at least 200 faults, on a fresh 3-node cluster.
    Soak(Common),
    /// Against the nodes of your own cluster file.
    Run {
        #[command(flatten)]
        common: Common,
        /// The cluster file whose nodes are started (every `[[node]]`).
        #[arg(long)]
        config: PathBuf,
        /// Chaos phase length, e.g. 300s, 10m.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        duration: Duration,
        /// Number of faults in the chaos phase.
        #[arg(long, default_value_t = 30)]
        faults: usize,
    },
}

#[derive(Args)]
struct Common {
    /// The `aimesh` binary (default: $AIMESH_BIN, else next to this executable).
    #[arg(long, env = "AIMESH_BIN")]
    aimesh: Option<PathBuf>,
    /// Replays a run's schedule (default: a fresh random seed, printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Writes the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Task submissions per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Runs each node in a network namespace of its own and adds real partitions (nftables
    /// drops between a node and its peers) to the faults. Needs root, `ip` and `nft`.
    #[arg(long)]
    netns: bool,
    /// Nodes share this PostgreSQL database (an empty one) instead of an embedded store each,
    /// so a dead node's tasks are taken over by the survivors.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Injects only these fault kinds (comma-separated, e.g. `partition,kill_node`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    only: Vec<FaultKind>,
}

fn parse_kind(s: &str) -> Result<FaultKind, String> {
    FaultKind::ALL
        .into_iter()
        .find(|k| k.name() == s.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!("{s:?} is not a fault kind; one of {}", names.join(", "))
        })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn aimesh_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let next = exe.with_file_name("aimesh");
    anyhow::ensure!(
        next.exists(),
        "no aimesh binary next to {}: pass --aimesh PATH or set AIMESH_BIN",
        exe.display()
    );
    Ok(next)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aimesh-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("aimesh-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stdout)]
async fn real_main(cli: Cli) -> Result<bool> {
    let start = Instant::now();
    let (common, mut plan, config) = match cli.command {
        Cmd::Smoke(c) => (
            c,
            plan(
                "smoke",
                Duration::from_secs(30),
                Duration::from_secs(80),
                12,
                4.0,
            ),
            None,
        ),
        Cmd::Soak(c) => (
            c,
            plan(
                "soak",
                Duration::from_secs(300),
                Duration::from_secs(1800),
                240,
                6.0,
            ),
            None,
        ),
        Cmd::Run {
            common,
            config,
            duration,
            faults,
        } => {
            let base = (duration / 4).max(Duration::from_secs(20));
            (
                common,
                plan("run", base, duration, faults, 4.0),
                Some(config),
            )
        }
    };
    plan.seed = common.seed.unwrap_or_else(rand::random);
    if let Some(rate) = common.rate {
        anyhow::ensure!(
            rate > 0.0 && rate.is_finite(),
            "--rate must be a positive number"
        );
        plan.rate = rate;
    }
    println!("seed: {} (replay with --seed {})", plan.seed, plan.seed);
    anyhow::ensure!(
        !(common.netns && config.is_some()),
        "--netns runs the harness's own cluster (smoke, soak); a cluster file's nodes run where it says"
    );
    anyhow::ensure!(
        !(common.postgres.is_some() && config.is_some()),
        "--postgres configures the harness's own cluster (smoke, soak); a cluster file says its own storage"
    );
    anyhow::ensure!(
        !(common.postgres.is_some() && common.netns),
        "--postgres and --netns together are not supported: the nodes in their namespaces cannot reach a database on the harness's loopback"
    );
    let bin = aimesh_bin(common.aimesh)?;
    let mut cluster = match &config {
        None => {
            cluster::Cluster::launch_local(
                &bin,
                3,
                "",
                plan.seed,
                common.netns,
                common.postgres.as_deref(),
            )
            .await?
        }
        Some(path) => cluster::Cluster::launch_from(&bin, path).await?,
    };
    let kinds: Vec<FaultKind> = if common.only.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        common.only.clone()
    };
    let result = run::run(&mut cluster, &plan, &kinds, start).await;
    cluster.shutdown().await;
    let report = result?;
    println!("{}", report.table());
    if let Some(path) = &common.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        say(start, format!("report written to {}", path.display()));
    }
    Ok(report.violations.is_empty())
}

fn plan(name: &str, baseline: Duration, chaos: Duration, faults: usize, rate: f64) -> Plan {
    Plan {
        scenario: name.into(),
        seed: 0,
        baseline,
        chaos,
        faults,
        rate,
        networks: 3,
        budget_usd: 50.0,
        task_timeout_s: 60,
        grace: Duration::from_secs(30),
        flood_bound_factor: 4.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kinds_parse_by_name() {
        assert_eq!(parse_kind("partition"), Ok(FaultKind::Partition));
        assert_eq!(parse_kind(" kill_node"), Ok(FaultKind::KillNode));
        assert!(parse_kind("meteor").is_err_and(|e| e.contains("kill_node")));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
