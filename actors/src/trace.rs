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
//! With no exporter installed (no `OTEL_EXPORTER_OTLP_ENDPOINT`), all of this costs a few
//! no-op calls.

use std::cell::Cell;
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
    format!("00-{}-{}-01", trace_id(task), root_span_id(task))
}

/// The context whose parent is the task's root span.
pub fn root_context(task: TaskId) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id(task),
        root_span_id(task),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// Makes `span` a child of `task`'s root span (no-op without an OpenTelemetry layer).
pub fn in_task(span: &tracing::Span, task: TaskId) {
    let _ = span.set_parent(root_context(task));
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
}

/// Exports a task's root span, `task`, from its acceptance to now (call once it is terminal).
pub fn finish_root(root: &Root<'_>) {
    let tracer = opentelemetry::global::tracer(SCOPE);
    let task = root.task;
    let start: SystemTime = root.created_at.into();
    let builder = tracer
        .span_builder("task")
        .with_kind(SpanKind::Server)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("aimesh.task_id", task.to_string()),
            KeyValue::new("aimesh.network_id", root.network.to_string()),
            KeyValue::new("aimesh.priority", i64::from(root.priority.get())),
            KeyValue::new("aimesh.status", root.status),
            KeyValue::new("aimesh.subtasks", root.subtasks as i64),
        ]);
    FORCED.with(|f| f.set(Some((trace_id(task), root_span_id(task)))));
    let mut span = tracer.build_with_context(builder, &Context::new());
    FORCED.with(|f| f.set(None));
    if let Some(e) = root.error {
        span.set_status(opentelemetry::trace::Status::error(e.to_owned()));
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
}
