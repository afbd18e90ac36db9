//! The membership actor: the node's ractor_cluster `NodeServer`, its dialer, its heartbeats and
//! its view of the cluster.
//!
//! Supervised by the node supervisor (as a node service), registered as `<node>/cluster`. It
//! owns (links) the `NodeServer` and the [`Endpoint`]; if either dies, so does this actor, and
//! the node supervisor starts all three again.
//!
//! Each pair of nodes has one dialer, the one whose name sorts first: it dials at start and
//! again after every disconnect, backing off from 50 ms to 1 s. A session that closes before it
//! authenticated counts as an authentication failure (ractor_cluster reports a wrong cookie no
//! other way) and is logged as one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use ractor_cluster_derive::RactorMessage;
use tokio::time::Instant;

use super::endpoint::{Endpoint, EndpointArgs, EndpointMsg};
use super::wire::{self, Echo, Heartbeat};
use super::{Cluster, ClusterConfig, MemberStatus, MemberView, View};
use crate::memory::MemoryClient;
use crate::names::Names;
use crate::node_supervisor::NodeMsg;
use crate::owned::OwnedTask;

/// Messages to the membership actor.
#[derive(RactorMessage)]
pub enum MemberMsg {
    /// Time to heartbeat, dial and re-evaluate.
    Tick,
    /// A peer's heartbeat arrived.
    Heard(Box<Heartbeat>),
    /// A session opened (not yet authenticated).
    Opened {
        /// ractor_cluster's session id.
        node_id: u64,
        /// The peer's address.
        addr: String,
    },
    /// A session authenticated and exchanged its state.
    Ready {
        /// ractor_cluster's session id.
        node_id: u64,
        /// The peer's node name.
        name: String,
    },
    /// A session closed.
    Closed {
        /// ractor_cluster's session id.
        node_id: u64,
        /// The peer's name, if it got that far.
        name: Option<String>,
        /// The peer's address.
        addr: String,
    },
    /// A dial attempt ended (TCP only: authentication follows asynchronously).
    Dialed {
        /// The peer.
        name: String,
        /// Why it failed, if it did.
        error: Option<String>,
    },
}

/// What the membership actor starts with.
pub struct MemberArgs {
    /// The cluster handle it publishes to.
    pub cluster: Cluster,
    /// The node's actor names.
    pub names: Names,
    /// Where membership changes are reported.
    pub supervisor: ActorRef<NodeMsg>,
    /// Shared memory (for the endpoint).
    pub memory: MemoryClient,
    /// When this process started (unix ns).
    pub incarnation: u64,
}

#[derive(Default)]
struct Peer {
    addr: String,
    node_id: Option<u64>,
    authenticated: bool,
    last_heard: Option<Instant>,
    /// Their latest heartbeat.
    heartbeat: Option<Heartbeat>,
    /// When we got their latest heartbeat (to echo it).
    heard_seq: Option<(u64, Instant)>,
    dialing: bool,
    next_dial: Option<Instant>,
    backoff: Duration,
    auth_failures: u32,
    rtt: Option<Duration>,
    dead: bool,
}

/// The membership actor's state.
pub struct MemberState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    args: MemberArgs,
    config: ClusterConfig,
    server: ActorRef<NodeServerMessage>,
    peers: HashMap<String, Peer>,
    /// Open sessions by ractor_cluster id: (peer address, peer name once known).
    sessions: HashMap<u64, (String, Option<String>)>,
    seq: u64,
    sent: VecDeque<(u64, Instant)>,
    dials: Vec<OwnedTask>,
    _ticker: OwnedTask,
    published: Arc<View>,
}

struct Events(ActorRef<MemberMsg>);

