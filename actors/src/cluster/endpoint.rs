//! A node's endpoint: its one remotable actor. Peers reach it through the process group
//! `aimesh.endpoint.<node>`; it hands what arrives to the local actors and never waits on them
//! (forwarded API requests are served by owned tasks, whose answers go straight back).

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;

use super::Cluster;
use super::member::MemberMsg;
use super::wire::{self, Call, Cast, Reply, Report};
use crate::coordinator::CoordinatorMsg;
use crate::guest::GuestMsg;
use crate::memory::MemoryClient;
use crate::names::{Names, lookup};

/// What crosses the wire to a node. Payloads are [`wire`] envelopes.
#[derive(RactorClusterMessage)]
pub enum EndpointMsg {
    /// A peer's heartbeat.
    Heartbeat(Vec<u8>),
    /// A one-way [`Cast`].
    Wire(Vec<u8>),
    /// A [`Call`]; the answer is a [`Reply`].
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The process group of node `name`'s endpoint.
pub fn group(name: &str) -> String {
    format!("aimesh.endpoint.{name}")
}

/// The endpoint of peer `name` (a stand-in ractor_cluster keeps while the session is up).
pub fn remote(name: &str) -> Option<ActorRef<EndpointMsg>> {
    ractor::pg::get_members(&group(name))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}

/// What the endpoint starts with.
pub struct EndpointArgs {
    /// The node's actor names.
    pub names: Names,
    /// The membership actor (heartbeats go there).
    pub member: ActorRef<MemberMsg>,
    /// Shared memory (guest agents' writes land here).
    pub memory: MemoryClient,
    /// The cluster handle (forwarded requests).
    pub cluster: Cluster,
}

/// The endpoint actor.
pub struct Endpoint;

impl Actor for Endpoint {
    type Msg = EndpointMsg;
    type State = EndpointArgs;
    type Arguments = EndpointArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EndpointMsg>,
        args: EndpointArgs,
    ) -> Result<EndpointArgs, ActorProcessingErr> {
        ractor::pg::join(group(args.names.node()), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<EndpointMsg>,
        msg: EndpointMsg,
        state: &mut EndpointArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EndpointMsg::Heartbeat(bytes) => match wire::decode(&bytes) {
                Ok(hb) => {
                    let _ = state.member.cast(MemberMsg::Heard(Box::new(hb)));
                }
                Err(e) => tracing::warn!(error = %e, "dropped a heartbeat"),
            },
            EndpointMsg::Wire(bytes) => match wire::decode::<Cast>(&bytes) {
                Ok(cast) => state.dispatch(cast),
                Err(e) => tracing::warn!(error = %e, "dropped a message from a peer"),
            },
            EndpointMsg::Call(bytes, reply) => state.serve(&bytes, reply),
        }
        Ok(())
    }
}

impl EndpointArgs {
    fn dispatch(&self, cast: Cast) {
        match cast {
            Cast::Assign(assign) => match lookup::<GuestMsg>(&self.names.guests()) {
                Some(g) => {
                    let _ = g.cast(GuestMsg::Assign(assign));
                }
                None => tracing::warn!("guest host restarting; the owner will redeliver"),
            },
            Cast::Cancel { network, task } => {
                if let Some(g) = lookup::<GuestMsg>(&self.names.guests()) {
                    let _ = g.cast(GuestMsg::Cancel { network, task });
                }
            }
            Cast::Report(report) => self.report(*report),
        }
    }

    fn report(&self, report: Report) {
        let (network, msg) = match report {
            Report::Started {
                network,
                subtask,
                agent,
                attempt,
                node,
            } => (
                network,
                CoordinatorMsg::Started {
                    subtask,
                    agent,
                    attempt,
                    node,
                },
            ),
            Report::Finished {
                network,
                subtask,
                agent,
                outcome,
            } => (
                network,
                CoordinatorMsg::Finished {
                    subtask,
                    agent,
                    outcome,
                },
            ),
            Report::Remember(item) => {
                self.memory.put_detached(*item);
                return;
            }
            Report::Holding {
                network,
                node,
                subtasks,
            } => (network, CoordinatorMsg::Held { node, subtasks }),
        };
        match lookup::<CoordinatorMsg>(&self.names.coordinator(network)) {
            Some(c) => {
                let _ = c.cast(msg);
            }
            None => tracing::debug!(%network, "report for a network not running here"),
        }
    }

    fn serve(&self, bytes: &[u8], reply: RpcReplyPort<Vec<u8>>) {
        match wire::decode::<Call>(bytes) {
            Ok(Call::Ping(data)) => {
                let _ = reply.send(wire::encode(&Reply::Pong(data)));
            }
            Ok(Call::Http(request)) => match self.cluster.http_service() {
                Some(service) => {
                    // Served by a task of its own: the endpoint's mailbox never waits.
                    tokio::spawn(async move {
                        let response = service(*request).await;
                        let _ = reply.send(wire::encode(&Reply::Http(Box::new(response))));
                    });
                }
                None => {
                    let _ = reply.send(wire::encode(&Reply::Error(
                        "this node's API is not serving yet".into(),
                    )));
                }
            },
            Err(e) => {
                let _ = reply.send(wire::encode(&Reply::Error(e)));
            }
        }
    }
}
