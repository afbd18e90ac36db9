//! The admin API and the operator CLI against a real node process with a token: the tree,
//! auth, killing an agent mid-task, errors as one line and a non-zero exit, `--json`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Proc, binary, cluster_file, eventually, free_port};

const TOKEN: &str = "s3cret-admin-token";

/// Runs the `aimesh` CLI against `port` (with the token unless `token` is None).
fn cli(port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .arg("--api")
        .arg(format!("http://127.0.0.1:{port}"))
        .env_remove("AIMESH_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("AIMESH_ADMIN_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn admin_get(port: u16, path: &str, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("http://127.0.0.1:{port}/api/admin{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn the_admin_cli_shows_the_tree_and_a_killed_agent_is_restarted_while_its_task_completes() {
    let port = free_port();
    let (_dir, config) = cluster_file(&[("solo", port)], "[gateway.offline]\nlatency_ms = 1500\n");
    let _node = Proc(
        Command::new(binary())
            .args([
                "node",
                "--config",
                config.to_str().unwrap(),
                "--name",
                "solo",
            ])
            .env("AIMESH_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = Api::new(port);
    api.wait_healthy();

    // The token is required, and a wrong one is refused, over HTTP and in the CLI.
    let (status, body) = admin_get(port, "/actors", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(admin_get(port, "/actors", Some("wrong")).0, 401);
    let err = one_line_error(&cli(port, None, &["actors"]));
    assert!(err.contains("token"), "{err}");
    let err = one_line_error(&cli(port, Some("wrong"), &["nodes"]));
    assert!(err.contains("wrong"), "{err}");

    // A network, and a task whose subtasks take 1.5 s each.
    let (status, net) = api.post("/networks", &json!({"name": "ops", "timeout_seconds": 120}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap().to_owned();

    // The tree: the node, its services, the network, its coordinator and agents.
    let out = cli(port, Some(TOKEN), &["actors", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actors = tree["actors"].as_array().unwrap();
    let kinds: Vec<&str> = actors.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    for kind in [
        "node",
        "gateway",
        "memory_shard",
        "network",
        "coordinator",
        "agent",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(actors[0]["id"], "solo/node");
    let network_actor = format!("solo/net/{net}");
    assert!(
        actors
            .iter()
            .filter(|a| a["kind"] == "agent")
            .all(|a| a["parent"] == network_actor.as_str()),
        "agents sit under their network"
    );
    let table = cli(port, Some(TOKEN), &["actors", "--tree"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ACTOR"), "{text}");
    assert!(
        text.contains("  solo/gateway"),
        "indented under the node: {text}"
    );

    let (status, t) = api.post(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Write a launch email for our analytics product"}),
    );
    assert_eq!(status, 202, "{t}");
    let task = t["task_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.post_empty(&format!("/networks/{net}/tasks/{task}/process"))
            .0,
        202
    );
    // Kill the agent running the first subtask, while it runs.
    let agent = eventually(Duration::from_secs(30), "a running subtask", || {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{task}"));
        t["subtasks"]
            .as_array()?
            .iter()
            .find(|s| s["status"] == "running")
            .and_then(|s| s["agent_id"].as_str().map(str::to_owned))
    });
    let id = format!("solo/net/{net}/agent/{agent}");
    let out = cli(port, Some(TOKEN), &["actor", "kill", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kill"));

    // `task watch` follows it to the end and exits 0 once it completed.
    let watch = cli(port, Some(TOKEN), &["task", "watch", &task]);
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(String::from_utf8_lossy(&watch.stdout).contains("completed"));
    let (_, done) = api.get(&format!("/networks/{net}/tasks/{task}"));
    assert_eq!(done["status"], "completed", "{done}");
    let step = done["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["agent_id"] == agent.as_str())
        .unwrap();
    assert!(
        step["attempts"].as_u64().unwrap() >= 2,
        "redelivered: {step}"
    );

    let out = cli(port, Some(TOKEN), &["actor", "inspect", &id, "--json"]);
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["actor"]["restarts"], 1, "{inspected}");
    assert_eq!(inspected["actor"]["kind"], "agent");

    // Errors: an unknown actor, the node itself, an unknown node.
    let err = one_line_error(&cli(port, Some(TOKEN), &["actor", "kill", "solo/nope"]));
    assert!(err.contains("no actor"), "{err}");
    let err = one_line_error(&cli(port, Some(TOKEN), &["actor", "restart", "solo/node"]));
    assert!(err.contains("node itself"), "{err}");
    let err = one_line_error(&cli(free_port(), Some(TOKEN), &["nodes"]));
    assert!(err.contains("cannot reach"), "{err}");

    // Restarting a service: it comes back with its restart counted.
    let out = cli(port, Some(TOKEN), &["actor", "restart", "solo/memory/0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(10), "the shard restarted", || {
        let (_, a) = admin_get(port, "/actors/solo%2Fmemory%2F0", Some(TOKEN));
        (a["actor"]["restarts"] == 1 && a["actor"]["status"] == "running").then_some(())
    });

    // The other views answer, as tables and as JSON.
    for args in [
        vec!["nodes"],
        vec!["networks"],
        vec!["tasks"],
        vec!["gateway"],
        vec!["memory", "stats"],
    ] {
        let out = cli(port, Some(TOKEN), &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?}");
        let mut json_args = args.clone();
        json_args.push("--json");
        let out = cli(port, Some(TOKEN), &json_args);
        assert!(out.status.success(), "{json_args:?}");
        let _: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{json_args:?} prints JSON: {e}"));
    }
    // Actor metrics by kind: the kill and the restart are counted.
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from /metrics"))
    };
    assert_eq!(value("aimesh_actors{kind=\"agent\",status=\"idle\"}"), 4.0);
    assert_eq!(
        value("aimesh_actors{kind=\"memory_shard\",status=\"running\"}"),
        4.0
    );
    assert!(value("aimesh_actor_restarts_total{kind=\"agent\"}") >= 1.0);
    assert!(value("aimesh_actor_restarts_total{kind=\"memory_shard\"}") >= 1.0);
    assert!(value("aimesh_actor_messages_total{kind=\"coordinator\"}") > 0.0);
    assert_eq!(value("aimesh_actor_escalations_total{kind=\"agent\"}"), 0.0);
    // Queue waits, tasks in progress, memory held (the agents wrote their outputs).
    assert!(value("aimesh_queue_wait_seconds_count{queue=\"agent\"}") >= 3.0);
    assert!(value("aimesh_queue_wait_seconds_count{queue=\"coordinator\"}") >= 1.0);
    assert_eq!(value("aimesh_tasks_in_progress{state=\"active\"}"), 0.0);
    assert!(value("aimesh_memory_items") >= 1.0);
    assert!(value("aimesh_memory_bytes") > 0.0);

    // Not clustered: nothing to drain into.
    let err = one_line_error(&cli(port, Some(TOKEN), &["drain", "solo"]));
    assert!(err.contains("not in a cluster"), "{err}");
}
