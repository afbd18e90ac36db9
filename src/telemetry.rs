//! Logging and tracing.
//!
//! Logs: `RUST_LOG` filters (default [`DEFAULT_FILTER`]: `info`, ractor's at `warn`),
//! pretty or JSON lines on stderr, coloured only on a terminal (and not with `NO_COLOR`).
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! a node also exports its spans over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`,
//! the default, or `http/json`) from a batch processor on a thread of its own, so a slow or
//! absent collector never blocks an actor. One task is one trace on every node: see
//! [`aimesh_actors::trace`]. The standard `OTEL_*` variables apply (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_SCHEDULE_DELAY`, ...).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log filter without `RUST_LOG`: aimesh at info; ractor_cluster's per-session chatter and
/// ractor's `Actor` span (entered on every poll of every actor, which would cost each message a
/// trip through the subscriber) only from warn. `RUST_LOG=info` brings the span back, so each
/// log line names its actor.
pub const DEFAULT_FILTER: &str = "info,ractor=warn,ractor_cluster=warn";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Flushes and stops the span exporter when dropped (at the end of `main`).
#[must_use]
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            // The exporter's blocking client must not run on the async runtime's threads.
            let _ = std::thread::spawn(move || {
                if let Err(e) = provider.shutdown() {
                    tracing::warn!(error = %e, "spans not flushed at exit");
                }
            })
            .join();
        }
    }
}

/// Whether the environment asks for OTLP trace export.
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber (once; later calls do nothing). `instance` (a node's name)
/// turns on OTLP export when the environment configures it.
pub fn init(format: LogFormat, instance: Option<&str>) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Pretty => fmt.compact().with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let provider = instance
        .filter(|_| otlp_configured())
        .and_then(|name| tracer_provider(name.to_owned()));
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    if let Some(p) = &provider {
        // Task spans are built on the SDK's tracer directly (see `aimesh_actors::trace`).
        let ratio = aimesh_actors::trace::ratio_from(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        );
        aimesh_actors::trace::install(p.tracer(aimesh_actors::trace::SCOPE), ratio);
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry(provider)
}

fn tracer_provider(instance: String) -> Option<SdkTracerProvider> {
    // Built off the async runtime: the exporter's HTTP client is a blocking one.
    let built = std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
            opentelemetry::KeyValue::new("service.instance.id", instance),
        );
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("aimesh");
        }
        Ok::<_, opentelemetry_otlp::ExporterBuildError>(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                // Which tasks are traced is decided by `aimesh_actors::trace` from the task id
                // (`OTEL_TRACES_SAMPLER`/`_ARG` give the ratio): whatever it starts is kept.
                .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
                .with_id_generator(aimesh_actors::trace::TaskIdGenerator::default())
                .with_resource(resource.build())
                .build(),
        )
    })
    .join();
    match built {
        Ok(Ok(p)) => Some(p),
        Ok(Err(e)) => {
            // The subscriber is not installed yet: say it on stderr.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("warning: OTLP trace export off: {e}\n"),
            );
            None
        }
        Err(_) => None,
    }
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
