//! Memory vectors in PostgreSQL with pgvector, when the server has the extension.
//!
//! The table `memory_vectors` keeps one vector per memory item and embedder; a statement trigger
//! removes an item's vectors with the item (sweeps, session and network deletes). Searches run
//! in PostgreSQL: cosine distance over an HNSW index made per vector length (an expression
//! index, since embedders differ in dimensions). Vectors are derived data: they are written
//! after the item is durable, by a background task in batches, and an item whose vector is
//! missing at start-up is embedded again. Without the extension, vectors stay in the memory
//! shards (see `search`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::ids::{MemoryId, NetworkId};
use crate::store::{StoreError, VectorStore};

/// The advisory lock key under which nodes set the vector schema up one at a time.
const LOCK: i64 = 0x6169_6d65_7368_7663; // "aimeshvc"
/// Most vectors written in one statement.
const BATCH: usize = 512;
/// Largest `hnsw.ef_search` pgvector accepts.
const MAX_EF_SEARCH: usize = 1000;

/// Enables pgvector and makes the vector table, if the server has the extension. `Ok(false)`
/// (and a log line saying why) when it does not or it cannot be enabled.
pub(super) async fn prepare(conn: &mut PgConnection) -> Result<bool, String> {
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| format!("cannot list its extensions: {e}"))?;
    if !available {
        tracing::info!(
            "PostgreSQL has no pgvector extension: memory vectors are indexed in the memory shards"
        );
        return Ok(false);
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("cannot take the schema lock: {e}"))?;
    let made = make_schema(conn).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    match made {
        Ok(()) => {
            tracing::info!("memory vectors are kept and searched in PostgreSQL (pgvector)");
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e,
                "pgvector is installed but could not be enabled: memory vectors are indexed in the memory shards");
            Ok(false)
        }
    }
}

