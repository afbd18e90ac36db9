//! Seed 001's curl walkthrough, verbatim bodies, against a real node process.

use std::time::Duration;

use serde_json::json;

use crate::support::{Api, cluster_file, eventually, free_port, spawn};

#[test]
fn the_seed_walkthrough_works_against_a_node_process() {
    let port = free_port();
    let (_dir, config) = cluster_file(&[("n1", port)], "");
    let _node = spawn(&["node", "--config", config.to_str().unwrap(), "--name", "n1"]);
    let api = Api::new(port);
    api.wait_healthy();

    // Creating a Network (seed body, verbatim).
    let (status, network) = api.post(
        "/networks",
        &json!({
            "name": "Email Campaign Assistant",
            "description": "AI network for creating and optimizing email campaigns",
            "max_iterations": 10,
            "timeout_seconds": 300
        }),
    );
    assert_eq!(status, 201, "{network}");
    let net = network["network_id"].as_str().unwrap().to_owned();
    let names: Vec<&str> = network["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Coordinator Agent",
            "Content Specialist",
            "Design Specialist",
            "Analytics Specialist",
            "Personalization Specialist"
        ]
    );

    // Submitting a Task.
    let (status, task) = api.post(
        &format!("/networks/{net}/tasks"),
        &json!({
            "task": "Create an email campaign for a new product launch targeting tech professionals",
            "context": {
                "product_name": "TechPro X1",
                "product_description": "Advanced AI-powered development tool",
                "target_audience": "Software developers and IT professionals",
                "key_features": ["AI code completion", "Automated testing", "Performance optimization"]
            },
            "priority": 1
        }),
    );
    assert_eq!(status, 202, "{task}");
    assert_eq!(task["status"], "queued");
    let id = task["task_id"].as_str().unwrap().to_owned();

    // Processing a Task.
    let (status, processing) = api.post_empty(&format!("/networks/{net}/tasks/{id}/process"));
    assert_eq!(status, 202, "{processing}");
    assert_eq!(processing["status"], "processing");

    // Getting Task Results.
    let done = eventually(Duration::from_secs(20), "the task to complete", || {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
        (t["status"] != "queued" && t["status"] != "processing").then_some(t)
    });
    assert_eq!(done["status"], "completed", "{done}");
    let subtasks = done["subtasks"].as_array().unwrap();
    let agents: Vec<&str> = subtasks
        .iter()
        .map(|s| s["agent"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        [
            "Content Specialist",
            "Design Specialist",
            "Analytics Specialist",
            "Personalization Specialist"
        ]
    );
    for s in subtasks {
        assert_eq!(s["status"], "completed");
        assert_eq!(s["model"], "offline");
        assert!(s["duration_ms"].is_u64());
    }
    let email = subtasks[0]["output"].as_str().unwrap();
    for needle in [
        "TechPro X1",
        "AI code completion",
        "Automated testing",
        "Performance optimization",
    ] {
        assert!(email.contains(needle), "{needle} missing from {email}");
    }
    assert!(
        subtasks[2]["output"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("open rate")
    );
    assert_eq!(done["result"]["model"], "offline");
    assert!(
        done["result"]["output"]
            .as_str()
            .unwrap()
            .contains("TechPro X1")
    );

    // Custom Agents (seed body, verbatim).
    let (status, seo) = api.post(
        &format!("/networks/{net}/agents"),
        &json!({
            "agent_config": {
                "name": "SEO Specialist",
                "type": "seo",
                "model": "claude-3-7-sonnet",
                "description": "Specializes in search engine optimization",
                "parameters": {
                    "temperature": 0.4,
                    "max_tokens": 4000
                },
                "capabilities": ["keyword_analysis", "seo_optimization", "content_recommendations"]
            }
        }),
    );
    assert_eq!(status, 201, "{seo}");
    let (_, agents) = api.get(&format!("/networks/{net}/agents"));
    assert_eq!(agents["total"], 6);
    let seo_view = &agents["agents"][5];
    assert_eq!(seo_view["name"], "SEO Specialist");
    assert!(seo_view["mailbox_depth"].is_u64() && seo_view["restarts"].is_u64());
    assert_eq!(agents["agents"][1]["tasks_handled"], 1);

    // A task for the new agent reaches it.
    let (_, t) = api.post(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Run a keyword analysis for our SEO landing page"}),
    );
    let tid = t["task_id"].as_str().unwrap().to_owned();
    let (status, done) = api.post_empty(&format!("/networks/{net}/tasks/{tid}/process?wait=20"));
    assert_eq!(status, 200, "{done}");
    assert!(
        done["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["agent"] == "SEO Specialist" && s["status"] == "completed"),
        "{done}"
    );

    // Memory, listing, health, removal, deletion.
    let (status, _) = api.post(
        &format!("/networks/{net}/memory"),
        &json!({"type": "fact", "content": "TechPro X1 ships on March 3", "metadata": {"source": "pm"}}),
    );
    assert_eq!(status, 201);
    let (_, facts) = api.get(&format!("/networks/{net}/memory?type=fact"));
    assert_eq!(facts["total"], 1);
    let (_, decisions) = api.get(&format!("/networks/{net}/memory?type=decision"));
    assert!(decisions["total"].as_u64().unwrap() >= 2, "{decisions}");
    let (_, listing) = api.get(&format!("/networks/{net}/tasks?status=completed"));
    assert_eq!(listing["total"], 2);
    let (_, all) = api.get("/networks");
    assert_eq!(all["total"], 1);
    let (status, health) = api.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let seo_id = seo["agent_id"].as_str().unwrap();
    let (status, _) = api.delete(&format!("/networks/{net}/agents/{seo_id}"));
    assert_eq!(status, 204);
    let (status, _) = api.delete(&format!("/networks/{net}"));
    assert_eq!(status, 204);
    let (status, body) = api.get(&format!("/networks/{net}"));
    assert_eq!(status, 404, "{body}");
}
