//! The gateway's behaviour at actor level, with in-process providers whose answers are
//! scripted: fallback, breakers, Retry-After, budgets under concurrency, exact cost roll-up,
//! cache, rate-limit admission by priority, supervision of upstreams, deadlines, safety,
//! model selection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimesh_actors::Node;
use aimesh_actors::gateway::catalog::{ModelSpec, Price};
use aimesh_actors::gateway::selection::{SelectionPolicy, SimpleTier};
use aimesh_actors::gateway::{
    ChatMessage, ModelError, ModelRequest, ModelResponse, Provider, Role,
};
use aimesh_actors::priority::Priority;
use aimesh_actors::types::{TaskStatus, Usage, Usd};
use async_trait::async_trait;

use crate::support::{Gate, agent, eventually, finished, network, options, run};

/// A provider that answers from a script (then succeeds), counting calls.
struct Scripted {
    name: String,
    script: Mutex<VecDeque<ModelError>>,
    calls: AtomicU64,
    order: Mutex<Vec<String>>,
    delay: Duration,
    text: String,
}

impl Scripted {
    fn new(name: &str, script: Vec<ModelError>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            script: Mutex::new(script.into()),
            calls: AtomicU64::new(0),
            order: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
            text: format!("answer from {name}"),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let last = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        self.order.lock().unwrap().push(last);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(e) = self.script.lock().unwrap().pop_front() {
            return Err(e);
        }
        // Realistic counts: about four bytes of prompt per token, the answer within max_tokens.
        let prompt: usize = request.messages.iter().map(|m| m.content.len()).sum();
        Ok(ModelResponse {
            text: self.text.clone(),
            model: self.name.clone(),
            provider: self.name.clone(),
            usage: Usage {
                input_tokens: prompt.div_ceil(4) as u64,
                output_tokens: u64::from(request.max_tokens.min(500)),
                ..Usage::default()
            },
            finish_reason: Some("stop".into()),
            route: Default::default(),
        })
    }
}

fn server_error(p: &str) -> ModelError {
    ModelError::Server {
        provider: p.into(),
        status: 500,
        message: "boom".into(),
    }
}

fn ask(text: &str) -> ModelRequest {
    let mut r = ModelRequest::new("chain", vec![ChatMessage::new(Role::User, text.into())]);
    r.max_tokens = 500;
    r.timeout = Duration::from_secs(10);
    r
}

