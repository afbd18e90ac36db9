//! The actor directory: counters every actor publishes (messages handled, restarts,
//! escalations) and a walk of a node's live supervision tree, for the admin API and metrics.
//!
//! Counters are keyed by an actor's id in the directory, which is its registered name (stable
//! across restarts) or, for agents, `<node>/net/<network>/agent/<agent>`. An actor counts its
//! own messages with one relaxed atomic add on a handle it keeps in its state; supervisors
//! count the restarts and escalations of their children. The tree itself is read from ractor
//! (each actor's children and status) when asked, so a listing never queues behind an actor's
//! work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use ractor::{ActorCell, ActorStatus};
use serde::Serialize;

/// One actor's counters (they outlive its restarts).
#[derive(Debug, Default)]
pub struct Counters {
    messages: AtomicU64,
    restarts: AtomicU64,
    escalations: AtomicU64,
}

impl Counters {
    /// Counts a message handled.
    #[inline]
    pub fn message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a restart by its supervisor.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an escalation (crashed past its restart intensity).
    pub fn escalated(&self) {
        self.escalations.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages, restarts, escalations.
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
            self.escalations.load(Ordering::Relaxed),
        )
    }
}

static COUNTERS: LazyLock<DashMap<String, Arc<Counters>>> = LazyLock::new(DashMap::new);

/// The counters of actor `id` (made on first use).
pub fn counters(id: &str) -> Arc<Counters> {
    if let Some(c) = COUNTERS.get(id) {
        return c.clone();
    }
    COUNTERS.entry(id.to_owned()).or_default().clone()
}

/// The counters of actor `id`, if it ever had any.
pub fn get(id: &str) -> Option<Arc<Counters>> {
    COUNTERS.get(id).map(|c| c.clone())
}

/// The directory id of agent `agent` of `network` on node `node`.
pub fn agent_id(node: &str, network: crate::ids::NetworkId, agent: crate::ids::AgentId) -> String {
    format!("{node}/net/{network}/agent/{agent}")
}

/// Every entry whose id starts with `prefix`.
pub fn entries(prefix: &str) -> Vec<(String, Arc<Counters>)> {
    COUNTERS
        .iter()
        .filter(|e| e.key().starts_with(prefix))
        .map(|e| (e.key().clone(), e.value().clone()))
        .collect()
}

/// Calls `f` with every entry whose id starts with `prefix`, without copying them (a scrape
/// visits every agent's entry).
pub fn for_each(prefix: &str, mut f: impl FnMut(&str, &Counters)) {
    for e in COUNTERS.iter() {
        if e.key().starts_with(prefix) {
            f(e.key(), e.value());
        }
    }
}

/// Forgets the counters of ids starting with `prefix` (a deleted network's actors).
pub fn forget(prefix: &str) {
    COUNTERS.retain(|k, _| !k.starts_with(prefix));
}

/// What kind of actor an entry is: a small closed set (metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// The node supervisor.
    Node,
    /// The model gateway.
    Gateway,
    /// One provider's upstream under the gateway.
    Upstream,
    /// A memory shard.
    MemoryShard,
    /// A network supervisor.
    Network,
    /// A network's coordinator.
    Coordinator,
    /// A specialist agent.
    Agent,
    /// The guest host (subtasks placed here by other nodes).
    GuestHost,
    /// An agent running another node's subtasks.
    GuestAgent,
    /// The cluster membership actor.
    Membership,
    /// The cluster endpoint.
    Endpoint,
    /// ractor_cluster's own actors (server, sessions, remote stand-ins).
    ClusterTransport,
    /// Anything else.
    Other,
}

