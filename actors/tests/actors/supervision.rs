//! Recovery is supervision: restart + redelivery, escalation past the intensity.

use std::sync::Arc;
use std::time::Duration;

use aimesh_actors::Node;
use aimesh_actors::behavior::{AgentBehavior, Assignment, Behaviors};
use aimesh_actors::gateway::ModelResponse;
use aimesh_actors::node_supervisor::NetworkStatus;
use aimesh_actors::stats::AgentStatus;
use aimesh_actors::types::{AgentSpec, FailureCode, TaskStatus};

use crate::support::{Gate, agent, eventually, finished, network, options, run};

/// Panics while finishing a subtask on the attempts listed (all attempts when empty): a bug in
/// the agent's own code, mid-subtask.
struct Crashes(Vec<u32>);

impl AgentBehavior for Crashes {
    fn finish(
        &self,
        _spec: &AgentSpec,
        work: &Assignment,
        response: &ModelResponse,
    ) -> Result<String, String> {
        if self.0.is_empty() || self.0.contains(&work.attempt) {
            panic!("injected crash on attempt {}", work.attempt);
        }
        Ok(response.text.clone())
    }
}

fn crashing_node(attempts: Vec<u32>) -> aimesh_actors::NodeOptions {
    let mut opts = options();
    opts.behaviors = Behaviors::default().with("flaky", Arc::new(Crashes(attempts)));
    opts
}

#[tokio::test]
async fn an_agent_that_crashes_mid_subtask_is_restarted_and_the_subtask_redelivered() {
    let node = Node::start(crashing_node(vec![1])).await.unwrap();
    let net = network(
        &node,
        vec![agent("Flaky Writer", "flaky", "offline", &["copywriting"])],
        60,
    )
    .await;
    let t = run(&node, net, "Write a copywriting brief", 2).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    assert_eq!(done.subtasks.len(), 1, "redelivered, not re-delegated");
    assert_eq!(done.subtasks[0].attempts, 2);
    assert!(
        done.errors
            .iter()
            .any(|e| e.code == "agent_restarted" && e.message.contains("injected crash")),
        "{:?}",
        done.errors
    );
    let agents = node.agents(net).await.unwrap();
    assert_eq!(agents[1].stats.restarts, 1);
    assert_eq!(agents[1].stats.tasks_handled, 1);
}

#[tokio::test]
async fn a_crash_loop_escalates_and_the_task_fails_naming_the_agent() {
    let node = Node::start(crashing_node(vec![])).await.unwrap();
    let net = network(
        &node,
        vec![
            agent("Flaky Writer", "flaky", "offline", &["copywriting"]),
            agent("Analyst", "analytics", "offline", &["data_analysis"]),
        ],
        60,
    )
    .await;
    let t = run(&node, net, "Write a copywriting brief", 2).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code, FailureCode::AgentFailed);
    assert_eq!(error.agent_name.as_deref(), Some("Flaky Writer"));
    assert!(error.message.contains("Flaky Writer"), "{}", error.message);
    assert!(error.message.contains("restart"), "{}", error.message);
    assert_eq!(
        done.subtasks[0].attempts, 4,
        "three restarts, four deliveries"
    );

    // The escalation restarted the whole network, which serves other work again.
    let status = eventually(Duration::from_secs(5), "network restarted", || {
        let node = node.clone();
        async move {
            let v = node.network(net).await.ok()?;
            let agents = node.agents(net).await.ok()?;
            (v.status == NetworkStatus::Active && agents[1].stats.status != AgentStatus::Failed)
                .then_some(v.status)
        }
    })
    .await;
    assert_eq!(status, NetworkStatus::Active);
    let other = run(&node, net, "Analyze the metrics report", 2).await;
    assert_eq!(
        finished(&node, net, &other).await.status,
        TaskStatus::Completed
    );
}

#[tokio::test]
async fn a_restarted_coordinator_resumes_its_unfinished_tasks() {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    let name = opts.name.clone();
    let node = Node::start(opts).await.unwrap();
    let net = network(
        &node,
        vec![agent("Writer", "content", "gated", &["copywriting"])],
        60,
    )
    .await;
    let t = run(&node, net, "Write the launch email", 2).await;
    eventually(Duration::from_secs(5), "the call to start", || {
        let gate = gate.clone();
        async move { (!gate.calls().is_empty()).then_some(()) }
    })
    .await;
    // Kill the coordinator while its task is out at the agent.
    let coordinator = ractor::registry::where_is(format!("{name}/net/{net}/coordinator")).unwrap();
    coordinator.kill();
    eventually(Duration::from_secs(5), "a new coordinator", || {
        let name = name.clone();
        let old = coordinator.get_id();
        async move {
            ractor::registry::where_is(format!("{name}/net/{net}/coordinator"))
                .filter(|c| c.get_id() != old)
                .map(|_| ())
        }
    })
    .await;
    gate.release(1);
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    assert_eq!(
        gate.calls().len(),
        1,
        "the agent's in-flight call was not repeated"
    );
    let agents = node.agents(net).await.unwrap();
    assert_eq!(agents[0].stats.restarts, 1);
}
