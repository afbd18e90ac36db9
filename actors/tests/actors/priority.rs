//! Scheduling is mailbox priority, at the coordinator and at every agent, with aging.

use std::time::Duration;

use aimesh_actors::Node;

use crate::support::{Gate, agent, eventually, finished, network, options, run};

/// Submits a blocker, waits until it holds the only slot, then queues `priorities` behind it
/// and lets them through one at a time; returns the order the model saw them in.
async fn order_behind_a_blocker(
    max_active_tasks: usize,
    priorities: &[u8],
    aging: Duration,
) -> Vec<String> {
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    opts.settings.max_active_tasks = max_active_tasks;
    opts.settings.aging = aging;
    let node = Node::start(opts).await.unwrap();
    let net = network(
        &node,
        vec![agent("Writer", "content", "gated", &["copywriting"])],
        120,
    )
    .await;
    let blocker = run(&node, net, "write blocker", 5).await;
    eventually(
        Duration::from_secs(5),
        "the blocker to hold the agent",
        || {
            let gate = gate.clone();
            async move { (gate.calls().len() == 1).then_some(()) }
        },
    )
    .await;
    let mut tasks = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        tasks.push(run(&node, net, &format!("write p{p} #{i}"), *p).await);
    }
    // Everything is queued (at the coordinator or at the agent) before anything is released.
    let queued = priorities.len();
    eventually(Duration::from_secs(5), "all work queued", || {
        let node = node.clone();
        async move {
            let agents = node.agents(net).await.unwrap();
            let waiting = agents[0].stats.mailbox_depth + agents[1].stats.mailbox_depth;
            (waiting as usize == queued).then_some(())
        }
    })
    .await;
    for _ in 0..=queued {
        gate.release(1);
    }
    finished(&node, net, &blocker).await;
    for t in &tasks {
        finished(&node, net, t).await;
    }
    gate.calls()
}

fn expected(priorities: &[u8]) -> Vec<String> {
    let mut order: Vec<(u8, usize)> = priorities.iter().copied().zip(0..).collect();
    order.sort(); // by priority, then submission order: FIFO within a level
    let mut out = vec!["write blocker".to_owned()];
    out.extend(order.into_iter().map(|(p, i)| format!("write p{p} #{i}")));
    out
}

const MIXED: [u8; 12] = [5, 3, 1, 4, 2, 1, 3, 5, 2, 4, 1, 3];

#[tokio::test]
async fn an_agent_under_saturation_takes_higher_priority_work_first() {
    // Many task slots: the work queues in the agent's mailbox.
    let seen = order_behind_a_blocker(64, &MIXED, Duration::from_secs(3600)).await;
    assert_eq!(seen, expected(&MIXED));
}

#[tokio::test]
async fn the_coordinator_under_saturation_starts_higher_priority_tasks_first() {
    // One task slot: the work queues in the coordinator's mailbox.
    let seen = order_behind_a_blocker(1, &MIXED, Duration::from_secs(3600)).await;
    assert_eq!(seen, expected(&MIXED));
}

#[tokio::test]
async fn low_priority_work_is_not_starved_by_a_flood_of_high_priority_work() {
    // One priority-5 task, then 60 priority-1 tasks. With a 20 ms aging interval the low task
    // reaches the top level after 80 ms of waiting and is then older than every new arrival;
    // each call takes at least 5 ms, so it must run long before the flood is through.
    let gate = Gate::new("gated");
    let mut opts = options();
    opts.providers.push(gate.clone());
    opts.settings.aging = Duration::from_millis(20);
    let node = Node::start(opts).await.unwrap();
    let net = network(
        &node,
        vec![agent("Writer", "content", "gated", &["copywriting"])],
        120,
    )
    .await;
    let blocker = run(&node, net, "write blocker", 1).await;
    let low = run(&node, net, "write low", 5).await;
    let mut flood = Vec::new();
    for i in 0..60 {
        flood.push(run(&node, net, &format!("write high {i}"), 1).await);
    }
    let releaser = {
        let gate = gate.clone();
        tokio::spawn(async move {
            for _ in 0..62 {
                gate.release(1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    finished(&node, net, &blocker).await;
    finished(&node, net, &low).await;
    for t in &flood {
        finished(&node, net, t).await;
    }
    releaser.await.unwrap();
    let calls = gate.calls();
    let at = calls.iter().position(|c| c == "write low").unwrap();
    // Without aging it would be last (position 61).
    assert!(
        at < 40,
        "low-priority work ran at position {at} of {}",
        calls.len()
    );
}
