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
    /// Serve the fake model provider (Anthropic, OpenAI, Gemini and Ollama wire formats, with
    /// scriptable faults) on loopback, for tests, benchmarks and chaos runs.
    FakeProvider {
        /// The port (0: any free port; the address is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Latency added before every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Delay between streamed chunks, in milliseconds.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
    /// Run a benchmark and print its figures (default: the foundation suite).
    Bench {
        /// The suite.
        #[command(subcommand)]
        suite: Option<crate::bench::Suite>,
    },
}
