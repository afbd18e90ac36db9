//! `aimesh bench observability`: what metrics and tracing cost.
//!
//! - Task throughput in-process (the foundation suite's workload) with metrics and tracing on
//!   (recorder installed, logs at the default filter, every span exported over OTLP/HTTP to a receiver in
//!   this process) versus off (`AIMESH_METRICS=off`, `RUST_LOG=off`, no exporter), each side in
//!   its own child process, since the recorder and the tracer are global to a process.
//!   Target: on / off ≥ 0.95. Rounds run the two sides one after the other (throughput as a
//!   user sees it, moved by the machine's drift), then side by side (both at once, sharing the
//!   machine's state, for the ratio of their CPU per task: a saturated node's throughput is its
//!   cores over that). Each figure comes with a sign-test interval for its median and a verdict.
//! - `GET /metrics` over loopback on a node holding a network of 10,000 agents after some
//!   tasks ran: p50/p99 over repeated scrapes. Target: ≤ 10 ms.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use aimesh_actors::node::NewNetwork;

use super::foundation::{Throughput, percentile, spawn_specs, tasks_in_process};

/// `aimesh bench observability` options.
#[derive(Debug, Clone, Args)]
pub struct ObservabilityArgs {
    /// Tasks per throughput run.
    #[arg(long, default_value_t = 5_000)]
    pub tasks: usize,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Runs per side (in rounds of one each, off-on then on-off; the median is reported, with
    /// an interval for it from 7 rounds on).
    #[arg(long, default_value_t = 15)]
    pub runs: usize,
    /// Rounds in which both sides run at once (so they share the machine's state at every
    /// moment), for the ratio of their CPU per task; 0 for none.
    #[arg(long, default_value_t = 9)]
    pub side_by_side: usize,
    /// Agents on the scraped node.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Scrapes to time.
    #[arg(long, default_value_t = 50)]
    pub scrapes: usize,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Internal: one throughput run in this process (used in child processes).
    #[arg(long, hide = true, value_enum)]
    pub part: Option<Side>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Side {
    /// Metrics recorder installed, logs at info.
    On,
    /// No recorder, logs off.
    Off,
}

/// What the OTLP receiver got from the "on" side.
#[derive(Debug, Default)]
struct Received {
    bodies: std::sync::Mutex<Vec<axum::body::Bytes>>,
}

impl Received {
    /// Requests received, their bytes, the spans in them, and the requests that were not
    /// OTLP protobuf.
    fn totals(&self) -> (u64, u64, u64, u64) {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let bodies = self
            .bodies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut spans, mut undecodable) = (0u64, 0u64);
        for body in bodies.iter() {
            match <ExportTraceServiceRequest as prost::Message>::decode(body.clone()) {
                Ok(request) => {
                    spans += request
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len() as u64)
                        .sum::<u64>();
                }
                Err(_) => undecodable += 1,
            }
        }
        let bytes = bodies.iter().map(|b| b.len() as u64).sum();
        (bodies.len() as u64, bytes, spans, undecodable)
    }
}

/// An OTLP/HTTP (protobuf) receiver on loopback that counts what it is sent, spans included;
/// its base URL.
async fn otlp_sink() -> anyhow::Result<(String, std::sync::Arc<Received>)> {
    let got = std::sync::Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let counted = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                // Decoded after the runs: a collector's work is not the node's, and this one
                // shares the cores with the node being measured.
                counted
                    .bodies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, got))
}

/// What one child process measured: its throughput and the CPU time it spent on it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Part {
    #[serde(flatten)]
    throughput: Throughput,
    /// User + system CPU seconds of the whole process during the run (every thread: workers,
    /// the span exporter's batch thread, the store's writer).
    cpu_seconds: f64,
    /// Task spans the process started (every one should reach the receiver).
    #[serde(default)]
    spans: u64,
}

