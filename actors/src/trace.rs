//! One task is one trace, on every node and across restarts.
//!
//! A task's trace id is its task id (both are 128 bits), and its root span id is derived from
//! it, so the trace context travels wherever the task id does: in every message between actors,
//! in the subtasks sent to peers, in the journal a survivor resumes from. Nothing extra is
//! carried and nothing is lost when a node dies. Spans of a task (`task.accept` on the node
//! that took it, `subtask` where an agent ran it, `model.call` for each model call) are children
//! of that root; the root span itself (`task`, from acceptance to the end) is exported by the
//! node that ends the task, with the ids forced through [`TaskIdGenerator`].
//!
//! A client that sends a W3C `traceparent` with a task (its own request's span) is not made the
//! task's parent: the task keeps its own trace, which lives on after the request, and its root
//! span and `task.accept` carry an OTel *link* to the client's span instead (the trace context
//! spec's answer for work that outlives the request that asked for it). The client's
//! `traceparent` is kept in the task record, so whichever node ends the task links its root.
//!
//! These spans are built straight on the OpenTelemetry SDK's tracer ([`install`]ed once by the
//! binary when an exporter is configured), not through `tracing` spans: a [`TaskSpan`] costs one
//! SDK span while it lives and nothing per poll of the work it covers. With no tracer installed
//! (no `OTEL_EXPORTER_OTLP_ENDPOINT`), starting one is a load of an empty cell.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer};

use crate::ids::{NetworkId, TaskId};
use crate::priority::Priority;
use crate::types::Timestamp;

/// The instrumentation scope of aimesh's spans.
pub const SCOPE: &str = "aimesh";

/// A task's trace id: its id's 16 bytes.
pub fn trace_id(task: TaskId) -> TraceId {
    TraceId::from_bytes(*task.as_uuid().as_bytes())
}

