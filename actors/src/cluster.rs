//! The cluster: nodes joined with ractor_cluster, a membership view with failure detection,
//! network ownership, and subtask placement.
//!
//! ractor_cluster gives authenticated TCP sessions (cookie challenge), remote actor references
//! and process groups, but no discovery, reconnect or failure detection. aimesh adds them:
//! - [`member::ClusterMember`] owns the `NodeServer` (bound to the configured address only),
//!   dials its peers with reconnect and backoff, and sends a heartbeat to each peer's endpoint
//!   every `heartbeat` (what it hears, its load). A peer not heard for `failure_timeout`, or
//!   whose session dropped, is *suspect*; it is *dead* once a majority agrees it is gone and
//!   `failure_timeout + takeover_margin` have passed.
//! - [`endpoint::Endpoint`] is the one remotable actor of a node (ractor_cluster mirrors every
//!   remotable actor on every peer, so agents stay local). Peers find it through the process
//!   group `aimesh.endpoint.<node>`; it carries heartbeats, subtasks for guest agents, their
//!   reports, and forwarded API requests.
//!
//! # Ownership
//! Each network has one owner node, which runs its coordinator and serves its memory; any
//! node's API forwards a network's requests to it. The owner is the rendezvous hash of the
//! network id:
//! - over **every configured node** with a node-local (embedded) store: a network lives in its
//!   owner's file, so it is served only while its owner is up;
//! - over the **live members** with a shared (PostgreSQL) store: when a node dies, the others
//!   take over its networks and resume their tasks from the store.
//!
//! # Partitions (shared store)
//! A node owns networks only while it has a quorum: a majority of the configured nodes,
//! counting itself and the peers it hears that also hear it. A node cut off from the majority
//! therefore stops its coordinators and refuses network requests (503), and the majority takes
//! over only once the node is dead by the majority's account *and* has been silent for longer
//! than it takes the cut-off node to notice. Results are idempotent by task and subtask id, so
//! a task is never completed twice even if a subtask ran on both sides.

pub mod endpoint;
pub mod member;
pub mod rendezvous;
pub mod tls;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use ractor::ActorRef;
use serde::Serialize;

use crate::ids::NetworkId;
use endpoint::EndpointMsg;
use wire::{Call, Cast, HttpRequest, HttpResponse, Reply};

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name.
    pub me: String,
    /// The address its cluster listener binds (and only that one).
    pub bind: SocketAddr,
    /// The other configured nodes.
    pub peers: Vec<PeerConfig>,
    /// The shared secret nodes authenticate with.
    pub cookie: String,
    /// How often heartbeats go out.
    pub heartbeat: Duration,
    /// A peer silent this long is suspect.
    pub failure_timeout: Duration,
    /// How much longer the majority waits before taking a dead node's networks.
    pub takeover_margin: Duration,
    /// True when every node uses the same store (PostgreSQL): networks fail over.
    pub shared_store: bool,
    /// Mutual TLS for the sessions, when certificates are configured.
    pub tls: Option<tls::ClusterTls>,
}

impl ClusterConfig {
    /// Defaults for a node `me` at `bind` with `peers`.
    pub fn new(me: &str, bind: SocketAddr, peers: Vec<PeerConfig>, cookie: &str) -> Self {
        Self {
            me: me.to_owned(),
            bind,
            peers,
            cookie: cookie.to_owned(),
            heartbeat: Duration::from_millis(200),
            failure_timeout: Duration::from_millis(1000),
            takeover_margin: Duration::from_millis(300),
            shared_store: false,
            tls: None,
        }
    }
}

/// Another node of the cluster.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Its name.
    pub name: String,
    /// Its cluster address, `host:port`.
    pub addr: String,
}

/// How a member looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// This node.
    Up,
    /// Heard within the failure timeout, session up.
    Alive,
    /// Not heard lately, or its session dropped; not yet declared dead.
    Suspect,
    /// Gone, by the majority's account.
    Dead,
}

/// One member in a node's view.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    /// Its name.
    pub name: String,
    /// Its cluster address.
    pub address: String,
    /// Its status.
    pub status: MemberStatus,
    /// Subtasks queued or running there (from its last heartbeat).
    pub load: u32,
    /// When its process started (unix ns), from its heartbeats.
    pub incarnation: u64,
    /// Milliseconds since it was last heard.
    pub last_heard_ms: Option<u64>,
    /// Heartbeat round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// It hears this node too.
    pub mutual: bool,
    /// It is draining (no new work goes there).
    pub draining: bool,
    /// Sessions from or to it that failed to authenticate (wrong cookie).
    pub auth_failures: u32,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, Serialize)]