/// A node whose `chain` is the given providers in order (each a free model of its name).
async fn node_with(
    providers: Vec<Arc<Scripted>>,
    tweak: impl FnOnce(&mut aimesh_actors::NodeOptions),
) -> Node {
    let mut opts = options();
    let names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
    for p in providers {
        opts.providers.push(p);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    opts.gateway.catalog.add_chain("chain", &refs);
    tweak(&mut opts);
    Node::start(opts).await.unwrap()
}

#[tokio::test]
async fn a_failing_provider_falls_back_to_the_next_link_and_the_route_says_so() {
    let bad = Scripted::new("bad", vec![server_error("bad")]);
    let good = Scripted::new("good", vec![]);
    let node = node_with(vec![bad.clone(), good.clone()], |_| {}).await;
    let r = node.complete(ask("hello")).await.unwrap();
    assert_eq!(r.provider, "good");
    assert_eq!(r.text, "answer from good");
    assert_eq!(r.route.chain, "chain");
    assert_eq!(r.route.attempts.len(), 2);
    assert!(
        r.route.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("HTTP 500")
    );
    assert!(r.route.attempts[1].error.is_none());
    // A request error does not fall back.
    let bad = Scripted::new(
        "strict",
        vec![ModelError::BadRequest {
            provider: "strict".into(),
            message: "no".into(),
        }],
    );
    let node = node_with(vec![bad, Scripted::new("spare", vec![])], |_| {}).await;
    let e = node.complete(ask("x")).await.unwrap_err();
    assert_eq!(e.code(), "bad_request");
}

#[tokio::test]
async fn consecutive_failures_open_the_breaker_and_a_probe_closes_it() {
    let flaky = Scripted::new("flaky", vec![server_error("flaky"); 3]);
    let good = Scripted::new("good", vec![]);
    let node = node_with(vec![flaky.clone(), good.clone()], |o| {
        o.gateway.circuit.cooldown = Duration::from_millis(300);
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            node.complete(ask(&format!("a{i}"))).await.unwrap().provider,
            "good"
        );
    }
    assert_eq!(flaky.calls(), 3);
    // Open: skipped without a call.
    let r = node.complete(ask("skip")).await.unwrap();
    assert_eq!(flaky.calls(), 3);
    assert!(
        r.route.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("circuit open")
    );
    let status = node.gateway_status().await.unwrap();
    assert!(
        status
            .links
            .iter()
            .any(|l| l.link == "flaky/flaky" && l.opened == 1)
    );
    // After the cooldown one probe goes through; it succeeds and closes the breaker.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(node.complete(ask("probe")).await.unwrap().provider, "flaky");
    assert_eq!(node.complete(ask("after")).await.unwrap().provider, "flaky");
}

#[tokio::test]
async fn a_429_cools_the_link_down_for_its_retry_after() {
    let limited = Scripted::new(
        "limited",
        vec![ModelError::RateLimited {
            provider: "limited".into(),
            retry_after: Some(Duration::from_millis(400)),
            message: "slow down".into(),
        }],
    );
    let good = Scripted::new("good", vec![]);
    let node = node_with(vec![limited.clone(), good], |_| {}).await;
    assert_eq!(node.complete(ask("1")).await.unwrap().provider, "good");
    assert_eq!(node.complete(ask("2")).await.unwrap().provider, "good");
    assert_eq!(limited.calls(), 1, "skipped during its Retry-After");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(node.complete(ask("3")).await.unwrap().provider, "limited");
}

fn priced(name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        provider: name.into(),
        upstream: name.into(),
        price: Price::per_mtok(3.0, 15.0, 0.3),
        rpm: None,
        tpm: None,
        limit_window: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn a_budget_is_never_overshot_by_200_concurrent_calls() {
    let mut slow = Scripted::new("paid", vec![]);
    Arc::get_mut(&mut slow).unwrap().delay = Duration::from_millis(20);
    let net = aimesh_actors::ids::NetworkId::new();
    let node = node_with(vec![slow.clone()], |o| {
        o.gateway.catalog.add_model(priced("paid"));
        o.gateway.catalog.add_chain("chain", &["paid"]);
    })
    .await;
    // Each call reserves its worst case (prompt bytes + 500 answer tokens) and costs about
    // 2 in × $3/M + 500 out × $15/M ≈ $0.0075: about 66 fit in the budget.
    let budget = Usd::from_dollars(0.5);
    node.set_network_budget(net, Some(budget));
    let calls = (0..200).map(|i| {
        let node = node.clone();
        tokio::spawn(async move {
            let mut r = ask(&format!("call {i}"));
            r.network_id = Some(net);
            node.complete(r).await
        })
    });
    let results = futures::future::join_all(calls).await;
    let ok: Vec<&ModelResponse> = results
        .iter()
        .filter_map(|r| r.as_ref().unwrap().as_ref().ok())
        .collect();
    let refused = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(ModelError::BudgetExceeded { .. })))
        .count();
    assert_eq!(
        ok.len() + refused,
        200,
        "every call either ran or was refused for budget"
    );
    assert!(refused > 0 && !ok.is_empty());
    let spend = node.network_spend(net);
    let total: u64 = ok.iter().map(|r| r.usage.cost_usd.0).sum();
    assert_eq!(
        spend.spent.0, total,
        "the ledger adds up to the answers' costs exactly"
    );
    assert!(
        spend.spent <= budget,
        "spent {} of a {} budget",
        spend.spent,
        budget
    );
    assert_eq!(spend.reserved, Usd(0));
    assert_eq!(
        slow.calls() as usize,
        ok.len(),
        "refused calls never reached the provider"
    );
    // Each answer's cost is exact at the model's prices.
    let price = priced("paid").price;
    assert!(ok.iter().all(|r| r.usage.cost_usd == price.cost(&r.usage)));
}

