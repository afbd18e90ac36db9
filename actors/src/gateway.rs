//! The model gateway: the one way agents reach models.
//!
//! Supervised by the node supervisor, registered as `<node>/gateway`. It admits calls in
//! priority order (an [`AgingQueue`]) up to a limit of calls in flight, runs each call as an
//! owned task with its own timeout, and answers the caller's reply port directly, so a slow
//! model never holds the gateway's mailbox. With no provider configured every model resolves to
//! the built-in `offline` model.

mod message;
pub mod offline;
mod provider;

pub use message::{ChatMessage, ModelError, ModelRequest, ModelResponse, Role};
pub use offline::OfflineModel;
pub use provider::Provider;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::time::Instant;

use crate::owned::OwnedTask;
use crate::sched::AgingQueue;

/// Messages to the gateway.
#[derive(RactorMessage)]
pub enum GatewayMsg {
    /// Run a model call; the answer goes to the reply port.
    Complete(
        Box<ModelRequest>,
        RpcReplyPort<Result<ModelResponse, ModelError>>,
    ),
    /// Internal: call `id` ended, its slot is free.
    Done(u64),
    /// Current load.
    Stats(RpcReplyPort<GatewayStats>),
}

/// The gateway's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayStats {
    /// Calls waiting for admission.
    pub queued: usize,
    /// Calls running.
    pub in_flight: usize,
    /// Calls finished since start.
    pub completed: u64,
}

/// What the gateway starts with.
pub struct GatewayArgs {
    /// The providers, by name; `offline` is always there.
    pub providers: Vec<Arc<dyn Provider>>,
    /// Most calls running at once.
    pub max_in_flight: usize,
    /// Aging interval of the admission queue.
    pub aging: Duration,
}

/// The gateway's state.
pub struct GatewayState {
    providers: HashMap<String, Arc<dyn Provider>>,
    fallback: Arc<dyn Provider>,
    queue: AgingQueue<Pending>,
    running: HashMap<u64, OwnedTask>,
    next_id: u64,
    max_in_flight: usize,
    completed: u64,
}

struct Pending {
    request: Box<ModelRequest>,
    reply: RpcReplyPort<Result<ModelResponse, ModelError>>,
}

/// The gateway actor.
pub struct Gateway;

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<GatewayMsg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        let providers: HashMap<String, Arc<dyn Provider>> = args
            .providers
            .into_iter()
            .map(|p| (p.name().to_owned(), p))
            .collect();
        let fallback = providers
            .get(offline::NAME)
            .cloned()
            .unwrap_or_else(|| Arc::new(OfflineModel::default()));
        Ok(GatewayState {
            providers,
            fallback,
            queue: AgingQueue::new(args.aging),
            running: HashMap::new(),
            next_id: 0,
            max_in_flight: args.max_in_flight.max(1),
            completed: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Complete(request, reply) => {
                let priority = request.priority;
                state
                    .queue
                    .push(priority, Pending { request, reply }, Instant::now());
                state.admit(&myself);
            }
            GatewayMsg::Done(id) => {
                state.running.remove(&id);
                state.completed += 1;
                state.admit(&myself);
            }
            GatewayMsg::Stats(reply) => {
                let _ = reply.send(GatewayStats {
                    queued: state.queue.len(),
                    in_flight: state.running.len(),
                    completed: state.completed,
                });
            }
        }
        Ok(())
    }
}

impl GatewayState {
    /// The provider that serves `model`: its own if configured, else the offline model.
    fn route(&self, model: &str) -> Arc<dyn Provider> {
        self.providers
            .get(model)
            .cloned()
            .unwrap_or_else(|| self.fallback.clone())
    }

    /// Starts queued calls, highest priority first, while there is room.
    fn admit(&mut self, myself: &ActorRef<GatewayMsg>) {
        while self.running.len() < self.max_in_flight {
            let Some(next) = self.queue.pop(Instant::now()) else {
                return;
            };
            let Pending { request, reply } = next.item;
            if reply.is_closed() {
                continue; // the caller gave up while it waited
            }
            let provider = self.route(&request.model);
            let id = self.next_id;
            self.next_id += 1;
            let me = myself.clone();
            let task = OwnedTask::spawn(async move {
                let limit = request.timeout;
                let result = match tokio::time::timeout(limit, provider.complete(&request)).await {
                    Ok(r) => r,
                    Err(_) => Err(ModelError::Timeout {
                        provider: provider.name().to_owned(),
                        after: limit,
                    }),
                };
                let _ = reply.send(result);
                let _ = me.cast(GatewayMsg::Done(id));
            });
            self.running.insert(id, task);
        }
    }
}