fn peer_name(ses: &ractor_cluster::node::NodeServerSessionInformation) -> Option<String> {
    ses.peer_name
        .as_ref()
        .map(|n| n.name.split('@').next().unwrap_or_default().to_owned())
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.cast(MemberMsg::Opened {
            node_id: ses.node_id,
            addr: ses.peer_addr.clone(),
        });
    }

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.cast(MemberMsg::Closed {
            node_id: ses.node_id,
            name: peer_name(&ses),
            addr: ses.peer_addr.clone(),
        });
    }

    fn node_session_authenticated(&self, _ses: ractor_cluster::node::NodeServerSessionInformation) {
    }

    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        if let Some(name) = peer_name(&ses) {
            let _ = self.0.cast(MemberMsg::Ready {
                node_id: ses.node_id,
                name,
            });
        }
    }
}

/// The membership actor.
pub struct ClusterMember;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Actor for ClusterMember {
    type Msg = MemberMsg;
    type State = MemberState;
    type Arguments = MemberArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MemberMsg>,
        args: MemberArgs,
    ) -> Result<MemberState, ActorProcessingErr> {
        let config = args
            .cluster
            .config()
            .cloned()
            .ok_or("the membership actor needs a cluster configuration")?;
        let encryption = config
            .tls
            .as_ref()
            .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor()));
        let server = NodeServer::new(
            config.bind.port(),
            config.cookie.clone(),
            config.me.clone(),
            config.bind.ip().to_string(),
            encryption,
            None,
        )
        .with_listen_addr(config.bind.ip());
        let (server, _) = Actor::spawn_linked(None, server, (), myself.get_cell())
            .await
            .map_err(|e| {
                format!(
                    "node {}: cannot listen for the cluster on {} ({e}); is another node using \
                     that port?",
                    config.me, config.bind
                )
            })?;
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "aimesh-membership".into(),
            subscription: Box::new(Events(myself.clone())),
        })?;
        let endpoint_args = EndpointArgs {
            names: args.names.clone(),
            member: myself.clone(),
            memory: args.memory.clone(),
            cluster: args.cluster.clone(),
        };
        let (_endpoint, _): (ActorRef<EndpointMsg>, _) = Actor::spawn_linked(
            Some(args.names.endpoint()),
            Endpoint,
            endpoint_args,
            myself.get_cell(),
        )
        .await?;
        let now = Instant::now();
        let peers = config
            .peers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Peer {
                        addr: p.addr.clone(),
                        backoff: MIN_BACKOFF,
                        next_dial: Some(now),
                        ..Peer::default()
                    },
                )
            })
            .collect();
        let me = myself.clone();
        let every = config.heartbeat;
        let ticker = OwnedTask::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.cast(MemberMsg::Tick).is_err() {
                    break;
                }
            }
        });
        tracing::info!(node = %config.me, bind = %config.bind, peers = config.peers.len(), "cluster listener up");
        Ok(MemberState {
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            published: args.cluster.view(),
            args,
            config,
            server,
            peers,
            sessions: HashMap::new(),
            seq: 0,
            sent: VecDeque::new(),
            dials: Vec::new(),
            _ticker: ticker,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<MemberMsg>,
        msg: MemberMsg,
        state: &mut MemberState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        match msg {
            MemberMsg::Tick => {
                state.heartbeat();
                state.dial(&myself);
            }
            MemberMsg::Heard(hb) => state.heard(*hb),
            MemberMsg::Opened { node_id, addr } => {
                state.sessions.insert(node_id, (addr, None));
            }
            MemberMsg::Ready { node_id, name } => state.ready(node_id, name),
            MemberMsg::Closed {
                node_id,
                name,
                addr,
            } => state.closed(node_id, name, addr),
            MemberMsg::Dialed { name, error } => state.dialed(&name, error),
        }
        state.evaluate();
        Ok(())
    }
}

