//! Durability: SIGKILL a node in the middle of a task batch and of a burst of memory writes,
//! restart it, and check that nothing acknowledged was lost and no finished model call was
//! paid for twice.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Proc, cluster_file, eventually, fake, free_port, node_with};

fn node(config: &std::path::Path) -> Proc {
    node_with(config, "d1", &[("FAKE_KEY", "k")])
}

fn sigkill(p: &mut Proc) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = p.0.wait();
}

#[test]
fn a_node_killed_mid_batch_resumes_every_task_and_repeats_no_finished_call() {
    let fake = fake(150);
    let port = free_port();
    let (_dir, config) = cluster_file(
        &[("d1", port)],
        &format!(
            "[gateway.providers.anthropic]\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n",
            fake.url
        ),
    );
    let mut proc = node(&config);
    let api = Api::new(port);
    api.wait_healthy();
    let (_, net) = api.post("/networks", &json!({"name": "durable"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..40 {
        let (status, t) = api.post(
            &format!("/networks/{net}/tasks"),
            &json!({"task": format!("Create an email campaign for launch {i} targeting developers"),
                    "context": {"product_name": format!("Widget {i}")}}),
        );
        assert_eq!(status, 202);
        let id = t["task_id"].as_str().unwrap().to_owned();
        let (status, _) = api.post_empty(&format!("/networks/{net}/tasks/{id}/process"));
        assert_eq!(status, 202);
        ids.push(id);
    }
    // Let part of the batch finish, then kill the node in the middle of the rest.
    eventually(Duration::from_secs(60), "some tasks to complete", || {
        let (_, page) = api.get(&format!("/networks/{net}/tasks?status=completed&limit=500"));
        (page["total"].as_u64().unwrap_or(0) >= 4).then_some(())
    });
    let mut done_before: HashSet<String> = HashSet::new();
    for id in &ids {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
        for s in t["subtasks"].as_array().unwrap() {
            if s["status"] == "completed" {
                done_before.insert(s["subtask_id"].as_str().unwrap().to_owned());
            }
        }
        if t["status"] == "completed" {
            done_before.insert(format!("{id}.synthesis"));
        }
    }
    sigkill(&mut proc);
    assert!(!done_before.is_empty());

    let _proc = node(&config);
    api.wait_healthy();
    let tasks: Vec<Value> = eventually(Duration::from_secs(120), "every task to end", || {
        let all: Vec<Value> = ids
            .iter()
            .map(|id| api.get(&format!("/networks/{net}/tasks/{id}")).1)
            .collect();
        all.iter()
            .all(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                )
            })
            .then_some(all)
    });
    for t in &tasks {
        assert!(
            t["status"] == "completed" || t["error"]["code"].is_string(),
            "a task ended without a reason: {t}"
        );
    }
    let completed = tasks.iter().filter(|t| t["status"] == "completed").count();
    assert_eq!(
        completed, 40,
        "every accepted task completes after the restart"
    );
    // No call that had finished before the kill was made again.
    let by_key = fake.calls_by_key();
    for key in &done_before {
        assert_eq!(
            by_key.get(key).copied(),
            Some(1),
            "{key} was called {:?} times",
            by_key.get(key)
        );
    }
    // And every subtask's result is journaled once: its attempts say redeliveries happened.
    let total: u64 = by_key.values().sum();
    let units = tasks
        .iter()
        .map(|t| t["subtasks"].as_array().unwrap().len() + 1)
        .sum::<usize>() as u64;
    assert!(
        total >= units && total <= units + 40,
        "{total} calls for {units} call units"
    );
}

#[test]
fn a_node_killed_mid_burst_keeps_every_acknowledged_memory_write() {
    let port = free_port();
    let (_dir, config) = cluster_file(&[("d1", port)], "");
    let mut proc = node(&config);
    let api = Api::new(port);
    api.wait_healthy();
    let (_, net) = api.post("/networks", &json!({"name": "memory"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}/api/mesh/networks/{net}/memory");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let url = url.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for i in 0..1000 {
                    let r = client
                        .post(&url)
                        .json(&json!({"type": "fact", "content": format!("fact {w}-{i}: {}", "x".repeat(200))}))
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: Value = r.json().unwrap();
                            acked.lock().unwrap().push(v["memory_id"].as_str().unwrap().to_owned());
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(30), "a burst in progress", || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    sigkill(&mut proc);
    for w in writers {
        w.join().unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let _proc = node(&config);
    api.wait_healthy();
    let mut stored = HashSet::new();
    let mut offset = 0;
    loop {
        let (_, page) = api.get(&format!("/networks/{net}/memory?limit=500&offset={offset}"));
        for i in page["items"].as_array().unwrap() {
            stored.insert(i["memory_id"].as_str().unwrap().to_owned());
        }
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
}
