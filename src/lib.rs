//! aimesh: one binary that runs networks of AI agents as supervised actors.
//!
//! # Layout
//! - [`cli`]: the `aimesh` command line; [`up`]: `aimesh up`; [`server`]: one node and its API.
//! - [`config`]: `cluster.toml`, validated into [`config::Config`].
//! - [`api`]: seed 001's REST API under `/api/mesh` (axum).
//! - [`bench`]: `aimesh bench`, the figures behind the performance targets.
//! - [`telemetry`] sets up logging.
//!
//! The actors themselves live in the `aimesh-actors` crate.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod server;
pub mod telemetry;
pub mod up;

use clap::Parser;

use cli::{Cli, Command};

/// Runs the command line.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Up { config } => up::up(&config).await,
        Command::Node { config, name } => {
            let config = config::Config::load(&config)?;
            server::run(&config, &name, server::shutdown_signal()).await
        }
        Command::Bench(args) => bench::run(args).await,
    }
}
