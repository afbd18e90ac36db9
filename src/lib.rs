//! aimesh: one binary that runs networks of AI agents as supervised actors.
//!
//! # Layout
//! - [`cli`]: the `aimesh` command line; [`up`]: `aimesh up`; [`server`]: one node and its API.
//! - [`config`]: `cluster.toml`, validated into [`config::Config`].
//! - [`api`]: seed 001's REST API under `/api/mesh` (axum).
//! - [`bench`]: `aimesh bench`, the figures behind the performance targets.
//! - [`fake_provider`]: `aimesh fake-provider`, a loopback server speaking every provider's wire
//!   format with scriptable faults, for tests, benchmarks and chaos runs.
//! - [`telemetry`] sets up logging and OTLP trace export.
//! - [`ports`]: free ports for the node processes benchmarks and tests start.
//!
//! The actors themselves live in the `aimesh-actors` crate.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod fake_provider;
pub mod ports;
pub mod server;
pub mod telemetry;
pub mod up;

use clap::Parser;

use cli::{Cli, Command};

/// Runs the command line.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Nodes (and benchmarks) export traces when OTLP is configured; the CLI's other commands
    // only log.
    let instance = match &cli.command {
        Command::Node { name, .. } => Some(name.clone()),
        Command::Bench { .. } => Some("bench".to_owned()),
        _ => None,
    };
    let _telemetry = telemetry::init(cli.log_format, instance.as_deref());
    let target = ctl::Target {
        api: cli.api.clone(),
        token: cli.token.clone(),
        json: cli.json,
    };
    match cli.command {
        Command::Up { config } => up::up(&config).await,
        Command::Node { config, name } => {
            let config = config::Config::load(&config)?;
            server::run(&config, &name, server::shutdown_signal()).await
        }
        Command::Bench { suite } => bench::run(suite).await,
        Command::Nodes => ctl::nodes(target).await,
        Command::Actors { node, kind, tree } => ctl::actors(target, node, kind, tree).await,
        Command::Actor { verb, id } => ctl::actor(target, verb, id).await,
        Command::Networks => ctl::networks(target).await,
        Command::Tasks { network, status } => ctl::tasks(target, network, status).await,
        Command::Task { command } => ctl::task(target, command).await,
        Command::Memory { command } => ctl::memory(target, command).await,
        Command::Gateway => ctl::gateway(target).await,
        Command::Drain { node, force, wait } => ctl::drain(target, node, force, wait).await,
        Command::FakeProvider {
            port,
            latency_ms,
            chunk_delay_ms,
        } => {
            use std::io::Write;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let address = listener.local_addr()?;
            let _ = writeln!(
                std::io::stdout(),
                "aimesh fake-provider listening on http://{address}"
            );
            let fake = fake_provider::FakeProvider::new(fake_provider::FakeOptions {
                latency: std::time::Duration::from_millis(latency_ms),
                chunk_delay: std::time::Duration::from_millis(chunk_delay_ms),
            });
            fake.serve(listener, server::shutdown_signal()).await?;
            Ok(())
        }
    }
}
