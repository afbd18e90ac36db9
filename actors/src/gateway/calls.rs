//! The gateway's logic: a call's path through admission, its chain's links, and back.

use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;
use tokio::time::Instant;

use super::cache::{self, CachedAnswer, Key};
use super::catalog::{Backend, Chain, ModelSpec};
use super::circuit::{Admit, Circuit, CircuitState};
use super::ledger::Reservation;
use super::limiter::{Admission, LinkLimiter, Waiter};
use super::sink::DeltaSink;
use super::upstream::{UpstreamCall, UpstreamMsg};
use super::wire::{Completion, ProviderRequest};
use super::{
    Attempt, GatewayMsg, GatewayState, ModelError, ModelRequest, ModelResponse, Role, Route,
};
use crate::owned::OwnedTask;
use crate::types::Usage;

type Reply = RpcReplyPort<Result<ModelResponse, ModelError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for a global in-flight slot.
    Admission,
    /// Waiting for a link's rate limit.
    Limited,
    /// At an upstream.
    Flight,
    /// Between links.
    Routing,
}

/// One call the gateway is serving.
pub(super) struct Call {
    request: ModelRequest,
    reply: Option<Reply>,
    sink: Option<DeltaSink>,
    chain: Chain,
    next: usize,
    link: Option<Arc<ModelSpec>>,
    stage: Stage,
    probe: bool,
    holds_slot: bool,
    reservation: Option<Reservation>,
    route: Route,
    cache_key: Option<Key>,
    started: Instant,
    deadline: Instant,
}

fn link_key(link: &ModelSpec) -> String {
    format!("{}/{}", link.provider, link.upstream)
}

/// An upper bound of a prompt's tokens: no tokenizer makes more tokens than bytes, plus a few
/// per message for the format's framing.
fn prompt_token_bound(request: &ModelRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| m.content.len() as u64 + 4)
        .sum::<u64>()
        + 3
}

fn retry_after(e: &ModelError) -> Option<Duration> {
    match e {
        ModelError::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    }
}

