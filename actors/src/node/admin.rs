//! What operators do to a running node: list its supervision tree, kill, restart or stop an
//! actor, drain the node out of its cluster.

use std::time::Duration;

use ractor::ActorCell;

use super::{Node, NodeError};
use crate::directory::{ActorInfo, ActorKind, Known, KnownActor, agent_id, walk};
use crate::ids::{AgentId, NetworkId};
use crate::network_supervisor::NetworkMsg;
use crate::rpc::ask;

/// What an operator does to an actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorAction {
    /// Crash it now (its running handler is cut): its supervisor restarts it and its work is
    /// redelivered, as after any crash. Counts toward its restart intensity.
    Kill,
    /// Stop it once its current message is handled: its supervisor starts it again.
    Restart,
    /// Take it out of service for good: an agent leaves its network (its subtasks are
    /// re-delegated). Other actors are permanent: restart them, or delete their network.
    Stop,
}

impl ActorAction {
    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorAction::Kill => "kill",
            ActorAction::Restart => "restart",
            ActorAction::Stop => "stop",
        }
    }
}

/// How a drain went (or is going).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DrainStatus {
    /// The node.
    pub node: String,
    /// Draining: no new subtasks are placed here.
    pub draining: bool,
    /// Subtasks still queued or running here.
    pub in_flight: u32,
}

impl Node {
    /// This node's supervision tree, parents before children.
    pub async fn actors(&self) -> Vec<ActorInfo> {
        let mut known = Known::default();
        let node = self.name().to_owned();
        let networks: Vec<NetworkId> = self.inner.statuses.iter().map(|e| *e.key()).collect();
        for network in networks {
            let Some(n) = crate::names::lookup::<NetworkMsg>(&self.inner.names.network(network))
            else {
                continue;
            };
            let Ok(agents) = ask(&n, self.timeout(), NetworkMsg::Agents).await else {
                continue;
            };
            for a in agents {
                let Some(pid) = a.actor else { continue };
                let coordinator = a.spec.kind == "coordinator";
                let id = if coordinator {
                    self.inner.names.coordinator(network)
                } else {
                    agent_id(&node, network, a.spec.agent_id)
                };
                let status = serde_json::to_value(a.stats.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "running".into());
                known.by_pid.insert(
                    pid,
                    KnownActor {
                        id,
                        kind: if coordinator {
                            ActorKind::Coordinator
                        } else {
                            ActorKind::Agent
                        },
                        network: Some(network.to_string()),
                        name: Some(a.spec.name.clone()),
                        status,
                        mailbox_depth: a.stats.mailbox_depth,
                        restarts: a.stats.restarts,
                        messages: a.stats.messages,
                    },
                );
            }
        }
        if let Ok(g) = self.gateway_status().await {
            known
                .depth_by_name
                .insert(self.inner.names.gateway(), g.waiting as u64);
        }
        walk(&node, &self.inner.supervisor.get_cell(), &known)
    }

