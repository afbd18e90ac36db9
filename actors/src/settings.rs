//! Tunables shared by a node's actors.

use std::time::Duration;

use crate::policy::RestartPolicy;

/// Scheduling, time limits and restart policies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Priority aging: queued work gains one level per interval waited.
    pub aging: Duration,
    /// Most tasks one coordinator works on at once; the rest wait by priority.
    pub max_active_tasks: usize,
    /// Time limit of one model call.
    pub model_timeout: Duration,
    /// Time limit of a call between actors.
    pub call_timeout: Duration,
    /// Restart policy for agents and coordinators (per child).
    pub agent_policy: RestartPolicy,
    /// Restart policy for whole networks, after an escalation.
    pub network_policy: RestartPolicy,
    /// Restart policy for the gateway and memory shards.
    pub service_policy: RestartPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            aging: Duration::from_secs(5),
            max_active_tasks: 64,
            model_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(5),
            agent_policy: RestartPolicy::AGENT,
            network_policy: RestartPolicy::NETWORK,
            service_policy: RestartPolicy::SERVICE,
        }
    }
}
