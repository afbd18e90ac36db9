//! The PostgreSQL store's writer task: group commit. It takes every write queued since its last
//! commit, applies them in one transaction in the order they were made, commits, and only then
//! answers each.
//!
//! Journal writes (task inserts, events, memory items, answers) are staged and sent in bulk,
//! a few `UNNEST` statements per run of them, so a commit costs a handful of round trips
//! whatever its size; any other write first sends what is staged, then runs on its own.
//! The writer keeps the materialized record of every unfinished task it has seen, so
//! journaling an event does not replay the task; a miss loads base and journal.
//!
//! PostgreSQL aborts a whole transaction on one refused statement. When that happens the
//! writer drops its cache, commits the writes before the refused part as one transaction, and
//! does each write of the refused part alone, so one bad write fails alone. A stale cache
//! (another node journaled the same task) is caught the same way: by the journal's primary key.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use super::cache::Active;
use super::ops::{Done, Job, Op};
use super::stage::Staged;
use crate::ids::{NetworkId, TaskId};
use crate::store::embedded::codec::{encode, encode_item};
use crate::store::{StoreError, StoredResponse};
use crate::types::{MemoryItem, TaskEvent, TaskRecord};

/// Most writes in one commit.
const MAX_BATCH: usize = 4096;
/// Unfinished tasks cached before the cache is dropped (a bound on tasks never finished).
const MAX_ACTIVE: usize = 200_000;

/// The writer's state.
pub(super) struct Writer {
    pub pool: PgPool,
    pub location: String,
    pub compress_above: usize,
    pub active: HashMap<Uuid, Active>,
}

/// What one transaction knows besides the cache.
#[derive(Default)]
struct Txn {
    staged: Staged,
    /// Tasks journaled in it that do not exist (as of its start, and not inserted since).
    missing: HashSet<Uuid>,
    /// Tasks that ended in it: they stay cached until it ends, for late events.
    finished: Vec<Uuid>,
}

/// A transaction that failed, and the writes whose statement was refused.
struct Failure {
    from: usize,
    to: usize,
    error: sqlx::Error,
}

type Outcome = Result<Done, StoreError>;

/// Runs until the queue closes, committing what is queued.
pub(super) async fn run(mut writer: Writer, mut jobs: UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.drain(..).map(|j| (j.op, j.reply)).unzip();
        let outcomes = writer.commit(&ops).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            reply.send(outcome);
        }
        if writer.active.len() > MAX_ACTIVE {
            writer.active.clear();
        }
    }
}

