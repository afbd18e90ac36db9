//! Every Prometheus metric aimesh exports, in one place: the name, its type and its help text.
//! `describe_all` emits the HELP/TYPE lines; the `deploy/` tests check dashboards and alert
//! rules against [`ALL`]. Label sets are bounded: status (5 task statuses), priority (1..5),
//! provider and model (the configured catalog), outcome (error codes), kind (actor kinds).

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, `_sum` and `_count`.
    Histogram,
}

/// One metric: name, type, help.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The HELP line.
    pub help: &'static str,
}

macro_rules! metrics_list {
    ($($konst:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $konst: &str = $name;
        )*
        /// Every metric, once.
        pub const ALL: &[Metric] = &[$(Metric { name: $name, kind: Kind::$kind, help: $help }),*];
    };
}

metrics_list! {
    // Tasks (coordinator).
    TASKS_SUBMITTED = "aimesh_tasks_submitted_total", Counter, "Tasks accepted, by priority.";
    TASKS_FINISHED = "aimesh_tasks_finished_total", Counter, "Tasks that reached a terminal status, by status and priority.";
    TASK_DURATION = "aimesh_task_duration_seconds", Histogram, "Time from a coordinator taking a task to its end, by status.";
    SUBTASKS_FINISHED = "aimesh_subtasks_finished_total", Counter, "Subtasks that ended, by status.";
    TASKS_IN_PROGRESS = "aimesh_tasks_in_progress", Gauge, "Unfinished tasks of this node's networks, by state (waiting for a slot, active).";
    QUEUE_WAIT = "aimesh_queue_wait_seconds", Histogram, "Time work waited in a priority queue before it was taken, by queue (coordinator, agent, gateway).";
    SUBTASK_DURATION = "aimesh_subtask_duration_seconds", Histogram, "Time from a subtask's assignment to its outcome, by status.";
    // Gateway (providers).
    GATEWAY_REQUESTS = "aimesh_gateway_requests_total", Counter, "Provider calls, by provider, model and outcome (ok or the error code).";
    GATEWAY_TOKENS = "aimesh_gateway_tokens_total", Counter, "Tokens billed, by provider, model and kind (input, output).";
    GATEWAY_COST = "aimesh_gateway_cost_microdollars_total", Counter, "Cost of provider calls in micro-dollars, by provider and model.";
    GATEWAY_CALL_DURATION = "aimesh_gateway_call_duration_seconds", Histogram, "Duration of model calls through the gateway, admission included.";
    GATEWAY_CACHE_HITS = "aimesh_gateway_cache_hits_total", Counter, "Response cache hits.";
    GATEWAY_CACHE_MISSES = "aimesh_gateway_cache_misses_total", Counter, "Response cache misses.";
    GATEWAY_FALLBACKS = "aimesh_gateway_fallbacks_total", Counter, "Fallbacks to the next link of a chain, by provider and reason.";
    GATEWAY_RATE_LIMIT_WAIT = "aimesh_gateway_rate_limit_wait_seconds", Histogram, "Time calls waited for a provider's rate limit (queue wait at the gateway), by provider and model.";
    GATEWAY_FILTERED = "aimesh_gateway_filtered_total", Counter, "Responses withheld by the safety filter.";
    GATEWAY_CIRCUIT_OPEN = "aimesh_gateway_circuit_open", Gauge, "1 while a link's circuit breaker is open, by provider and model.";
    GATEWAY_BUDGET_USD = "aimesh_gateway_budget_usd", Gauge, "The global spending budget in US dollars (absent when unlimited).";
    GATEWAY_SPENT_USD = "aimesh_gateway_spent_usd", Gauge, "Settled spend against the global budget in US dollars since the node started.";
    // Embeddings and memory.
    EMBEDDING_DURATION = "aimesh_embedding_duration_seconds", Histogram, "Duration of embedding calls, by provider.";
    EMBEDDING_REQUESTS = "aimesh_embedding_requests_total", Counter, "Embedding calls, by provider and outcome.";
    EMBEDDING_INPUTS = "aimesh_embedding_inputs_total", Counter, "Texts embedded, by provider.";
    EMBEDDING_TOKENS = "aimesh_embedding_tokens_total", Counter, "Embedding tokens billed, by provider.";
    EMBEDDING_COST = "aimesh_embedding_cost_picodollars_total", Counter, "Embedding cost in pico-dollars, by provider.";
    MEMORY_WRITES = "aimesh_memory_writes_total", Counter, "Memory items written through this node.";
    MEMORY_ITEMS = "aimesh_memory_items", Gauge, "Memory items held by this node's shards.";
    MEMORY_BYTES = "aimesh_memory_bytes", Gauge, "Text bytes (content and string metadata) of the memory items held by this node's shards.";
    MEMORY_SEARCH_DURATION = "aimesh_memory_search_duration_seconds", Histogram, "Duration of memory searches.";
    MEMORY_SWEPT = "aimesh_memory_swept_items_total", Counter, "Expired memory items swept.";
    // Store.
    STORE_COMMITS = "aimesh_store_commits_total", Counter, "Store write batches committed.";
    STORE_COMMIT_FAILURES = "aimesh_store_commit_failures_total", Counter, "Store write batches that failed.";
    // Cluster.
    CLUSTER_MEMBERS = "aimesh_cluster_members", Gauge, "Cluster members by state.";
    CLUSTER_QUORUM = "aimesh_cluster_quorum", Gauge, "1 while this node sees a quorum.";
    CLUSTER_HEARTBEAT_RTT = "aimesh_cluster_heartbeat_rtt_seconds", Histogram, "Heartbeat round trip, by peer (the configured nodes).";
    CLUSTER_FORWARD_DURATION = "aimesh_cluster_forward_duration_seconds", Histogram, "Duration of API requests forwarded to the owning node.";
    CLUSTER_NETWORKS_ADOPTED = "aimesh_cluster_networks_adopted_total", Counter, "Networks this node took over from a dead owner.";
    // Actors (rendered at scrape time from the actor directory; see the admin contract).
    ACTORS = "aimesh_actors", Gauge, "Actors by kind and status.";
    ACTOR_MAILBOX_DEPTH = "aimesh_actor_mailbox_depth", Gauge, "Messages waiting in mailboxes, summed by actor kind.";
    ACTOR_MESSAGES = "aimesh_actor_messages_total", Counter, "Messages handled, by actor kind.";
    ACTOR_RESTARTS = "aimesh_actor_restarts_total", Counter, "Actor restarts by supervisors, by actor kind.";
    ACTOR_ESCALATIONS = "aimesh_actor_escalations_total", Counter, "Failures escalated past a supervisor, by actor kind.";
}

/// Emits HELP and TYPE for every recorder metric (call once the recorder is installed).
pub fn describe_all() {
    for m in ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The task priority as a bounded label value ("1".."5").
pub fn priority_label(p: crate::priority::Priority) -> &'static str {
    const LEVELS: [&str; 5] = ["1", "2", "3", "4", "5"];
    LEVELS
        .get(usize::from(p.get().saturating_sub(1)))
        .copied()
        .unwrap_or("5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_typed() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(m.name.starts_with("aimesh_"), "{}", m.name);
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
        }
    }
}
