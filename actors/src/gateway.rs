//! The model gateway: the one way agents (and the OpenAI-compatible API) reach models.
//!
//! ```text
//! Gateway <node>/gateway                 admission, chains, breakers, limits, budgets, cache
//! └── Upstream <node>/gateway/<provider> × providers     one per provider; owned I/O tasks
//! ```
//! A call is resolved to a fallback chain ([`catalog`]), checked against the response cache,
//! admitted in priority order (a global in-flight cap, then each link's rate limits), has its
//! worst-case cost reserved against the budgets ([`ledger`]), and goes to the link's upstream.
//! A link whose breaker is open is skipped ([`circuit`]); a provider failure moves the call to
//! the next link (fallback, not retry); the answer is priced, filtered ([`safety`]), cached and
//! returned with its route. Every call has a deadline.
//!
//! Restart policy: an upstream that crashes is restarted (5 in 10 s, then the gateway fails
//! and the node supervisor applies its own policy); the calls it held move on to their next
//! link, so none is lost.

pub mod cache;
mod calls;
pub mod catalog;
pub mod circuit;
pub mod http;
pub mod ledger;
pub mod limiter;
mod message;
pub mod offline;
mod provider;
pub mod safety;
pub mod selection;
pub mod sink;
pub mod upstream;
pub mod wire;

pub use message::{Attempt, ChatMessage, ModelError, ModelRequest, ModelResponse, Role, Route};
pub use offline::OfflineModel;
pub use provider::Provider;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use ractor_cluster_derive::RactorMessage;
use serde::Serialize;
use tokio::time::Instant;

use crate::names::Names;
use crate::policy::{Decision, RestartPolicy, RestartWindow};
use crate::sched::AgingQueue;
use cache::{CacheConfig, ResponseCache};
use calls::Call;
use catalog::Catalog;
use circuit::{Circuit, CircuitPolicy, CircuitState};
use ledger::Ledger;
use limiter::LinkLimiter;
use safety::SafetyFilter;
use selection::SelectionPolicy;
use sink::DeltaSink;
use upstream::{Upstream, UpstreamArgs, UpstreamMsg};
use wire::Completion;

/// Makes a model call the way agents do: a kept answer for the call's idempotency key is
/// replayed (a redelivered subtask is not paid twice); otherwise the gateway registered as
/// `gateway` runs it, waiting at most `wait`. Its `model.call` span is a child of `parent` (a
/// subtask's span), or of the task's root span without one (synthesis).
pub async fn call(
    store: &Arc<dyn crate::store::Store>,
    gateway: &str,
    request: ModelRequest,
    wait: Duration,
    parent: Option<opentelemetry::trace::SpanContext>,
) -> Result<ModelResponse, ModelError> {
    let mut span = match request.task_id {
        Some(task) => crate::trace::TaskSpan::start("model.call", task, parent, || {
            vec![KeyValue::new("aimesh.model", request.model.clone())]
        }),
        None => crate::trace::TaskSpan::default(),
    };
    let mut request = request;
    if let Some(task) = request.task_id {
        request.traceparent = Some(match span.context() {
            Some(cx) => crate::trace::traceparent_of(&cx),
            None => crate::trace::traceparent(task),
        });
    }
    let result = call_untraced(store, gateway, request, wait).await;
    match &result {
        Ok(r) => span.set(|| {
            let mut attributes = vec![
                KeyValue::new("aimesh.provider", r.provider.as_str().to_owned()),
                KeyValue::new("aimesh.answered_by", r.model.clone()),
                KeyValue::new(
                    "aimesh.input_tokens",
                    i64::try_from(r.usage.input_tokens).unwrap_or(i64::MAX),
                ),
                KeyValue::new(
                    "aimesh.output_tokens",
                    i64::try_from(r.usage.output_tokens).unwrap_or(i64::MAX),
                ),
                KeyValue::new("aimesh.cost_usd", r.usage.cost_usd.dollars()),
            ];
            // Only a replayed answer says so.
            if r.route.replayed {
                attributes.push(KeyValue::new("aimesh.replayed", true));
            }
            attributes
        }),
        Err(e) => {
            span.set(|| vec![KeyValue::new("aimesh.error", e.code())]);
            span.fail(|| e.to_string());
        }
    }
    span.end();
    result
}

async fn call_untraced(
    store: &Arc<dyn crate::store::Store>,
    gateway: &str,
    request: ModelRequest,
    wait: Duration,
) -> Result<ModelResponse, ModelError> {
    if let Some(key) = &request.idempotency_key {
        match store.response(key).await {
            Ok(Some(kept)) => return Ok(ModelResponse::replayed(kept, &request.model)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%key, error = %e, "kept answers unreadable; calling the model")
            }
        }
    }
    match crate::names::lookup::<GatewayMsg>(gateway) {
        Some(gw) => crate::rpc::ask(&gw, wait, |r| GatewayMsg::Complete(Box::new(request), r))
            .await
            .unwrap_or_else(|e| Err(ModelError::GatewayUnavailable(e.to_string()))),
        None => Err(ModelError::GatewayUnavailable("not running".to_owned())),
    }
}