/// A task's root span id: the id's random tail (never zero).
pub fn root_span_id(task: TaskId) -> SpanId {
    let uuid = task.as_uuid();
    let mut id = [0u8; 8];
    id.copy_from_slice(&uuid.as_bytes()[8..16]);
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// The W3C `traceparent` of a task's root span.
pub fn traceparent(task: TaskId) -> String {
    format!(
        "00-{}-{}-{:02x}",
        trace_id(task),
        root_span_id(task),
        flags(task).to_u8()
    )
}

/// The share of tasks traced, 0 to 1 (`OTEL_TRACES_SAMPLER`; set by [`install`]).
static RATIO: OnceLock<f64> = OnceLock::new();

/// Whether `task` is traced at the configured ratio (see [`sampled_at`]).
pub fn sampled(task: TaskId) -> bool {
    sampled_at(task, RATIO.get().copied().unwrap_or(1.0))
}

/// Whether `task` is traced when the share `ratio` of tasks is. The decision depends only on
/// the task id, so every node decides the same for a task without telling the others. It reads
/// the id's last 4 bytes, random in the time-ordered UUIDs aimesh makes: the bytes before them
/// hold the UUID's variant bits and a counter that orders ids made in the same millisecond,
/// which would bias the OpenTelemetry trace-id-ratio rule (it reads the last 8 bytes; with
/// these ids it would trace nothing at a ratio below one half).
pub fn sampled_at(task: TaskId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let uuid = task.as_uuid();
    let mut low = [0u8; 4];
    low.copy_from_slice(&uuid.as_bytes()[12..16]);
    let bound = (ratio.max(0.0) * (1u64 << 32) as f64) as u64;
    u64::from(u32::from_be_bytes(low)) < bound
}

fn flags(task: TaskId) -> TraceFlags {
    if sampled(task) {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// The W3C `traceparent` naming `span` as the parent.
pub fn traceparent_of(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// The span a W3C `traceparent` header value names, or `None` when the value is not a valid
/// one (the Trace Context spec says to ignore such a header, not to refuse the request):
/// `version-traceid-parentid-flags` in lowercase hex, version `ff` invalid, version `00`
/// exactly 55 characters, later versions at least that with a `-` after the flags, ids not
/// all zero.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim_matches([' ', '\t']);
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let field = |from: usize, len: usize| {
        value
            .get(from..from + len)
            .filter(|f| hex(f))
            .and_then(|f| u128::from_str_radix(f, 16).ok())
    };
    let version = field(0, 2)?;
    let fits = match version {
        0xff => false,
        0 => value.len() == 55,
        _ => value.len() == 55 || value.as_bytes().get(55) == Some(&b'-'),
    };
    let dashes = [2, 35, 52]
        .iter()
        .all(|&i| value.as_bytes().get(i) == Some(&b'-'));
    if !fits || !dashes {
        return None;
    }
    let trace = field(3, 32).filter(|t| *t != 0)?;
    let span = field(36, 16).filter(|s| *s != 0)?;
    let flags = field(53, 2)?;
    Some(SpanContext::new(
        TraceId::from_bytes(trace.to_be_bytes()),
        SpanId::from_bytes(u64::try_from(span).ok()?.to_be_bytes()),
        TraceFlags::new(u8::try_from(flags).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    ))
}

/// The context whose parent is the task's root span.
pub fn root_context(task: TaskId) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id(task),
        root_span_id(task),
        flags(task),
        true,
        TraceState::default(),
    ))
}

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Spans started in this process (for benchmarks to check that every one was exported).
static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of task spans (roots included) this process has started.
pub fn spans_started() -> u64 {
    STARTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes `tracer` the one task spans are built with, tracing the share `ratio` of tasks (the
/// first call wins; later ones do nothing). Until then, and in a process that never calls it,
/// task spans are no-ops.
pub fn install(tracer: SdkTracer, ratio: f64) {
    let _ = RATIO.set(ratio.clamp(0.0, 1.0));
    let _ = TRACER.set(tracer);
}

/// The share of tasks to trace that `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the
/// standard variables) ask for: 1 unless a ratio or an `always_off` sampler is named.
pub fn ratio_from(sampler: Option<&str>, arg: Option<&str>) -> f64 {
    let ratio = || {
        arg.and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(1.0)
    };
    match sampler.map(str::trim) {
        Some("always_off" | "parentbased_always_off") => 0.0,
        Some("traceidratio" | "parentbased_traceidratio") => ratio(),
        _ => 1.0,
    }
}

/// True once a tracer is installed.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// One span of a task's trace, exported when it ends (or is dropped); a no-op when no tracer is
/// installed.
#[derive(Debug, Default)]
pub struct TaskSpan(Option<opentelemetry_sdk::trace::Span>);

impl TaskSpan {
    /// Starts span `name` now, as a child of `parent` (the task's root span when `None`), with
    /// the attributes `attributes` gives (only called when a tracer is installed).
    pub fn start(
        name: &'static str,
        task: TaskId,
        parent: Option<SpanContext>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        Self::start_linked(name, task, parent, None, attributes)
    }

    /// [`start`](Self::start), with a link to `link` (a client's span) when there is one.
    pub fn start_linked(
        name: &'static str,
        task: TaskId,
        parent: Option<SpanContext>,
        link: Option<SpanContext>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(tracer) = TRACER.get().filter(|_| sampled(task)) else {
            return Self(None);
        };
        STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cx = match parent {
            Some(p) if p.is_valid() => Context::new().with_remote_span_context(p),
            _ => root_context(task),
        };
        let mut builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes());
        if let Some(link) = link {
            builder = builder.with_links(vec![Link::with_context(link)]);
        }
        Self(Some(tracer.build_with_context(builder, &cx)))
    }

    /// This span's context, to parent other spans on (`None` when not exported).
    pub fn context(&self) -> Option<SpanContext> {
        self.0.as_ref().map(|s| s.span_context().clone())
    }

    /// True when this span will be exported.
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Adds the attributes `attributes` gives (only called when the span is exported).
    pub fn set(&mut self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = &mut self.0 {
            span.set_attributes(attributes());
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl FnOnce() -> String) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(message()));
        }
    }

    /// Ends the span now and hands it to the exporter.
    pub fn end(mut self) {
        if let Some(mut span) = self.0.take() {
            span.end();
        }
    }
}

