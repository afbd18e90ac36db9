//! A task's path end to end: plan, delegate, synthesize, journal, memory.

use std::time::Duration;

use aimesh_actors::Node;
use aimesh_actors::node::{NewNetwork, NewTask, NodeError};
use aimesh_actors::priority::Priority;
use aimesh_actors::types::{FailureCode, MemoryKind, MemoryQuery, SubtaskStatus, TaskStatus};

use crate::support::{Gate, agent, eventually, finished, network, options, run};

fn seed_task() -> NewTask {
    NewTask {
        task: "Create an email campaign for a new product launch targeting tech professionals"
            .into(),
        context: serde_json::json!({
            "product_name": "TechPro X1",
            "product_description": "Advanced AI-powered development tool",
            "target_audience": "Software developers and IT professionals",
            "key_features": ["AI code completion", "Automated testing", "Performance optimization"]
        }),
        priority: Priority::HIGHEST,
        max_iterations: None,
        timeout_seconds: None,
        client_traceparent: None,
    }
}

#[tokio::test]
async fn the_seed_task_is_delegated_to_the_fitting_specialists_and_synthesized() {
    let node = Node::start(options()).await.unwrap();
    let net = node
        .create_network(NewNetwork {
            name: "Email Campaign Assistant".into(),
            description: "AI network for creating and optimizing email campaigns".into(),
            max_iterations: 10,
            timeout_seconds: 300,
            agents: None,
            budget_usd: None,
            retention: None,
            network_id: None,
        })
        .await
        .unwrap();
    assert_eq!(net.record.agents.len(), 5);
    let id = net.record.network_id;
    let task = node.submit_task(id, seed_task()).await.unwrap();
    assert_eq!(task.status, TaskStatus::Queued);
    assert_eq!(
        node.process_task(id, task.task_id).await.unwrap(),
        TaskStatus::Processing
    );
    let done = finished(&node, id, &task).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let kinds: Vec<&str> = done
        .subtasks
        .iter()
        .map(|s| s.agent_type.as_str())
        .collect();
    assert_eq!(kinds, ["content", "design", "analytics", "personalization"]);
    for s in &done.subtasks {
        assert_eq!(s.status, SubtaskStatus::Completed);
        assert_eq!(s.model.as_deref(), Some("offline"));
        assert!(s.started_at.is_some() && s.finished_at.is_some());
        assert!(!s.output.as_deref().unwrap_or("").is_empty());
    }
    let content = done.subtasks[0].output.as_deref().unwrap();
    assert!(content.contains("TechPro X1"), "{content}");
    let result = done.result.expect("a completed task has a result");
    assert_eq!(result.model, "offline");
    assert_eq!(result.contributors.len(), 4);
    assert!(done.usage.output_tokens > 0);
    assert!(done.duration_ms.is_some());

    // The coordinator recorded its decisions, the agents their outputs.
    let decisions = node
        .memory(
            id,
            &MemoryQuery {
                kinds: vec![MemoryKind::Decision],
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "decisions in memory", || {
        let node = node.clone();
        async move {
            let page = node
                .memory(
                    id,
                    &MemoryQuery {
                        kinds: vec![MemoryKind::Decision],
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            (page.total >= 2).then_some(())
        }
    })
    .await;
    assert!(
        decisions
            .items
            .iter()
            .all(|i| i.kind == MemoryKind::Decision)
    );

    // Processing a finished task is a conflict; a second process of a running one is not.
    assert!(matches!(
        node.process_task(id, task.task_id).await,
        Err(NodeError::Conflict {
            code: "task_finished",
            ..
        })
    ));
}

#[tokio::test]
async fn a_network_with_only_a_coordinator_answers_alone() {
    let node = Node::start(options()).await.unwrap();
    let net = network(&node, vec![], 30).await;
    let t = run(&node, net, "Summarize our launch plan", 3).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert!(done.subtasks.is_empty());
    assert!(done.result.is_some());
}

#[tokio::test]
async fn a_task_past_its_timeout_fails_with_timeout_and_its_subtasks_are_cancelled() {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    let node = Node::start(opts).await.unwrap();
    let net = network(
        &node,
        vec![agent("Writer", "content", "gated", &["copywriting"])],
        1,
    )
    .await;
    let t = run(&node, net, "Write a short email", 3).await;
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code, FailureCode::Timeout);
    assert_eq!(done.subtasks[0].status, SubtaskStatus::Cancelled);
    // The agent dropped the call it was running.
    eventually(Duration::from_secs(5), "agent idle", || {
        let node = node.clone();
        async move {
            let agents = node.agents(net).await.unwrap();
            (agents[1].stats.running == 0).then_some(())
        }
    })
    .await;
    // A late answer changes nothing.
    gate.release(10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        node.task(net, t.task_id).await.unwrap().status,
        TaskStatus::Failed
    );
}

#[tokio::test]
async fn cancel_stops_a_running_task_and_is_idempotent() {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    let node = Node::start(opts).await.unwrap();
    let net = network(
        &node,
        vec![agent("Writer", "content", "gated", &["copywriting"])],
        60,
    )
    .await;
    let t = run(&node, net, "Write a short email", 3).await;
    eventually(Duration::from_secs(5), "the call to start", || {
        let gate = gate.clone();
        async move { (!gate.calls().is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(
        node.cancel_task(net, t.task_id).await.unwrap(),
        TaskStatus::Cancelled
    );
    assert_eq!(
        node.cancel_task(net, t.task_id).await.unwrap(),
        TaskStatus::Cancelled
    );
    gate.release(10);
    let done = node.task(net, t.task_id).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancelled);
    assert_eq!(done.subtasks[0].status, SubtaskStatus::Cancelled);

    // A queued task can be cancelled too, and a completed one cannot.
    let queued = node
        .submit_task(
            net,
            NewTask {
                task: "later".into(),
                context: serde_json::json!({}),
                priority: Priority::DEFAULT,
                max_iterations: None,
                timeout_seconds: None,
                client_traceparent: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        node.cancel_task(net, queued.task_id).await.unwrap(),
        TaskStatus::Cancelled
    );
    assert!(matches!(
        node.process_task(net, queued.task_id).await,
        Err(NodeError::Conflict { .. })
    ));
}

#[tokio::test]
async fn removing_an_agent_mid_task_hands_its_work_to_another_of_its_type() {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    let node = Node::start(opts).await.unwrap();
    let first = agent("Writer A", "content", "gated", &["copywriting"]);
    let second = agent("Writer B", "content", "offline", &["copywriting"]);
    let first_id = first.agent_id;
    let net = network(&node, vec![first, second], 60).await;
    let t = run(&node, net, "Write a launch email", 3).await;
    eventually(Duration::from_secs(5), "writer A to start", || {
        let gate = gate.clone();
        async move { (!gate.calls().is_empty()).then_some(()) }
    })
    .await;
    node.remove_agent(net, first_id).await.unwrap();
    let done = finished(&node, net, &t).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    assert_eq!(done.iterations, 2);
    assert_eq!(done.subtasks[0].status, SubtaskStatus::Failed);
    assert_eq!(done.subtasks[1].agent, "Writer B");
    assert_eq!(done.subtasks[1].replaces, Some(1));
    assert!(done.errors.iter().any(|e| e.code == "subtask_redelegated"));
    let agents = node.agents(net).await.unwrap();
    assert_eq!(agents.len(), 2);
}

#[tokio::test]
async fn submissions_past_the_per_network_cap_are_refused_not_lost() {
    let mut opts = options();
    opts.max_unfinished_tasks = 2;
    let node = Node::start(opts).await.unwrap();
    let net = network(&node, vec![], 30).await;
    let new = || NewTask {
        task: "x".into(),
        context: serde_json::json!({}),
        priority: Priority::DEFAULT,
        max_iterations: None,
        timeout_seconds: None,
        client_traceparent: None,
    };
    let a = node.submit_task(net, new()).await.unwrap();
    node.submit_task(net, new()).await.unwrap();
    assert!(matches!(
        node.submit_task(net, new()).await,
        Err(NodeError::Busy { .. })
    ));
    // Finishing one frees a place.
    node.process_task(net, a.task_id).await.unwrap();
    finished(&node, net, &a).await;
    node.submit_task(net, new()).await.unwrap();
    let page = node
        .tasks(
            net,
            &aimesh_actors::types::TaskQuery {
                status: None,
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 3);
}
