//! Journal writes staged by the writer and sent in bulk: one `UNNEST` statement per table,
//! whatever their number.
//!
//! A later write of the same memory item or answer replaces the staged one (one statement may
//! not touch a row twice); a task's events and its summary go after the task itself.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::types::{MemoryItem, TaskRecord, TaskStatus, Timestamp};

/// Staged writes, as columns.
#[derive(Default)]
pub(super) struct Staged {
    /// The first write staged (by its place in the batch).
    first: Option<usize>,
    tasks: Tasks,
    events: Events,
    /// Summaries of tasks not staged themselves; the latest wins.
    summaries: HashMap<Uuid, (TaskStatus, Vec<u8>)>,
    memory: Memory,
    responses: Responses,
}

#[derive(Default)]
struct Tasks {
    at: HashMap<Uuid, usize>,
    ids: Vec<Uuid>,
    networks: Vec<Uuid>,
    statuses: Vec<&'static str>,
    records: Vec<Vec<u8>>,
    summaries: Vec<Vec<u8>>,
    created: Vec<Timestamp>,
}

#[derive(Default)]
struct Events {
    tasks: Vec<Uuid>,
    seqs: Vec<i32>,
    bodies: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Memory {
    at: HashMap<Uuid, usize>,
    ids: Vec<Uuid>,
    networks: Vec<Uuid>,
    items: Vec<Vec<u8>>,
    created: Vec<Timestamp>,
    expires: Vec<Option<Timestamp>>,
}

#[derive(Default)]
struct Responses {
    at: HashMap<String, usize>,
    keys: Vec<String>,
    tasks: Vec<Option<Uuid>>,
    bodies: Vec<Vec<u8>>,
    times: Vec<Timestamp>,
}

impl Staged {
    /// The first write staged, if any.
    pub fn first(&self) -> Option<usize> {
        self.first
    }

    fn mark(&mut self, i: usize) {
        self.first.get_or_insert(i);
    }

    /// Whether a write of this task is staged.
    pub fn touches(&self, task: Uuid) -> bool {
        self.tasks.at.contains_key(&task) || self.summaries.contains_key(&task)
    }

    /// Stages a new task (the caller sends what is staged first if the task is in it).
    pub fn task(&mut self, i: usize, t: &TaskRecord, record: Vec<u8>, summary: Vec<u8>) {
        self.mark(i);
        let s = &mut self.tasks;
        s.at.insert(t.task_id.as_uuid(), s.ids.len());
        s.ids.push(t.task_id.as_uuid());
        s.networks.push(t.network_id.as_uuid());
        s.statuses.push(t.status.as_str());
        s.records.push(record);
        s.summaries.push(summary);
        s.created.push(t.created_at);
    }

    /// Stages an event of a task and the task's status and summary after it.
    pub fn event(
        &mut self,
        i: usize,
        task: Uuid,
        seq: i32,
        body: Vec<u8>,
        status: TaskStatus,
        summary: Vec<u8>,
    ) {
        self.mark(i);
        self.events.tasks.push(task);
        self.events.seqs.push(seq);
        self.events.bodies.push(body);
        match self.tasks.at.get(&task) {
            Some(&at) => {
                // Inserted in this same run: its row takes the latest summary.
                if let (Some(st), Some(su)) = (
                    self.tasks.statuses.get_mut(at),
                    self.tasks.summaries.get_mut(at),
                ) {
                    *st = status.as_str();
                    *su = summary;
                }
            }
            None => {
                self.summaries.insert(task, (status, summary));
            }
        }
    }

    /// Stages a memory item (encoded), replacing a staged write of the same item.
    pub fn memory(&mut self, i: usize, item: &MemoryItem, bytes: Vec<u8>) {
        self.mark(i);
        let s = &mut self.memory;
        let id = item.memory_id.as_uuid();
        if let Some(&at) = s.at.get(&id) {
            if let (Some(n), Some(b), Some(c), Some(e)) = (
                s.networks.get_mut(at),
                s.items.get_mut(at),
                s.created.get_mut(at),
                s.expires.get_mut(at),
            ) {
                *n = item.network_id.as_uuid();
                *b = bytes;
                *c = item.created_at;
                *e = item.expires_at;
            }
            return;
        }
        s.at.insert(id, s.ids.len());
        s.ids.push(id);
        s.networks.push(item.network_id.as_uuid());
        s.items.push(bytes);
        s.created.push(item.created_at);
        s.expires.push(item.expires_at);
    }