impl MemberState {
    fn heartbeat(&mut self) {
        self.seq += 1;
        let now = Instant::now();
        self.sent.push_back((self.seq, now));
        while self.sent.len() > 32 {
            self.sent.pop_front();
        }
        let hears = self.hears(now);
        for (name, peer) in &self.peers {
            if !peer.authenticated {
                continue;
            }
            let Some(endpoint) = super::endpoint::remote(name) else {
                continue;
            };
            let hb = Heartbeat {
                from: self.config.me.clone(),
                incarnation: self.args.incarnation,
                seq: self.seq,
                hears: hears.clone(),
                load: self.args.cluster.load(),
                draining: self.args.cluster.draining(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                echo: peer.heard_seq.map(|(seq, at)| Echo {
                    seq,
                    held_ns: u64::try_from(now.duration_since(at).as_nanos()).unwrap_or(0),
                }),
            };
            if endpoint
                .cast(EndpointMsg::Heartbeat(wire::encode(&hb)))
                .is_err()
            {
                tracing::debug!(peer = %name, "heartbeat not sent; the session is closing");
            }
        }
    }

    /// The peers this node hears right now.
    fn hears(&self, now: Instant) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| self.alive(p, now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn alive(&self, p: &Peer, now: Instant) -> bool {
        p.authenticated
            && p.last_heard
                .is_some_and(|t| now.duration_since(t) < self.config.failure_timeout)
    }

    fn dial(&mut self, myself: &ActorRef<MemberMsg>) {
        self.dials.retain(|d| !d.is_finished());
        let now = Instant::now();
        let me = self.config.me.clone();
        for (name, peer) in &mut self.peers {
            // One dialer per pair: the node whose name sorts first.
            if name.as_str() <= me.as_str()
                || peer.node_id.is_some()
                || peer.dialing
                || peer.next_dial.is_none_or(|t| t > now)
            {
                continue;
            }
            peer.dialing = true;
            let server = self.server.clone();
            let addr = peer.addr.clone();
            let reply = myself.clone();
            let name = name.clone();
            let tls = self.config.tls.clone();
            self.dials.push(OwnedTask::spawn(async move {
                let connect = async {
                    match tls {
                        None => ractor_cluster::client_connect(&server, addr.as_str())
                            .await
                            .map_err(|e| e.to_string()),
                        Some(tls) => {
                            let domain = super::tls::server_name(&addr)?;
                            ractor_cluster::client_connect_enc(
                                &server,
                                addr.as_str(),
                                tls.connector(),
                                domain,
                            )
                            .await
                            .map_err(|e| e.to_string())
                        }
                    }
                };
                let result = tokio::time::timeout(Duration::from_secs(2), connect).await;
                let error = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some("connect timed out".to_owned()),
                };
                let _ = reply.cast(MemberMsg::Dialed { name, error });
            }));
        }
    }

    fn dialed(&mut self, name: &str, error: Option<String>) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        peer.dialing = false;
        if let Some(e) = error {
            tracing::debug!(peer = %name, addr = %peer.addr, error = %e, "dial failed; retrying");
            peer.next_dial = Some(Instant::now() + peer.backoff);
            peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
        } else {
            // TCP is up; the session authenticates asynchronously. If it closes first, the
            // redial waits for `Closed`.
            peer.next_dial = None;
        }
    }

    fn ready(&mut self, node_id: u64, name: String) {
        let Some(peer) = self.peers.get_mut(&name) else {
            tracing::warn!(peer = %name, "a node that is not in this cluster's configuration connected; ignoring it");
            return;
        };
        if let Some(s) = self.sessions.get_mut(&node_id) {
            s.1 = Some(name.clone());
        }
        peer.node_id = Some(node_id);
        peer.authenticated = true;
        peer.backoff = MIN_BACKOFF;
        peer.next_dial = None;
        // Heard as of now: a fresh session counts as a sign of life until heartbeats flow.
        peer.last_heard = Some(Instant::now());
        tracing::info!(peer = %name, "cluster session ready");
    }

