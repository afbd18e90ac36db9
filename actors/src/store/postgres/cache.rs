//! The writer's cache of unfinished tasks: each one's record with its journal applied, so
//! journaling an event does not replay the task. A miss loads base and journal; the tasks a
//! batch journals are loaded together, in one query.

use std::collections::HashSet;

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::ops::Op;
use super::writer::Writer;
use crate::store::StoreError;
use crate::types::TaskRecord;

/// A task's record with its journal applied, and the sequence number of its next event.
pub(super) struct Active {
    pub record: TaskRecord,
    pub next_seq: i32,
}

impl Writer {
    /// Loads, in one query, the tasks that `ops` journal, the cache does not have and `ops` do
    /// not insert; returns those that do not exist.
    pub(super) async fn preload(
        &mut self,
        conn: &mut PgConnection,
        ops: &[Op],
    ) -> Result<HashSet<Uuid>, sqlx::Error> {
        let inserted: HashSet<Uuid> = ops
            .iter()
            .filter_map(|op| match op {
                Op::InsertTask(t) => Some(t.task_id.as_uuid()),
                _ => None,
            })
            .collect();
        let mut missing: HashSet<Uuid> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Append { task, .. } => Some(task.as_uuid()),
                _ => None,
            })
            .filter(|id| !self.active.contains_key(id) && !inserted.contains(id))
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        let ids: Vec<Uuid> = missing.iter().copied().collect();
        for (id, loaded) in self.read_tasks(conn, &ids).await? {
            missing.remove(&id);
            // A task that cannot be read is left out; its own load reports it.
            if let Ok(active) = loaded {
                self.active.insert(id, active);
            }
        }
        Ok(missing)
    }

    /// Loads one task into the cache, if it exists; the inner error is a task that cannot
    /// be read.
    pub(super) async fn load(
        &mut self,
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Result<(), StoreError>, sqlx::Error> {
        for (id, loaded) in self.read_tasks(conn, &[id]).await? {
            match loaded {
                Ok(active) => {
                    self.active.insert(id, active);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    }

    async fn read_tasks(
        &self,
        conn: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Result<Active, StoreError>)>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT t.task_id, t.record, {} AS events, \
               (SELECT COALESCE(MAX(e.seq) + 1, 0) FROM task_events e \
                WHERE e.task_id = t.task_id) AS next_seq \
             FROM tasks t WHERE t.task_id = ANY($1)",
            super::EVENTS
        ))
        .bind(ids)
        .fetch_all(conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get("task_id")?;
            let base: Vec<u8> = row.try_get("record")?;
            let events: Vec<Vec<u8>> = row.try_get("events")?;
            let next_seq: i32 = row.try_get("next_seq")?;
            let loaded = super::replay(&base, &events, |table, seq| match seq {
                Some(seq) => self.at(table, format!("{id}#{seq}")),
                None => self.at(table, id),
            })
            .map(|record| Active { record, next_seq });
            out.push((id, loaded));
        }
        Ok(out)
    }
}