/// Messages to the gateway.
#[derive(RactorMessage)]
pub enum GatewayMsg {
    /// Run a model call; the answer goes to the reply port.
    Complete(
        Box<ModelRequest>,
        RpcReplyPort<Result<ModelResponse, ModelError>>,
    ),
    /// Run a streamed call: pieces go to the sink, the whole answer to the reply port.
    Stream(
        Box<ModelRequest>,
        DeltaSink,
        RpcReplyPort<Result<ModelResponse, ModelError>>,
    ),
    /// From an upstream: a call's attempt ended.
    Outcome {
        /// The call.
        id: u64,
        /// The provider that ran it.
        provider: String,
        /// What came of it.
        result: Result<Completion, ModelError>,
    },
    /// Internal: a link's rate limit may have room again.
    Wake(String),
    /// Internal: the deadline timer fired.
    Deadlines,
    /// The gateway's state.
    Status(RpcReplyPort<GatewayStatus>),
}

/// How the gateway is set up.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Providers, models, chains.
    pub catalog: Catalog,
    /// Breaker tuning.
    pub circuit: CircuitPolicy,
    /// Response cache bounds.
    pub cache: CacheConfig,
    /// The output filter.
    pub safety: SafetyFilter,
    /// Model selection and temperature policy.
    pub selection: SelectionPolicy,
    /// Most calls in flight at once; the rest wait by priority.
    pub max_in_flight: usize,
    /// System prompts at least this long are marked cacheable for providers that support it.
    pub prompt_cache_min_chars: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let mut catalog = Catalog::new(
            Vec::new(),
            catalog::builtin_models(),
            Default::default(),
            catalog::builtin_default_chain(),
            true,
        );
        catalog.add_local(Arc::new(OfflineModel::default()));
        Self {
            catalog,
            circuit: CircuitPolicy::default(),
            cache: CacheConfig::default(),
            safety: SafetyFilter::default(),
            selection: SelectionPolicy::default(),
            max_in_flight: 1024,
            prompt_cache_min_chars: 4096,
        }
    }
}

/// What the gateway starts with.
#[derive(Clone)]
pub struct GatewayArgs {
    /// Its configuration.
    pub config: Arc<GatewayConfig>,
    /// Spend and budgets (shared with the API).
    pub ledger: Arc<Ledger>,
    /// Actor names of its node.
    pub names: Names,
    /// Aging interval of its queues.
    pub aging: Duration,
    /// Restart policy for upstreams.
    pub policy: RestartPolicy,
    /// Where answers are kept under their idempotency keys.
    pub store: Arc<dyn crate::store::Store>,
}

/// The gateway's state, for status displays.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayStatus {
    /// Calls in flight.
    pub in_flight: usize,
    /// Calls waiting for admission (global cap or rate limits).
    pub waiting: usize,
    /// Response cache hits and misses.
    pub cache_hits: u64,
    /// Misses.
    pub cache_misses: u64,
    /// Links that have been used, with their breaker state and queue.
    pub links: Vec<LinkStatus>,
    /// Providers and their restarts.
    pub providers: Vec<ProviderStatus>,
}

/// One link's state.
#[derive(Clone, Debug, Serialize)]
pub struct LinkStatus {
    /// `provider/model`.
    pub link: String,
    /// Breaker state.
    pub circuit: CircuitState,
    /// Times the breaker opened.
    pub opened: u64,
    /// Calls waiting for its rate limit.
    pub waiting: usize,
}

/// One provider's state.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderStatus {
    /// Its name.
    pub name: String,
    /// `anthropic`, `openai`, `gemini`, `ollama` or `local`.
    pub kind: String,
    /// True while its actor runs.
    pub up: bool,
    /// Restarts after crashes.
    pub restarts: u64,
}

struct UpstreamSlot {
    actor: Option<ActorRef<UpstreamMsg>>,
    restarts: RestartWindow,
}

/// The gateway's state.
pub struct GatewayState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    config: Arc<GatewayConfig>,
    ledger: Arc<Ledger>,
    names: Names,
    myself: ActorRef<GatewayMsg>,
    upstreams: HashMap<String, UpstreamSlot>,
    by_actor: HashMap<ActorId, String>,
    circuits: HashMap<String, Circuit>,
    limiters: HashMap<String, LinkLimiter>,
    cache: ResponseCache,
    calls: HashMap<u64, Call>,
    wake_timers: HashMap<String, crate::owned::OwnedTask>,
    deadlines: std::collections::BTreeSet<(Instant, u64)>,
    deadline_timer: Option<(Instant, crate::owned::OwnedTask)>,
    admission: AgingQueue<u64>,
    in_flight: usize,
    next_id: u64,
    aging: Duration,
    policy: RestartPolicy,
    store: Arc<dyn crate::store::Store>,
}