    fn closed(&mut self, node_id: u64, name: Option<String>, addr: String) {
        let session = self.sessions.remove(&node_id);
        // A session that closes before it was ready failed its handshake: a wrong cookie (the
        // side that checks it sees `auth_fail`, the other a closed socket) or a refused
        // duplicate connection to a peer that is connected already.
        let was_ready = session.as_ref().is_some_and(|s| s.1.is_some());
        let name = name.or_else(|| session.and_then(|s| s.1));
        if !was_ready
            && let Some(n) = &name
            && let Some(p) = self.peers.get_mut(n)
            && p.node_id.is_none_or(|id| id == node_id)
        {
            p.auth_failures += 1;
            tracing::warn!(peer = %n, %addr, "cluster session closed before authenticating (wrong cookie?)");
        }
        let Some(name) = name else {
            // Closed before it said who it was: authentication failed (wrong cookie), or the
            // peer refused a duplicate connection.
            let peer = self
                .peers
                .iter_mut()
                .find(|(_, p)| p.addr == addr || p.dialing)
                .map(|(n, p)| (n.clone(), p));
            match peer {
                Some((n, p)) => {
                    p.auth_failures += 1;
                    tracing::warn!(peer = %n, %addr, "cluster session closed before authenticating (wrong cookie?)");
                }
                None => {
                    tracing::warn!(%addr, "refused a cluster connection that did not authenticate (wrong cookie?)");
                }
            }
            for p in self.peers.values_mut() {
                if p.node_id.is_none() && !p.dialing && p.next_dial.is_none() {
                    p.next_dial = Some(Instant::now() + p.backoff);
                    p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
                }
            }
            return;
        };
        let Some(peer) = self.peers.get_mut(&name) else {
            return;
        };
        if peer.node_id.is_some_and(|id| id != node_id) {
            return; // an older duplicate session
        }
        peer.node_id = None;
        peer.authenticated = false;
        peer.next_dial = Some(Instant::now() + peer.backoff);
        peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
        tracing::warn!(peer = %name, "cluster session closed");
    }

    fn heard(&mut self, hb: Heartbeat) {
        let now = Instant::now();
        let Some(peer) = self.peers.get_mut(&hb.from) else {
            return;
        };
        if let Some(echo) = hb.echo
            && let Some((_, sent)) = self.sent.iter().find(|(s, _)| *s == echo.seq)
        {
            let rtt = now
                .duration_since(*sent)
                .saturating_sub(Duration::from_nanos(echo.held_ns));
            peer.rtt = Some(rtt);
            metrics::histogram!(crate::metrics_names::CLUSTER_HEARTBEAT_RTT, "peer" => hb.from.clone())
                .record(rtt.as_secs_f64());
        }
        if peer
            .heartbeat
            .as_ref()
            .is_some_and(|old| old.incarnation != hb.incarnation)
        {
            tracing::warn!(peer = %hb.from, "peer restarted");
        }
        peer.last_heard = Some(now);
        peer.heard_seq = Some((hb.seq, now));
        peer.heartbeat = Some(hb);
    }