thread_local! {
    static FORCED: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except while [`finish_root`] builds a task's root span on this thread, when the
/// task's own ids are handed out. Install it in the tracer provider.
#[derive(Debug, Default)]
pub struct TaskIdGenerator(RandomIdGenerator);

impl IdGenerator for TaskIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        FORCED
            .with(Cell::get)
            .map_or_else(|| self.0.new_trace_id(), |(t, _)| t)
    }

    fn new_span_id(&self) -> SpanId {
        FORCED
            .with(Cell::get)
            .map_or_else(|| self.0.new_span_id(), |(_, s)| s)
    }
}

/// What a task's root span says.
pub struct Root<'a> {
    /// The task.
    pub task: TaskId,
    /// Its network.
    pub network: NetworkId,
    /// Its priority.
    pub priority: Priority,
    /// When it was accepted (the span's start).
    pub created_at: Timestamp,
    /// How it ended.
    pub status: &'static str,
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
    /// Subtasks it had.
    pub subtasks: usize,
    /// The client's span it was submitted from (a `traceparent`), linked when valid.
    pub client: Option<&'a str>,
}

/// Exports a task's root span, `task`, from its acceptance to now (call once it is terminal).
pub fn finish_root(root: &Root<'_>) {
    let Some(tracer) = TRACER.get().filter(|_| sampled(root.task)) else {
        return;
    };
    STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let task = root.task;
    let start: SystemTime = root.created_at.into();
    let mut builder = tracer
        .span_builder("task")
        .with_kind(SpanKind::Server)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("aimesh.network_id", root.network.to_string()),
            KeyValue::new("aimesh.priority", i64::from(root.priority.get())),
            KeyValue::new("aimesh.status", root.status),
            KeyValue::new("aimesh.subtasks", root.subtasks as i64),
        ]);
    if let Some(client) = root.client.and_then(parse_traceparent) {
        builder = builder.with_links(vec![Link::with_context(client)]);
    }
    FORCED.with(|f| f.set(Some((trace_id(task), root_span_id(task)))));
    let mut span = tracer.build_with_context(builder, &Context::new());
    FORCED.with(|f| f.set(None));
    if let Some(e) = root.error {
        span.set_status(Status::error(e.to_owned()));
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_trace_ids_come_from_its_id() {
        let task = TaskId::new();
        assert_eq!(trace_id(task).to_bytes(), *task.as_uuid().as_bytes());
        assert_ne!(root_span_id(task), SpanId::INVALID);
        let tp = traceparent(task);
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-") && tp.ends_with("-01"));
        assert_eq!(tp, traceparent(task), "every node derives the same context");
        let cx = root_context(task);
        assert_eq!(cx.span().span_context().trace_id(), trace_id(task));
        assert!(cx.span().span_context().is_remote());
    }

    #[test]
    fn ids_are_forced_only_while_a_root_is_built() {
        let ids = TaskIdGenerator::default();
        let task = TaskId::new();
        FORCED.with(|f| f.set(Some((trace_id(task), root_span_id(task)))));
        assert_eq!(ids.new_trace_id(), trace_id(task));
        assert_eq!(ids.new_span_id(), root_span_id(task));
        FORCED.with(|f| f.set(None));
        assert_ne!(ids.new_trace_id(), trace_id(task));
    }

    /// Collects what it is sent.
    #[derive(Debug, Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Collect {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0
                .lock()
                .map_err(|e| {
                    opentelemetry_sdk::error::OTelSdkError::InternalFailure(e.to_string())
                })?
                .extend(batch);
            Ok(())
        }
    }

    #[test]
    fn task_spans_form_the_tasks_tree_once_a_tracer_is_installed() {
        use opentelemetry::trace::TracerProvider as _;
        let task = TaskId::new();
        let off = TaskSpan::start("subtask", task, None, || unreachable!("no tracer yet"));
        assert!(!off.is_recording() && off.context().is_none());
        off.end();

        let got = Collect::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(got.clone())
            .with_id_generator(TaskIdGenerator::default())
            .build();
        install(provider.tracer(SCOPE), 1.0);
        assert!(enabled());
        let mut sub = TaskSpan::start("subtask", task, None, || {
            vec![KeyValue::new("aimesh.agent", "writer")]
        });
        let mut call = TaskSpan::start("model.call", task, sub.context(), Vec::new);
        call.fail(|| "upstream_error: 503".into());
        call.end();
        sub.set(|| vec![KeyValue::new("aimesh.outcome", "completed")]);
        sub.end();
        let client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let client_span = parse_traceparent(client).unwrap();
        TaskSpan::start_linked(
            "task.accept",
            task,
            None,
            Some(client_span.clone()),
            Vec::new,
        )
        .end();
        finish_root(&Root {
            task,
            network: NetworkId::new(),
            priority: Priority::default(),
            created_at: crate::types::now(),
            status: "completed",
            error: None,
            subtasks: 1,
            client: Some(client),
        });

        let spans = got.0.lock().unwrap().clone();
        let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let (call, sub, root) = (find("model.call"), find("subtask"), find("task"));
        // The client's span is linked, never the parent: the task keeps its own trace.
        for s in [root, find("task.accept")] {
            let links: Vec<_> = s.links.iter().map(|l| l.span_context.clone()).collect();
            assert_eq!(links, vec![client_span.clone()], "{}", s.name);
            assert_eq!(s.span_context.trace_id(), trace_id(task));
        }
        assert!(call.links.is_empty() && sub.links.is_empty());
        for s in [call, sub, root] {
            assert_eq!(s.span_context.trace_id(), trace_id(task), "{}", s.name);
        }
        assert_eq!(root.span_context.span_id(), root_span_id(task));
        assert_eq!(sub.parent_span_id, root_span_id(task));
        assert_eq!(call.parent_span_id, sub.span_context.span_id());
        assert!(matches!(call.status, Status::Error { .. }));
        assert!(
            sub.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "aimesh.outcome")
        );
        assert!(
            sub.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "aimesh.agent")
        );
    }

    #[test]
    fn a_traceparent_is_read_as_the_trace_context_spec_says() {
        let cx =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(
            cx.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(cx.span_id(), SpanId::from_hex("b7ad6b7169203331").unwrap());
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(
            traceparent_of(&cx),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let unsampled =
            parse_traceparent(" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\t");
        assert!(
            !unsampled.unwrap().is_sampled(),
            "spaces around are allowed"
        );
        // A later version may append fields after the four it shares with version 00.
        assert!(
            parse_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what")
                .is_some()
        );
        for bad in [
            "",
            "00",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-é",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} must be ignored");
        }
    }

    #[test]
    fn the_sampling_ratio_follows_the_standard_variables() {
        assert_eq!(ratio_from(None, None), 1.0);
        assert_eq!(ratio_from(Some("always_on"), None), 1.0);
        assert_eq!(ratio_from(Some("parentbased_always_off"), None), 0.0);
        assert_eq!(ratio_from(Some("traceidratio"), Some("0.25")), 0.25);
        assert_eq!(
            ratio_from(Some("parentbased_traceidratio"), Some(" 0.1 ")),
            0.1
        );
        assert_eq!(
            ratio_from(Some("traceidratio"), Some("2")),
            1.0,
            "out of range: all"
        );
        assert_eq!(ratio_from(Some("traceidratio"), None), 1.0);
    }

    #[test]
    fn a_tasks_sampling_decision_comes_from_its_id_at_the_ratio_asked() {
        let tasks: Vec<TaskId> = (0..4000).map(|_| TaskId::new()).collect();
        for ratio in [0.0, 0.01, 0.1, 0.3, 0.5, 0.9] {
            let traced = tasks.iter().filter(|t| sampled_at(**t, ratio)).count();
            let expected = ratio * tasks.len() as f64;
            let slack = 4.0 * (expected * (1.0 - ratio)).sqrt() + 1.0;
            assert!(
                (traced as f64 - expected).abs() <= slack,
                "{traced} of {} traced at {ratio}",
                tasks.len()
            );
        }
        assert!(tasks.iter().all(|t| sampled_at(*t, 1.0)));
        // The same task, the same decision, wherever it is asked.
        assert!(
            tasks
                .iter()
                .all(|t| sampled_at(*t, 0.3) == sampled_at(*t, 0.3))
        );
        // A task traced at a ratio is traced at every larger one.
        assert!(
            tasks
                .iter()
                .all(|t| !sampled_at(*t, 0.1) || sampled_at(*t, 0.5))
        );
    }
}