pub struct View {
    /// This node.
    pub me: String,
    /// Whether networks fail over (shared store).
    pub shared_store: bool,
    /// This node and the peers it hears that hear it are a majority of the configured nodes.
    pub quorum: bool,
    /// Every configured node is up and mutually connected.
    pub formed: bool,
    /// Every configured node, this one included, by name.
    pub members: Vec<MemberView>,
}

impl View {
    fn standalone(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            shared_store: false,
            quorum: true,
            formed: true,
            members: vec![MemberView {
                name: me.to_owned(),
                address: String::new(),
                status: MemberStatus::Up,
                load: 0,
                incarnation: 0,
                last_heard_ms: None,
                rtt_ms: None,
                mutual: true,
                draining: false,
                auth_failures: 0,
            }],
        }
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Where a network's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node owns it.
    Local,
    /// That node owns it and is reachable.
    Remote(String),
    /// No reachable owner right now; why.
    Unavailable(String),
}

/// Serves a forwarded API request (installed by the HTTP layer).
pub type HttpService = Arc<dyn Fn(HttpRequest) -> BoxFuture<'static, HttpResponse> + Send + Sync>;

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// Not connected, or not a member.
    #[error("node {0} is not reachable")]
    Unreachable(String),
    /// No answer in time, or the session dropped meanwhile.
    #[error("node {node} did not answer: {cause}")]
    NoAnswer {
        /// The peer.
        node: String,
        /// Why.
        cause: String,
    },
    /// The peer answered with an error.
    #[error("node {node}: {message}")]
    Refused {
        /// The peer.
        node: String,
        /// Its error.
        message: String,
    },
}

struct Shared {
    config: Option<ClusterConfig>,
    /// Every configured node name, sorted.
    all: Vec<String>,
    view: RwLock<Arc<View>>,
    http: OnceLock<HttpService>,
    /// Subtasks queued or running on this node's agents.
    load: AtomicI64,
    /// Subtasks sent to each peer since its last heartbeat (so a burst does not all go to the
    /// peer that looked idle).
    sent: DashMap<String, u32>,
    rng: AtomicU64,
    draining: std::sync::atomic::AtomicBool,
}

/// A node's handle on the cluster: cheap to clone, readable from anywhere without a message.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Shared>,
}

impl Cluster {
    /// A node that is not part of a cluster: it owns everything.
    pub fn standalone(me: &str) -> Self {
        Self::build(None, me)
    }

    /// A member of the cluster `config` describes.
    pub fn member(config: ClusterConfig) -> Self {
        let me = config.me.clone();
        Self::build(Some(config), &me)
    }