/// The gateway actor.
pub struct Gateway;

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        let mut state = GatewayState {
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            cache: ResponseCache::new(args.config.cache),
            config: args.config,
            ledger: args.ledger,
            names: args.names,
            myself: myself.clone(),
            upstreams: HashMap::new(),
            by_actor: HashMap::new(),
            circuits: HashMap::new(),
            limiters: HashMap::new(),
            calls: HashMap::new(),
            wake_timers: HashMap::new(),
            deadlines: Default::default(),
            deadline_timer: None,
            admission: AgingQueue::new(args.aging),
            in_flight: 0,
            next_id: 0,
            aging: args.aging,
            policy: args.policy,
            store: args.store,
        };
        let names: Vec<String> = state
            .config
            .catalog
            .providers()
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            state.spawn_upstream(&myself.get_cell(), &name).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        match msg {
            GatewayMsg::Complete(request, reply) => state.start(*request, reply, None),
            GatewayMsg::Stream(request, sink, reply) => state.start(*request, reply, Some(sink)),
            GatewayMsg::Outcome {
                id,
                provider,
                result,
            } => state.outcome(id, &provider, result),
            GatewayMsg::Wake(link) => state.wake(&link),
            GatewayMsg::Deadlines => state.deadlines_due(),
            GatewayMsg::Status(reply) => {
                let _ = reply.send(state.status());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GatewayMsg>,
        event: SupervisionEvent,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("exited ({})", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let Some(name) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        state
            .upstream_failed(&myself.get_cell(), &name, &error)
            .await
    }
}

impl GatewayState {
    async fn spawn_upstream(
        &mut self,
        me: &ActorCell,
        name: &str,
    ) -> Result<(), ActorProcessingErr> {
        let spec = self
            .config
            .catalog
            .provider(name)
            .cloned()
            .ok_or_else(|| format!("no provider {name}"))?;
        let args = UpstreamArgs {
            spec,
            gateway: self.myself.clone(),
        };
        let actor_name = format!("{}/{name}", self.names.gateway());
        let (actor, _) = Actor::spawn_linked(Some(actor_name), Upstream, args, me.clone()).await?;
        self.by_actor.insert(actor.get_id(), name.to_owned());
        let policy = self.policy;
        self.upstreams
            .entry(name.to_owned())
            .or_insert_with(|| UpstreamSlot {
                actor: None,
                restarts: RestartWindow::new(policy),
            })
            .actor = Some(actor);
        Ok(())
    }

    async fn upstream_failed(
        &mut self,
        me: &ActorCell,
        name: &str,
        error: &str,
    ) -> Result<(), ActorProcessingErr> {
        let decision = match self.upstreams.get_mut(name) {
            Some(slot) => {
                slot.actor = None;
                slot.restarts.on_failure(Instant::now())
            }
            None => return Ok(()),
        };
        // The calls it held move on, restart or not.
        self.orphaned(name, error);
        let counters = crate::directory::counters(&format!("{}/{name}", self.names.gateway()));
        match decision {
            Decision::Restart { n } => {
                counters.restarted();
                tracing::warn!(provider = name, restart = n, %error, "upstream crashed; restarting it");
                self.spawn_upstream(me, name).await
            }
            Decision::Escalate => {
                counters.escalated();
                tracing::error!(provider = name, %error, "upstream crash loop; the gateway escalates");
                Err(format!("upstream {name} exceeded its restart intensity: {error}").into())
            }
        }
    }

    fn status(&self) -> GatewayStatus {
        let now = Instant::now();
        let (cache_hits, cache_misses) = self.cache.counts();
        let mut links: Vec<LinkStatus> = self
            .circuits
            .iter()
            .map(|(link, c)| LinkStatus {
                link: link.clone(),
                circuit: c.state(now),
                opened: c.times_opened(),
                waiting: self.limiters.get(link).map_or(0, LinkLimiter::waiting),
            })
            .collect();
        links.sort_by(|a, b| a.link.cmp(&b.link));
        let mut providers: Vec<ProviderStatus> = self
            .config
            .catalog
            .providers()
            .map(|p| ProviderStatus {
                name: p.name.clone(),
                kind: match &p.backend {
                    catalog::Backend::Http { kind, .. } => kind.clone(),
                    catalog::Backend::Local(_) => "local".into(),
                },
                up: self
                    .upstreams
                    .get(&p.name)
                    .is_some_and(|s| s.actor.is_some()),
                restarts: self
                    .upstreams
                    .get(&p.name)
                    .map_or(0, |s| s.restarts.total()),
            })
            .collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        GatewayStatus {
            in_flight: self.in_flight,
            waiting: self.admission.len()
                + self
                    .limiters
                    .values()
                    .map(LinkLimiter::waiting)
                    .sum::<usize>(),
            cache_hits,
            cache_misses,
            links,
            providers,
        }
    }
}