impl GatewayState {
    /// A new call: resolve, try the cache, then admit.
    pub(super) fn start(
        &mut self,
        mut request: ModelRequest,
        reply: Reply,
        sink: Option<DeltaSink>,
    ) {
        let now = Instant::now();
        let choice = self.config.selection.choose(&request);
        let Some(chain) = self.config.catalog.resolve(&choice.model) else {
            let _ = reply.send(Err(ModelError::BadRequest {
                provider: "aimesh".into(),
                message: format!(
                    "unknown model {:?}; known: {}",
                    choice.model,
                    self.config.catalog.known_names().join(", ")
                ),
            }));
            return;
        };
        request.temperature = choice.temperature;
        let route = Route {
            requested: request.model.clone(),
            chain: chain.name.clone(),
            tier: choice.tier.map(str::to_owned),
            temperature: choice.temperature,
            attempts: Vec::new(),
            cached: false,
            replayed: false,
        };
        let cache_key =
            (request.cache && self.cache.enabled()).then(|| cache::key(&chain.name, &request));
        if let Some(key) = &cache_key
            && let Some(hit) = self.cache.get(key, now)
        {
            metrics::counter!("aimesh_gateway_cache_hits_total").increment(1);
            if let Some(sink) = &sink {
                sink.try_send_whole(hit.text.clone());
            }
            let _ = reply.send(Ok(ModelResponse {
                text: hit.text,
                model: hit.model,
                provider: hit.provider,
                usage: Usage {
                    cost_usd: Default::default(),
                    ..hit.usage
                },
                finish_reason: hit.finish_reason,
                route: Route {
                    cached: true,
                    ..route
                },
            }));
            return;
        }
        if cache_key.is_some() {
            metrics::counter!("aimesh_gateway_cache_misses_total").increment(1);
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + request.timeout;
        self.arm_deadline(deadline, id);
        let priority = request.priority;
        self.calls.insert(
            id,
            Call {
                request,
                reply: Some(reply),
                sink,
                chain,
                next: 0,
                link: None,
                stage: Stage::Admission,
                probe: false,
                holds_slot: false,
                reservation: None,
                route,
                cache_key,
                started: now,
                deadline,
            },
        );
        if self.in_flight < self.config.max_in_flight.max(1) {
            self.take_slot(id);
        } else {
            self.admission.push(priority, id, now);
        }
    }

    fn take_slot(&mut self, id: u64) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.holds_slot = true;
            call.stage = Stage::Routing;
            self.in_flight += 1;
            self.advance(id);
        }
    }

    fn free_slot(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        while self.in_flight < self.config.max_in_flight.max(1) {
            let Some(next) = self.admission.pop(Instant::now()) else {
                return;
            };
            self.take_slot(next.item);
        }
    }

    /// Moves a call to its next usable link, or ends it when none is left.
    fn advance(&mut self, id: u64) {
        let now = Instant::now();
        loop {
            let policy = self.config.circuit;
            let aging = self.aging;
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(link) = call.chain.links.get(call.next).cloned() else {
                let error = ModelError::Exhausted {
                    chain: call.chain.name.clone(),
                    attempts: call.route.attempts.clone(),
                };
                self.finish(id, Err(error));
                return;
            };
            call.next += 1;
            let key = link_key(&link);
            let circuit = self
                .circuits
                .entry(key.clone())
                .or_insert_with(|| Circuit::new(policy));
            let probe = match circuit.admit(now) {
                Admit::Yes => false,
                Admit::Probe => true,
                Admit::No { until } => {
                    call.route.attempts.push(Attempt {
                        provider: link.provider.clone(),
                        model: link.upstream.clone(),
                        error: Some(format!(
                            "circuit open for another {:.1} s",
                            until.saturating_duration_since(now).as_secs_f64()
                        )),
                    });
                    metrics::counter!("aimesh_gateway_fallbacks_total", "provider" => link.provider.clone(), "reason" => "circuit_open").increment(1);
                    continue;
                }
            };
            let prompt = prompt_token_bound(&call.request);
            let worst = link
                .price
                .worst_case(prompt, u64::from(call.request.max_tokens));
            match self.ledger.reserve(call.request.network_id, worst) {
                Ok(r) => call.reservation = Some(r),
                Err(e) => {
                    if probe {
                        circuit.probe_abandoned();
                    }
                    self.finish(id, Err(e));
                    return;
                }
            }
            call.link = Some(link.clone());
            call.probe = probe;
            let tokens = u32::try_from(prompt.saturating_add(u64::from(call.request.max_tokens)))
                .unwrap_or(u32::MAX);
            let priority = call.request.priority;
            let limiter = self
                .limiters
                .entry(key.clone())
                .or_insert_with(|| LinkLimiter::new(link.rpm, link.tpm, link.limit_window, aging));
            match limiter.admit(Waiter { call: id, tokens }, priority, now) {
                Admission::Go => {
                    self.dispatch(id);
                    return;
                }
                Admission::Queued(wake) => {
                    call.stage = Stage::Limited;
                    if let Some(after) = wake {
                        self.schedule_wake(key, after);
                    }
                    return;
                }
                Admission::Never => {
                    if let Some(r) = call.reservation.take() {
                        self.ledger.release(r);
                    }
                    if probe && let Some(c) = self.circuits.get_mut(&key) {
                        c.probe_abandoned();
                    }
                    call.route.attempts.push(Attempt {
                        provider: link.provider.clone(),
                        model: link.upstream.clone(),
                        error: Some(format!(
                            "needs {tokens} tokens, more than the link allows per minute"
                        )),
                    });
                }
            }
        }
    }

    fn schedule_wake(&mut self, link: String, after: Duration) {
        let me = self.myself.clone();
        let key = link.clone();
        // One timer per link: a new one replaces (and aborts) the old.
        self.wake_timers.insert(
            link,
            OwnedTask::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = me.cast(GatewayMsg::Wake(key));
            }),
        );
    }

    /// A link's rate limit may have room: admit its waiters in priority order.
    pub(super) fn wake(&mut self, link: &str) {
        let now = Instant::now();
        let Some(limiter) = self.limiters.get_mut(link) else {
            return;
        };
        let woken = limiter.wake(now);
        if let Some(after) = woken.next {
            self.schedule_wake(link.to_owned(), after);
        }
        let (provider, model) = link.split_once('/').unwrap_or((link, ""));
        for (id, waited) in woken.admitted {
            metrics::histogram!("aimesh_gateway_rate_limit_wait_seconds", "provider" => provider.to_owned(), "model" => model.to_owned())
                .record(waited.as_secs_f64());
            if self
                .calls
                .get(&id)
                .is_some_and(|c| c.stage == Stage::Limited)
            {
                self.dispatch(id);
            }
        }
        for id in woken.never {
            if let Some(call) = self.calls.get_mut(&id) {
                if let Some(r) = call.reservation.take() {
                    self.ledger.release(r);
                }
                call.route.attempts.push(Attempt {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    error: Some("needs more tokens than the link allows per minute".into()),
                });
                call.stage = Stage::Routing;
                self.advance(id);
            }
        }
    }

    /// Sends a call to its link's upstream.
    fn dispatch(&mut self, id: u64) {
        let now = Instant::now();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(link) = call.link.clone() else {
            return;
        };
        call.stage = Stage::Flight;
        let spec = self.config.catalog.provider(&link.provider);
        let timeout = spec
            .map_or(Duration::from_secs(60), |s| s.timeout)
            .min((call.started + call.request.timeout).saturating_duration_since(now));
        let system_len = call
            .request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.len())
            .sum::<usize>();
        let cache_system_prompt = system_len >= self.config.prompt_cache_min_chars
            && matches!(spec.map(|s| &s.backend), Some(Backend::Http { kind, .. }) if kind == "anthropic");
        let request = ProviderRequest {
            model: link.upstream.clone(),
            messages: call.request.messages.clone(),
            max_tokens: call.request.max_tokens,
            temperature: Some(call.request.temperature),
            top_p: call.request.top_p,
            stop: call.request.stop.clone(),
            stream: call.sink.is_some(),
            cache_system_prompt,
        };
        let actor = self
            .upstreams
            .get(&link.provider)
            .and_then(|s| s.actor.clone());
        let sent = actor.is_some_and(|a| {
            a.cast(UpstreamMsg::Call(Box::new(UpstreamCall {
                id,
                request,
                sink: call.sink.clone(),
                timeout,
                idempotency_key: call.request.idempotency_key.clone(),
                traceparent: call.request.traceparent.clone(),
            })))
            .is_ok()
        });
        if !sent {
            self.outcome(
                id,
                &link.provider,
                Err(ModelError::Transport {
                    provider: link.provider.clone(),
                    message: "its upstream actor is restarting".into(),
                }),
            );
        }
    }

    /// The calls an upstream held when it crashed move on to their next link.
    pub(super) fn orphaned(&mut self, provider: &str, error: &str) {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.stage == Stage::Flight && c.link.as_ref().is_some_and(|l| l.provider == provider)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.outcome(
                id,
                provider,
                Err(ModelError::Transport {
                    provider: provider.to_owned(),
                    message: format!("its upstream actor crashed: {error}"),
                }),
            );
        }
    }

    /// An attempt ended at an upstream.
    pub(super) fn outcome(
        &mut self,
        id: u64,
        provider: &str,
        result: Result<Completion, ModelError>,
    ) {
        let now = Instant::now();
        let policy = self.config.circuit;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(link) = call.link.clone().filter(|l| l.provider == provider) else {
            return; // a stale outcome from a link the call already left
        };
        if call.stage != Stage::Flight {
            return;
        }
        call.stage = Stage::Routing;
        let circuit = self
            .circuits
            .entry(link_key(&link))
            .or_insert_with(|| Circuit::new(policy));
        let labels = [
            ("provider", link.provider.clone()),
            ("model", link.upstream.clone()),
        ];
        match result {
            Ok(c) => {
                circuit.success();
                metrics::gauge!(crate::metrics_names::GATEWAY_CIRCUIT_OPEN, &labels).set(0.0);
                let mut usage = c.usage;
                usage.cost_usd = link.price.cost(&usage);
                if let Some(r) = call.reservation.take() {
                    if usage.cost_usd > r.amount() {
                        tracing::warn!(provider = %link.provider, model = %link.upstream, reserved = %r.amount(), cost = %usage.cost_usd,
                            "the provider billed more tokens than the call's bound; budgets may pass their limit by the difference");
                    }
                    self.ledger.settle(r, usage.cost_usd);
                }
                metrics::counter!(
                    "aimesh_gateway_requests_total",
                    &[
                        ("provider", link.provider.clone()),
                        ("model", link.upstream.clone()),
                        ("outcome", "ok".to_owned())
                    ]
                )
                .increment(1);
                metrics::counter!(
                    "aimesh_gateway_tokens_total",
                    &[
                        ("provider", link.provider.clone()),
                        ("model", link.upstream.clone()),
                        ("kind", "input".to_owned())
                    ]
                )
                .increment(usage.input_tokens);
                metrics::counter!(
                    "aimesh_gateway_tokens_total",
                    &[
                        ("provider", link.provider.clone()),
                        ("model", link.upstream.clone()),
                        ("kind", "output".to_owned())
                    ]
                )
                .increment(usage.output_tokens);
                metrics::counter!("aimesh_gateway_cost_microdollars_total", &labels)
                    .increment(usage.cost_usd.0 / 1_000_000);
                call.route.attempts.push(Attempt {
                    provider: link.provider.clone(),
                    model: link.upstream.clone(),
                    error: None,
                });
                if let Err(verdict) = self.config.safety.check(&c.text) {
                    metrics::counter!("aimesh_gateway_filtered_total").increment(1);
                    self.finish(
                        id,
                        Err(ModelError::ContentFiltered {
                            provider: "aimesh".into(),
                            message: verdict,
                        }),
                    );
                    return;
                }
                let model = if c.model.is_empty() {
                    link.upstream.clone()
                } else {
                    c.model
                };
                if let Some(key) = call.cache_key {
                    self.cache.put(
                        key,
                        CachedAnswer {
                            text: c.text.clone(),
                            model: model.clone(),
                            provider: link.provider.clone(),
                            usage,
                            finish_reason: c.finish_reason.clone(),
                        },
                        now,
                    );
                }
                if let Some(key) = &call.request.idempotency_key {
                    // Kept without waiting: the caller's own journal write comes after this one.
                    drop(self.store.put_response(
                        key,
                        &crate::store::StoredResponse {
                            text: c.text.clone(),
                            model: model.clone(),
                            provider: link.provider.clone(),
                            usage,
                            finish_reason: c.finish_reason.clone(),
                            at: crate::types::now(),
                        },
                    ));
                }
                let route = std::mem::take(&mut call.route);
                self.finish(
                    id,
                    Ok(ModelResponse {
                        text: c.text,
                        model,
                        provider: link.provider.clone(),
                        usage,
                        finish_reason: c.finish_reason,
                        route,
                    }),
                );
            }
            Err(e) => {
                if e.trips_circuit() {
                    circuit.failure(now, retry_after(&e));
                } else {
                    // The provider answered; the request was at fault.
                    circuit.success();
                }
                let open = circuit.state(now) == CircuitState::Open;
                metrics::gauge!(crate::metrics_names::GATEWAY_CIRCUIT_OPEN, &labels).set(if open {
                    1.0
                } else {
                    0.0
                });
                if let Some(r) = call.reservation.take() {
                    self.ledger.release(r);
                }
                metrics::counter!(
                    "aimesh_gateway_requests_total",
                    &[
                        ("provider", link.provider.clone()),
                        ("model", link.upstream.clone()),
                        ("outcome", e.code().to_owned())
                    ]
                )
                .increment(1);
                call.route.attempts.push(Attempt {
                    provider: link.provider.clone(),
                    model: link.upstream.clone(),
                    error: Some(e.to_string()),
                });
                let streamed = call.sink.as_ref().is_some_and(DeltaSink::started);
                if e.falls_back() && !streamed {
                    metrics::counter!("aimesh_gateway_fallbacks_total", "provider" => link.provider.clone(), "reason" => e.code()).increment(1);
                    self.advance(id);
                } else {
                    self.finish(id, Err(e));
                }
            }
        }
    }

    /// Files a call's deadline; one timer serves them all, set for the earliest.
    fn arm_deadline(&mut self, at: Instant, id: u64) {
        self.deadlines.insert((at, id));
        let earliest = self.deadlines.first().map(|(t, _)| *t);
        if earliest == Some(at) && self.deadline_timer.as_ref().is_none_or(|(t, _)| *t > at) {
            self.set_timer(at);
        }
    }

    fn set_timer(&mut self, at: Instant) {
        let me = self.myself.clone();
        self.deadline_timer = Some((
            at,
            OwnedTask::spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = me.cast(GatewayMsg::Deadlines);
            }),
        ));
    }

    /// The deadline timer fired: every call past its deadline ends with a timeout.
    pub(super) fn deadlines_due(&mut self) {
        let now = Instant::now();
        self.deadline_timer = None;
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                self.set_timer(at);
                break;
            }
            self.deadlines.pop_first();
            self.deadline(id);
        }
    }

    /// A call's deadline passed.
    fn deadline(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let provider = call
            .link
            .as_ref()
            .map_or_else(|| "gateway".to_owned(), |l| l.provider.clone());
        let after = call.request.timeout;
        self.finish(id, Err(ModelError::Timeout { provider, after }));
    }

    /// Ends a call: frees what it held and answers the caller.
    fn finish(&mut self, id: u64, result: Result<ModelResponse, ModelError>) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(call.deadline, id));
        let link = call.link.clone();
        match call.stage {
            Stage::Admission => {
                self.admission.remove_where(|c| *c == id);
            }
            Stage::Limited => {
                if let Some(l) = &link {
                    let key = link_key(l);
                    if let Some(limiter) = self.limiters.get_mut(&key) {
                        limiter.remove(id);
                    }
                    if call.probe
                        && let Some(c) = self.circuits.get_mut(&key)
                    {
                        c.probe_abandoned();
                    }
                }
            }
            Stage::Flight => {
                if let Some(l) = &link {
                    if let Some(a) = self
                        .upstreams
                        .get(&l.provider)
                        .and_then(|s| s.actor.clone())
                    {
                        let _ = a.cast(UpstreamMsg::Cancel(id));
                    }
                    if call.probe
                        && let Some(c) = self.circuits.get_mut(&link_key(l))
                    {
                        c.probe_abandoned();
                    }
                }
            }
            Stage::Routing => {}
        }
        if let Some(r) = call.reservation.take() {
            self.ledger.release(r);
        }
        metrics::histogram!("aimesh_gateway_call_duration_seconds")
            .record(call.started.elapsed().as_secs_f64());
        if let Some(reply) = call.reply.take() {
            let _ = reply.send(result);
        }
        if call.holds_slot {
            self.free_slot();
        }
    }
}
