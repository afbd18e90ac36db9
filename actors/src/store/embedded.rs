//! The embedded store: one redb file per node, the default.
//!
//! Reads run on the caller's thread against a consistent snapshot. Writes go to one writer
//! thread that commits them in groups: it takes every write queued since the last commit,
//! applies them in one transaction, makes it durable (fsync), then acknowledges each. Under
//! load many writes share one fsync; a lone write waits for its own.
//!
//! A task is kept as its base record plus its journal (one row per event), and a small summary
//! row for listings; reads replay the journal. Memory items larger than a threshold are
//! compressed with zstd.

pub(crate) mod codec;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Ack, Store, StoreError, StoredResponse};
use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::placement::shard_of;
use crate::types::{
    MemoryItem, NetworkRecord, Page, Session, TaskEvent, TaskQuery, TaskRecord, TaskStatus,
    TaskSummary, Timestamp,
};
use codec::{decode, decode_item, response_key};
use writer::Op;

pub(crate) const NETWORKS: TableDefinition<u128, &[u8]> = TableDefinition::new("networks");
pub(crate) const TASKS: TableDefinition<u128, &[u8]> = TableDefinition::new("tasks");
pub(crate) const TASK_EVENTS: TableDefinition<(u128, u32), &[u8]> =
    TableDefinition::new("task_events");
pub(crate) const TASK_INDEX: TableDefinition<(u128, u128), &[u8]> =
    TableDefinition::new("task_index");
pub(crate) const MEMORY: TableDefinition<u128, &[u8]> = TableDefinition::new("memory");
pub(crate) const MEMORY_BY_NETWORK: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("memory_by_network");
pub(crate) const SESSIONS: TableDefinition<(u128, &str), &[u8]> = TableDefinition::new("sessions");
pub(crate) const RESPONSES: TableDefinition<(u128, &str), &[u8]> =
    TableDefinition::new("responses");

const BACKEND: &str = "embedded";

/// The embedded store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    ops: mpsc::Sender<Op>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`; memory items over `compress_above` bytes are
    /// compressed. An unreadable or corrupt file is an error naming it.
    pub fn open(path: &Path, compress_above: usize) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            backend: BACKEND,
            location: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(db);
        // Create every table up front, so readers never meet a missing one.
        writer::create_tables(&db).map_err(|e| open_err(e.to_string()))?;
        // Read every table once: a store that cannot be read fails here, not later.
        check(&db).map_err(|e| open_err(format!("cannot read it: {e}")))?;
        let (ops, rx) = mpsc::channel();
        let location = path.display().to_string();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("aimesh-store-writer".into())
            .spawn(move || writer::run(writer_db, rx, location, compress_above))
            .map_err(|e| open_err(format!("cannot start its writer: {e}")))?;
        Ok(Self {
            db,
            path: path.to_owned(),
            ops,
            writer: Some(writer),
        })
    }

    fn location(&self, table: &str, key: impl std::fmt::Display) -> String {
        format!("{} (table {table}, key {key})", self.path.display())
    }

    fn backend_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: BACKEND,
            message: format!("{}: {e}", self.path.display()),
        }
    }

    fn submit<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Ack<T> {
        let (tx, ack) = Ack::pending(BACKEND);
        if self.ops.send(make(tx)).is_err() {
            return Ack::ready(Err(self.backend_err("the writer has stopped")));
        }
        ack
    }

    fn read_task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let tasks = txn.open_table(TASKS).map_err(|e| self.backend_err(e))?;
        let Some(base) = tasks
            .get(task.as_uuid().as_u128())
            .map_err(|e| self.backend_err(e))?
        else {
            return Ok(None);
        };
        let mut record: TaskRecord = decode(base.value(), || self.location("tasks", task))?;
        if record.network_id != network {
            return Ok(None);
        }
        let events = txn
            .open_table(TASK_EVENTS)
            .map_err(|e| self.backend_err(e))?;
        let id = task.as_uuid().as_u128();
        for row in events
            .range((id, 0)..=(id, u32::MAX))
            .map_err(|e| self.backend_err(e))?
        {
            let (key, value) = row.map_err(|e| self.backend_err(e))?;
            let event: TaskEvent = decode(value.value(), || {
                self.location("task_events", format!("{task}#{}", key.value().1))
            })?;
            record.apply(event);
        }
        Ok(Some(record))
    }
}