async fn make_schema(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for statement in [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE TABLE IF NOT EXISTS memory_vectors (
            memory_id  uuid PRIMARY KEY,
            network_id uuid NOT NULL,
            embedder   text NOT NULL,
            dims       integer NOT NULL,
            embedding  vector NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS memory_vectors_by_network
            ON memory_vectors (network_id, embedder)",
        "CREATE OR REPLACE FUNCTION aimesh_drop_memory_vectors() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM memory_vectors v USING gone g WHERE v.memory_id = g.memory_id;
                RETURN NULL;
            END $$",
        "DROP TRIGGER IF EXISTS memory_items_drop_vectors ON memory_items",
        "CREATE TRIGGER memory_items_drop_vectors AFTER DELETE ON memory_items
            REFERENCING OLD TABLE AS gone
            FOR EACH STATEMENT EXECUTE FUNCTION aimesh_drop_memory_vectors()",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// One vector to keep.
struct Entry {
    seq: u64,
    id: MemoryId,
    network: NetworkId,
    embedder: String,
    vector: Vec<f32>,
    /// Times it was held back because its item was not (yet) in the table.
    tries: u8,
}

/// Times a vector whose item is not in the table is tried again (the item may still be on
/// its way to the disk) before it is dropped (the item was deleted meanwhile).
const TRIES: u8 = 3;
/// The wait before such a retry.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest a search waits for the vectors put before it.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// pgvector's text form of a vector: `[1,0.5,-2]` (Rust's shortest exact float form).
fn literal(vector: &[f32]) -> String {
    let mut s = String::with_capacity(vector.len() * 8 + 2);
    s.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let x = if x.is_finite() { *x } else { 0.0 };
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The vectors of one PostgreSQL store.
pub struct PgVectors {
    pool: PgPool,
    location: String,
    writes: mpsc::UnboundedSender<Entry>,
    /// The sequence number of the last vector put (numbered and sent under this lock, so they
    /// arrive in order).
    next: Mutex<u64>,
    /// Every vector numbered up to this one is written or given up on.
    done: watch::Receiver<u64>,
}

impl PgVectors {
    /// Starts the background writer; it ends when the store is dropped.
    pub(super) fn new(pool: PgPool, location: String) -> Self {
        let (writes, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(0);
        tokio::spawn(write_loop(
            pool.clone(),
            location.clone(),
            writes.clone(),
            rx,
            done_tx,
        ));
        Self {
            pool,
            location,
            writes,
            next: Mutex::new(0),
            done,
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: "postgres",
            message: format!("{} (table memory_vectors, {what}): {e}", self.location),
        }
    }
}

/// Makes the HNSW index for vectors of length `dims` (the writer does, before it writes the
/// first of them, so the index grows with the table and no search waits for a build).
async fn ensure_index(pool: &PgPool, dims: i32) -> Result<(), sqlx::Error> {
    let statement = format!(
        "CREATE INDEX IF NOT EXISTS memory_vectors_hnsw_{dims} ON memory_vectors \
         USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims}"
    );
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    let made = sqlx::query(&statement).execute(&mut *conn).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    made.map(|_| ())
}

async fn write_loop(
    pool: PgPool,
    location: String,
    again: mpsc::UnboundedSender<Entry>,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    done: watch::Sender<u64>,
) {
    // Sequence numbers not yet settled (held back for a retry), so `done` never passes them.
    let mut open: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    // Vector lengths whose HNSW index was made (or tried).
    let mut indexed: HashSet<i32> = HashSet::new();
    // Owned retries: they end with this loop.
    let mut retries = tokio::task::JoinSet::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        while retries.try_join_next().is_some() {}
        let highest = batch.iter().map(|e| e.seq).max().unwrap_or(0);
        // The last vector of an item wins within a batch.
        let mut by_id: HashMap<MemoryId, Entry> = HashMap::with_capacity(batch.len());
        for e in batch.drain(..) {
            if by_id.get(&e.id).is_none_or(|old| old.seq < e.seq) {
                if let Some(old) = by_id.insert(e.id, e) {
                    open.remove(&old.seq);
                }
            } else {
                open.remove(&e.seq);
            }
        }
        let n = by_id.len();
        let (mut ids, mut networks, mut embedders, mut dims, mut vectors) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in by_id.values() {
            ids.push(e.id.as_uuid());
            networks.push(e.network.as_uuid());
            dims.push(i32::try_from(e.vector.len()).unwrap_or(i32::MAX));
            vectors.push(literal(&e.vector));
            embedders.push(e.embedder.clone());
        }
        for d in &dims {
            // Tried once per length: pgvector indexes at most 2,000 dimensions, and longer
            // vectors are searched by a scan.
            if *d > 0
                && indexed.insert(*d)
                && let Err(e) = ensure_index(&pool, *d).await
            {
                tracing::warn!(%location, dims = *d, error = %e,
                    "no HNSW index for vectors of this length; searches scan them");
            }
        }
        let written: Result<Vec<Uuid>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO memory_vectors (memory_id, network_id, embedder, dims, embedding) \
             SELECT u.id, u.network, u.embedder, u.dims, u.embedding::vector \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[]) \
               AS u(id, network, embedder, dims, embedding) \
             WHERE EXISTS (SELECT 1 FROM memory_items m WHERE m.memory_id = u.id) \
             ON CONFLICT (memory_id) DO UPDATE SET network_id = EXCLUDED.network_id, \
               embedder = EXCLUDED.embedder, dims = EXCLUDED.dims, embedding = EXCLUDED.embedding \
             RETURNING memory_id",
        )
        .bind(&ids)
        .bind(&networks)
        .bind(&embedders)
        .bind(&dims)
        .bind(&vectors)
        .fetch_all(&pool)
        .await;
        match written {
            Ok(kept) => {
                metrics::counter!("aimesh_memory_vectors_written_total")
                    .increment(kept.len() as u64);
                let kept: HashSet<Uuid> = kept.into_iter().collect();
                for (_, mut e) in by_id {
                    open.remove(&e.seq);
                    if kept.contains(&e.id.as_uuid()) || e.tries >= TRIES {
                        continue;
                    }
                    // Its item is not in the table (yet): try again shortly.
                    e.tries += 1;
                    open.insert(e.seq);
                    let again = again.clone();
                    retries.spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = again.send(e);
                    });
                }
            }
            Err(e) => {
                for e in by_id.values() {
                    open.remove(&e.seq);
                }
                // Derived data: the items are durable, and are embedded again at the next start.
                tracing::warn!(%location, vectors = n, error = %e,
                    "memory vectors not kept; their items are embedded again at the next start");
            }
        }
        let settled = match open.first() {
            Some(first) => first.saturating_sub(1).min(highest),
            None => highest,
        };
        done.send_if_modified(|d| {
            let moved = settled > *d;
            *d = (*d).max(settled);
            moved
        });
    }
}

