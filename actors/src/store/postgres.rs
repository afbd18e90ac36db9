//! The PostgreSQL store: one database shared by the nodes of a cluster.
//!
//! Reads run on a connection pool. Writes go to one writer task that commits them in groups
//! ([`writer`]): it takes every write queued since its last commit, applies them in order in
//! one transaction, commits, then acknowledges each. Under load many writes share a commit,
//! and journal writes share a few bulk statements.
//!
//! A task is kept as its base record plus its journal (one row per event) and its current
//! status and summary for listings; reads replay the journal. Records are MessagePack, memory
//! items zstd-compressed above a size (the embedded store's codec). The schema is made by the
//! migrations in `actors/migrations`, run on connect.

mod cache;
mod location;
mod ops;
mod schema;
mod stage;
mod vectors;
mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::embedded::codec::{decode, decode_item};
use super::{Ack, Store, StoreError, StoredResponse};
use crate::ids::{MemoryId, NetworkId, TaskId};
use crate::placement::shard_of;
use crate::types::{
    MemoryItem, NetworkRecord, Page, Session, TaskEvent, TaskQuery, TaskRecord, TaskStatus,
    TaskSummary, Timestamp,
};
use ops::{Answer, Direct, Job, Op};

const BACKEND: &str = "postgres";

/// How long connecting may take before the store is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the pool (reads, and the writer's one at a time).
const POOL_SIZE: u32 = 16;

/// A task's events, in journal order, as a column.
const EVENTS: &str =
    "ARRAY(SELECT e.event FROM task_events e WHERE e.task_id = t.task_id ORDER BY e.seq)";

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    location: String,
    jobs: mpsc::UnboundedSender<Job>,
    /// Memory vectors, when the server has pgvector.
    vectors: Option<vectors::PgVectors>,
}

impl PostgresStore {
    /// Connects (a pool), runs the migrations, and checks the schema is readable; memory items
    /// over `compress_above` bytes are compressed. An unreachable server, a failed migration or
    /// a schema from a newer version is [`StoreError::Open`] naming the URL without password.
    pub async fn connect(url: &str, compress_above: usize) -> Result<Self, StoreError> {
        let location = location::redact(url);
        let open_err = |message: String| StoreError::Open {
            backend: BACKEND,
            location: location.clone(),
            message: location::scrub(&message, url),
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open_err(format!("not a PostgreSQL URL: {e}")))?
            .application_name("aimesh");
        let server = format!("{}:{}", options.get_host(), options.get_port());
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                open_err(format!(
                    "cannot connect to {server}: no answer in {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| open_err(format!("cannot connect to {server}: {e}")))?;
        schema::prepare(&mut conn).await.map_err(open_err)?;
        let pgvector = vectors::prepare(&mut conn).await.map_err(open_err)?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| open_err(format!("cannot connect to {server}: {e}")))?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let writer = writer::Writer {
            pool: pool.clone(),
            location: location.clone(),
            compress_above,
            active: HashMap::new(),
        };
        tokio::spawn(writer::run(writer, rx));
        let vectors = pgvector.then(|| vectors::PgVectors::new(pool.clone(), location.clone()));
        Ok(Self {
            pool,
            location,
            jobs,
            vectors,
        })
    }

    fn at(&self, table: &str, key: impl std::fmt::Display) -> String {
        format!("{} (table {table}, key {key})", self.location)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: BACKEND,
            message: format!("{}: {e}", self.location),
        }
    }

    fn submit<T: Answer>(&self, op: Op) -> Ack<T> {
        let (tx, ack) = Ack::pending(BACKEND);
        let job = Job {
            op,
            reply: T::reply(tx),
        };
        if self.jobs.send(job).is_err() {
            return Ack::ready(Err(self.err("the writer has stopped")));
        }
        ack
    }

    fn direct<T: Answer>(&self, op: Direct) -> Ack<T> {
        self.submit(Op::Direct(op))
    }

