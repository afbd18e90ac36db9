//! The embedded store's writer thread: group commit. It takes every write queued since its
//! last commit, applies them in one transaction, commits (durably), and only then answers
//! each. It keeps the materialized record of every unfinished task it has seen, so journaling
//! an event does not replay the task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::oneshot::Sender;

use super::codec::{decode, encode, encode_item, response_key};
use super::{
    MEMORY, MEMORY_BY_NETWORK, NETWORKS, RESPONSES, SESSIONS, TASK_EVENTS, TASK_INDEX, TASKS,
};
use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::store::{StoreError, StoredResponse};
use crate::types::{
    MemoryItem, NetworkRecord, Session, TaskEvent, TaskRecord, TaskStatus, Timestamp,
};

/// One queued write and where its answer goes.
pub enum Op {
    PutNetwork(Box<NetworkRecord>, Sender<Result<(), StoreError>>),
    DeleteNetwork(NetworkId, Sender<Result<bool, StoreError>>),
    InsertTask(Box<TaskRecord>, Sender<Result<(), StoreError>>),
    Append {
        network: NetworkId,
        task: TaskId,
        event: Box<TaskEvent>,
        ack: Sender<Result<TaskStatus, StoreError>>,
    },
    PutResponse {
        key: String,
        response: Box<StoredResponse>,
        ack: Sender<Result<(), StoreError>>,
    },
    ExpireResponses {
        before: Timestamp,
        ack: Sender<Result<usize, StoreError>>,
    },
    PutMemory(Box<MemoryItem>, Sender<Result<(), StoreError>>),
    DeleteMemory(Vec<MemoryId>, Sender<Result<usize, StoreError>>),
    PutSession(Box<Session>, Sender<Result<(), StoreError>>),
    DeleteSession(NetworkId, String, Sender<Result<bool, StoreError>>),
}

/// Most writes in one commit.
const MAX_BATCH: usize = 4096;

struct Active {
    record: TaskRecord,
    next_seq: u32,
}

/// Creates every table.
pub fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(NETWORKS)?;
    txn.open_table(TASKS)?;
    txn.open_table(TASK_EVENTS)?;
    txn.open_table(TASK_INDEX)?;
    txn.open_table(MEMORY)?;
    txn.open_table(MEMORY_BY_NETWORK)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(RESPONSES)?;
    txn.commit()?;
    Ok(())
}

type Done = Box<dyn FnOnce(Option<StoreError>) + Send>;

fn reply<T: Send + 'static>(
    ack: Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> Done {
    Box::new(move |commit_failed| {
        let _ = ack.send(match commit_failed {
            Some(e) => Err(e),
            None => result,
        });
    })
}

/// Runs until the queue closes.
pub fn run(db: Arc<Database>, ops: Receiver<Op>, location: String, compress_above: usize) {
    let mut writer = Writer {
        location,
        compress_above,
        active: HashMap::new(),
    };
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        writer.commit(&db, batch);
    }
}

struct Writer {
    location: String,
    compress_above: usize,
    active: HashMap<u128, Active>,
}

