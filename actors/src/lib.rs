//! aimesh's actors: every agent, coordinator, memory shard and the model gateway is a supervised
//! ractor actor. No HTTP, no CLI here: the `aimesh` crate reaches these through [`Node`].
//!
//! # The supervision tree
//! ```text
//! NodeSupervisor  <node>/node                 one per node process
//! ├── Gateway     <node>/gateway              priority admission, owned model calls
//! ├── MemoryShard <node>/memory/<i>  × N      items placed by jump-hash(network, id)
//! └── NetworkSupervisor <node>/net/<id>       one per network
//!     ├── Coordinator <node>/net/<id>/coordinator
//!     └── Agent × k                           one actor per agent, priority mailbox
//! ```
//! Restart policies (one-for-one, intensity counted per child; see [`policy`]):
//! - agents and coordinators: 3 restarts in 5 s, then escalate to the network supervisor, which
//!   fails the agent's tasks (naming it) and fails itself;
//! - networks: 3 restarts in 60 s, then the network is marked failed and its tasks fail;
//! - gateway and shards: 5 restarts in 10 s, then the node stops (its process exits non-zero).
//!
//! A crashed agent's open subtasks are redelivered to its new incarnation; a restarted
//! coordinator resumes its unfinished tasks from the store.
//!
//! # Layout
//! - [`node`]: [`Node`], the handle the API uses; [`NodeOptions`].
//! - [`node_supervisor`], [`network_supervisor`]: the supervisors and their restart policies.
//! - [`coordinator`]: plans, delegates, re-delegates, synthesizes; owns a network's tasks.
//! - [`agent`], [`behavior`]: one actor per agent; what an agent type does with a subtask.
//! - [`gateway`]: model calls, providers, the built-in `offline` model.
//! - [`memory_shard`], [`memory`], [`placement`]: shared memory and where items live.
//! - [`search`]: embedders and vector indexes (pure); [`embedding`]: a node's embedder, in
//!   process or a provider's embedding API (called from owned tasks, never in a handler).
//! - [`store`]: the storage seam ([`store::Store`]) and its in-memory implementation.
//! - [`sched`]: the priority mailbox with aging; [`policy`]: restart intensity.
//! - [`planner`], [`prompt`]: capability matching; the prompts agents send.
//! - [`types`], [`ids`], [`priority`]: records and identifiers.
//! - [`admission`], [`watch`], [`stats`], [`owned`], [`rpc`], [`names`], [`settings`]: plumbing.

pub mod admission;
pub mod agent;
pub mod behavior;
pub mod cluster;
pub mod coordinator;
pub mod directory;
pub mod embedding;
pub mod gateway;
pub mod guest;
pub mod ids;
pub mod janitor;
pub mod memory;
pub mod memory_shard;
pub mod metrics_names;
pub mod names;
pub mod network_supervisor;
pub mod node;
pub mod node_supervisor;
pub mod owned;
pub mod placement;
pub mod planner;
pub mod policy;
pub mod priority;
pub mod prompt;
pub mod rpc;
pub mod sched;
pub mod search;
pub mod settings;
pub mod stats;
pub mod store;
pub mod trace;
pub mod types;
pub mod watch;

pub use node::{Node, NodeError, NodeOptions};