    /// One actor of this node by id.
    pub async fn actor(&self, id: &str) -> Result<ActorInfo, NodeError> {
        self.actors()
            .await
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| NodeError::NotFound {
                kind: "actor",
                id: id.to_owned(),
            })
    }

    /// Does `action` to actor `id`; answers the actor as it was just before.
    pub async fn act(&self, id: &str, action: ActorAction) -> Result<ActorInfo, NodeError> {
        let info = self.actor(id).await?;
        let refuse = |message: String| NodeError::Conflict {
            code: "not_allowed",
            message,
        };
        match info.kind {
            ActorKind::Node => {
                return Err(refuse(format!(
                    "{id} is the node itself: stop the node's process (or drain it) instead"
                )));
            }
            ActorKind::ClusterTransport | ActorKind::Other => {
                return Err(refuse(format!(
                    "{id} is not one of aimesh's supervised actors ({})",
                    info.kind.as_str()
                )));
            }
            _ => {}
        }
        if action == ActorAction::Stop {
            return match (info.kind, &info.network) {
                (ActorKind::Agent, Some(network)) => {
                    let network: NetworkId = network.parse().map_err(|_| refuse(id.into()))?;
                    let agent = id
                        .rsplit('/')
                        .next()
                        .and_then(|a| a.parse::<AgentId>().ok())
                        .ok_or_else(|| refuse(format!("{id} names no agent")))?;
                    self.remove_agent(network, agent).await?;
                    Ok(info)
                }
                _ => Err(refuse(format!(
                    "{id} ({}) is a permanent actor: restart it, or delete its network",
                    info.kind.as_str()
                ))),
            };
        }
        let cell = self.cell_of(&info)?;
        tracing::warn!(actor = %id, kind = info.kind.as_str(), action = action.as_str(), "operator action on an actor");
        match action {
            ActorAction::Kill => cell.kill(),
            ActorAction::Restart => cell.stop(Some("restart requested by an operator".into())),
            ActorAction::Stop => {}
        }
        Ok(info)
    }

    fn cell_of(&self, info: &ActorInfo) -> Result<ActorCell, NodeError> {
        let gone = || NodeError::Conflict {
            code: "not_running",
            message: format!("{} is not running (it may be restarting)", info.id),
        };
        if let Some(cell) = ractor::registry::where_is(info.id.clone()) {
            return Ok(cell);
        }
        // Agents and unnamed actors: by the pid shown in the listing.
        ractor::registry::where_is_pid(ractor::ActorId::Local(info.pid)).ok_or_else(gone)
    }

    /// Stops placing new subtasks here and, once the subtasks here are done, resolves the
    /// returned future (the node's process then leaves the cluster). With the embedded store a
    /// node that owns networks cannot leave without making them unavailable: that needs
    /// `force`.
    pub async fn drain(&self, force: bool) -> Result<DrainStatus, NodeError> {
        let cluster = self.cluster();
        if !cluster.enabled() {
            return Err(NodeError::Conflict {
                code: "not_clustered",
                message: "this node is not in a cluster: there is nowhere for its work to go"
                    .into(),
            });
        }
        if !cluster.shared_store() && !force {
            let owned: Vec<String> = self
                .inner
                .statuses
                .iter()
                .map(|e| e.key().to_string())
                .collect();
            if !owned.is_empty() {
                return Err(NodeError::Conflict {
                    code: "owns_networks",
                    message: format!(
                        "with the embedded store this node's {} network(s) live here and would be unavailable until it returns ({}); drain with force=true to leave anyway",
                        owned.len(),
                        owned.join(", ")
                    ),
                });
            }
        }
        cluster.set_draining(true);
        tracing::warn!(node = self.name(), "draining: no new work is placed here");
        Ok(self.drain_status())
    }

    /// Each memory shard's counts.
    pub async fn memory_stats(&self) -> Result<Vec<crate::memory_shard::ShardStats>, NodeError> {
        Ok(self.inner.memory.stats().await?)
    }

    /// Time since the node started.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// The networks running on this node.
    pub fn local_networks(&self) -> usize {
        self.inner.statuses.len()
    }

    /// Sets the actor metrics (`aimesh_actors{kind,status}`, `aimesh_actor_mailbox_depth`,
    /// `aimesh_actor_messages_total`, `aimesh_actor_restarts_total`,
    /// `aimesh_actor_escalations_total`, by kind) from the live counters: one small message
    /// per network, no tree walk, so a scrape stays cheap with many agents.
    pub async fn publish_actor_metrics(&self) {
        use std::collections::BTreeMap;
        #[derive(Default)]
        struct ByKind {
            depth: u64,
            messages: u64,
            restarts: u64,
            escalations: u64,
        }
        let node = self.name().to_owned();
        let mut count: BTreeMap<(ActorKind, &'static str), u64> = BTreeMap::new();
        let mut kinds: BTreeMap<ActorKind, ByKind> = BTreeMap::new();
        let networks: Vec<NetworkId> = self.inner.statuses.iter().map(|e| *e.key()).collect();
        for network in networks {
            let Some(n) = crate::names::lookup::<NetworkMsg>(&self.inner.names.network(network))
            else {
                continue;
            };
            let Ok(totals) = ask(&n, self.timeout(), NetworkMsg::Counts).await else {
                continue;
            };
            for (kind, t) in [ActorKind::Coordinator, ActorKind::Agent]
                .into_iter()
                .zip(totals)
            {
                for (status, n) in crate::stats::AgentStatus::WORDS.iter().zip(t.by_status) {
                    if n > 0 {
                        *count.entry((kind, *status)).or_default() += n;
                    }
                }
                let k = kinds.entry(kind).or_default();
                k.depth += t.mailbox_depth;
                k.messages += t.messages;
                k.restarts += t.restarts;
            }
        }
        let prefix = format!("{node}/");
        crate::directory::for_each(&prefix, |id, c| {
            let kind = ActorKind::of_name(&node, id);
            let (messages, restarts, escalations) = c.read();
            let k = kinds.entry(kind).or_default();
            k.escalations += escalations;
            if matches!(kind, ActorKind::Agent | ActorKind::Coordinator) {
                return; // counted from their own stats above
            }
            k.messages += messages;
            k.restarts += restarts;
            if ractor::registry::where_is(id).is_some() {
                *count.entry((kind, "running")).or_default() += 1;
            }
        });
        if let Ok(g) = self.gateway_status().await {
            kinds.entry(ActorKind::Gateway).or_default().depth += g.waiting as u64;
        }
        if let Ok(shards) = self.memory_stats().await {
            let items: usize = shards.iter().map(|s| s.items).sum();
            let bytes: usize = shards.iter().map(|s| s.bytes).sum();
            metrics::gauge!(crate::metrics_names::MEMORY_ITEMS).set(items as f64);
            metrics::gauge!(crate::metrics_names::MEMORY_BYTES).set(bytes as f64);
        }
        let (mut waiting, mut active) = (0usize, 0usize);
        for network in self
            .inner
            .statuses
            .iter()
            .map(|e| *e.key())
            .collect::<Vec<_>>()
        {
            let name = self.inner.names.coordinator(network);
            if let Some(c) = crate::names::lookup::<crate::coordinator::CoordinatorMsg>(&name)
                && let Ok(load) =
                    ask(&c, self.timeout(), crate::coordinator::CoordinatorMsg::Load).await
            {
                waiting += load.waiting;
                active += load.active;
            }
        }
        metrics::gauge!(crate::metrics_names::TASKS_IN_PROGRESS, "state" => "waiting")
            .set(waiting as f64);
        metrics::gauge!(crate::metrics_names::TASKS_IN_PROGRESS, "state" => "active")
            .set(active as f64);
        for kind in ActorKind::ALL {
            let statuses: &[&'static str] = match kind {
                ActorKind::Agent | ActorKind::Coordinator => &crate::stats::AgentStatus::WORDS,
                _ => &["running"],
            };
            for status in statuses {
                let n = count.get(&(kind, *status)).copied().unwrap_or(0);
                metrics::gauge!("aimesh_actors", "kind" => kind.as_str(), "status" => *status)
                    .set(n as f64);
            }
            let k = kinds.remove(&kind).unwrap_or_default();
            let label = kind.as_str();
            metrics::gauge!("aimesh_actor_mailbox_depth", "kind" => label).set(k.depth as f64);
            metrics::counter!("aimesh_actor_messages_total", "kind" => label).absolute(k.messages);
            metrics::counter!("aimesh_actor_restarts_total", "kind" => label).absolute(k.restarts);
            metrics::counter!("aimesh_actor_escalations_total", "kind" => label)
                .absolute(k.escalations);
        }
    }

    /// Where a drain is.
    pub fn drain_status(&self) -> DrainStatus {
        DrainStatus {
            node: self.name().to_owned(),
            draining: self.cluster().draining(),
            in_flight: self.cluster().load(),
        }
    }

    /// Resolves once the node is draining and holds no subtasks (checked every 100 ms).
    pub async fn drained(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let s = self.drain_status();
            if s.draining && s.in_flight == 0 {
                return;
            }
        }
    }
}
