//! A store in process memory: survives actor restarts, not process restarts. Every write is
//! "durable" at once.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use dashmap::DashMap;

use super::{Ack, Store, StoreError, StoredResponse};
use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::placement::shard_of;
use crate::types::{
    MemoryItem, NetworkRecord, Page, Session, TaskEvent, TaskQuery, TaskRecord, TaskStatus,
    TaskSummary, Timestamp,
};

/// Networks, tasks, memory, sessions and answers in maps.
#[derive(Default)]
pub struct InMemoryStore {
    networks: DashMap<NetworkId, NetworkRecord>,
    tasks: DashMap<TaskId, TaskRecord>,
    /// Task ids per network; ids are time-ordered, so this is creation order.
    by_network: DashMap<NetworkId, BTreeSet<TaskId>>,
    memory: DashMap<NetworkId, BTreeMap<MemoryId, MemoryItem>>,
    sessions: DashMap<NetworkId, BTreeMap<String, Session>>,
    responses: DashMap<String, StoredResponse>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for InMemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn location(&self) -> String {
        "process memory".into()
    }

    async fn put_network(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        self.networks.insert(network.network_id, network.clone());
        Ok(())
    }

    async fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        Ok(self.networks.get(&id).map(|n| n.clone()))
    }

    async fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let mut all: Vec<_> = self.networks.iter().map(|n| n.clone()).collect();
        all.sort_by_key(|n| n.network_id);
        Ok(all)
    }

    async fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError> {
        let existed = self.networks.remove(&id).is_some();
        if let Some((_, ids)) = self.by_network.remove(&id) {
            for task in ids {
                self.tasks.remove(&task);
                let prefix = task.to_string();
                self.responses.retain(|k, _| !k.starts_with(&prefix));
            }
        }
        self.memory.remove(&id);
        self.sessions.remove(&id);
        Ok(existed)
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.tasks.insert(task.task_id, task.clone());
        self.by_network
            .entry(task.network_id)
            .or_default()
            .insert(task.task_id);
        Ok(())
    }

    fn append(&self, network: NetworkId, task: TaskId, event: TaskEvent) -> Ack<TaskStatus> {
        let Some(mut record) = self
            .tasks
            .get_mut(&task)
            .filter(|t| t.network_id == network)
        else {
            return Ack::ready(Err(StoreError::UnknownTask { network, task }));
        };
        record.apply(event);
        Ack::ready(Ok(record.status))
    }

    async fn task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self
            .tasks
            .get(&task)
            .filter(|t| t.network_id == network)
            .map(|t| t.clone()))
    }

    async fn task_status(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        Ok(self
            .tasks
            .get(&task)
            .filter(|t| t.network_id == network)
            .map(|t| t.status))
    }

    async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, StoreError> {
        let ids: Vec<TaskId> = self
            .by_network
            .get(&network)
            .map(|s| s.iter().rev().copied().collect())
            .unwrap_or_default();
        let mut total = 0;
        let mut items = Vec::new();
        for id in ids {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if query.status.is_some_and(|s| s != t.status) {
                continue;
            }
            if total >= query.offset && items.len() < query.limit {
                items.push(t.summary());
            }
            total += 1;
        }
        Ok(Page::new(items, total, query.limit, query.offset))
    }

    async fn unfinished_tasks(&self, network: NetworkId) -> Result<Vec<TaskRecord>, StoreError> {
        let ids: Vec<TaskId> = self
            .by_network
            .get(&network)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.tasks.get(&id).map(|t| t.clone()))
            .filter(|t| !t.status.is_terminal())
            .collect())
    }

    async fn response(&self, key: &str) -> Result<Option<StoredResponse>, StoreError> {
        Ok(self.responses.get(key).map(|r| r.clone()))
    }

    fn put_response(&self, key: &str, response: &StoredResponse) -> Ack<()> {
        self.responses.insert(key.to_owned(), response.clone());
        Ack::ready(Ok(()))
    }

    async fn expire_responses(&self, before: Timestamp) -> Result<usize, StoreError> {
        let n = self.responses.len();
        self.responses.retain(|_, r| r.at >= before);
        Ok(n - self.responses.len())
    }

    fn put_memory(&self, item: &MemoryItem) -> Ack<()> {
        self.memory
            .entry(item.network_id)
            .or_default()
            .insert(item.memory_id, item.clone());
        Ack::ready(Ok(()))
    }

    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError> {
        let mut items: Vec<MemoryItem> = Vec::new();
        for entry in self.memory.iter() {
            items.extend(
                entry
                    .value()
                    .values()
                    .filter(|i| shard_of(i.network_id, i.memory_id, shards) == shard)
                    .cloned(),
            );
        }
        items.sort_by_key(|i| i.memory_id);
        Ok(items)
    }

    async fn delete_memory(&self, ids: &[MemoryId]) -> Result<usize, StoreError> {
        let mut n = 0;
        for mut entry in self.memory.iter_mut() {
            for id in ids {
                n += usize::from(entry.value_mut().remove(id).is_some());
            }
        }
        Ok(n)
    }

    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.sessions
            .entry(session.network_id)
            .or_default()
            .insert(session.session_id.clone(), session.clone());
        Ok(())
    }

    async fn sessions(&self, network: NetworkId) -> Result<Vec<Session>, StoreError> {
        Ok(self
            .sessions
            .get(&network)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn delete_session(&self, network: NetworkId, session: &str) -> Result<bool, StoreError> {
        Ok(self
            .sessions
            .get_mut(&network)
            .is_some_and(|mut s| s.remove(session).is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        super::super::conformance::run_all(&InMemoryStore::new()).await;
    }
}
