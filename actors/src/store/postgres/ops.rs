//! The writes the PostgreSQL store's writer takes, where their answers go, and the writes it
//! runs one statement at a time.

use sqlx::PgConnection;
use tokio::sync::oneshot::Sender;

use super::writer::Writer;
use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::store::StoreError;
use crate::store::StoredResponse;
use crate::store::embedded::codec::encode;
use crate::types::{
    MemoryItem, NetworkRecord, Session, TaskEvent, TaskRecord, TaskStatus, Timestamp,
};

/// One queued write.
pub(super) enum Op {
    /// A new task (staged, sent in bulk).
    InsertTask(Box<TaskRecord>),
    /// A journal event (staged, sent in bulk).
    Append {
        network: NetworkId,
        task: TaskId,
        event: Box<TaskEvent>,
    },
    /// A memory item (staged, sent in bulk).
    PutMemory(Box<MemoryItem>),
    /// A kept answer (staged, sent in bulk).
    PutResponse {
        key: String,
        response: Box<StoredResponse>,
    },
    /// Anything else, run on its own after what is staged.
    Direct(Direct),
}

/// A write run as its own statements.
pub(super) enum Direct {
    PutNetwork(Box<NetworkRecord>),
    DeleteNetwork(NetworkId),
    ExpireResponses(Timestamp),
    DeleteMemory(Vec<MemoryId>),
    PutSession(Box<Session>),
    DeleteSession(NetworkId, String),
}

/// What a write produced.
pub(super) enum Done {
    Unit,
    Bool(bool),
    Count(usize),
    Status(TaskStatus),
}

/// Where a write's answer goes.
pub(super) enum Reply {
    Unit(Sender<Result<(), StoreError>>),
    Bool(Sender<Result<bool, StoreError>>),
    Count(Sender<Result<usize, StoreError>>),
    Status(Sender<Result<TaskStatus, StoreError>>),
}

/// A write and where its answer goes.
pub(super) struct Job {
    pub op: Op,
    pub reply: Reply,
}

/// The answer types of writes.
pub(super) trait Answer: Sized {
    /// Where an answer of this type goes.
    fn reply(tx: Sender<Result<Self, StoreError>>) -> Reply;
}

impl Answer for () {
    fn reply(tx: Sender<Result<Self, StoreError>>) -> Reply {
        Reply::Unit(tx)
    }
}

impl Answer for bool {
    fn reply(tx: Sender<Result<Self, StoreError>>) -> Reply {
        Reply::Bool(tx)
    }
}

impl Answer for usize {
    fn reply(tx: Sender<Result<Self, StoreError>>) -> Reply {
        Reply::Count(tx)
    }
}

impl Answer for TaskStatus {
    fn reply(tx: Sender<Result<Self, StoreError>>) -> Reply {
        Reply::Status(tx)
    }
}

impl Reply {
    /// Answers; a caller that stopped waiting is not an error.
    pub fn send(self, outcome: Result<Done, StoreError>) {
        let mismatch = || StoreError::Backend {
            backend: super::BACKEND,
            message: "the writer answered with the wrong kind of result".into(),
        };
        match self {
            Reply::Unit(tx) => {
                let _ = tx.send(outcome.map(|_| ()));
            }
            Reply::Bool(tx) => {
                let _ = tx.send(outcome.and_then(|d| match d {
                    Done::Bool(b) => Ok(b),
                    _ => Err(mismatch()),
                }));
            }
            Reply::Count(tx) => {
                let _ = tx.send(outcome.and_then(|d| match d {
                    Done::Count(n) => Ok(n),
                    _ => Err(mismatch()),
                }));
            }
            Reply::Status(tx) => {
                let _ = tx.send(outcome.and_then(|d| match d {
                    Done::Status(s) => Ok(s),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Writer {
    /// Runs a direct write. The outer error is a refused statement (it aborts the
    /// transaction); the inner one is this write's alone.
    pub(super) async fn execute(
        &mut self,
        conn: &mut PgConnection,
        op: &Direct,
    ) -> Result<Result<Done, StoreError>, sqlx::Error> {
        Ok(Ok(match op {
            Direct::PutNetwork(n) => {
                let record = match encode(n.as_ref()) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(self.err(e))),
                };
                sqlx::query(
                    "INSERT INTO networks (network_id, record, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (network_id) DO UPDATE \
                     SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at",
                )
                .bind(n.network_id.as_uuid())
                .bind(record)
                .bind(n.created_at)
                .bind(n.updated_at)
                .execute(conn)
                .await?;
                Done::Unit
            }
            Direct::DeleteNetwork(id) => {
                sqlx::query(
                    "DELETE FROM responses WHERE task_id IN \
                     (SELECT task_id FROM tasks WHERE network_id = $1)",
                )
                .bind(id.as_uuid())
                .execute(&mut *conn)
                .await?;
                // Tasks (with their journals), memory items and sessions cascade.
                let deleted = sqlx::query("DELETE FROM networks WHERE network_id = $1")
                    .bind(id.as_uuid())
                    .execute(conn)
                    .await?;
                self.active.retain(|_, a| a.record.network_id != *id);
                Done::Bool(deleted.rows_affected() > 0)
            }
            Direct::ExpireResponses(before) => {
                let deleted = sqlx::query("DELETE FROM responses WHERE at < $1")
                    .bind(*before)
                    .execute(conn)
                    .await?;
                Done::Count(count(deleted.rows_affected()))
            }
            Direct::DeleteMemory(ids) => {
                let ids: Vec<uuid::Uuid> = ids.iter().map(MemoryId::as_uuid).collect();
                let deleted = sqlx::query("DELETE FROM memory_items WHERE memory_id = ANY($1)")
                    .bind(ids)
                    .execute(conn)
                    .await?;
                Done::Count(count(deleted.rows_affected()))
            }
            Direct::PutSession(s) => {
                let record = match encode(s.as_ref()) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(self.err(e))),
                };
                sqlx::query(
                    "INSERT INTO sessions (network_id, session_id, record, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (network_id, session_id) DO UPDATE \
                     SET record = EXCLUDED.record, created_at = EXCLUDED.created_at, \
                         expires_at = EXCLUDED.expires_at",
                )
                .bind(s.network_id.as_uuid())
                .bind(&s.session_id)
                .bind(record)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(conn)
                .await?;
                Done::Unit
            }
            Direct::DeleteSession(net, id) => {
                let deleted =
                    sqlx::query("DELETE FROM sessions WHERE network_id = $1 AND session_id = $2")
                        .bind(net.as_uuid())
                        .bind(id)
                        .execute(conn)
                        .await?;
                Done::Bool(deleted.rows_affected() > 0)
            }
        }))
    }

    /// The error for a write the server refused when done alone.
    pub(super) fn refusal(&self, op: &Op, e: &sqlx::Error) -> StoreError {
        let missing_parent =
            matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"));
        let network = match op {
            Op::InsertTask(t) => Some(t.network_id),
            Op::PutMemory(i) => Some(i.network_id),
            Op::Direct(Direct::PutSession(s)) => Some(s.network_id),
            _ => None,
        };
        match network {
            Some(n) if missing_parent => self.err(format!("network {n} does not exist")),
            _ => self.err(e),
        }
    }
}
