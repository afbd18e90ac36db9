//! Running one node: its actor tree, its HTTP API, and a graceful shutdown.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;

use aimesh_actors::cluster::member::resolve;
use aimesh_actors::cluster::{ClusterConfig, PeerConfig};
use aimesh_actors::embedding::{Embedding, ProviderEmbedder};
use aimesh_actors::search::HashingEmbedder;
use aimesh_actors::settings::Settings;
use aimesh_actors::store::{EmbeddedStore, InMemoryStore, PostgresStore, Store};
use aimesh_actors::{Node, NodeOptions};

use crate::api::{AppState, router};
use crate::config::{Config, EmbedderConfig, NodeConfig, StorageKind};

/// Opens the store `config` names for node `name`.
pub async fn open_store(config: &Config, name: &str) -> anyhow::Result<Arc<dyn Store>> {
    let compress = config.storage.compress_above;
    Ok(match &config.storage.kind {
        StorageKind::Memory => Arc::new(InMemoryStore::new()),
        StorageKind::Embedded { dir } => {
            let path = dir.join(format!("{name}.redb"));
            Arc::new(EmbeddedStore::open(&path, compress)?)
        }
        StorageKind::Postgres { url } => open_postgres(url, compress).await?,
    })
}

/// Connects to PostgreSQL.
pub async fn open_postgres(url: &str, compress: usize) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(PostgresStore::connect(url, compress).await?))
}

/// What `config` has memory search embed with: the hashing embedder, or a provider's
/// embedding API through the gateway's configuration of that provider.
pub fn embedder(config: &Config) -> anyhow::Result<Embedding> {
    Ok(match &config.memory.embedder {
        EmbedderConfig::Hashing => {
            Embedding::from(HashingEmbedder::new(config.memory.embedding_dims))
        }
        EmbedderConfig::Provider { provider, model } => Embedding::from(
            ProviderEmbedder::from_catalog(&config.gateway.config.catalog, provider, model)
                .with_context(|| {
                    format!(
                        "{}: `memory.embedder`: {provider}:{model}",
                        config.path.display()
                    )
                })?,
        ),
    })
}

/// The node options `config` describes for node `name`, over `store`.
pub fn node_options(
    config: &Config,
    name: &str,
    store: Arc<dyn Store>,
) -> anyhow::Result<NodeOptions> {
    let mut options = NodeOptions::new(name, store);
    options.memory_shards = config.memory.shards;
    options.embedder = embedder(config)?;
    options.ann_threshold = config.memory.ann_threshold;
    options.sweep_interval = Some(config.memory.sweep_interval);
    options.retention = config.memory.retention;
    options.gateway = config.gateway.config.clone();
    options.budget = config.gateway.budget;
    options.network_budget = config.gateway.network_budget;
    options.max_unfinished_tasks = config.limits.max_unfinished_tasks;
    options.cluster = cluster_config(config, name, &options.store).unwrap_or_default();
    options.settings = Settings {
        aging: config.aging,
        max_active_tasks: config.max_active_tasks,
        model_timeout: config.gateway.timeout,
        ..Settings::default()
    };
    Ok(options)
}

/// The cluster part of node `name`'s options: none for a standalone node.
fn cluster_config(
    config: &Config,
    name: &str,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Option<ClusterConfig>> {
    let Some(addr) = config.node(name).and_then(|n| n.cluster.as_deref()) else {
        return Ok(None);
    };
    let bind = resolve(addr)
        .map_err(|e| anyhow::anyhow!("node {name}: cannot resolve its cluster address: {e}"))?;
    let peers = config
        .nodes
        .iter()
        .filter(|n| n.name != name)
        .filter_map(|n| {
            Some(PeerConfig {
                name: n.name.clone(),
                addr: n.dial_addr()?.to_owned(),
            })
        })
        .collect();
    let mut c = ClusterConfig::new(name, bind, peers, &config.membership.cookie);
    c.heartbeat = config.membership.heartbeat;
    c.failure_timeout = config.membership.failure_timeout;
    c.takeover_margin = config.membership.takeover_margin;
    c.shared_store = store.backend() == "postgres";
    if let Some(files) = &config.membership.tls {
        c.tls = Some(
            aimesh_actors::cluster::tls::ClusterTls::load(files)
                .map_err(|e| anyhow::anyhow!("cluster TLS (cluster.tls_*): {e}"))?,
        );
    }
    Ok(Some(c))
}

/// Starts node `node` of `config` and its API router (not yet listening).
pub async fn start(config: &Config, node: &NodeConfig) -> anyhow::Result<(Node, Router)> {
    // Install the metrics recorder before the actors start recording.
    let _ = crate::telemetry::metrics();
    let store = open_store(config, &node.name).await?;
    let mut options = node_options(config, &node.name, store)?;
    options.cluster = cluster_config(config, &node.name, &options.store)?;
    let running = Node::start(options)
        .await
        .with_context(|| format!("starting node {}", node.name))?;
    let app = router(AppState {
        node: running.clone(),
        limits: Arc::new(config.limits.clone()),
        model_timeout: config.gateway.timeout,
        admin: Arc::new(crate::api::AdminAuth::from_env(node.api)),
    });
    running
        .cluster()
        .set_http_service(crate::api::forward_service(
            app.clone(),
            config.limits.max_body_bytes,
        ));
    Ok((running, app))
}

/// Runs node `name` of `config` until `shutdown` resolves (or the node fails).
pub async fn run(
    config: &Config,
    name: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node_config = config.node(name).with_context(|| {
        format!(
            "{}: no [[node]] named {name:?} (have: {})",
            config.path.display(),
            config
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let listener = tokio::net::TcpListener::bind(node_config.api)
        .await
        .with_context(|| format!("cannot listen on {} (node {name})", node_config.api))?;
    let address = listener.local_addr()?;
    let (node, app) = start(config, node_config).await?;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "aimesh node {name} is up: http://{address}/api/mesh (health: http://{address}/api/mesh/health)"
    );
    let _ = out.flush();
    tracing::info!(node = name, %address, "serving the API");

    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let watcher = node.clone();
    let drainer = node.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let outcome = tokio::select! {
        served = server => served.context("HTTP server failed"),
        () = watcher.stopped() => Err(anyhow::anyhow!(
            "node {name}: its actor tree stopped (a node service crashed past its restart intensity)"
        )),
        () = drainer.drained() => {
            tracing::warn!(node = name, "drained: its work is done here; leaving the cluster");
            Ok(())
        }
    };
    tracing::info!(node = name, "shutting down");
    node.shutdown().await;
    outcome
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
