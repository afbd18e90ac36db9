//! A store in process memory: survives actor restarts, not process restarts.

use std::collections::BTreeSet;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{Store, StoreError};
use crate::ids::{NetworkId, TaskId};
use crate::placement::shard_of;
use crate::types::{
    MemoryItem, NetworkRecord, Page, TaskEvent, TaskQuery, TaskRecord, TaskStatus, TaskSummary,
};

/// Networks, tasks and memory in maps.
#[derive(Default)]
pub struct InMemoryStore {
    networks: DashMap<NetworkId, NetworkRecord>,
    tasks: DashMap<TaskId, TaskRecord>,
    /// Task ids per network; ids are time-ordered, so this is creation order.
    by_network: DashMap<NetworkId, BTreeSet<TaskId>>,
    memory: DashMap<NetworkId, Vec<MemoryItem>>,
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
            }
        }
        self.memory.remove(&id);
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

    async fn append(
        &self,
        network: NetworkId,
        task: TaskId,
        event: TaskEvent,
    ) -> Result<TaskStatus, StoreError> {
        let mut record = self
            .tasks
            .get_mut(&task)
            .filter(|t| t.network_id == network)
            .ok_or(StoreError::UnknownTask { network, task })?;
        record.apply(event);
        Ok(record.status)
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

    async fn put_memory(&self, item: &MemoryItem) -> Result<(), StoreError> {
        self.memory
            .entry(item.network_id)
            .or_default()
            .push(item.clone());
        Ok(())
    }

    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError> {
        let mut items: Vec<MemoryItem> = Vec::new();
        for entry in self.memory.iter() {
            items.extend(
                entry
                    .value()
                    .iter()
                    .filter(|i| shard_of(i.network_id, i.memory_id, shards) == shard)
                    .cloned(),
            );
        }
        items.sort_by_key(|i| i.memory_id);
        Ok(items)
    }
}