impl ActorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ActorKind; 13] = [
        ActorKind::Node,
        ActorKind::Gateway,
        ActorKind::Upstream,
        ActorKind::MemoryShard,
        ActorKind::Network,
        ActorKind::Coordinator,
        ActorKind::Agent,
        ActorKind::GuestHost,
        ActorKind::GuestAgent,
        ActorKind::Membership,
        ActorKind::Endpoint,
        ActorKind::ClusterTransport,
        ActorKind::Other,
    ];

    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Node => "node",
            ActorKind::Gateway => "gateway",
            ActorKind::Upstream => "upstream",
            ActorKind::MemoryShard => "memory_shard",
            ActorKind::Network => "network",
            ActorKind::Coordinator => "coordinator",
            ActorKind::Agent => "agent",
            ActorKind::GuestHost => "guest_host",
            ActorKind::GuestAgent => "guest_agent",
            ActorKind::Membership => "membership",
            ActorKind::Endpoint => "endpoint",
            ActorKind::ClusterTransport => "cluster_transport",
            ActorKind::Other => "other",
        }
    }

    /// The kind of a registered name of node `node`.
    pub fn of_name(node: &str, name: &str) -> ActorKind {
        let Some(rest) = name.strip_prefix(node).and_then(|r| r.strip_prefix('/')) else {
            return ActorKind::Other;
        };
        match rest {
            "node" => ActorKind::Node,
            "gateway" => ActorKind::Gateway,
            "cluster" => ActorKind::Membership,
            "endpoint" => ActorKind::Endpoint,
            "guests" => ActorKind::GuestHost,
            r if r.starts_with("memory/") => ActorKind::MemoryShard,
            r if r.starts_with("gateway/") => ActorKind::Upstream,
            r if r.starts_with("net/") && r.ends_with("/coordinator") => ActorKind::Coordinator,
            r if r.starts_with("net/") && r.contains("/agent/") => ActorKind::Agent,
            r if r.starts_with("net/") => ActorKind::Network,
            _ => ActorKind::Other,
        }
    }
}

/// One actor as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ActorInfo {
    /// Its id: registered name, or `<node>/net/<network>/agent/<agent>` for agents, or
    /// `<parent>/<pid>` for unnamed actors.
    pub id: String,
    /// Its kind.
    pub kind: ActorKind,
    /// Its supervisor's id (none for the node supervisor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its network, for network actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// For agents: the agent's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `starting`, `running`, `idle`, `busy`, `restarting`, `stopping`, `stopped`, `failed`.
    pub status: String,
    /// Work waiting in its own priority queue (agents, coordinators, the gateway's admission,
    /// shards' embedding queues); ractor's channel itself has no length.
    pub mailbox_depth: u64,
    /// Times its supervisor restarted it.
    pub restarts: u64,
    /// Messages it handled (this node's run).
    pub messages: u64,
    /// Times it crashed past its restart intensity.
    pub escalations: u64,
    /// Its ractor process id (changes with each restart).
    pub pid: u64,
}

/// A ractor status as a word.
pub fn status_word(s: ActorStatus) -> &'static str {
    match s {
        ActorStatus::Unstarted | ActorStatus::Starting => "starting",
        ActorStatus::Running | ActorStatus::Upgrading | ActorStatus::Draining => "running",
        ActorStatus::Stopping => "stopping",
        ActorStatus::Stopped => "stopped",
    }
}

/// Extra facts about actors the walk cannot read from ractor: keyed by ractor id.
#[derive(Default)]
pub struct Known {
    /// Per actor id: (directory id, kind, network, agent name, status override, mailbox depth,
    /// restarts, messages).
    pub by_pid: std::collections::HashMap<ractor::ActorId, KnownActor>,
    /// Mailbox depth by registered name (services with their own queue).
    pub depth_by_name: std::collections::HashMap<String, u64>,
}

/// What is known of an unnamed actor (agents).
#[derive(Clone, Debug)]
pub struct KnownActor {
    /// Its directory id.
    pub id: String,
    /// Its kind.
    pub kind: ActorKind,
    /// Its network.
    pub network: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// Its status.
    pub status: String,
    /// Its queue.
    pub mailbox_depth: u64,
    /// Its restarts.
    pub restarts: u64,
    /// Its messages.
    pub messages: u64,
}