    /// The memory items of `rows` (id, network, item) placed on shard `shard` of `shards`.
    /// Placement is computed from the columns, so other shards' items are not decompressed.
    async fn placed(
        &self,
        mut rows: BoxStream<'_, Result<PgRow, sqlx::Error>>,
        shard: u32,
        shards: u32,
    ) -> Result<Vec<MemoryItem>, StoreError> {
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|e| self.err(e))? {
            let id: Uuid = row.try_get(0).map_err(|e| self.err(e))?;
            let network: Uuid = row.try_get(1).map_err(|e| self.err(e))?;
            if shard_of(network.into(), MemoryId::from(id), shards) != shard {
                continue;
            }
            let bytes: Vec<u8> = row.try_get(2).map_err(|e| self.err(e))?;
            out.push(decode_item(&bytes, || self.at("memory_items", id))?);
        }
        Ok(out)
    }
}

/// A task's record: its base with its journal applied. `at` names a row for errors.
fn replay(
    base: &[u8],
    events: &[Vec<u8>],
    at: impl Fn(&str, Option<usize>) -> String,
) -> Result<TaskRecord, StoreError> {
    let mut record: TaskRecord = decode(base, || at("tasks", None))?;
    for (seq, bytes) in events.iter().enumerate() {
        let event: TaskEvent = decode(bytes, || at("task_events", Some(seq)))?;
        record.apply(event);
    }
    Ok(record)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn vectors(&self) -> Option<&dyn super::VectorStore> {
        self.vectors.as_ref().map(|v| v as &dyn super::VectorStore)
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put_network(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        self.direct(Direct::PutNetwork(Box::new(network.clone())))
            .await
    }

    async fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        let row = sqlx::query("SELECT record FROM networks WHERE network_id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            Some(row) => {
                let bytes: Vec<u8> = row.try_get(0).map_err(|e| self.err(e))?;
                Ok(Some(decode(&bytes, || self.at("networks", id))?))
            }
            None => Ok(None),
        }
    }

    async fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let rows = sqlx::query("SELECT network_id, record FROM networks ORDER BY network_id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get(0).map_err(|e| self.err(e))?;
            let bytes: Vec<u8> = row.try_get(1).map_err(|e| self.err(e))?;
            out.push(decode(&bytes, || self.at("networks", id))?);
        }
        Ok(out)
    }

    async fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError> {
        self.direct(Direct::DeleteNetwork(id)).await
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.submit(Op::InsertTask(Box::new(task.clone()))).await
    }

    fn append(&self, network: NetworkId, task: TaskId, event: TaskEvent) -> Ack<TaskStatus> {
        self.submit(Op::Append {
            network,
            task,
            event: Box::new(event),
        })
    }

    async fn task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT t.record, {EVENTS} FROM tasks t WHERE t.task_id = $1 AND t.network_id = $2"
        ))
        .bind(task.as_uuid())
        .bind(network.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let base: Vec<u8> = row.try_get(0).map_err(|e| self.err(e))?;
        let events: Vec<Vec<u8>> = row.try_get(1).map_err(|e| self.err(e))?;
        replay(&base, &events, |table, seq| match seq {
            Some(seq) => self.at(table, format!("{task}#{seq}")),
            None => self.at(table, task),
        })
        .map(Some)
    }

    async fn task_status(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let row = sqlx::query("SELECT status FROM tasks WHERE task_id = $1 AND network_id = $2")
            .bind(task.as_uuid())
            .bind(network.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let status: String = row.try_get(0).map_err(|e| self.err(e))?;
        TaskStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == status)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                location: self.at("tasks", task),
                message: format!("unknown status {status:?}"),
            })
    }

    async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, StoreError> {
        let filter = match query.status {
            Some(_) => "network_id = $1 AND status = $4",
            None => "network_id = $1 AND $4::text IS NULL",
        };
        let row = sqlx::query(&format!(
            "SELECT (SELECT count(*) FROM tasks WHERE {filter}), \
               ARRAY(SELECT summary FROM tasks WHERE {filter} \
                     ORDER BY task_id DESC LIMIT $2 OFFSET $3)"
        ))
        .bind(network.as_uuid())
        .bind(to_i64(query.limit))
        .bind(to_i64(query.offset))
        .bind(query.status.map(TaskStatus::as_str))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let total: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        let summaries: Vec<Vec<u8>> = row.try_get(1).map_err(|e| self.err(e))?;
        let items = summaries
            .iter()
            .map(|bytes| {
                decode(bytes, || {
                    self.at("tasks", format!("summary of network {network}"))
                })
            })
            .collect::<Result<Vec<TaskSummary>, _>>()?;
        let total = usize::try_from(total).unwrap_or(0);
        Ok(Page::new(items, total, query.limit, query.offset))
    }

    async fn unfinished_tasks(&self, network: NetworkId) -> Result<Vec<TaskRecord>, StoreError> {
        let unfinished: Vec<&str> = TaskStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .map(TaskStatus::as_str)
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT t.task_id, t.record, {EVENTS} FROM tasks t \
             WHERE t.network_id = $1 AND t.status = ANY($2) ORDER BY t.task_id"
        ))
        .bind(network.as_uuid())
        .bind(unfinished)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get(0).map_err(|e| self.err(e))?;
            let base: Vec<u8> = row.try_get(1).map_err(|e| self.err(e))?;
            let events: Vec<Vec<u8>> = row.try_get(2).map_err(|e| self.err(e))?;
            out.push(replay(&base, &events, |table, seq| match seq {
                Some(seq) => self.at(table, format!("{id}#{seq}")),
                None => self.at(table, id),
            })?);
        }
        Ok(out)
    }

    async fn response(&self, key: &str) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query("SELECT body FROM responses WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            Some(row) => {
                let bytes: Vec<u8> = row.try_get(0).map_err(|e| self.err(e))?;
                Ok(Some(decode(&bytes, || self.at("responses", key))?))
            }
            None => Ok(None),
        }
    }

    fn put_response(&self, key: &str, response: &StoredResponse) -> Ack<()> {
        self.submit(Op::PutResponse {
            key: key.to_owned(),
            response: Box::new(response.clone()),
        })
    }

    async fn expire_responses(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.direct(Direct::ExpireResponses(before)).await
    }

    fn put_memory(&self, item: &MemoryItem) -> Ack<()> {
        self.submit(Op::PutMemory(Box::new(item.clone())))
    }

    async fn load_memory(&self, shard: u32, shards: u32) -> Result<Vec<MemoryItem>, StoreError> {
        let rows =
            sqlx::query("SELECT memory_id, network_id, item FROM memory_items ORDER BY memory_id")
                .fetch(&self.pool);
        self.placed(rows, shard, shards).await
    }

    async fn load_network_memory(
        &self,
        network: NetworkId,
        shard: u32,
        shards: u32,
    ) -> Result<Vec<MemoryItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT memory_id, network_id, item FROM memory_items \
             WHERE network_id = $1 ORDER BY memory_id",
        )
        .bind(network.as_uuid())
        .fetch(&self.pool);
        self.placed(rows, shard, shards).await
    }

    async fn delete_memory(&self, ids: &[MemoryId]) -> Result<usize, StoreError> {
        self.direct(Direct::DeleteMemory(ids.to_vec())).await
    }

    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.direct(Direct::PutSession(Box::new(session.clone())))
            .await
    }

    async fn sessions(&self, network: NetworkId) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(
            "SELECT session_id, record FROM sessions WHERE network_id = $1 ORDER BY session_id",
        )
        .bind(network.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(|e| self.err(e))?;
            let bytes: Vec<u8> = row.try_get(1).map_err(|e| self.err(e))?;
            out.push(decode(&bytes, || {
                self.at("sessions", format!("{network}/{id}"))
            })?);
        }
        Ok(out)
    }

    async fn delete_session(&self, network: NetworkId, session: &str) -> Result<bool, StoreError> {
        self.direct(Direct::DeleteSession(network, session.to_owned()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, SubtaskId};
    use crate::store::conformance::{item, network, task};
    use crate::types::{
        MemoryKind, SubtaskOutcome, SubtaskRecord, SubtaskStatus, TaskResult, Usage, now,
    };

    /// A database of its own on the server `AIMESH_TEST_DATABASE_URL` names, dropped by
    /// [`TestDb::drop`].
    struct TestDb {
        admin: String,
        name: String,
        url: String,
    }

    impl TestDb {
        async fn create() -> Option<Self> {
            let Ok(admin) = std::env::var("AIMESH_TEST_DATABASE_URL") else {
                eprintln!("skipped: AIMESH_TEST_DATABASE_URL is not set");
                return None;
            };
            let name = format!("aimesh_test_{}", Uuid::now_v7().simple());
            let mut conn = PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = conn.close().await;
            Some(Self {
                url: with_database(&admin, &name),
                admin,
                name,
            })
        }

        async fn drop(self) {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }

    /// `url` with its database replaced by `name`.
    fn with_database(url: &str, name: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let start = base.find("://").map_or(0, |i| i + 3);
        let host = base[start..].rfind('@').map_or(start, |at| start + at);
        let path = base[host..].find('/').map_or(base.len(), |p| host + p);
        format!("{}/{name}{query}", &base[..path])
    }

    #[test]
    fn test_databases_replace_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5", "x"), "postgres://h:5/x");
    }

    #[tokio::test]
    async fn conforms() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        super::super::conformance::run_all(&store).await;
        drop(store);
        db.drop().await;
    }

    #[tokio::test]
    async fn nothing_listening_is_an_open_error_naming_the_server_not_the_password() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://ada:s3cret-pw@127.0.0.1:{port}/aimesh");
        let Err(err) = PostgresStore::connect(&url, 1024).await else {
            panic!("connected to nothing");
        };
        let StoreError::Open { location, .. } = &err else {
            panic!("not an open error: {err:?}");
        };
        assert_eq!(location, &format!("postgres://ada@127.0.0.1:{port}/aimesh"));
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    }

    #[tokio::test]
    async fn what_was_acknowledged_is_there_after_reconnecting() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let n = network();
        let t = task(n.network_id, "persist me");
        {
            let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
            store.put_network(&n).await.unwrap();
            store.insert_task(&t).await.unwrap();
            let at = now();
            store
                .append(n.network_id, t.task_id, TaskEvent::Processing { at })
                .await
                .unwrap();
        }
        // Connecting again runs the migrations again: nothing to do, nothing lost.
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let back = store.task(n.network_id, t.task_id).await.unwrap().unwrap();
        assert_eq!(back.status, TaskStatus::Processing);
        assert_eq!(store.unfinished_tasks(n.network_id).await.unwrap().len(), 1);
        // The journal goes on where it stopped (the writer loads the task it does not have).
        let fin = TaskEvent::Finished {
            status: TaskStatus::Cancelled,
            at: now(),
            result: None,
            error: None,
        };
        let status = store.append(n.network_id, t.task_id, fin).await.unwrap();
        assert_eq!(status, TaskStatus::Cancelled);
        assert_eq!(
            store.task_status(n.network_id, t.task_id).await.unwrap(),
            Some(TaskStatus::Cancelled)
        );
        drop(store);
        db.drop().await;
    }

    #[tokio::test]
    async fn a_refused_write_fails_alone() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let n = network();
        store.put_network(&n).await.unwrap();
        // Queued together, so they share a commit; the orphan is refused by its foreign key.
        let before = item(n.network_id, MemoryKind::Fact, "before");
        let orphan = item(NetworkId::new(), MemoryKind::Fact, "orphan");
        let after = item(n.network_id, MemoryKind::Fact, "after");
        let acks = [&before, &orphan, &after].map(|i| store.put_memory(i));
        let [a, b, c] = acks;
        assert!(a.await.is_ok());
        let err = b.await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("network {} does not exist", orphan.network_id)),
            "{err}"
        );
        assert!(c.await.is_ok());
        let ids: Vec<MemoryId> = store
            .load_memory(0, 1)
            .await
            .unwrap()
            .iter()
            .map(|i| i.memory_id)
            .collect();
        assert_eq!(ids, vec![before.memory_id, after.memory_id]);
        let mut placed = Vec::new();
        for shard in 0..3 {
            for i in store
                .load_network_memory(n.network_id, shard, 3)
                .await
                .unwrap()
            {
                assert_eq!(shard_of(i.network_id, i.memory_id, 3), shard);
                placed.push(i.memory_id);
            }
        }
        placed.sort();
        assert_eq!(placed, ids);
        let other = store.load_network_memory(NetworkId::new(), 0, 1).await;
        assert!(other.unwrap().is_empty());
        let t = task(NetworkId::new(), "no network");
        assert!(store.insert_task(&t).await.is_err());
        drop(store);
        db.drop().await;
    }

    #[tokio::test]
    async fn one_commit_keeps_the_order_of_its_writes() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let n = network();
        store.put_network(&n).await.unwrap();
        let net = n.network_id;
        let t = task(net, "busy");
        store.insert_task(&t).await.unwrap();
        let id = t.task_id;
        let cancel = || TaskEvent::Finished {
            status: TaskStatus::Cancelled,
            at: now(),
            result: None,
            error: None,
        };
        // Queued without waiting, so they share commits.
        let processing = store.append(net, id, TaskEvent::Processing { at: now() });
        let cancelled = store.append(net, id, cancel());
        let late = store.append(net, id, TaskEvent::Processing { at: now() });
        let unknown = store.append(net, TaskId::new(), cancel());
        let elsewhere = store.append(NetworkId::new(), id, cancel());
        let mut delete = store.delete_network(net);
        assert!(futures::poll!(&mut delete).is_pending());
        let after_delete = store.append(net, id, cancel());
        assert_eq!(processing.await.unwrap(), TaskStatus::Processing);
        assert_eq!(cancelled.await.unwrap(), TaskStatus::Cancelled);
        assert_eq!(late.await.unwrap(), TaskStatus::Cancelled);
        assert!(matches!(unknown.await, Err(StoreError::UnknownTask { .. })));
        assert!(matches!(
            elsewhere.await,
            Err(StoreError::UnknownTask { .. })
        ));
        assert!(delete.await.unwrap());
        assert!(matches!(
            after_delete.await,
            Err(StoreError::UnknownTask { .. })
        ));
        drop(store);
        db.drop().await;
    }

    #[tokio::test]
    async fn unreadable_rows_and_newer_schemas_are_named() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let n = network();
        store.put_network(&n).await.unwrap();
        let t = task(n.network_id, "to be garbled");
        store.insert_task(&t).await.unwrap();
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE tasks SET record = '\\xc1c1'::bytea WHERE task_id = $1")
            .bind(t.task_id.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap();
        let err = store.task(n.network_id, t.task_id).await.unwrap_err();
        let StoreError::Corrupt { location, .. } = &err else {
            panic!("not corrupt: {err:?}");
        };
        assert!(location.contains("table tasks"), "{location}");
        assert!(location.contains(&t.task_id.to_string()), "{location}");
        // A writer that has not cached the task must read it, and says it cannot.
        let fresh = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let at = now();
        let err = fresh
            .append(n.network_id, t.task_id, TaskEvent::Processing { at })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        drop(fresh);
        // A schema migrated by a newer version is not touched.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from the future', true, '\\x00'::bytea, 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        let Err(err) = PostgresStore::connect(&db.url, 1024).await else {
            panic!("opened a newer schema");
        };
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("newer version"), "{err}");
        drop(store);
        db.drop().await;
    }

    #[tokio::test]
    async fn two_writers_on_one_task_stay_in_order() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        // Another node took the task over: this writer's cached copy is stale.
        let one = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let two = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let n = network();
        one.put_network(&n).await.unwrap();
        let t = task(n.network_id, "handed over");
        one.insert_task(&t).await.unwrap();
        let (net, id) = (n.network_id, t.task_id);
        let subtasks = (1..=2).map(|step| subtask(id, step)).collect();
        let planned = TaskEvent::Planned {
            iteration: 1,
            subtasks,
        };
        one.append(net, id, planned).await.unwrap();
        let started = |step| TaskEvent::SubtaskStarted {
            step,
            attempt: 1,
            at: now(),
            node: Some("n1".into()),
        };
        two.append(net, id, started(1)).await.unwrap();
        one.append(net, id, started(2)).await.unwrap();
        let r = two.task(net, id).await.unwrap().unwrap();
        assert!(
            r.subtasks
                .iter()
                .all(|s| s.status == SubtaskStatus::Running),
            "{:?}",
            r.subtasks
        );
        drop((one, two));
        db.drop().await;
    }

    fn subtask(task: TaskId, step: u32) -> SubtaskRecord {
        SubtaskRecord {
            subtask_id: SubtaskId { task, step },
            step,
            iteration: 1,
            replaces: None,
            agent_id: AgentId::new(),
            agent: "Writer".into(),
            agent_type: "content".into(),
            description: "write".into(),
            status: SubtaskStatus::Pending,
            attempts: 1,
            output: None,
            model: None,
            provider: None,
            usage: None,
            route: None,
            error: None,
            queued_at: now(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            node: None,
        }
    }

    /// Ten events of a task's life, as the coordinator journals them.
    fn life(task: TaskId, round: u32) -> TaskEvent {
        let at = now();
        let finished = |step| TaskEvent::SubtaskFinished {
            step,
            at,
            outcome: SubtaskOutcome::Completed {
                output: "an agent's answer ".repeat(50),
                model: "m".into(),
                provider: "p".into(),
                usage: Usage::default(),
                route: None,
            },
        };
        let started = |step| TaskEvent::SubtaskStarted {
            step,
            attempt: 1,
            at,
            node: None,
        };
        match round {
            0 => TaskEvent::Processing { at },
            1 => TaskEvent::Planned {
                iteration: 1,
                subtasks: (1..=3).map(|s| subtask(task, s)).collect(),
            },
            2 => started(1),
            3 => started(2),
            4 => finished(1),
            5 => started(3),
            6 => finished(2),
            7 => TaskEvent::SubtaskRedelivered {
                step: 3,
                attempt: 2,
            },
            8 => finished(3),
            _ => TaskEvent::Finished {
                status: TaskStatus::Completed,
                at,
                result: Some(TaskResult {
                    summary: "s".into(),
                    output: "the synthesis ".repeat(100),
                    model: "m".into(),
                    contributors: vec![],
                    usage: Usage::default(),
                    route: None,
                }),
                error: None,
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tmp_embedded_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::EmbeddedStore::open(&dir.path().join("x.redb"), 1024).unwrap();
        let n = network();
        store.put_network(&n).await.unwrap();
        let tasks: Vec<TaskRecord> = (0..1000)
            .map(|i| task(n.network_id, &format!("task {i}")))
            .collect();
        futures::future::try_join_all(tasks.iter().map(|t| store.insert_task(t)))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut acks = Vec::with_capacity(10_000);
        for round in 0..10 {
            for t in &tasks {
                acks.push(store.append(n.network_id, t.task_id, life(t.task_id, round)));
            }
        }
        futures::future::try_join_all(acks).await.unwrap();
        let elapsed = started.elapsed();
        eprintln!(
            "embedded: {:.0} appends/s",
            10_000.0 / elapsed.as_secs_f64()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journal_throughput() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PostgresStore::connect(&db.url, 1024).await.unwrap();
        let n = network();
        store.put_network(&n).await.unwrap();
        let tasks: Vec<TaskRecord> = (0..1000)
            .map(|i| task(n.network_id, &format!("task {i}")))
            .collect();
        let started = std::time::Instant::now();
        futures::future::try_join_all(tasks.iter().map(|t| store.insert_task(t)))
            .await
            .unwrap();
        let inserted = started.elapsed();
        let started = std::time::Instant::now();
        let mut acks = Vec::with_capacity(10_000);
        for round in 0..10 {
            for t in &tasks {
                acks.push(store.append(n.network_id, t.task_id, life(t.task_id, round)));
            }
        }
        let statuses = futures::future::try_join_all(acks).await.unwrap();
        let elapsed = started.elapsed();
        assert!(
            statuses[9_000..]
                .iter()
                .all(|s| *s == TaskStatus::Completed)
        );
        eprintln!(
            "1000 tasks inserted in {inserted:?}; 10000 appends in {elapsed:?}: {:.0} appends/s",
            10_000.0 / elapsed.as_secs_f64()
        );
        let page = store
            .tasks(
                n.network_id,
                &TaskQuery {
                    status: Some(TaskStatus::Completed),
                    limit: 1,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 1000);
        let last = store
            .task(n.network_id, tasks[999].task_id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            last.subtasks
                .iter()
                .all(|s| s.status == SubtaskStatus::Completed)
        );
        drop(store);
        db.drop().await;
    }
}