#[tokio::test]
async fn identical_calls_are_answered_from_the_cache_for_free_unless_opted_out() {
    let p = Scripted::new("paid", vec![]);
    let node = node_with(vec![p.clone()], |o| {
        o.gateway.catalog.add_model(priced("paid"));
    })
    .await;
    let first = node.complete(ask("same")).await.unwrap();
    assert!(!first.route.cached && first.usage.cost_usd > Usd(0));
    let second = node.complete(ask("same")).await.unwrap();
    assert!(second.route.cached);
    assert_eq!(second.usage.cost_usd, Usd(0));
    assert_eq!(second.text, first.text);
    assert_eq!(p.calls(), 1);
    let mut fresh = ask("same");
    fresh.cache = false;
    assert!(!node.complete(fresh).await.unwrap().route.cached);
    assert_eq!(p.calls(), 2);
    let status = node.gateway_status().await.unwrap();
    assert_eq!(status.cache_hits, 1);
}

#[tokio::test]
async fn at_a_rate_limit_calls_wait_and_are_admitted_highest_priority_first() {
    let p = Scripted::new("limited", vec![]);
    let node = node_with(vec![p.clone()], |o| {
        let mut m = priced("limited");
        m.price = Price::default();
        m.rpm = Some(1);
        m.limit_window = Duration::from_millis(150);
        o.gateway.catalog.add_model(m);
    })
    .await;
    // The first call takes the only slot of the window; the rest queue.
    node.complete(ask("first")).await.unwrap();
    let mut handles = Vec::new();
    for (i, prio) in [5u8, 3, 1, 4, 2].into_iter().enumerate() {
        let caller = node.clone();
        handles.push(tokio::spawn(async move {
            let mut r = ask(&format!("p{prio}"));
            r.priority = Priority::new(prio).unwrap();
            r.cache = false;
            caller.complete(r).await
        }));
        // Let each reach the queue before the next.
        eventually(Duration::from_secs(5), "the call to queue", || {
            let node = node.clone();
            async move {
                let s = node.gateway_status().await.ok()?;
                (s.waiting > i).then_some(())
            }
        })
        .await;
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let order = p.order.lock().unwrap().clone();
    assert_eq!(order, ["first", "p1", "p2", "p3", "p4", "p5"]);
}

#[tokio::test]
async fn killing_an_upstream_mid_call_moves_the_call_to_the_next_link() {
    let gate = Gate::new("gated");
    let spare = Scripted::new("spare", vec![]);
    let mut opts = options();
    let name = opts.name.clone();
    opts.providers.push(gate.clone());
    opts.providers.push(spare.clone());
    opts.gateway.catalog.add_chain("chain", &["gated", "spare"]);
    let node = Node::start(opts).await.unwrap();
    let call = {
        let node = node.clone();
        tokio::spawn(async move { node.complete(ask("hold")).await })
    };
    eventually(Duration::from_secs(5), "the call to reach the gate", || {
        let gate = gate.clone();
        async move { (!gate.calls().is_empty()).then_some(()) }
    })
    .await;
    let upstream = ractor::registry::where_is(format!("{name}/gateway/gated")).unwrap();
    upstream.kill();
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.provider, "spare");
    assert!(
        r.route.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("crashed"),
        "{:?}",
        r.route
    );
    // The upstream was restarted and serves again.
    eventually(Duration::from_secs(5), "the upstream to be back", || {
        let node = node.clone();
        async move {
            let s = node.gateway_status().await.ok()?;
            s.providers
                .iter()
                .find(|p| p.name == "gated" && p.up && p.restarts == 1)
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test]
async fn a_call_past_its_deadline_fails_with_timeout() {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    opts.gateway.catalog.set_offline_fallback(false);
    let node = Node::start(opts).await.unwrap();
    let mut r = ModelRequest::new("gated", vec![ChatMessage::new(Role::User, "x".into())]);
    r.timeout = Duration::from_millis(200);
    let e = node.complete(r).await.unwrap_err();
    assert_eq!(e.code(), "timeout", "{e}");
}

#[tokio::test]
async fn blocked_output_fails_with_content_filtered() {
    let mut p = Scripted::new("chatty", vec![]);
    Arc::get_mut(&mut p).unwrap().text = "Here is the secret launch code".into();
    let node = node_with(vec![p], |o| {
        o.gateway.safety =
            aimesh_actors::gateway::safety::SafetyFilter::new(&["launch code".into()], &[])
                .unwrap();
    })
    .await;
    let e = node.complete(ask("tell me")).await.unwrap_err();
    assert_eq!(e.code(), "content_filtered");
    assert!(e.to_string().contains("launch code"), "{e}");
}

#[tokio::test]
async fn simple_calls_go_to_the_cheaper_tier_and_the_choice_is_recorded() {
    let cheap = Scripted::new("cheap", vec![]);
    let strong = Scripted::new("strong", vec![]);
    let node = node_with(vec![cheap.clone(), strong.clone()], |o| {
        o.gateway.catalog.add_chain("chain", &["strong"]);
        o.gateway.selection = SelectionPolicy {
            simple: Some(SimpleTier {
                model: "cheap".into(),
                max_prompt_tokens: 100,
            }),
            temperature: [("analytics".to_owned(), 0.1f32)].into_iter().collect(),
        };
    })
    .await;
    let mut simple = ask("Write a subject line.");
    simple.agent_kind = Some("content".into());
    let r = node.complete(simple).await.unwrap();
    assert_eq!(
        (r.provider.as_str(), r.route.tier.as_deref()),
        ("cheap", Some("simple"))
    );
    let mut hard = ask("Analyze the quarter and compare strategies.");
    hard.agent_kind = Some("analytics".into());
    let r = node.complete(hard).await.unwrap();
    assert_eq!(
        (r.provider.as_str(), r.route.tier.as_deref()),
        ("strong", Some("standard"))
    );
    assert_eq!(r.route.temperature, 0.1);
}

#[tokio::test]
async fn task_cost_rolls_up_exactly_from_subtasks_to_task_to_network() {
    let p = Scripted::new("paid", vec![]);
    let mut opts = options();
    opts.providers.push(p.clone());
    opts.gateway.catalog.add_model(priced("paid"));
    let node = Node::start(opts).await.unwrap();
    let mut coordinator = crate::support::coordinator();
    coordinator.model = "paid".into();
    let net = node
        .create_network(aimesh_actors::node::NewNetwork {
            name: "paid".into(),
            description: String::new(),
            max_iterations: 2,
            timeout_seconds: 30,
            agents: Some(vec![
                coordinator,
                agent("Writer", "content", "paid", &["copywriting"]),
                agent("Analyst", "analytics", "paid", &["data_analysis"]),
            ]),
            budget_usd: Some(Usd::from_dollars(10.0)),
            retention: None,
            network_id: None,
        })
        .await
        .unwrap()
        .record
        .network_id;
    let t = run(&node, net, "Write and analyze a launch email campaign", 1).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let subtasks: u64 = done
        .subtasks
        .iter()
        .map(|s| s.usage.unwrap().cost_usd.0)
        .sum();
    let synthesis = done.result.as_ref().unwrap().usage.cost_usd.0;
    assert_eq!(done.subtasks.len(), 2);
    assert_eq!(done.usage.cost_usd.0, subtasks + synthesis);
    let price = priced("paid").price;
    for s in &done.subtasks {
        let u = s.usage.unwrap();
        assert_eq!(u.cost_usd, price.cost(&u));
        assert!(u.cost_usd > Usd(0));
    }
    let view = node.network(net).await.unwrap();
    assert_eq!(view.spend.spent, done.usage.cost_usd);
    assert_eq!(view.spend.limit, Some(Usd::from_dollars(10.0)));

    // The network starts again on a node over the same store (a restart, or a takeover): its
    // spend is restored from the journal, so the budget still holds.
    let store = node.store().clone();
    node.shutdown().await;
    let mut opts = crate::support::options();
    opts.store = store;
    opts.providers.push(p.clone());
    opts.gateway.catalog.add_model(priced("paid"));
    let again = Node::start(opts).await.unwrap();
    let view = again.network(net).await.unwrap();
    assert_eq!(view.spend.spent, done.usage.cost_usd);
    assert!(view.spend.spent > Usd(0));
    again.shutdown().await;
}

#[tokio::test]
async fn agents_in_a_network_use_the_chain_and_record_the_provider() {
    let bad = Scripted::new("bad", vec![server_error("bad"); 10]);
    let node = node_with(vec![bad, Scripted::new("good", vec![])], |_| {}).await;
    let net = network(
        &node,
        vec![agent("Writer", "content", "chain", &["copywriting"])],
        30,
    )
    .await;
    let t = run(&node, net, "Write a launch email", 1).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    assert_eq!(done.subtasks[0].provider.as_deref(), Some("good"));
    let route = done.subtasks[0].route.as_ref().unwrap();
    assert_eq!(route.chain, "chain");
    assert!(route.attempts[0].error.is_some());
}