    /// Recomputes the view; publishes it, and tells the node supervisor when it changed.
    fn evaluate(&mut self) {
        let now = Instant::now();
        let total = self.peers.len() + 1;
        let majority = total / 2 + 1;
        let me = self.config.me.clone();
        let alive: HashMap<&str, bool> = self
            .peers
            .iter()
            .map(|(n, p)| (n.as_str(), self.alive(p, now)))
            .collect();
        let mutual = |name: &str, p: &Peer| {
            alive.get(name).copied().unwrap_or(false)
                && p.heartbeat.as_ref().is_some_and(|h| h.hears.contains(&me))
        };
        let mutual_count = self.peers.iter().filter(|(n, p)| mutual(n, p)).count();
        let quorum = 1 + mutual_count >= majority;
        // A silent peer is dead once a majority (this node and the mutual peers that no longer
        // hear it) agrees, and it has been silent past the failure timeout plus the margin.
        let settle = self.config.failure_timeout + self.config.takeover_margin;
        let mut dead: HashMap<String, bool> = HashMap::new();
        for (name, p) in &self.peers {
            if alive.get(name.as_str()).copied().unwrap_or(false) {
                dead.insert(name.clone(), false);
                continue;
            }
            let silent_long = p.last_heard.is_none_or(|t| now.duration_since(t) >= settle);
            let votes = 1 + self
                .peers
                .iter()
                .filter(|(n, q)| {
                    *n != name
                        && mutual(n, q)
                        && q.heartbeat
                            .as_ref()
                            .is_some_and(|h| !h.hears.contains(name))
                })
                .count();
            dead.insert(name.clone(), silent_long && votes >= majority);
        }
        let mut members: Vec<MemberView> = self
            .peers
            .iter()
            .map(|(name, p)| {
                let is_alive = alive.get(name.as_str()).copied().unwrap_or(false);
                let status = if is_alive {
                    MemberStatus::Alive
                } else if dead.get(name).copied().unwrap_or(false) {
                    MemberStatus::Dead
                } else {
                    MemberStatus::Suspect
                };
                MemberView {
                    name: name.clone(),
                    address: p.addr.clone(),
                    status,
                    // A dead node holds nothing (its work was redelivered): no stale load.
                    load: match status {
                        MemberStatus::Dead => 0,
                        _ => p.heartbeat.as_ref().map(|h| h.load).unwrap_or(0),
                    },
                    incarnation: p.heartbeat.as_ref().map(|h| h.incarnation).unwrap_or(0),
                    last_heard_ms: p
                        .last_heard
                        .map(|t| u64::try_from(now.duration_since(t).as_millis()).unwrap_or(0)),
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    mutual: mutual(name, p),
                    draining: p.heartbeat.as_ref().is_some_and(|h| h.draining),
                    auth_failures: p.auth_failures,
                }
            })
            .collect();
        for p in self.peers.values_mut() {
            p.dead = false;
        }
        for (name, d) in dead {
            if let Some(p) = self.peers.get_mut(&name) {
                p.dead = d;
            }
        }
        members.push(MemberView {
            name: me.clone(),
            address: self.config.bind.to_string(),
            status: MemberStatus::Up,
            load: self.args.cluster.load(),
            incarnation: self.args.incarnation,
            last_heard_ms: None,
            rtt_ms: None,
            mutual: true,
            draining: self.args.cluster.draining(),
            auth_failures: 0,
        });
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let formed = members
            .iter()
            .all(|m| m.status == MemberStatus::Up || m.mutual);
        let view = View {
            me,
            shared_store: self.config.shared_store,
            quorum,
            formed,
            members,
        };
        let changed = view.quorum != self.published.quorum
            || view.formed != self.published.formed
            || view
                .members
                .iter()
                .zip(&self.published.members)
                .any(|(a, b)| a.status != b.status || a.incarnation != b.incarnation);
        let alive_count = view
            .members
            .iter()
            .filter(|m| matches!(m.status, MemberStatus::Up | MemberStatus::Alive))
            .count();
        metrics::gauge!("aimesh_cluster_members", "state" => "alive").set(alive_count as f64);
        metrics::gauge!("aimesh_cluster_quorum").set(if view.quorum { 1.0 } else { 0.0 });
        self.args.cluster.publish(view);
        let view = self.args.cluster.view();
        if changed {
            let lost = super::lost(&self.published, &view);
            for name in &lost {
                tracing::warn!(peer = %name, "peer lost; its work moves");
            }
            let statuses: Vec<String> = view
                .members
                .iter()
                .map(|m| format!("{}={:?}", m.name, m.status))
                .collect();
            tracing::info!(quorum = view.quorum, formed = view.formed, members = %statuses.join(" "), "cluster view changed");
            let _ = self.args.supervisor.cast(NodeMsg::Membership {
                view: view.clone(),
                lost,
            });
        }
        self.published = view;
    }
}

/// Parses `host:port` into a socket address (names are resolved).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))
}
