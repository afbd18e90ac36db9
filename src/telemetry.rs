//! Logging: `RUST_LOG` filters (default `info`, ractor_cluster's per-session chatter at `warn`),
//! pretty or JSON lines on stderr, coloured only on a terminal (and not with `NO_COLOR`).

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,ractor_cluster=warn"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process's Prometheus recorder, installed on first use (metrics are global to a process).
pub fn metrics() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            if !metrics_enabled() {
                tracing::info!("metrics off (AIMESH_METRICS)");
                return None;
            }
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 120.0,
            ];
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(|b| b.install_recorder())
                .inspect(|_| aimesh_actors::metrics_names::describe_all())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

/// False when env `AIMESH_METRICS` is `0`, `off` or `false`: no recorder is installed, so every
/// metric update is a no-op and `/metrics` answers 503 (for `aimesh bench` comparisons).
pub fn metrics_enabled() -> bool {
    !matches!(
        std::env::var("AIMESH_METRICS").as_deref().map(str::trim),
        Ok("0" | "off" | "false")
    )
}