    fn build(config: Option<ClusterConfig>, me: &str) -> Self {
        let mut all: Vec<String> = config
            .iter()
            .flat_map(|c| c.peers.iter().map(|p| p.name.clone()))
            .collect();
        all.push(me.to_owned());
        all.sort();
        all.dedup();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9)
            | 1;
        let mut view = View::standalone(me);
        if let Some(c) = &config {
            view.shared_store = c.shared_store;
            view.quorum = all.len() == 1;
            view.formed = all.len() == 1;
        }
        Self {
            inner: Arc::new(Shared {
                config,
                all,
                view: RwLock::new(Arc::new(view)),
                http: OnceLock::new(),
                load: AtomicI64::new(0),
                sent: DashMap::new(),
                rng: AtomicU64::new(seed),
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The configuration, if this node is in a cluster.
    pub fn config(&self) -> Option<&ClusterConfig> {
        self.inner.config.as_ref()
    }

    /// True if this node is in a cluster.
    pub fn enabled(&self) -> bool {
        self.inner.config.is_some()
    }

    /// This node's name.
    pub fn me(&self) -> String {
        self.view().me.clone()
    }

    /// True when networks fail over between nodes (shared store).
    pub fn shared_store(&self) -> bool {
        self.inner.config.as_ref().is_some_and(|c| c.shared_store)
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        match self.inner.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn publish(&self, view: View) {
        // A fresh heartbeat carries each peer's own count of what we sent it, and our agents
        // have counted what we placed here: start counting placements afresh.
        for m in &view.members {
            self.inner.sent.remove(&m.name);
        }
        let view = Arc::new(view);
        match self.inner.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }

    /// Installs the service that answers forwarded API requests.
    pub fn set_http_service(&self, service: HttpService) {
        let _ = self.inner.http.set(service);
    }

    pub(crate) fn http_service(&self) -> Option<HttpService> {
        self.inner.http.get().cloned()
    }

    /// Subtasks queued or running on this node's agents.
    pub fn load(&self) -> u32 {
        u32::try_from(self.inner.load.load(Ordering::Relaxed).max(0)).unwrap_or(u32::MAX)
    }

    /// Adjusts this node's load by `delta`.
    pub fn add_load(&self, delta: i64) {
        if delta != 0 {
            self.inner.load.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Marks this node as draining: it stops receiving new work.
    pub fn set_draining(&self, draining: bool) {
        self.inner.draining.store(draining, Ordering::Relaxed);
    }

    /// True while draining.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The owner of `network`.
    pub fn owner_of(&self, network: NetworkId) -> Owner {
        let Some(config) = &self.inner.config else {
            return Owner::Local;
        };
        let view = self.view();
        let key = network.as_uuid().as_bytes().to_vec();
        if !config.shared_store {
            // A network lives in its owner's own store.
            let Some(owner) = rendezvous::owner(&key, self.inner.all.iter().map(String::as_str))
            else {
                return Owner::Local;
            };
            if owner == config.me {
                return Owner::Local;
            }
            return match view.member(owner).map(|m| m.status) {
                Some(MemberStatus::Alive) => Owner::Remote(owner.to_owned()),
                _ => Owner::Unavailable(format!(
                    "network {network} lives on node {owner}, which is not reachable; with the \
                     embedded store a node's networks are served again when it comes back"
                )),
            };
        }
        if !view.quorum {
            let up = view
                .members
                .iter()
                .filter(|m| matches!(m.status, MemberStatus::Up) || m.mutual)
                .count();
            return Owner::Unavailable(format!(
                "node {} has no quorum (it reaches {up} of {} nodes); it takes no work until it \
                 rejoins the majority",
                config.me,
                view.members.len()
            ));
        }
        let candidates = view
            .members
            .iter()
            .filter(|m| m.status != MemberStatus::Dead)
            .map(|m| m.name.as_str());
        match rendezvous::owner(&key, candidates) {
            Some(owner) if owner == config.me => Owner::Local,
            Some(owner) => match view.member(owner).map(|m| m.status) {
                Some(MemberStatus::Alive) => Owner::Remote(owner.to_owned()),
                _ => Owner::Unavailable(format!(
                    "network {network}'s owner {owner} is not answering; its networks move to \
                     the other nodes once it is declared dead"
                )),
            },
            None => Owner::Local,
        }
    }

    /// A new network id that this node may create: one whose owner is reachable (with a
    /// node-local store, an id hashing to a node that is down could not be served). Returns the
    /// id and its owner.
    pub fn new_network_id(&self) -> (NetworkId, Owner) {
        let mut last = (NetworkId::new(), Owner::Local);
        for _ in 0..64 {
            let id = NetworkId::new();
            let owner = self.owner_of(id);
            let draining_owner = match &owner {
                Owner::Remote(name) => self.view().member(name).is_some_and(|m| m.draining),
                Owner::Local => self.draining(),
                Owner::Unavailable(_) => true,
            };
            if !draining_owner {
                return (id, owner);
            }
            last = (id, owner);
        }
        last
    }

    fn random(&self) -> u64 {
        // xorshift64*, shared: good enough to pick between two nodes.
        let mut x = self.inner.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Where to run the next subtask: `None` for this node, or a peer. Power of two choices
    /// over this node and the live peers that are not draining, by load (queue depths from the
    /// heartbeats, plus what was sent there since).
    pub fn place(&self) -> Option<String> {
        self.inner.config.as_ref()?;
        let view = self.view();
        let mut nodes: Vec<(&str, u32)> = Vec::with_capacity(view.members.len());
        for m in &view.members {
            match m.status {
                MemberStatus::Up if !self.draining() => {
                    // Placed here but not yet taken up by an agent counts too, or a burst (a
                    // takeover resuming many tasks at once) would all stay here.
                    let sent = self.inner.sent.get(&m.name).map(|s| *s).unwrap_or(0);
                    nodes.push((&m.name, self.load().saturating_add(sent)));
                }
                MemberStatus::Alive if !m.draining && m.mutual => {
                    let sent = self.inner.sent.get(&m.name).map(|s| *s).unwrap_or(0);
                    nodes.push((&m.name, m.load.saturating_add(sent)));
                }
                _ => {}
            }
        }
        let pick = match nodes.len() {
            0 => return None,
            1 => nodes[0],
            n => {
                let r = self.random();
                let a = (r % n as u64) as usize;
                let mut b = ((r >> 32) % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                if nodes[b].1 < nodes[a].1 {
                    nodes[b]
                } else {
                    nodes[a]
                }
            }
        };
        let name = pick.0.to_owned();
        *self.inner.sent.entry(name.clone()).or_insert(0) += 1;
        if name == view.me {
            return None;
        }
        Some(name)
    }

    /// Leases on subtasks placed on peers: how often a guest host renews them, and how long an
    /// owner waits for a renewal before it redelivers the subtask (`None` when not clustered).
    /// A lease covers what the failure detector cannot see: work a peer dropped or never got
    /// (an owner it briefly thought lost, a cast lost with a session) while both stayed alive.
    pub fn lease(&self) -> Option<(Duration, Duration)> {
        let c = self.inner.config.as_ref()?;
        let renew = c.heartbeat * 2;
        Some((renew, (c.failure_timeout * 2).max(renew * 4)))
    }

    /// The endpoint of peer `name`, if connected.
    pub fn endpoint(&self, name: &str) -> Option<ActorRef<EndpointMsg>> {
        endpoint::remote(name)
    }

    /// Sends a one-way message to peer `name`; false if it is not reachable.
    pub fn cast(&self, name: &str, msg: &Cast) -> bool {
        match self.endpoint(name) {
            Some(e) => e.cast(EndpointMsg::Wire(wire::encode(msg))).is_ok(),
            None => false,
        }
    }

    /// Calls peer `name` and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        name: &str,
        call: &Call,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        let endpoint = self
            .endpoint(name)
            .ok_or_else(|| PeerError::Unreachable(name.to_owned()))?;
        let bytes = wire::encode(call);
        let answer = endpoint
            .call(|r| EndpointMsg::Call(bytes, r), Some(timeout))
            .await
            .map_err(|e| PeerError::NoAnswer {
                node: name.to_owned(),
                cause: e.to_string(),
            })?;
        let bytes = match answer {
            ractor::rpc::CallResult::Success(b) => b,
            ractor::rpc::CallResult::Timeout => {
                return Err(PeerError::NoAnswer {
                    node: name.to_owned(),
                    cause: format!("no answer within {timeout:?}"),
                });
            }
            ractor::rpc::CallResult::SenderError => {
                return Err(PeerError::NoAnswer {
                    node: name.to_owned(),
                    cause: "the session dropped".into(),
                });
            }
        };
        match wire::decode::<Reply>(&bytes) {
            Ok(Reply::Error(message)) => Err(PeerError::Refused {
                node: name.to_owned(),
                message,
            }),
            Ok(reply) => Ok(reply),
            Err(message) => Err(PeerError::Refused {
                node: name.to_owned(),
                message,
            }),
        }
    }

    /// One round trip to peer `name` through its endpoint actor (a `Ping` of `bytes` bytes
    /// echoed back); the time it took.
    pub async fn ping(
        &self,
        name: &str,
        bytes: usize,
        timeout: Duration,
    ) -> Result<Duration, PeerError> {
        let payload = vec![0x5a; bytes];
        let started = std::time::Instant::now();
        match self.call(name, &Call::Ping(payload), timeout).await? {
            Reply::Pong(echo) if echo.len() == bytes => Ok(started.elapsed()),
            _ => Err(PeerError::Refused {
                node: name.to_owned(),
                message: format!("expected the {bytes}-byte payload echoed back"),
            }),
        }
    }

    /// The live peers (alive and mutually connected), by name.
    pub fn live_peers(&self) -> Vec<String> {
        self.view()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Every configured node.
    pub fn all_nodes(&self) -> &[String] {
        &self.inner.all
    }
}

/// Members that became unreachable between two views (their in-flight work must move).
pub fn lost(before: &View, after: &View) -> Vec<String> {
    let was: HashMap<&str, &MemberView> = before
        .members
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    after
        .members
        .iter()
        .filter(|m| {
            let Some(old) = was.get(m.name.as_str()) else {
                return false;
            };
            (old.status == MemberStatus::Alive && m.status != MemberStatus::Alive)
                || (old.status == MemberStatus::Alive
                    && m.status == MemberStatus::Alive
                    && old.incarnation != 0
                    && old.incarnation != m.incarnation)
        })
        .map(|m| m.name.clone())
        .collect()
}