impl Writer {
    /// A backend error naming the store.
    pub fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.location, e)
    }

    /// Where a row is, for corrupt-data errors.
    pub fn at(&self, table: &str, key: impl std::fmt::Display) -> String {
        format!("{} (table {table}, key {key})", self.location)
    }

    /// Commits `ops` and returns each one's outcome, in order.
    async fn commit(&mut self, ops: &[Op]) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(ops.len());
        let mut start = 0;
        while start < ops.len() {
            let rest = &ops[start..];
            let failure = match self.transaction(rest).await {
                Ok(outcomes) => {
                    out.extend(outcomes);
                    break;
                }
                Err(f) => f,
            };
            self.active.clear();
            metrics::counter!("aimesh_store_commit_failures_total").increment(1);
            if !refused(&failure.error) || failure.from >= failure.to {
                tracing::error!(store = %self.location, error = %failure.error, "commit failed; its writes are reported failed");
                let e = self.err(&failure.error);
                out.extend(rest.iter().map(|_| Err(e.clone())));
                break;
            }
            tracing::warn!(store = %self.location, error = %failure.error, "a write was refused; retrying the others without it");
            let (fine, refused_part) = rest[..failure.to].split_at(failure.from);
            if !fine.is_empty() {
                match self.transaction(fine).await {
                    Ok(outcomes) => out.extend(outcomes),
                    Err(f) => {
                        self.active.clear();
                        let e = self.err(&f.error);
                        out.extend(fine.iter().map(|_| Err(e.clone())));
                    }
                }
            }
            for op in refused_part {
                match self.transaction(std::slice::from_ref(op)).await {
                    Ok(outcomes) => out.extend(outcomes),
                    Err(f) => {
                        self.active.clear();
                        out.push(Err(self.refusal(op, &f.error)));
                    }
                }
            }
            start += failure.to;
        }
        metrics::counter!("aimesh_store_commits_total").increment(1);
        out
    }

    /// Applies `ops` in one transaction and commits it.
    async fn transaction(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, Failure> {
        let whole = |error| Failure {
            from: 0,
            to: ops.len(),
            error,
        };
        let mut tx = self.pool.begin().await.map_err(whole)?;
        let mut txn = Txn {
            missing: self.preload(&mut tx, ops).await.map_err(whole)?,
            ..Txn::default()
        };
        let mut outcomes = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let outcome = match op {
                Op::Append {
                    network,
                    task,
                    event,
                } => {
                    let id = task.as_uuid();
                    let mut unreadable = None;
                    if !self.active.contains_key(&id) && !txn.missing.contains(&id) {
                        // What is staged may be this task's; the load must see it.
                        self.flush(&mut tx, &mut txn.staged, i).await?;
                        unreadable = self
                            .load(&mut tx, id)
                            .await
                            .map_err(|error| Failure {
                                from: i,
                                to: i + 1,
                                error,
                            })?
                            .err();
                    }
                    match unreadable {
                        Some(e) => Err(e),
                        None => self.append(&mut txn, i, *network, *task, event),
                    }
                }
                Op::InsertTask(t) => {
                    if txn.staged.touches(t.task_id.as_uuid()) {
                        self.flush(&mut tx, &mut txn.staged, i).await?;
                    }
                    self.stage_task(&mut txn, i, t)
                }
                Op::PutMemory(item) => self.stage_memory(&mut txn.staged, i, item),
                Op::PutResponse { key, response } => {
                    self.stage_response(&mut txn.staged, i, key, response)
                }
                Op::Direct(direct) => {
                    self.flush(&mut tx, &mut txn.staged, i).await?;
                    self.execute(&mut tx, direct)
                        .await
                        .map_err(|error| Failure {
                            from: i,
                            to: i + 1,
                            error,
                        })?
                }
            };
            outcomes.push(outcome);
        }
        self.flush(&mut tx, &mut txn.staged, ops.len()).await?;
        tx.commit().await.map_err(whole)?;
        for id in txn.finished {
            self.active.remove(&id);
        }
        Ok(outcomes)
    }

    /// Sends what is staged; a refusal names the staged writes.
    async fn flush(
        &self,
        conn: &mut PgConnection,
        staged: &mut Staged,
        upto: usize,
    ) -> Result<(), Failure> {
        let Some(from) = staged.first() else {
            return Ok(());
        };
        std::mem::take(staged)
            .send(conn)
            .await
            .map_err(|error| Failure {
                from,
                to: upto,
                error,
            })
    }

    /// Applies an event to a cached task and stages it.
    fn append(
        &mut self,
        txn: &mut Txn,
        i: usize,
        network: NetworkId,
        task: TaskId,
        event: &TaskEvent,
    ) -> Outcome {
        let id = task.as_uuid();
        let Some(active) = self
            .active
            .get_mut(&id)
            .filter(|a| a.record.network_id == network)
        else {
            return Err(StoreError::UnknownTask { network, task });
        };
        if active.record.status.is_terminal() {
            // A terminal task does not move; the ack says where it ended.
            return Ok(Done::Status(active.record.status));
        }
        let body = encode(event).map_err(|e| backend(&self.location, e))?;
        active.record.apply(event.clone());
        let status = active.record.status;
        let summary = match encode(&active.record.summary()) {
            Ok(s) => s,
            Err(e) => {
                // The cache is ahead of the tables now: forget the task, it reloads.
                self.active.remove(&id);
                return Err(backend(&self.location, e));
            }
        };
        txn.staged
            .event(i, id, active.next_seq, body, status, summary);
        active.next_seq = active.next_seq.saturating_add(1);
        if status.is_terminal() {
            txn.finished.push(id);
        }
        Ok(Done::Status(status))
    }

    fn stage_task(&mut self, txn: &mut Txn, i: usize, t: &TaskRecord) -> Outcome {
        let id = t.task_id.as_uuid();
        let record = encode(t).map_err(|e| self.err(e))?;
        let summary = encode(&t.summary()).map_err(|e| self.err(e))?;
        txn.staged.task(i, t, record, summary);
        txn.missing.remove(&id);
        if t.status.is_terminal() {
            txn.finished.push(id);
        }
        let record = t.clone();
        self.active.insert(
            id,
            Active {
                record,
                next_seq: 0,
            },
        );
        Ok(Done::Unit)
    }

    fn stage_memory(&self, staged: &mut Staged, i: usize, item: &MemoryItem) -> Outcome {
        let bytes = encode_item(item, self.compress_above).map_err(|e| self.err(e))?;
        staged.memory(i, item, bytes);
        Ok(Done::Unit)
    }

    fn stage_response(
        &self,
        staged: &mut Staged,
        i: usize,
        key: &str,
        response: &StoredResponse,
    ) -> Outcome {
        let body = encode(response).map_err(|e| self.err(e))?;
        staged.response(i, key, body, response.at);
        Ok(Done::Unit)
    }
}

fn backend(location: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: super::BACKEND,
        message: format!("{location}: {e}"),
    }
}

/// Whether the server refused a statement (a constraint, a type), rather than being unreachable.
fn refused(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_))
}
