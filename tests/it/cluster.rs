//! The cluster: three real node processes on free 127.0.0.1 ports form a cluster over
//! ractor_cluster; any node serves any network; subtasks spread across the nodes; a node
//! SIGKILLed in the middle of a 200-task batch loses nothing and repeats no finished model call;
//! it restarts and rejoins; a node with the wrong cookie is refused.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, Fake, Proc, binary, eventually, fake, free_port};

/// Three nodes n1..n3 of one cluster file.
struct Cluster {
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    names: Vec<String>,
    apis: Vec<u16>,
    procs: Vec<Option<Proc>>,
    cookies: Vec<String>,
}

impl Cluster {
    /// Writes the file (`extra` appended) and starts every node.
    fn start(extra: &str) -> Self {
        Self::start_with_cookies(extra, &["c00kie", "c00kie", "c00kie"])
    }

    fn start_with_cookies(extra: &str, cookies: &[&str]) -> Self {
        let extras: Vec<String> = cookies.iter().map(|_| extra.to_owned()).collect();
        Self::start_each(&extras, cookies)
    }

    /// Node i reads the common file plus `extras[i]` (its own copy) and uses `cookies[i]`.
    fn start_each(extras: &[String], cookies: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=cookies.len()).map(|i| format!("n{i}")).collect();
        let apis: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let text = String::from(
            "[cluster]\nname = \"it\"\nheartbeat_ms = 100\nfailure_timeout_ms = 1500\n\
             takeover_margin_ms = 200\n",
        );
        let mut nodes = String::new();
        for (name, api) in names.iter().zip(&apis) {
            nodes.push_str(&format!(
                "[[node]]\nname = \"{name}\"\napi = \"127.0.0.1:{api}\"\ncluster = \"127.0.0.1:{}\"\n",
                free_port()
            ));
        }
        // `extra` follows the [cluster] keys: bare keys land in [cluster], tables in theirs.
        let configs: Vec<PathBuf> = extras
            .iter()
            .enumerate()
            .map(|(i, extra)| {
                let config = dir.path().join(format!("cluster-{i}.toml"));
                std::fs::write(&config, format!("{text}{extra}\n{nodes}")).unwrap();
                config
            })
            .collect();
        let mut cluster = Self {
            _dir: dir,
            configs,
            procs: names.iter().map(|_| None).collect(),
            names,
            apis,
            cookies: cookies.iter().map(|c| (*c).to_owned()).collect(),
        };
        for i in 0..cluster.names.len() {
            cluster.launch(i);
        }
        for i in 0..cluster.names.len() {
            cluster.api(i).wait_healthy();
        }
        cluster
    }

    fn launch(&mut self, i: usize) {
        let proc = node(&self.configs[i], &self.names[i], &self.cookies[i]);
        self.procs[i] = Some(proc);
    }

    fn api(&self, i: usize) -> Api {
        Api::new(self.apis[i])
    }

    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap()
    }

    /// Node `i`'s view of the cluster.
    fn view(&self, i: usize) -> Value {
        self.api(i).get("/health").1["cluster"].clone()
    }

    fn status_of(&self, i: usize, peer: &str) -> String {
        let view = self.view(i);
        view["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == peer)
            .map(|m| m["status"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// Waits until every running node reports the cluster formed.
    fn wait_formed(&self) {
        for i in 0..self.names.len() {
            eventually(Duration::from_secs(30), "the cluster to form", || {
                (self.view(i)["formed"] == true).then_some(())
            });
        }
    }

    fn sigkill(&mut self, i: usize) {
        let mut proc = self.procs[i].take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(proc.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = proc.0.wait();
    }
}

fn node(config: &Path, name: &str, cookie: &str) -> Proc {
    Proc(
        Command::new(binary())
            .args(["node", "--config", config.to_str().unwrap(), "--name", name])
            .env("RUST_LOG", "warn")
            .env("AIMESH_COOKIE", cookie)
            .env("FAKE_KEY", "k")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The node that served a request (the `x-aimesh-node` header).
fn served_by(port: u16, path: &str) -> String {
    Api::new(port).served_by(path)
}

fn terminal(t: &Value) -> bool {
    matches!(
        t["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

/// Submits and starts `n` tasks through the APIs in turn; their ids.
fn submit(cluster: &Cluster, net: &str, n: usize, through: &[usize]) -> Vec<String> {
    (0..n)
        .map(|i| {
            let api = cluster.api(through[i % through.len()]);
            let (status, t) = api.post(
                &format!("/networks/{net}/tasks"),
                &json!({"task": format!("Create an email campaign for launch {i} targeting developers"),
                        "context": {"product_name": format!("Widget {i}")}}),
            );
            assert_eq!(status, 202, "{t}");
            let id = t["task_id"].as_str().unwrap().to_owned();
            let (status, _) = api.post_empty(&format!("/networks/{net}/tasks/{id}/process"));
            assert_eq!(status, 202);
            id
        })
        .collect()
}

/// Waits until every task is terminal (read through node `i`); the tasks.
fn wait_terminal(cluster: &Cluster, i: usize, net: &str, ids: &[String]) -> Vec<Value> {
    let api = cluster.api(i);
    eventually(Duration::from_secs(180), "every task to end", || {
        let all: Vec<Value> = ids
            .iter()
            .map(|id| api.get(&format!("/networks/{net}/tasks/{id}")).1)
            .collect();
        all.iter().all(terminal).then_some(all)
    })
}

/// Subtasks run per node.
fn per_node(tasks: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for t in tasks {
        for s in t["subtasks"].as_array().unwrap() {
            if let Some(node) = s["node"].as_str() {
                *counts.entry(node.to_owned()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Every task once, every subtask once, every one ended with a result or a reason.
fn assert_none_lost_or_duplicated(cluster: &Cluster, i: usize, net: &str, tasks: &[Value]) {
    let ids: HashSet<&str> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), tasks.len(), "a task id repeats");
    let (_, page) = cluster
        .api(i)
        .get(&format!("/networks/{net}/tasks?limit=500"));
    assert_eq!(
        page["total"].as_u64(),
        Some(tasks.len() as u64),
        "the network lists each task once: {}",
        page["total"]
    );
    for t in tasks {
        let subtasks = t["subtasks"].as_array().unwrap();
        let unique: HashSet<&str> = subtasks
            .iter()
            .map(|s| s["subtask_id"].as_str().unwrap())
            .collect();
        assert_eq!(unique.len(), subtasks.len(), "a subtask repeats in {t}");
        assert!(
            t["status"] == "completed" || t["error"]["code"].is_string(),
            "a task ended without a reason: {t}"
        );
    }
}

/// Subtask and synthesis keys that had finished (completed) by now.
fn finished_units(cluster: &Cluster, i: usize, net: &str, ids: &[String]) -> HashSet<String> {
    let api = cluster.api(i);
    let mut done = HashSet::new();
    for id in ids {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
        for s in t["subtasks"].as_array().unwrap() {
            if s["status"] == "completed" {
                done.insert(s["subtask_id"].as_str().unwrap().to_owned());
            }
        }
        if t["status"] == "completed" {
            done.insert(format!("{id}.synthesis"));
        }
    }
    done
}

fn provider(fake: &Fake) -> String {
    format!(
        "[gateway.providers.anthropic]\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n",
        fake.url
    )
}

#[test]
fn three_nodes_serve_any_network_from_any_node_and_spread_subtasks() {
    let cluster = Cluster::start("[storage]\nbackend = \"embedded\"\n");
    cluster.wait_formed();
    for i in 0..3 {
        let view = cluster.view(i);
        assert_eq!(view["quorum"], true);
        for m in view["members"].as_array().unwrap() {
            assert!(m["status"] == "alive" || m["status"] == "up", "{view}");
            assert_eq!(m["auth_failures"], 0);
        }
    }
    // Created through n1, used through n3.
    let (status, net) = cluster
        .api(0)
        .post("/networks", &json!({"name": "spread", "max_iterations": 3}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap().to_owned();
    let (status, got) = cluster.api(2).get(&format!("/networks/{net}"));
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["name"], "spread");
    let owner = served_by(cluster.apis[2], &format!("/networks/{net}"));
    assert_eq!(
        served_by(cluster.apis[1], &format!("/networks/{net}")),
        owner
    );
    // Every node lists it once.
    for i in 0..3 {
        let (_, list) = cluster.api(i).get("/networks");
        let hits = list["networks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["network_id"] == net.as_str())
            .count();
        assert_eq!(hits, 1, "node {i}: {list}");
    }
    let ids = submit(&cluster, &net, 60, &[2, 1, 0]);
    let tasks = wait_terminal(&cluster, 2, &net, &ids);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    assert_none_lost_or_duplicated(&cluster, 1, &net, &tasks);
    let counts = per_node(&tasks);
    for name in &cluster.names {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "no subtask ran on {name}: {counts:?}"
        );
    }
    // Bad input through a forwarding node is still a clear error naming the field.
    let (status, err) = cluster
        .api(2)
        .post(&format!("/networks/{net}/tasks"), &json!({"task": ""}));
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["field"], "task");
}

#[test]
fn a_node_killed_during_200_tasks_loses_none_then_restarts_and_rejoins() {
    let fake = fake(40);
    let mut cluster = Cluster::start(&format!(
        "[storage]\nbackend = \"embedded\"\n[scheduler]\nmax_active_tasks = 16\n{}",
        provider(&fake)
    ));
    cluster.wait_formed();
    let (_, net) = cluster
        .api(0)
        .post("/networks", &json!({"name": "failover"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let owner = served_by(cluster.apis[0], &format!("/networks/{net}"));
    let owner_i = cluster.index(&owner);
    // The victim is a node that runs subtasks for the owner; the owner's API is used throughout.
    let victim = (owner_i + 1) % 3;
    let ids = submit(&cluster, &net, 200, &[owner_i]);
    let api = cluster.api(owner_i);
    eventually(
        Duration::from_secs(120),
        "the batch under way on the victim",
        || {
            let (_, page) = api.get(&format!("/networks/{net}/tasks?status=completed&limit=1"));
            (page["total"].as_u64().unwrap_or(0) >= 20).then_some(())
        },
    );
    let done_before = finished_units(&cluster, owner_i, &net, &ids);
    cluster.sigkill(victim);
    let victim_name = cluster.names[victim].clone();
    eventually(Duration::from_secs(30), "the victim declared dead", || {
        (cluster.status_of(owner_i, &victim_name) == "dead").then_some(())
    });
    // A dead node holds nothing: health shows no stale load for it.
    let view = cluster.view(owner_i);
    let dead = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == victim_name.as_str())
        .unwrap();
    assert_eq!(dead["load"], 0, "{dead}");

    let tasks = wait_terminal(&cluster, owner_i, &net, &ids);
    assert_none_lost_or_duplicated(&cluster, owner_i, &net, &tasks);
    let completed = tasks.iter().filter(|t| t["status"] == "completed").count();
    assert_eq!(completed, 200, "every task completes on the survivors");
    let by_key = fake.calls_by_key();
    for key in &done_before {
        assert_eq!(by_key.get(key).copied(), Some(1), "{key} was called again");
    }

    // The victim restarts with its data and rejoins; new work reaches it again.
    cluster.launch(victim);
    cluster.api(victim).wait_healthy();
    cluster.wait_formed();
    let more = submit(&cluster, &net, 40, &[victim]);
    let tasks = wait_terminal(&cluster, victim, &net, &more);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    assert!(
        per_node(&tasks).get(&victim_name).copied().unwrap_or(0) > 0,
        "the rejoined node gets subtasks again: {:?}",
        per_node(&tasks)
    );
}

#[test]
fn the_owner_killed_mid_batch_resumes_its_tasks_on_restart_with_the_embedded_store() {
    let fake = fake(40);
    let mut cluster = Cluster::start(&format!(
        "[storage]\nbackend = \"embedded\"\n[scheduler]\nmax_active_tasks = 16\n{}",
        provider(&fake)
    ));
    cluster.wait_formed();
    let (_, net) = cluster.api(0).post("/networks", &json!({"name": "home"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let owner_i = cluster.index(&served_by(cluster.apis[0], &format!("/networks/{net}")));
    let other = (owner_i + 1) % 3;
    let ids = submit(&cluster, &net, 200, &[other]);
    eventually(Duration::from_secs(120), "the batch under way", || {
        let (_, page) = cluster
            .api(other)
            .get(&format!("/networks/{net}/tasks?status=completed&limit=1"));
        (page["total"].as_u64().unwrap_or(0) >= 20).then_some(())
    });
    let done_before = finished_units(&cluster, other, &net, &ids);
    cluster.sigkill(owner_i);
    // Its networks wait for it (their store is its own): a clear, retryable 503 meanwhile.
    let owner_name = cluster.names[owner_i].clone();
    eventually(Duration::from_secs(30), "the owner declared dead", || {
        (cluster.status_of(other, &owner_name) == "dead").then_some(())
    });
    let resp = reqwest::blocking::get(format!(
        "http://127.0.0.1:{}/api/mesh/networks/{net}",
        cluster.apis[other]
    ))
    .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // Back with its data: every task ends, finished calls are not repeated.
    cluster.launch(owner_i);
    cluster.wait_formed();
    let tasks = wait_terminal(&cluster, other, &net, &ids);
    assert_none_lost_or_duplicated(&cluster, other, &net, &tasks);
    assert_eq!(
        tasks.iter().filter(|t| t["status"] == "completed").count(),
        200
    );
    let by_key = fake.calls_by_key();
    for key in &done_before {
        assert_eq!(by_key.get(key).copied(), Some(1), "{key} was called again");
    }
}

#[test]
fn with_postgres_survivors_take_over_a_dead_owners_tasks() {
    let Ok(admin) = std::env::var("AIMESH_TEST_DATABASE_URL") else {
        eprintln!("skipped: AIMESH_TEST_DATABASE_URL is not set");
        return;
    };
    let url = fresh_database(&admin);
    let fake = fake(40);
    let mut cluster = Cluster::start(&format!(
        "[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n\
         [scheduler]\nmax_active_tasks = 16\n{}",
        provider(&fake)
    ));
    cluster.wait_formed();
    let (_, net) = cluster.api(0).post("/networks", &json!({"name": "shared"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let owner_i = cluster.index(&served_by(cluster.apis[0], &format!("/networks/{net}")));
    let other = (owner_i + 1) % 3;
    let ids = submit(&cluster, &net, 200, &[other]);
    eventually(Duration::from_secs(120), "the batch under way", || {
        let (_, page) = cluster
            .api(other)
            .get(&format!("/networks/{net}/tasks?status=completed&limit=1"));
        (page["total"].as_u64().unwrap_or(0) >= 20).then_some(())
    });
    let done_before = finished_units(&cluster, other, &net, &ids);
    cluster.sigkill(owner_i);
    // A survivor adopts the network and finishes every task from the shared store.
    let tasks = wait_terminal(&cluster, other, &net, &ids);
    let new_owner = served_by(cluster.apis[other], &format!("/networks/{net}"));
    assert_ne!(new_owner, cluster.names[owner_i]);
    assert_none_lost_or_duplicated(&cluster, other, &net, &tasks);
    assert_eq!(
        tasks.iter().filter(|t| t["status"] == "completed").count(),
        200
    );
    let by_key = fake.calls_by_key();
    for key in &done_before {
        assert_eq!(by_key.get(key).copied(), Some(1), "{key} was called again");
    }
    // The dead node restarts and rejoins; the network stays served, once.
    cluster.launch(owner_i);
    cluster.wait_formed();
    for i in 0..3 {
        let (status, _) = cluster.api(i).get(&format!("/networks/{net}"));
        assert_eq!(status, 200);
        let (_, list) = cluster.api(i).get("/networks");
        let hits = list["networks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["network_id"] == net.as_str())
            .count();
        assert_eq!(hits, 1, "node {i}: {list}");
    }
}

/// `POST /api/admin/actors/{id}/{action}` on node `i`.
fn admin_post(cluster: &Cluster, i: usize, path: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/admin{path}",
            cluster.apis[i]
        ))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn work_a_live_peer_drops_is_redelivered_when_its_lease_lapses() {
    // Subtasks take 1.5 s, so they are held on the peers when its guest host is killed: the
    // restarted host holds nothing, the peer stays alive (no failure is detected), and only
    // the owner's lease on the work brings it back.
    let cluster = Cluster::start("[gateway.offline]\nlatency_ms = 1500\n");
    cluster.wait_formed();
    let (_, net) = cluster.api(0).post(
        "/networks",
        &json!({"name": "lease", "timeout_seconds": 120}),
    );
    let net = net["network_id"].as_str().unwrap().to_owned();
    let owner = cluster.index(&served_by(cluster.apis[0], &format!("/networks/{net}")));
    let ids = submit(&cluster, &net, 20, &[owner]);
    let api = cluster.api(owner);
    let victim = eventually(Duration::from_secs(60), "subtasks held by a peer", || {
        (0..3).filter(|i| *i != owner).find(|i| {
            let name = cluster.names[*i].as_str();
            ids.iter().any(|id| {
                let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
                subtasks_of(&t).any(|s| s["node"] == name && s["status"] == "running")
            })
        })
    });
    let guests = format!("{}%2Fguests", cluster.names[victim]);
    let (status, body) = admin_post(&cluster, victim, &format!("/actors/{guests}/kill"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["actor"]["kind"], "guest_host");

    let tasks = wait_terminal(&cluster, owner, &net, &ids);
    assert_none_lost_or_duplicated(&cluster, owner, &net, &tasks);
    let completed = tasks.iter().filter(|t| t["status"] == "completed").count();
    assert_eq!(
        completed, 20,
        "every task completes; none waits for its deadline"
    );
    let lapsed = tasks
        .iter()
        .flat_map(|t| t["errors"].as_array().cloned().unwrap_or_default())
        .filter(|n| n["code"] == "lease_expired")
        .count();
    assert!(
        lapsed > 0,
        "the dropped work came back through lapsed leases"
    );
    assert_eq!(
        cluster.status_of(owner, &cluster.names[victim]),
        "alive",
        "the peer was never declared lost"
    );
}

#[test]
fn a_drained_node_takes_no_new_work_and_leaves_once_its_work_is_done() {
    let mut cluster = Cluster::start("[gateway.offline]\nlatency_ms = 300\n");
    cluster.wait_formed();
    let (_, net) = cluster.api(0).post("/networks", &json!({"name": "drain"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let owner = cluster.index(&served_by(cluster.apis[0], &format!("/networks/{net}")));
    let victim = (owner + 1) % 3;
    let victim_name = cluster.names[victim].clone();
    // With the embedded store the owner's networks live on it: draining it is refused.
    let (status, body) = admin_post(
        &cluster,
        victim,
        &format!("/nodes/{}/drain", cluster.names[owner]),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "owns_networks");
    // Work under way on the victim, then drain it (asked through another node).
    let first = submit(&cluster, &net, 30, &[owner]);
    let (status, body) = admin_post(&cluster, owner, &format!("/nodes/{victim_name}/drain"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["draining"], true);
    // Its work finishes and it leaves: the process exits cleanly.
    let proc = cluster.procs[victim].as_mut().unwrap();
    let exit = eventually(Duration::from_secs(60), "the drained node to exit", || {
        proc.0.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
    let tasks = wait_terminal(&cluster, owner, &net, &first);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    // New work runs on the others only.
    let later = submit(&cluster, &net, 20, &[owner]);
    let tasks = wait_terminal(&cluster, owner, &net, &later);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    assert!(
        tasks
            .iter()
            .flat_map(|t| subtasks_of(t).cloned().collect::<Vec<_>>())
            .all(|s| s["node"] != victim_name.as_str()),
        "no subtask placed on the drained node"
    );
}

fn subtasks_of(t: &Value) -> impl Iterator<Item = &Value> {
    t["subtasks"].as_array().into_iter().flatten()
}

#[test]
fn a_node_with_the_wrong_cookie_is_refused() {
    let cluster = Cluster::start_with_cookies("", &["right", "right", "wrong"]);
    // n1 and n2 form a majority; n3 never joins them.
    for i in 0..2 {
        eventually(Duration::from_secs(30), "n1 and n2 to connect", || {
            let peer = if i == 0 { "n2" } else { "n1" };
            (cluster.status_of(i, peer) == "alive").then_some(())
        });
    }
    eventually(Duration::from_secs(30), "failed handshakes counted", || {
        let view = cluster.view(0);
        let n3 = view["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "n3")
            .unwrap()
            .clone();
        (n3["auth_failures"].as_u64().unwrap_or(0) > 0).then_some(n3)
    });
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..2 {
        assert_ne!(cluster.status_of(i, "n3"), "alive");
        assert_eq!(cluster.view(i)["formed"], false);
        assert_eq!(cluster.view(i)["quorum"], true);
    }
    let lone = cluster.view(2);
    assert_eq!(lone["quorum"], false, "{lone}");
    assert_eq!(cluster.status_of(2, "n1"), "suspect");
    // The majority serves its networks; the refused node cannot reach them and says so with a
    // retryable 503 instead of serving them itself.
    let (status, net) = cluster
        .api(0)
        .post("/networks", &json!({"name": "majority"}));
    assert_eq!(status, 201, "{net}");
    let net = net["network_id"].as_str().unwrap();
    assert_ne!(
        served_by(cluster.apis[1], &format!("/networks/{net}")),
        "n3"
    );
    let resp = reqwest::blocking::get(format!(
        "http://127.0.0.1:{}/api/mesh/networks/{net}",
        cluster.apis[2]
    ))
    .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}

#[test]
fn with_certificates_sessions_use_mutual_tls_and_refuse_a_foreign_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = certificates(dir.path(), "ours");
    let theirs = certificates(dir.path(), "theirs");
    let tls = |(cert, key, ca): &(PathBuf, PathBuf, PathBuf)| {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            ca.display()
        )
    };
    let extras = [tls(&ours), tls(&ours), tls(&theirs)];
    let cluster = Cluster::start_each(&extras, &["c00kie", "c00kie", "c00kie"]);
    for i in 0..2 {
        eventually(
            Duration::from_secs(30),
            "n1 and n2 to connect over TLS",
            || {
                let peer = if i == 0 { "n2" } else { "n1" };
                (cluster.status_of(i, peer) == "alive").then_some(())
            },
        );
    }
    // Work crosses the TLS sessions.
    let (_, ping) = cluster
        .api(0)
        .post("/cluster/ping", &json!({"node": "n2", "count": 20}));
    assert_eq!(ping["count"], 20, "{ping}");
    // n3's certificate is signed by another CA: the handshake fails both ways.
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..2 {
        assert_ne!(cluster.status_of(i, "n3"), "alive");
    }
    assert_eq!(cluster.view(2)["quorum"], false);
    // And a plaintext client gets nothing from a TLS listener.
    let view = cluster.view(0);
    let addr = view["members"][0]["address"].as_str().unwrap().to_owned();
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    use std::io::{Read, Write};
    let _ = raw.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut buf = [0u8; 64];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "a TLS alert or nothing, got {:?}",
        &buf[..n]
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it (openssl); (cert, key, ca) paths.
fn certificates(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{tag}-{f}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("node.key"),
        p("node.csr"),
        p("node.pem"),
        p("ext.cnf"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
        "-days",
        "2",
        "-subj",
        &format!("/CN=aimesh test CA {tag}"),
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        "/CN=aimesh node",
    ]);
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "2",
        "-extfile",
        &s(&ext),
    ]);
    (cert, key, ca)
}

/// A fresh database on the server `admin` names; its URL.
fn fresh_database(admin: &str) -> String {
    let name = format!("aimesh_cluster_{}", uuid::Uuid::now_v7().simple());
    let out = Command::new("psql")
        .args([
            admin,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let host = base[start..].rfind('@').map_or(start, |at| start + at);
    let path = base[host..].find('/').map_or(base.len(), |p| host + p);
    format!("{}/{name}{query}", &base[..path])
}

/// Copies one direction of a proxied connection until either side closes.
fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

#[test]
fn peers_dial_a_node_at_its_dial_address_through_a_proxy() {
    // n1 (the dialer: its name sorts first) reaches n2 only through a TCP forwarder at n2's
    // `dial` address; the cluster still forms, and the forwarder carried the session.
    let (api1, api2, c1, c2) = (free_port(), free_port(), free_port(), free_port());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", c2)) else {
                continue;
            };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(client, server));
            std::thread::spawn(move || pipe(s, c));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nname = \"it\"\nheartbeat_ms = 100\nfailure_timeout_ms = 1500\n\
             [storage]\nbackend = \"embedded\"\n\
             [[node]]\nname = \"n1\"\napi = \"127.0.0.1:{api1}\"\ncluster = \"127.0.0.1:{c1}\"\n\
             [[node]]\nname = \"n2\"\napi = \"127.0.0.1:{api2}\"\ncluster = \"127.0.0.1:{c2}\"\n\
             dial = \"{proxy}\"\n"
        ),
    )
    .unwrap();
    let _n1 = node(&config, "n1", "c00kie");
    let _n2 = node(&config, "n2", "c00kie");
    for port in [api1, api2] {
        let api = Api::new(port);
        api.wait_healthy();
        eventually(Duration::from_secs(30), "the cluster to form", || {
            let (_, h) = api.get("/health");
            let members = h["cluster"]["members"].as_array()?.clone();
            members
                .iter()
                .all(|m| m["status"] == "alive" || m["status"] == "up")
                .then_some(())
                .filter(|_| h["cluster"]["formed"] == true)
        });
    }
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}