    /// Stages a kept answer (encoded), replacing a staged one under the same key.
    pub fn response(&mut self, i: usize, key: &str, body: Vec<u8>, at: Timestamp) {
        self.mark(i);
        let s = &mut self.responses;
        if let Some(&n) = s.at.get(key) {
            if let (Some(b), Some(t)) = (s.bodies.get_mut(n), s.times.get_mut(n)) {
                *b = body;
                *t = at;
            }
            return;
        }
        s.at.insert(key.to_owned(), s.keys.len());
        s.keys.push(key.to_owned());
        s.tasks.push(task_of(key));
        s.bodies.push(body);
        s.times.push(at);
    }

    /// Sends everything staged, in a few statements.
    pub async fn send(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let t = self.tasks;
        if !t.ids.is_empty() {
            // A task inserted again starts a new journal.
            sqlx::query("DELETE FROM task_events WHERE task_id = ANY($1)")
                .bind(&t.ids)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO tasks (task_id, network_id, status, record, summary, created_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], \
                                      $5::bytea[], $6::timestamptz[]) \
                 ON CONFLICT (task_id) DO UPDATE SET network_id = EXCLUDED.network_id, \
                   status = EXCLUDED.status, record = EXCLUDED.record, \
                   summary = EXCLUDED.summary, created_at = EXCLUDED.created_at, \
                   updated_at = now()",
            )
            .bind(&t.ids)
            .bind(&t.networks)
            .bind(&t.statuses)
            .bind(&t.records)
            .bind(&t.summaries)
            .bind(&t.created)
            .execute(&mut *conn)
            .await?;
        }
        let e = self.events;
        if !e.tasks.is_empty() {
            sqlx::query(
                "INSERT INTO task_events (task_id, seq, event) \
                 SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::bytea[])",
            )
            .bind(&e.tasks)
            .bind(&e.seqs)
            .bind(&e.bodies)
            .execute(&mut *conn)
            .await?;
        }
        if !self.summaries.is_empty() {
            let mut ids = Vec::with_capacity(self.summaries.len());
            let mut statuses = Vec::with_capacity(self.summaries.len());
            let mut summaries = Vec::with_capacity(self.summaries.len());
            for (id, (status, summary)) in self.summaries {
                ids.push(id);
                statuses.push(status.as_str());
                summaries.push(summary);
            }
            sqlx::query(
                "UPDATE tasks SET status = u.status, summary = u.summary, updated_at = now() \
                 FROM UNNEST($1::uuid[], $2::text[], $3::bytea[]) AS u(task_id, status, summary) \
                 WHERE tasks.task_id = u.task_id",
            )
            .bind(&ids)
            .bind(&statuses)
            .bind(&summaries)
            .execute(&mut *conn)
            .await?;
        }
        let m = self.memory;
        if !m.ids.is_empty() {
            sqlx::query(
                "INSERT INTO memory_items (memory_id, network_id, item, created_at, expires_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::timestamptz[], \
                                      $5::timestamptz[]) \
                 ON CONFLICT (memory_id) DO UPDATE SET network_id = EXCLUDED.network_id, \
                   item = EXCLUDED.item, created_at = EXCLUDED.created_at, \
                   expires_at = EXCLUDED.expires_at",
            )
            .bind(&m.ids)
            .bind(&m.networks)
            .bind(&m.items)
            .bind(&m.created)
            .bind(&m.expires)
            .execute(&mut *conn)
            .await?;
        }
        let r = self.responses;
        if !r.keys.is_empty() {
            sqlx::query(
                "INSERT INTO responses (key, task_id, body, at) \
                 SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bytea[], $4::timestamptz[]) \
                 ON CONFLICT (key) DO UPDATE SET task_id = EXCLUDED.task_id, \
                   body = EXCLUDED.body, at = EXCLUDED.at",
            )
            .bind(&r.keys)
            .bind(&r.tasks)
            .bind(&r.bodies)
            .bind(&r.times)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

/// The task an answer's key starts with (`<task id>.<rest>`), if it does.
pub(super) fn task_of(key: &str) -> Option<Uuid> {
    key.split_once('.').and_then(|(t, _)| t.parse().ok())
}
