//! The storage seam: networks, the task journal and shared memory.
//!
//! Actors own the live state; a store is what survives them. A write is acknowledged only once
//! the store has it, and a restarted actor (coordinator, memory shard) reloads from here. This
//! issue's implementation is [`InMemoryStore`]; the durable ones (embedded, PostgreSQL) implement
//! the same trait.

mod in_memory;

pub use in_memory::InMemoryStore;

use async_trait::async_trait;

use crate::ids::{NetworkId, TaskId};
use crate::types::{
    MemoryItem, NetworkRecord, Page, TaskEvent, TaskQuery, TaskRecord, TaskStatus, TaskSummary,
};

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not do the operation.
    #[error("{backend} store: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Stored data could not be read back.
    #[error("corrupt data at {location}: {message}")]
    Corrupt {
        /// File, table or key.
        location: String,
        /// What was wrong with it.
        message: String,
    },
    /// A journal event for a task the store does not have.
    #[error("no task {task} in network {network}")]
    UnknownTask {
        /// The network.
        network: NetworkId,
        /// The task.
        task: TaskId,
    },
}

/// Where networks, tasks and memory are kept.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and health: `memory`, `redb`, `postgres`.
    fn backend(&self) -> &'static str;

    /// Creates or replaces a network.
    async fn put_network(&self, network: &NetworkRecord) -> Result<(), StoreError>;
    /// One network.
    async fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError>;
    /// Every network, oldest first.
    async fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError>;
    /// Deletes a network with its tasks and memory; false if there was none.
    async fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError>;

    /// Stores a new task.
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError>;
    /// Journals one event of a task and returns the task's status after it.
    async fn append(
        &self,
        network: NetworkId,
        task: TaskId,
        event: TaskEvent,
    ) -> Result<TaskStatus, StoreError>;
    /// A task's status, without reading the whole record.
    async fn task_status(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskStatus>, StoreError>;
    /// One task.
    async fn task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// A page of a network's tasks, newest first.
    async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, StoreError>;
    /// A network's tasks that are not terminal, oldest first.
    async fn unfinished_tasks(&self, network: NetworkId) -> Result<Vec<TaskRecord>, StoreError>;

    /// Stores a memory item.
    async fn put_memory(&self, item: &MemoryItem) -> Result<(), StoreError>;
    /// Every memory item placed on shard `shard` of `shards` ([`crate::placement::shard_of`]),
    /// oldest first: a shard reloads with this.
    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError>;
}
