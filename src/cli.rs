//! The `aimesh` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// aimesh: an actor runtime for networks of AI agents.
#[derive(Debug, Parser)]
#[command(name = "aimesh", version, about)]
pub struct Cli {
    /// Log line format (filter with RUST_LOG, default `info`).
    #[arg(
        long,
        global = true,
        env = "AIMESH_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every node of a cluster file in the foreground; Ctrl-C stops them.
    Up {
        /// The cluster file.
        #[arg(long, short, env = "AIMESH_CONFIG", default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Run one named node of a cluster file.
    Node {
        /// The cluster file.
        #[arg(long, short, env = "AIMESH_CONFIG", default_value = "cluster.toml")]
        config: PathBuf,
        /// The node's name in the file.
        #[arg(long, env = "AIMESH_NODE")]
        name: String,
    },
    /// Measure spawn cost, memory per agent, and task throughput; prints the figures.
    Bench(crate::bench::BenchArgs),
}
