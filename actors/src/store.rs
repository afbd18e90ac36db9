//! The storage seam: networks, the task journal, shared memory, sessions, and the journal of
//! model answers that makes calls idempotent.
//!
//! Actors own the live state; a store is what survives them. Three backends implement
//! [`Store`] with the same behaviour: [`InMemoryStore`] (tests, `--ephemeral`), the embedded
//! [`EmbeddedStore`] (redb, one file per node, the default) and the PostgreSQL store (shared by a
//! cluster). The conformance suite in [`conformance`] runs against each.
//!
//! Writes come in two kinds. `async` methods return once their write is durable. Journal writes
//! ([`Store::append`], [`Store::put_response`], [`Store::put_memory`]) are queued in order and
//! return an [`Ack`] that resolves when the write is durable: a caller that must not proceed
//! before (the API's 202, an acknowledged memory write) awaits it; an actor that only needs
//! order (the coordinator's journal) does not, and keeps its mailbox moving. Writes of one task
//! become durable in the order they were made, so a crash leaves a prefix of its journal.

#[cfg(test)]
pub(crate) mod conformance;
mod embedded;
mod in_memory;
mod postgres;

pub use embedded::EmbeddedStore;
pub use in_memory::InMemoryStore;
pub use postgres::PostgresStore;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::types::{
    MemoryItem, NetworkRecord, Page, Session, TaskEvent, TaskQuery, TaskRecord, TaskStatus,
    TaskSummary, Timestamp, Usage,
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
    /// The store could not be opened (unreadable, locked, not a store, from a newer version).
    #[error("cannot open the {backend} store at {location}: {message}")]
    Open {
        /// Which backend.
        backend: &'static str,
        /// The file or (redacted) URL.
        location: String,
        /// Why.
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

/// A model answer kept under its idempotency key, so a redelivered call is not paid twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// The provider that answered.
    pub provider: String,
    /// Tokens and cost of the original call.
    pub usage: Usage,
    /// Why it stopped.
    pub finish_reason: Option<String>,
    /// When it was kept.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

/// Resolves when a queued write is durable (or failed).
#[must_use = "an Ack that is never awaited still writes, but its error goes unseen"]
pub struct Ack<T>(AckInner<T>);

enum AckInner<T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(oneshot::Receiver<Result<T, StoreError>>, &'static str),
}

impl<T> Ack<T> {
    /// An ack that is already resolved.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self(AckInner::Ready(Some(result)))
    }

    /// An ack resolved later through the returned sender.
    pub fn pending(backend: &'static str) -> (oneshot::Sender<Result<T, StoreError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self(AckInner::Pending(rx, backend)))
    }
}

impl<T> Unpin for Ack<T> {}

impl<T> Future for Ack<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AckInner::Ready(r) => Poll::Ready(r.take().unwrap_or_else(|| {
                Err(StoreError::Backend {
                    backend: "store",
                    message: "ack polled after completion".into(),
                })
            })),
            AckInner::Pending(rx, backend) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(StoreError::Backend {
                    backend,
                    message: "the store's writer stopped before the write was durable".into(),
                })),
            },
        }
    }
}

/// Where networks, tasks, memory, sessions and model answers are kept.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory`, `embedded` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Where it is, for errors and health: a file path, or a URL without its password.
    fn location(&self) -> String;

    /// Creates or replaces a network.
    async fn put_network(&self, network: &NetworkRecord) -> Result<(), StoreError>;
    /// One network.
    async fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError>;
    /// Every network, oldest first.
    async fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError>;
    /// Deletes a network with its tasks (and their journals and kept answers), memory and
    /// sessions; false if there was none.
    async fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError>;

    /// Stores a new task; durable on return.
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError>;
    /// Journals one event of a task, after every event journaled before it; the ack carries
    /// the task's status after the event.
    fn append(&self, network: NetworkId, task: TaskId, event: TaskEvent) -> Ack<TaskStatus>;
    /// One task, with its journal applied.
    async fn task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// A task's status, without reading the whole record.
    async fn task_status(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskStatus>, StoreError>;
    /// A page of a network's tasks, newest first.
    async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, StoreError>;
    /// A network's tasks that are not terminal, oldest first.
    async fn unfinished_tasks(&self, network: NetworkId) -> Result<Vec<TaskRecord>, StoreError>;

    /// The answer kept under an idempotency key.
    async fn response(&self, key: &str) -> Result<Option<StoredResponse>, StoreError>;
    /// Keeps an answer under its idempotency key (the key starts with its task's id, so
    /// deleting a network removes its answers).
    fn put_response(&self, key: &str, response: &StoredResponse) -> Ack<()>;
    /// Deletes kept answers older than `before`; returns how many.
    async fn expire_responses(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// Stores (or replaces) a memory item.
    fn put_memory(&self, item: &MemoryItem) -> Ack<()>;
    /// Every memory item placed on shard `shard` of `shards` ([`crate::placement::shard_of`]),
    /// oldest first: a shard reloads with this.
    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError>;
    /// One network's memory items placed on shard `shard` of `shards`, oldest first: a node
    /// that takes a network over loads them.
    async fn load_network_memory(
        &self,
        network: NetworkId,
        shard: u32,
        shards: u32,
    ) -> Result<Vec<MemoryItem>, StoreError> {
        Ok(self
            .load_memory(shard, shards)
            .await?
            .into_iter()
            .filter(|i| i.network_id == network)
            .collect())
    }
    /// Deletes memory items; returns how many existed.
    async fn delete_memory(&self, ids: &[MemoryId]) -> Result<usize, StoreError>;

    /// Creates or replaces a session.
    async fn put_session(&self, session: &Session) -> Result<(), StoreError>;
    /// A network's sessions.
    async fn sessions(&self, network: NetworkId) -> Result<Vec<Session>, StoreError>;
    /// Deletes a session (not its items); false if there was none.
    async fn delete_session(&self, network: NetworkId, session: &str) -> Result<bool, StoreError>;

    /// The store's own vector index (PostgreSQL with pgvector), if it has one; without it the
    /// memory shards index vectors themselves.
    fn vectors(&self) -> Option<&dyn VectorStore> {
        None
    }
}

/// Memory vectors kept and searched by the store itself.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Keeps `vector` as item `id`'s (replacing its last one), in the background, in order.
    /// Call it once the item itself is durable.
    fn put(&self, embedder: &str, network: NetworkId, id: MemoryId, vector: Vec<f32>);
    /// Waits (up to a few seconds) until every vector put before this call is written or
    /// given up on; false if time ran out first.
    async fn flush(&self) -> bool;
    /// Of `ids`, those with no kept vector from `embedder`.
    async fn missing(&self, embedder: &str, ids: &[MemoryId]) -> Result<Vec<MemoryId>, StoreError>;
    /// The `limit` items of `network` nearest to `vector` by cosine similarity, best first.
    async fn nearest(
        &self,
        network: NetworkId,
        embedder: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(MemoryId, f32)>, StoreError>;
}