impl Writer {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: "embedded",
            message: format!("{}: {e}", self.location),
        }
    }

    fn commit(&mut self, db: &Database, batch: Vec<Op>) {
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let e = self.err(e);
                for op in batch {
                    fail(op, e.clone());
                }
                return;
            }
        };
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        for op in batch {
            done.push(self.apply(&txn, op));
        }
        let failed = txn.commit().err().map(|e| self.err(e));
        if let Some(e) = &failed {
            tracing::error!(store = %self.location, error = %e, "commit failed; the writes in it were not made");
            self.active.clear();
        }
        metrics::counter!("aimesh_store_commits_total").increment(1);
        for d in done {
            d(failed.clone());
        }
    }

    fn apply(&mut self, txn: &WriteTransaction, op: Op) -> Done {
        match op {
            Op::PutNetwork(n, ack) => reply(ack, self.put_network(txn, &n)),
            Op::DeleteNetwork(id, ack) => reply(ack, self.delete_network(txn, id)),
            Op::InsertTask(t, ack) => reply(ack, self.insert_task(txn, *t)),
            Op::Append {
                network,
                task,
                event,
                ack,
            } => reply(ack, self.append(txn, network, task, *event)),
            Op::PutResponse { key, response, ack } => {
                reply(ack, self.put_response(txn, &key, &response))
            }
            Op::ExpireResponses { before, ack } => reply(ack, self.expire_responses(txn, before)),
            Op::PutMemory(item, ack) => reply(ack, self.put_memory(txn, &item)),
            Op::DeleteMemory(ids, ack) => reply(ack, self.delete_memory(txn, &ids)),
            Op::PutSession(s, ack) => reply(ack, self.put_session(txn, &s)),
            Op::DeleteSession(net, id, ack) => reply(ack, self.delete_session(txn, net, &id)),
        }
    }

    fn put_network(&self, txn: &WriteTransaction, n: &NetworkRecord) -> Result<(), StoreError> {
        let bytes = encode(n).map_err(|e| self.err(e))?;
        let mut t = txn.open_table(NETWORKS).map_err(|e| self.err(e))?;
        t.insert(n.network_id.as_uuid().as_u128(), bytes.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn delete_network(
        &mut self,
        txn: &WriteTransaction,
        id: NetworkId,
    ) -> Result<bool, StoreError> {
        let net = id.as_uuid().as_u128();
        let existed = {
            let mut t = txn.open_table(NETWORKS).map_err(|e| self.err(e))?;
            t.remove(net).map_err(|e| self.err(e))?.is_some()
        };
        let mut tasks: Vec<u128> = Vec::new();
        {
            let mut index = txn.open_table(TASK_INDEX).map_err(|e| self.err(e))?;
            index
                .retain_in((net, 0)..=(net, u128::MAX), |k, _| {
                    tasks.push(k.1);
                    false
                })
                .map_err(|e| self.err(e))?;
        }
        {
            let mut base = txn.open_table(TASKS).map_err(|e| self.err(e))?;
            let mut events = txn.open_table(TASK_EVENTS).map_err(|e| self.err(e))?;
            let mut responses = txn.open_table(RESPONSES).map_err(|e| self.err(e))?;
            for task in &tasks {
                base.remove(*task).map_err(|e| self.err(e))?;
                events
                    .retain_in((*task, 0)..=(*task, u32::MAX), |_, _| false)
                    .map_err(|e| self.err(e))?;
                responses
                    .retain_in((*task, "")..(task.saturating_add(1), ""), |_, _| false)
                    .map_err(|e| self.err(e))?;
                self.active.remove(task);
            }
        }
        {
            let mut by_net = txn.open_table(MEMORY_BY_NETWORK).map_err(|e| self.err(e))?;
            let mut memory = txn.open_table(MEMORY).map_err(|e| self.err(e))?;
            let mut items = Vec::new();
            by_net
                .retain_in((net, 0)..=(net, u128::MAX), |k, _| {
                    items.push(k.1);
                    false
                })
                .map_err(|e| self.err(e))?;
            for item in items {
                memory.remove(item).map_err(|e| self.err(e))?;
            }
        }
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
            sessions
                .retain_in((net, "")..(net.saturating_add(1), ""), |_, _| false)
                .map_err(|e| self.err(e))?;
        }
        Ok(existed)
    }

    fn write_index(&self, txn: &WriteTransaction, record: &TaskRecord) -> Result<(), StoreError> {
        let bytes = encode(&record.summary()).map_err(|e| self.err(e))?;
        let mut index = txn.open_table(TASK_INDEX).map_err(|e| self.err(e))?;
        index
            .insert(
                (
                    record.network_id.as_uuid().as_u128(),
                    record.task_id.as_uuid().as_u128(),
                ),
                bytes.as_slice(),
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn insert_task(
        &mut self,
        txn: &WriteTransaction,
        record: TaskRecord,
    ) -> Result<(), StoreError> {
        let bytes = encode(&record).map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(TASKS).map_err(|e| self.err(e))?;
            t.insert(record.task_id.as_uuid().as_u128(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        self.write_index(txn, &record)?;
        self.active.insert(
            record.task_id.as_uuid().as_u128(),
            Active {
                record,
                next_seq: 0,
            },
        );
        Ok(())
    }

    /// The materialized record of a task, from the cache or the tables.
    fn load(
        &mut self,
        txn: &WriteTransaction,
        id: u128,
    ) -> Result<Option<&mut Active>, StoreError> {
        if !self.active.contains_key(&id) {
            let base = {
                let t = txn.open_table(TASKS).map_err(|e| self.err(e))?;
                let Some(v) = t.get(id).map_err(|e| self.err(e))? else {
                    return Ok(None);
                };
                let location = format!("{} (table tasks)", self.location);
                decode::<TaskRecord>(v.value(), || location)?
            };
            let mut record = base;
            let mut next_seq = 0;
            let events = txn.open_table(TASK_EVENTS).map_err(|e| self.err(e))?;
            for row in events
                .range((id, 0)..=(id, u32::MAX))
                .map_err(|e| self.err(e))?
            {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let location = format!("{} (table task_events)", self.location);
                record.apply(decode(v.value(), || location)?);
                next_seq = k.value().1.saturating_add(1);
            }
            self.active.insert(id, Active { record, next_seq });
        }
        Ok(self.active.get_mut(&id))
    }

    fn append(
        &mut self,
        txn: &WriteTransaction,
        network: NetworkId,
        task: TaskId,
        event: TaskEvent,
    ) -> Result<TaskStatus, StoreError> {
        let id = task.as_uuid().as_u128();
        let bytes = encode(&event).map_err(|e| self.err(e))?;
        let (status, record, seq) = {
            let Some(active) = self
                .load(txn, id)?
                .filter(|a| a.record.network_id == network)
            else {
                return Err(StoreError::UnknownTask { network, task });
            };
            if active.record.status.is_terminal() {
                return Ok(active.record.status);
            }
            let seq = active.next_seq;
            active.next_seq += 1;
            active.record.apply(event);
            (active.record.status, active.record.clone(), seq)
        };
        {
            let mut events = txn.open_table(TASK_EVENTS).map_err(|e| self.err(e))?;
            events
                .insert((id, seq), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        self.write_index(txn, &record)?;
        if status.is_terminal() {
            self.active.remove(&id);
        }
        Ok(status)
    }

    fn put_response(
        &self,
        txn: &WriteTransaction,
        key: &str,
        r: &StoredResponse,
    ) -> Result<(), StoreError> {
        let bytes = encode(r).map_err(|e| self.err(e))?;
        let mut t = txn.open_table(RESPONSES).map_err(|e| self.err(e))?;
        t.insert(response_key(key), bytes.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn expire_responses(
        &self,
        txn: &WriteTransaction,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut t = txn.open_table(RESPONSES).map_err(|e| self.err(e))?;
        let mut removed = 0;
        t.retain(|_, v| {
            let keep = decode::<StoredResponse>(v, String::new).is_ok_and(|r| r.at >= before);
            removed += usize::from(!keep);
            keep
        })
        .map_err(|e| self.err(e))?;
        Ok(removed)
    }

    fn put_memory(&self, txn: &WriteTransaction, item: &MemoryItem) -> Result<(), StoreError> {
        let bytes = encode_item(item, self.compress_above).map_err(|e| self.err(e))?;
        let id = item.memory_id.as_uuid().as_u128();
        let mut t = txn.open_table(MEMORY).map_err(|e| self.err(e))?;
        t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        let mut by_net = txn.open_table(MEMORY_BY_NETWORK).map_err(|e| self.err(e))?;
        by_net
            .insert((item.network_id.as_uuid().as_u128(), id), ())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn delete_memory(&self, txn: &WriteTransaction, ids: &[MemoryId]) -> Result<usize, StoreError> {
        let mut t = txn.open_table(MEMORY).map_err(|e| self.err(e))?;
        let mut by_net = txn.open_table(MEMORY_BY_NETWORK).map_err(|e| self.err(e))?;
        let mut n = 0;
        for id in ids {
            let key = id.as_uuid().as_u128();
            let network = match t.remove(key).map_err(|e| self.err(e))? {
                Some(v) => {
                    let location = format!("{} (table memory)", self.location);
                    super::codec::decode_item(v.value(), || location)
                        .ok()
                        .map(|i| i.network_id)
                }
                None => continue,
            };
            n += 1;
            if let Some(net) = network {
                by_net
                    .remove((net.as_uuid().as_u128(), key))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(n)
    }

    fn put_session(&self, txn: &WriteTransaction, s: &Session) -> Result<(), StoreError> {
        let bytes = encode(s).map_err(|e| self.err(e))?;
        let mut t = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
        t.insert(
            (s.network_id.as_uuid().as_u128(), s.session_id.as_str()),
            bytes.as_slice(),
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn delete_session(
        &self,
        txn: &WriteTransaction,
        net: NetworkId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut t = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
        Ok(t.remove((net.as_uuid().as_u128(), id))
            .map_err(|e| self.err(e))?
            .is_some())
    }
}

fn fail(op: Op, e: StoreError) {
    match op {
        Op::PutNetwork(_, a)
        | Op::InsertTask(_, a)
        | Op::PutMemory(_, a)
        | Op::PutSession(_, a) => {
            let _ = a.send(Err(e));
        }
        Op::PutResponse { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::DeleteNetwork(_, a) | Op::DeleteSession(_, _, a) => {
            let _ = a.send(Err(e));
        }
        Op::Append { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::ExpireResponses { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::DeleteMemory(_, a) => {
            let _ = a.send(Err(e));
        }
    }
}
