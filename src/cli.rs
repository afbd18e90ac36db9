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
    /// The node API the operator commands talk to.
    #[arg(
        long,
        global = true,
        env = "AIMESH_API",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// The admin token of the node (`AIMESH_ADMIN_TOKEN` on the node).
    #[arg(
        long,
        global = true,
        env = "AIMESH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
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
    /// The cluster's members: status, uptime, load, version.
    Nodes,
    /// A node's supervision tree: each actor's id, kind, status, mailbox depth, restarts and
    /// messages handled.
    Actors {
        /// Ask this node (default: the one `--api` names).
        #[arg(long)]
        node: Option<String>,
        /// Only actors of this kind (agent, coordinator, network, gateway, memory_shard, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Indent each actor under its supervisor.
        #[arg(long)]
        tree: bool,
    },
    /// Inspect, stop, kill or restart one actor (ids as `aimesh actors` lists them).
    Actor {
        /// What to do.
        #[arg(value_enum)]
        verb: crate::ctl::ActorVerb,
        /// The actor's id.
        id: String,
    },
    /// The networks.
    Networks,
    /// Tasks of one network or of all.
    Tasks {
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
        /// Only tasks with this status (pending, processing, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// One task.
    Task {
        /// What to do.
        #[command(subcommand)]
        command: crate::ctl::TaskCommand,
    },
    /// Shared memory.
    Memory {
        /// What to do.
        #[command(subcommand)]
        command: crate::ctl::MemoryCommand,
    },
    /// The model gateway: providers, circuits, rate-limit waits, spend against budget, cache.
    Gateway,
    /// Stop placing new work on a node, let its work finish, then have it leave the cluster.
    Drain {
        /// The node.
        node: String,
        /// Leave even if, with the embedded store, its networks become unavailable.
        #[arg(long)]
        force: bool,
        /// Wait until it has left.
        #[arg(long)]
        wait: bool,
    },
    /// Run a benchmark and print its figures (default: the foundation suite).
    Bench {
        /// The suite.
        #[command(subcommand)]
        suite: Option<crate::bench::Suite>,
    },
}
