//! `aimesh bench`: benchmarks that print their figures (never timed assertions in tests).
//!
//! - [`foundation`]: agent spawn cost and memory, tasks per second in process and over HTTP.
//! - [`gateway`]: the latency the model gateway adds in front of a fast upstream, and its
//!   throughput, with an open-loop load generator ([`load`]).
//! - [`storage`]: durable writes and reads, search latency, submit-to-durable latency, beside
//!   redis-server.
//! - [`cluster`]: three node processes: cross-node round trip beside raw TCP, cross-node
//!   subtask throughput, failure detection, redelivery and takeover after a SIGKILL.

pub mod cluster;
pub mod foundation;
pub mod gateway;
mod load;
pub mod observability;
pub mod storage;

use clap::Subcommand;

/// Which benchmark to run.
#[derive(Debug, Clone, Subcommand)]
pub enum Suite {
    /// Agent spawn time and memory; tasks per second end to end.
    Foundation(foundation::FoundationArgs),
    /// Latency added by the gateway's OpenAI-compatible endpoint, and its throughput.
    Gateway(gateway::GatewayArgs),
    /// Durable memory writes and reads, search latency, submit-to-durable latency, beside redis.
    Storage(storage::StorageArgs),
    /// Three nodes: cross-node round trip beside raw TCP, subtask throughput, failure detection
    /// and recovery after a node is killed.
    Cluster(cluster::ClusterArgs),
    /// Metrics and tracing on versus off (task throughput), and `/metrics` scrape time with
    /// 10,000 agents.
    Observability(observability::ObservabilityArgs),
}

/// Runs a suite (the foundation suite by default).
pub async fn run(suite: Option<Suite>) -> anyhow::Result<()> {
    match suite {
        None => {
            use clap::Parser;
            #[derive(Parser)]
            struct Defaults {
                #[command(flatten)]
                args: foundation::FoundationArgs,
            }
            foundation::run(Defaults::parse_from(["bench"]).args).await
        }
        Some(Suite::Foundation(args)) => foundation::run(args).await,
        Some(Suite::Gateway(args)) => gateway::run(args).await,
        Some(Suite::Storage(args)) => storage::run(args).await,
        Some(Suite::Cluster(args)) => cluster::run(args).await,
        Some(Suite::Observability(args)) => observability::run(args).await,
    }
}
