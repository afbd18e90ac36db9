//! The schema: the migrations in `actors/migrations`, embedded at build time and run on
//! connect (under PostgreSQL's advisory lock, so nodes starting together take turns), then a
//! read of every table.

use sqlx::PgConnection;
use sqlx::migrate::{MigrateError, Migrator};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

const TABLES: [&str; 6] = [
    "networks",
    "tasks",
    "task_events",
    "memory_items",
    "sessions",
    "responses",
];

/// Brings the schema up to date and reads every table once, so a store that cannot be used
/// fails on connect; the error says why.
pub(super) async fn prepare(conn: &mut PgConnection) -> Result<(), String> {
    MIGRATOR.run(&mut *conn).await.map_err(|e| match e {
        MigrateError::VersionMissing(v) => {
            format!("its schema is from a newer version of aimesh (migration {v} is unknown here)")
        }
        e => format!("cannot migrate its schema: {e}"),
    })?;
    for table in TABLES {
        sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1"))
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| format!("cannot read it: {e}"))?;
    }
    Ok(())
}
