//! The records a node keeps: networks and their agents, tasks and their subtasks, memory items.
//! They are also the JSON shapes of the REST API, so field names follow seed 001.

mod memory;
mod network;
mod task;

pub use memory::{MemoryItem, MemoryKind, MemoryQuery, Retention, Session};
pub use network::{
    AgentParameters, AgentSpec, DEFAULT_MODEL, NetworkRecord, builtin_capabilities, default_agents,
    default_temperature,
};
pub use task::{
    FailureCode, SubtaskOutcome, SubtaskRecord, SubtaskStatus, TaskError, TaskEvent, TaskNote,
    TaskQuery, TaskRecord, TaskResult, TaskStatus, TaskSummary, Usage, Usd,
};

use time::OffsetDateTime;

/// A point in time, UTC, serialized as RFC 3339.
pub type Timestamp = OffsetDateTime;

/// The current time, UTC.
pub fn now() -> Timestamp {
    OffsetDateTime::now_utc()
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items match in all.
    pub total: usize,
    /// The page size asked for.
    pub limit: usize,
    /// How many matching items were skipped.
    pub offset: usize,
    /// The offset of the next page, if there is one.
    pub next_offset: Option<usize>,
}

impl<T> Page<T> {
    /// A page of `items` out of `total`, starting at `offset`.
    pub fn new(items: Vec<T>, total: usize, limit: usize, offset: usize) -> Self {
        let end = offset.saturating_add(items.len());
        Self {
            next_offset: (end < total).then_some(end),
            items,
            total,
            limit,
            offset,
        }
    }
}