#[async_trait]
impl VectorStore for PgVectors {
    fn put(&self, embedder: &str, network: NetworkId, id: MemoryId, vector: Vec<f32>) {
        let Ok(mut next) = self.next.lock() else {
            return;
        };
        *next += 1;
        let _ = self.writes.send(Entry {
            seq: *next,
            id,
            network,
            embedder: embedder.to_owned(),
            vector,
            tries: 0,
        });
    }

    async fn flush(&self) -> bool {
        let Ok(target) = self.next.lock().map(|n| *n) else {
            return false;
        };
        let mut done = self.done.clone();
        matches!(
            tokio::time::timeout(FLUSH_TIMEOUT, done.wait_for(|d| *d >= target)).await,
            Ok(Ok(_))
        )
    }

    async fn missing(&self, embedder: &str, ids: &[MemoryId]) -> Result<Vec<MemoryId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let uuids: Vec<Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
        let have: Vec<Uuid> = sqlx::query_scalar(
            "SELECT memory_id FROM memory_vectors WHERE memory_id = ANY($1) AND embedder = $2",
        )
        .bind(&uuids)
        .bind(embedder)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("kept vectors", e))?;
        let have: HashSet<Uuid> = have.into_iter().collect();
        Ok(ids
            .iter()
            .filter(|i| !have.contains(&i.as_uuid()))
            .copied()
            .collect())
    }

    async fn nearest(
        &self,
        network: NetworkId,
        embedder: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(MemoryId, f32)>, StoreError> {
        let dims = vector.len();
        if dims == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let mut txn = self.pool.begin().await.map_err(|e| self.err("search", e))?;
        // Enough candidates for the limit, and past filtered-out rows (pgvector 0.8).
        let ef = limit.clamp(40, MAX_EF_SEARCH);
        sqlx::query(&format!("SET LOCAL hnsw.ef_search = {ef}"))
            .execute(&mut *txn)
            .await
            .map_err(|e| self.err("search", e))?;
        let _ = sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
            .execute(&mut *txn)
            .await;
        let statement = format!(
            "SELECT memory_id, (embedding::vector({dims}) <=> $3::vector({dims}))::float8 AS d \
             FROM memory_vectors WHERE network_id = $1 AND embedder = $2 AND dims = {dims} \
             ORDER BY embedding::vector({dims}) <=> $3::vector({dims}) LIMIT $4"
        );
        let rows = sqlx::query(&statement)
            .bind(network.as_uuid())
            .bind(embedder)
            .bind(literal(vector))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *txn)
            .await
            .map_err(|e| self.err(&format!("search of network {network}"), e))?;
        let _ = txn.commit().await;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get(0).map_err(|e| self.err("search", e))?;
            let distance: Option<f64> = row.try_get(1).map_err(|e| self.err("search", e))?;
            // Cosine distance is 1 - similarity; a zero vector has no direction (NaN): no match.
            let Some(d) = distance.filter(|d| d.is_finite()) else {
                continue;
            };
            hits.push((MemoryId::from(id), (1.0 - d) as f32));
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn vectors_are_written_in_pgvectors_text_form_exactly() {
        assert_eq!(literal(&[1.0, 0.5, -2.25]), "[1,0.5,-2.25]");
        assert_eq!(literal(&[]), "[]");
        assert_eq!(literal(&[f32::NAN, 0.1]), "[0,0.1]");
        let x = 0.123_456_79_f32;
        let back: f32 = literal(&[x])[1..literal(&[x]).len() - 1].parse().unwrap();
        assert_eq!(back, x);
    }
}