fn check(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_read()?;
    txn.open_table(NETWORKS)?.len()?;
    txn.open_table(TASKS)?.len()?;
    txn.open_table(MEMORY)?.len()?;
    Ok(())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it commits what it holds.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.ops, tx));
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn put_network(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        self.submit(|ack| Op::PutNetwork(Box::new(network.clone()), ack))
            .await
    }

    async fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let table = txn.open_table(NETWORKS).map_err(|e| self.backend_err(e))?;
        match table
            .get(id.as_uuid().as_u128())
            .map_err(|e| self.backend_err(e))?
        {
            Some(v) => Ok(Some(decode(v.value(), || self.location("networks", id))?)),
            None => Ok(None),
        }
    }

    async fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let table = txn.open_table(NETWORKS).map_err(|e| self.backend_err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.backend_err(e))? {
            let (k, v) = row.map_err(|e| self.backend_err(e))?;
            out.push(decode(v.value(), || self.location("networks", k.value()))?);
        }
        Ok(out)
    }

    async fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError> {
        self.submit(|ack| Op::DeleteNetwork(id, ack)).await
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.submit(|ack| Op::InsertTask(Box::new(task.clone()), ack))
            .await
    }

    fn append(&self, network: NetworkId, task: TaskId, event: TaskEvent) -> Ack<TaskStatus> {
        self.submit(|ack| Op::Append {
            network,
            task,
            event: Box::new(event),
            ack,
        })
    }

    async fn task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.read_task(network, task)
    }

    async fn task_status(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let index = txn
            .open_table(TASK_INDEX)
            .map_err(|e| self.backend_err(e))?;
        let key = (network.as_uuid().as_u128(), task.as_uuid().as_u128());
        match index.get(key).map_err(|e| self.backend_err(e))? {
            Some(v) => {
                let s: TaskSummary = decode(v.value(), || self.location("task_index", task))?;
                Ok(Some(s.status))
            }
            None => Ok(None),
        }
    }

    async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let index = txn
            .open_table(TASK_INDEX)
            .map_err(|e| self.backend_err(e))?;
        let net = network.as_uuid().as_u128();
        let mut total = 0;
        let mut items = Vec::new();
        for row in index
            .range((net, 0)..=(net, u128::MAX))
            .map_err(|e| self.backend_err(e))?
            .rev()
        {
            let (k, v) = row.map_err(|e| self.backend_err(e))?;
            let s: TaskSummary = decode(v.value(), || self.location("task_index", k.value().1))?;
            if query.status.is_some_and(|q| q != s.status) {
                continue;
            }
            if total >= query.offset && items.len() < query.limit {
                items.push(s);
            }
            total += 1;
        }
        Ok(Page::new(items, total, query.limit, query.offset))
    }

    async fn unfinished_tasks(&self, network: NetworkId) -> Result<Vec<TaskRecord>, StoreError> {
        let ids: Vec<TaskId> = {
            let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
            let index = txn
                .open_table(TASK_INDEX)
                .map_err(|e| self.backend_err(e))?;
            let net = network.as_uuid().as_u128();
            let mut ids = Vec::new();
            for row in index
                .range((net, 0)..=(net, u128::MAX))
                .map_err(|e| self.backend_err(e))?
            {
                let (k, v) = row.map_err(|e| self.backend_err(e))?;
                let s: TaskSummary =
                    decode(v.value(), || self.location("task_index", k.value().1))?;
                if !s.status.is_terminal() {
                    ids.push(s.task_id);
                }
            }
            ids
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.read_task(network, id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn response(&self, key: &str) -> Result<Option<StoredResponse>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let table = txn.open_table(RESPONSES).map_err(|e| self.backend_err(e))?;
        let (task, rest) = response_key(key);
        match table.get((task, rest)).map_err(|e| self.backend_err(e))? {
            Some(v) => Ok(Some(decode(v.value(), || self.location("responses", key))?)),
            None => Ok(None),
        }
    }

    fn put_response(&self, key: &str, response: &StoredResponse) -> Ack<()> {
        self.submit(|ack| Op::PutResponse {
            key: key.to_owned(),
            response: Box::new(response.clone()),
            ack,
        })
    }

    async fn expire_responses(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.submit(|ack| Op::ExpireResponses { before, ack }).await
    }

    fn put_memory(&self, item: &MemoryItem) -> Ack<()> {
        self.submit(|ack| Op::PutMemory(Box::new(item.clone()), ack))
    }

    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let table = txn.open_table(MEMORY).map_err(|e| self.backend_err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.backend_err(e))? {
            let (k, v) = row.map_err(|e| self.backend_err(e))?;
            let item = decode_item(v.value(), || self.location("memory", k.value()))?;
            if shard_of(item.network_id, item.memory_id, shards) == shard {
                out.push(item);
            }
        }
        Ok(out)
    }

    async fn delete_memory(&self, ids: &[MemoryId]) -> Result<usize, StoreError> {
        let ids = ids.to_vec();
        self.submit(|ack| Op::DeleteMemory(ids, ack)).await
    }

    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.submit(|ack| Op::PutSession(Box::new(session.clone()), ack))
            .await
    }

    async fn sessions(&self, network: NetworkId) -> Result<Vec<Session>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend_err(e))?;
        let table = txn.open_table(SESSIONS).map_err(|e| self.backend_err(e))?;
        let net = network.as_uuid().as_u128();
        let mut out = Vec::new();
        for row in table.range((net, "")..).map_err(|e| self.backend_err(e))? {
            let (k, v) = row.map_err(|e| self.backend_err(e))?;
            if k.value().0 != net {
                break;
            }
            out.push(decode(v.value(), || {
                self.location("sessions", k.value().1)
            })?);
        }
        Ok(out)
    }

    async fn delete_session(&self, network: NetworkId, session: &str) -> Result<bool, StoreError> {
        let session = session.to_owned();
        self.submit(|ack| Op::DeleteSession(network, session, ack))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("node.redb"), 1024).unwrap();
        super::super::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn what_was_acknowledged_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let n = super::super::conformance::network();
        let t = super::super::conformance::task(n.network_id, "persist me");
        {
            let store = EmbeddedStore::open(&path, 1024).unwrap();
            store.put_network(&n).await.unwrap();
            store.insert_task(&t).await.unwrap();
            store
                .append(
                    n.network_id,
                    t.task_id,
                    TaskEvent::Processing {
                        at: crate::types::now(),
                    },
                )
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(&path, 1024).unwrap();
        assert_eq!(store.network(n.network_id).await.unwrap(), Some(n.clone()));
        let back = store.task(n.network_id, t.task_id).await.unwrap().unwrap();
        assert_eq!(back.status, TaskStatus::Processing);
        assert_eq!(store.unfinished_tasks(n.network_id).await.unwrap().len(), 1);
        // The journal goes on where it stopped.
        store
            .append(
                n.network_id,
                t.task_id,
                TaskEvent::Finished {
                    status: TaskStatus::Cancelled,
                    at: crate::types::now(),
                    result: None,
                    error: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.task_status(n.network_id, t.task_id).await.unwrap(),
            Some(TaskStatus::Cancelled)
        );
    }

    #[test]
    fn a_file_that_is_not_a_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.redb");
        std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        let err = EmbeddedStore::open(&path, 1024)
            .err()
            .expect("must not open");
        let text = err.to_string();
        assert!(text.contains("garbage.redb"), "{text}");
    }
}
