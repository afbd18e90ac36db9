//! Registered actor names. ractor's registry is global to the process, so every name carries
//! the node's name; restarted actors re-register under the same name, and callers look names up
//! at the moment they send, so they always reach the live incarnation.

use std::sync::Arc;

use ractor::{ActorRef, Message};

use crate::ids::NetworkId;

/// The names of one node's actors.
#[derive(Clone, Debug)]
pub struct Names {
    node: Arc<str>,
}

impl Names {
    /// Names for the node called `node`.
    pub fn new(node: &str) -> Self {
        Self { node: node.into() }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node supervisor.
    pub fn node_supervisor(&self) -> String {
        format!("{}/node", self.node)
    }

    /// The model gateway.
    pub fn gateway(&self) -> String {
        format!("{}/gateway", self.node)
    }

    /// Memory shard `index`.
    pub fn shard(&self, index: u32) -> String {
        format!("{}/memory/{index}", self.node)
    }

    /// The cluster membership actor.
    pub fn cluster(&self) -> String {
        format!("{}/cluster", self.node)
    }

    /// The cluster endpoint (the node's one remotable actor).
    pub fn endpoint(&self) -> String {
        format!("{}/endpoint", self.node)
    }

    /// The guest host (agents running subtasks of networks owned by other nodes).
    pub fn guests(&self) -> String {
        format!("{}/guests", self.node)
    }

    /// A network's supervisor.
    pub fn network(&self, id: NetworkId) -> String {
        format!("{}/net/{id}", self.node)
    }

    /// A network's coordinator.
    pub fn coordinator(&self, id: NetworkId) -> String {
        format!("{}/net/{id}/coordinator", self.node)
    }
}

/// The live actor registered as `name`, if any.
pub fn lookup<M: Message>(name: &str) -> Option<ActorRef<M>> {
    ractor::registry::where_is(name).map(ActorRef::from)
}