/// This process's user + system CPU time so far (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn in_child(side: Side, args: &ObservabilityArgs, otlp: &str) -> anyhow::Result<Part> {
    let exe = std::env::current_exe()?;
    let (name, metrics, log) = match side {
        Side::On => ("on", "on", crate::telemetry::DEFAULT_FILTER),
        Side::Off => ("off", "off", "off"),
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "bench",
        "observability",
        "--part",
        name,
        "--tasks",
        &args.tasks.to_string(),
        "--concurrency",
        &args.concurrency.to_string(),
    ])
    .env("AIMESH_METRICS", metrics)
    .env("RUST_LOG", log)
    .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    .stderr(std::process::Stdio::null());
    match side {
        Side::On => cmd
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        Side::Off => cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    };
    let out = cmd.output().await?;
    anyhow::ensure!(out.status.success(), "bench part {name} failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[derive(Debug, serde::Serialize)]
struct Scrape {
    agents: usize,
    scrapes: usize,
    bytes: usize,
    series: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn scrape(args: &ObservabilityArgs) -> anyhow::Result<Scrape> {
    let config = crate::config::Config::parse(
        std::path::Path::new("bench.toml"),
        "[[node]]\nname = \"bench-obs\"\napi = \"127.0.0.1:0\"\n[limits]\nmax_unfinished_tasks = 1000000\n",
    )?;
    let node_config = config.nodes[0].clone();
    let (node, app) = crate::server::start(&config, &node_config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    node.create_network(NewNetwork {
        name: "scrape".into(),
        description: String::new(),
        max_iterations: 1,
        timeout_seconds: 60,
        agents: Some(spawn_specs(args.agents)),
        budget_usd: None,
        retention: None,
        network_id: None,
    })
    .await?;
    // Some work, so task, subtask and gateway series exist.
    let net = node
        .create_network(NewNetwork {
            name: "work".into(),
            description: String::new(),
            max_iterations: 10,
            timeout_seconds: 300,
            agents: None,
            budget_usd: None,
            retention: None,
            network_id: None,
        })
        .await?
        .record
        .network_id;
    for _ in 0..20 {
        let t = node
            .submit_task(net, super::foundation::seed_task())
            .await?;
        node.process_task(net, t.task_id).await?;
        node.wait_status(net, t.task_id, Duration::from_secs(60))
            .await?;
    }
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("http://{addr}/metrics");
    let mut times = Vec::with_capacity(args.scrapes);
    let mut body = String::new();
    // One warm-up scrape (connection set-up), then the timed ones.
    for i in 0..=args.scrapes.max(1) {
        let t0 = Instant::now();
        let resp = client.get(&url).send().await?;
        anyhow::ensure!(resp.status().is_success(), "/metrics: {}", resp.status());
        body = resp.text().await?;
        if i > 0 {
            times.push(t0.elapsed());
        }
    }
    server.abort();
    node.shutdown().await;
    times.sort();
    Ok(Scrape {
        agents: args.agents,
        scrapes: times.len(),
        bytes: body.len(),
        series: body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    })
}

/// The throughput target: on / off at least this.
const TARGET_RATIO: f64 = 0.95;

/// The least probability that [`median_interval`] holds the true median ratio.
const INTERVAL_CONFIDENCE: f64 = 0.9;

/// An interval for a median.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    low: f64,
    high: f64,
    /// The probability that it holds the median (at least the one asked for, unless the sample
    /// is too small for that, when it is the sample's range).
    confidence: f64,
}

/// The sign-test interval for the median of the distribution that `sorted` (ascending) was
/// drawn from: `[sorted[k], sorted[n - 1 - k]]` for the largest `k` whose interval still holds
/// the median with probability `confidence`. That probability is `1 - 2 P(B ≤ k)` with
/// `B ~ Binomial(n, 1/2)`, whatever the distribution, so rounds that a noisy machine slows
/// now and then need no model of the noise.
fn median_interval(sorted: &[f64], confidence: f64) -> Interval {
    let n = sorted.len();
    let Some((&first, &last)) = sorted.first().zip(sorted.last()) else {
        return Interval {
            low: f64::NAN,
            high: f64::NAN,
            confidence: 0.0,
        };
    };
    // P(B ≤ i) for i = 0, 1, ...: C(n, i) / 2^n, summed.
    let (mut term, mut below) = (0.5f64.powi(n as i32), 0.0);
    let mut best = Interval {
        low: first,
        high: last,
        confidence: 1.0 - 2.0 * term,
    };
    for k in 0..n / 2 {
        below += term;
        let held = 1.0 - 2.0 * below;
        if held < confidence {
            break;
        }
        best = Interval {
            low: sorted[k],
            high: sorted[n - 1 - k],
            confidence: held,
        };
        term *= (n - k) as f64 / (k + 1) as f64;
    }
    best
}

/// What the interval says of the target: met when all of it is at or above, not met when all of
/// it is below, and otherwise that this machine's noise does not tell; nothing from an interval
/// less sure than [`INTERVAL_CONFIDENCE`] (fewer than 5 rounds).
fn verdict(interval: Interval, target: f64) -> &'static str {
    if interval.confidence < INTERVAL_CONFIDENCE {
        "too few rounds to tell"
    } else if interval.low >= target {
        "met"
    } else if interval.high < target {
        "not met"
    } else {
        "the interval straddles the target"
    }
}

/// Runs the suite and prints its figures.
pub async fn run(args: ObservabilityArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    if let Some(side) = args.part {
        if side == Side::On {
            let _ = crate::telemetry::metrics().context("metrics recorder")?;
        }
        let cpu = cpu_seconds();
        let throughput = tasks_in_process(args.tasks, args.concurrency).await?;
        let part = Part {
            throughput,
            cpu_seconds: cpu_seconds() - cpu,
            spans: aimesh_actors::trace::spans_started(),
        };
        writeln!(out, "{}", serde_json::to_string(&part)?)?;
        return Ok(());
    }
    let (otlp, received) = otlp_sink().await?;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let (mut on_cpu, mut off_cpu) = (Vec::new(), Vec::new());
    let mut started = 0;
    // Each round's on/off ratios (throughput, CPU per task): the two runs of a round are
    // neighbours in time, so their ratio is free of the drift between rounds.
    let (mut pairs, mut cpu_pairs) = (Vec::new(), Vec::new());
    // Rounds alternate the order (off-on, on-off, ...) so that a machine that speeds up or slows
    // down during the runs favours neither side.
    for round in 0..args.runs.max(1) {
        let order = if round % 2 == 0 {
            [Side::Off, Side::On]
        } else {
            [Side::On, Side::Off]
        };
        // This round's (tasks/s, CPU ms per task), on then off.
        let mut round = [(0.0, 0.0); 2];
        for side in order {
            let o = in_child(side, &args, &otlp).await?;
            let got = (
                o.throughput.tasks_per_second,
                o.cpu_seconds * 1e3 / args.tasks.max(1) as f64,
            );
            if side == Side::On {
                started += o.spans;
                round[0] = got;
            } else {
                round[1] = got;
            }
        }
        let [(on_tps, on_ms), (off_tps, off_ms)] = round;
        on.push(on_tps);
        on_cpu.push(on_ms);
        off.push(off_tps);
        off_cpu.push(off_ms);
        pairs.push(on_tps / off_tps.max(1e-9));
        cpu_pairs.push(on_ms / off_ms.max(1e-9));
    }
    // Side by side: both children at once. Each finds the machine as the other does, so the
    // ratio of their CPU per task is free of the drift that moves sequential runs. A saturated
    // node's throughput is its cores over its CPU per task, so off/on CPU estimates on/off
    // throughput.
    let mut cpu_side = Vec::new();
    for _ in 0..args.side_by_side {
        let (o, f) = tokio::join!(
            in_child(Side::On, &args, &otlp),
            in_child(Side::Off, &args, &otlp)
        );
        let (o, f) = (o?, f?);
        started += o.spans;
        cpu_side.push(o.cpu_seconds / f.cpu_seconds.max(1e-9));
    }
    cpu_side.sort_by(f64::total_cmp);
    let side_cpu = cpu_side
        .get(cpu_side.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let side_interval = median_interval(&cpu_side, INTERVAL_CONFIDENCE);
    // As throughput on/off: the inverse, so the interval's ends swap.
    let side_throughput = Interval {
        low: 1.0 / side_interval.high,
        high: 1.0 / side_interval.low,
        confidence: side_interval.confidence,
    };
    let side_verdict = verdict(side_throughput, TARGET_RATIO);
    let (requests, bytes, spans, undecodable) = received.totals();
    let exported = (requests, bytes);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on_tps, off_tps) = (median(&mut on), median(&mut off));
    let (on_ms, off_ms) = (median(&mut on_cpu), median(&mut off_cpu));
    let paired = median(&mut pairs);
    let interval = median_interval(&pairs, INTERVAL_CONFIDENCE);
    let verdict = verdict(interval, TARGET_RATIO);
    let cpu_paired = median(&mut cpu_pairs);
    let scrape = scrape(&args).await?;
    let report = serde_json::json!({
        "throughput": {
            "tasks": args.tasks,
            "runs": args.runs.max(1),
            "on_tasks_per_second": on_tps,
            "off_tasks_per_second": off_tps,
            "ratio": on_tps / off_tps.max(1e-9),
            "paired_ratio": paired,
            "paired_ratio_interval": [interval.low, interval.high],
            "paired_ratio_interval_confidence": interval.confidence,
            "verdict": verdict,
            "round_ratios": pairs,
            "side_by_side": (!cpu_side.is_empty()).then(|| serde_json::json!({
                "rounds": cpu_side.len(),
                "cpu_per_task_ratio": side_cpu,
                "cpu_per_task_ratio_interval": [side_interval.low, side_interval.high],
                "throughput_ratio_interval": [side_throughput.low, side_throughput.high],
                "interval_confidence": side_interval.confidence,
                "verdict": side_verdict,
                "round_cpu_ratios": cpu_side,
            })),
            "paired_cpu_ratio": cpu_paired,
            "target_ratio": TARGET_RATIO,
            "on_runs": on,
            "off_runs": off,
            "on_cpu_ms_per_task": on_ms,
            "off_cpu_ms_per_task": off_ms,
            "otlp_requests": exported.0,
            "otlp_bytes": exported.1,
            "spans_started": started,
            "spans_received": spans,
            "otlp_undecodable_requests": undecodable,
        },
        "scrape": scrape,
        "target_scrape_ms": 10.0,
    });
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "tasks in-process, metrics+tracing on vs off ({} tasks, median of {} runs each): {:.0} vs {:.0} tasks/s, ratio {:.3} (target ≥ 0.95)",
        args.tasks,
        args.runs.max(1),
        on_tps,
        off_tps,
        on_tps / off_tps.max(1e-9)
    )?;
    writeln!(
        out,
        "  paired by round (the two runs of a round are neighbours in time): median on/off ratio {:.3}, {:.0} % interval {:.3}–{:.3} (rounds {:.3}–{:.3}): {}; CPU per task on/off {:.3}",
        paired,
        interval.confidence * 100.0,
        interval.low,
        interval.high,
        pairs.first().copied().unwrap_or(f64::NAN),
        pairs.last().copied().unwrap_or(f64::NAN),
        verdict,
        cpu_paired,
    )?;
    if !cpu_side.is_empty() {
        writeln!(
            out,
            "  side by side ({} rounds, both sides at once): CPU per task on/off {:.3}, {:.0} % interval {:.3}–{:.3}, so throughput on/off {:.3}–{:.3}: {}",
            cpu_side.len(),
            side_cpu,
            side_interval.confidence * 100.0,
            side_interval.low,
            side_interval.high,
            side_throughput.low,
            side_throughput.high,
            side_verdict,
        )?;
    }
    writeln!(
        out,
        "  CPU per task (every thread of the process): {:.3} ms on vs {:.3} ms off, +{:.1} %; runs on {:?}, off {:?} tasks/s",
        on_ms,
        off_ms,
        (on_ms / off_ms.max(1e-9) - 1.0) * 100.0,
        on.iter().map(|x| x.round()).collect::<Vec<_>>(),
        off.iter().map(|x| x.round()).collect::<Vec<_>>(),
    )?;
    writeln!(
        out,
        "  the \"on\" side exported its spans over OTLP/HTTP: {} of {} spans started ({} lost), {} requests ({} undecodable), {} bytes",
        spans,
        started,
        started.saturating_sub(spans),
        exported.0,
        undecodable,
        exported.1
    )?;
    writeln!(
        out,
        "GET /metrics with {} agents: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} scrapes ({} series, {} bytes; target ≤ 10 ms)",
        scrape.agents,
        scrape.p50_ms,
        scrape.p99_ms,
        scrape.max_ms,
        scrape.scrapes,
        scrape.series,
        scrape.bytes
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<f64> {
        (1..=n).map(|i| i as f64).collect()
    }

    #[test]
    fn the_median_interval_is_the_sign_tests() {
        // n = 15: P(B ≤ 3) = 576 / 32768, P(B ≤ 4) = 1941 / 32768.
        let i = median_interval(&sample(15), 0.9);
        assert_eq!((i.low, i.high), (4.0, 12.0));
        assert!(
            (i.confidence - (1.0 - 2.0 * 576.0 / 32768.0)).abs() < 1e-12,
            "{i:?}"
        );
        // n = 7: only the range holds the median with 90 %: 1 - 2 / 128.
        let i = median_interval(&sample(7), 0.9);
        assert_eq!((i.low, i.high), (1.0, 7.0));
        assert!((i.confidence - (1.0 - 2.0 / 128.0)).abs() < 1e-12, "{i:?}");
        // Too few rounds for 90 %: the range, and what it really holds.
        let i = median_interval(&sample(3), 0.9);
        assert_eq!((i.low, i.high), (1.0, 3.0));
        assert!((i.confidence - 0.75).abs() < 1e-12, "{i:?}");
        // Asking less narrows it: n = 15 at 50 %, P(B ≤ 5) = 4944 / 32768 ≤ 0.25 < P(B ≤ 6).
        let i = median_interval(&sample(15), 0.5);
        assert_eq!((i.low, i.high), (6.0, 10.0));
        assert!(median_interval(&[], 0.9).low.is_nan());
    }

    #[test]
    fn the_verdict_says_when_the_noise_does_not_tell() {
        let at = |low, high| Interval {
            low,
            high,
            confidence: 0.9,
        };
        assert_eq!(verdict(at(0.95, 1.0), 0.95), "met");
        assert_eq!(verdict(at(0.90, 0.949), 0.95), "not met");
        assert_eq!(
            verdict(at(0.94, 0.96), 0.95),
            "the interval straddles the target"
        );
        // Three rounds hold the median with 75 % only; five with 94 %.
        let few = median_interval(&[0.97, 0.98, 0.99], INTERVAL_CONFIDENCE);
        assert_eq!(verdict(few, 0.95), "too few rounds to tell");
        let five = median_interval(&[0.97, 0.98, 0.99, 0.99, 1.0], INTERVAL_CONFIDENCE);
        assert_eq!(verdict(five, 0.95), "met");
    }
}