/// Walks the live tree under `root` (depth first, parents before children).
pub fn walk(node: &str, root: &ActorCell, known: &Known) -> Vec<ActorInfo> {
    let mut out = Vec::new();
    let mut stack: Vec<(ActorCell, Option<String>, Option<ActorKind>)> =
        vec![(root.clone(), None, None)];
    while let Some((cell, parent, parent_kind)) = stack.pop() {
        let info = describe(node, &cell, parent, parent_kind, known);
        let mut children = cell.get_children();
        // Stable order: named first by name, then by pid.
        children.sort_by_key(|c| (c.get_name().is_none(), c.get_name(), c.get_id().pid()));
        for child in children.into_iter().rev() {
            stack.push((child, Some(info.id.clone()), Some(info.kind)));
        }
        out.push(info);
    }
    out
}

fn describe(
    node: &str,
    cell: &ActorCell,
    parent: Option<String>,
    parent_kind: Option<ActorKind>,
    known: &Known,
) -> ActorInfo {
    let pid = cell.get_id();
    let status = status_word(cell.get_status()).to_owned();
    if let Some(k) = known.by_pid.get(&pid) {
        let escalations = get(&k.id).map_or(0, |c| c.read().2);
        return ActorInfo {
            id: k.id.clone(),
            kind: k.kind,
            parent,
            network: k.network.clone(),
            name: k.name.clone(),
            status: if status == "running" {
                k.status.clone()
            } else {
                status
            },
            mailbox_depth: k.mailbox_depth,
            restarts: k.restarts,
            messages: k.messages,
            escalations,
            pid: pid.pid(),
        };
    }
    let (id, kind) = match cell.get_name() {
        Some(name) => {
            let kind = match ActorKind::of_name(node, &name) {
                // Another node's actor seen here: a ractor_cluster stand-in.
                ActorKind::Other
                    if matches!(
                        parent_kind,
                        Some(ActorKind::ClusterTransport | ActorKind::Membership)
                    ) =>
                {
                    ActorKind::ClusterTransport
                }
                k => k,
            };
            (name.to_string(), kind)
        }
        None => {
            let kind = match parent_kind {
                Some(ActorKind::GuestHost) => ActorKind::GuestAgent,
                Some(ActorKind::Membership | ActorKind::ClusterTransport) => {
                    ActorKind::ClusterTransport
                }
                _ => ActorKind::Other,
            };
            let base = parent.clone().unwrap_or_else(|| node.to_owned());
            (format!("{base}/{}", pid.pid()), kind)
        }
    };
    let network = match kind {
        ActorKind::Network | ActorKind::Coordinator => id
            .strip_prefix(&format!("{node}/net/"))
            .and_then(|r| r.split('/').next())
            .map(str::to_owned),
        _ => None,
    };
    let (messages, restarts, escalations) = get(&id).map_or((0, 0, 0), |c| c.read());
    ActorInfo {
        mailbox_depth: known.depth_by_name.get(&id).copied().unwrap_or(0),
        id,
        kind,
        parent,
        network,
        name: None,
        status,
        restarts,
        messages,
        escalations,
        pid: pid.pid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_kinds() {
        let k = |n: &str| ActorKind::of_name("n1", n);
        assert_eq!(k("n1/node"), ActorKind::Node);
        assert_eq!(k("n1/gateway"), ActorKind::Gateway);
        assert_eq!(k("n1/gateway/openai"), ActorKind::Upstream);
        assert_eq!(k("n1/memory/3"), ActorKind::MemoryShard);
        assert_eq!(k("n1/net/abc"), ActorKind::Network);
        assert_eq!(k("n1/net/abc/coordinator"), ActorKind::Coordinator);
        assert_eq!(k("n1/net/abc/agent/x"), ActorKind::Agent);
        assert_eq!(k("n1/guests"), ActorKind::GuestHost);
        assert_eq!(k("n1/cluster"), ActorKind::Membership);
        assert_eq!(k("n2/node"), ActorKind::Other, "another node's name");
    }

    #[test]
    fn counters_outlive_lookups_and_are_forgotten_by_prefix() {
        let c = counters("t9/net/x/coordinator");
        c.message();
        c.message();
        c.restarted();
        assert_eq!(counters("t9/net/x/coordinator").read(), (2, 1, 0));
        forget("t9/net/x");
        assert!(get("t9/net/x/coordinator").is_none());
    }
}
