//! The janitor: the periodic sweep of a node's memory (expired items and sessions, retention
//! by age and by count) and of its kept model answers. The node supervisor owns the task that
//! runs it; [`crate::Node::sweep`] runs one pass as of any time (tests use a time in the future).

use std::collections::HashMap;
use std::sync::Arc;

use crate::memory::MemoryClient;
use crate::store::Store;
use crate::types::{Retention, Timestamp};

/// How long kept model answers stay after their call.
pub const RESPONSE_TTL: time::Duration = time::Duration::hours(24);

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Memory items.
    pub items: usize,
    /// Expired sessions.
    pub sessions: usize,
    /// Kept model answers.
    pub responses: usize,
}

/// One pass as of `now`.
pub async fn sweep(
    store: &Arc<dyn Store>,
    memory: &MemoryClient,
    default: Retention,
    now: Timestamp,
) -> Result<Swept, String> {
    let networks = store.networks().await.map_err(|e| e.to_string())?;
    let mut swept = Swept::default();
    let mut retention = HashMap::new();
    for n in &networks {
        retention.insert(n.network_id, n.retention.unwrap_or(default));
        for s in store
            .sessions(n.network_id)
            .await
            .map_err(|e| e.to_string())?
        {
            if s.expires_at.is_some_and(|e| e <= now) {
                memory
                    .drop_session(n.network_id, &s.session_id)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .delete_session(n.network_id, &s.session_id)
                    .await
                    .map_err(|e| e.to_string())?;
                swept.sessions += 1;
            }
        }
    }
    swept.items = memory
        .sweep(now, retention, default)
        .await
        .map_err(|e| e.to_string())?;
    swept.responses = store
        .expire_responses(now - RESPONSE_TTL)
        .await
        .map_err(|e| e.to_string())?;
    if swept != Swept::default() {
        tracing::debug!(?swept, "memory swept");
    }
    metrics::counter!("aimesh_memory_swept_items_total").increment(swept.items as u64);
    Ok(swept)
}
