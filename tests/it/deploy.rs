//! `deploy/`: the Prometheus alert rules and the Grafana dashboard parse with real parsers
//! (YAML, PromQL, JSON), and every metric they use is in the single list
//! (`aimesh_actors::metrics_names::ALL`) and, unless it only appears on rare events, in the
//! `/metrics` output of a real node that has run a task and written and searched memory.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use aimesh_actors::metrics_names::{self, Kind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{Api, Proc, binary, cluster_file, eventually, fake, free_port};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn deploy(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The alert rules' expressions, by alert name.
fn alert_exprs() -> Vec<(String, String)> {
    let file: RuleFile = serde_norway::from_str(&deploy("prometheus/alerts.yml")).unwrap();
    assert!(!file.groups.is_empty());
    let mut out = Vec::new();
    for g in &file.groups {
        assert!(!g.name.is_empty());
        if let Some(i) = &g.interval {
            promql_parser::util::parse_duration(i).unwrap();
        }
        for r in &g.rules {
            let name = r.alert.clone().or_else(|| r.record.clone()).unwrap();
            assert!(
                r.alert.is_some() != r.record.is_some(),
                "{name}: alert xor record"
            );
            if let Some(f) = &r.for_ {
                promql_parser::util::parse_duration(f)
                    .unwrap_or_else(|e| panic!("{name}: for {f}: {e}"));
            }
            if r.alert.is_some() {
                assert!(r.labels.contains_key("severity"), "{name}: severity label");
                assert!(r.annotations.contains_key("summary"), "{name}: summary");
            }
            out.push((name, r.expr.clone()));
        }
    }
    out
}

/// The dashboard's panel target expressions, by panel title (Grafana variables substituted).
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&deploy("grafana/aimesh.json")).unwrap();
    assert_eq!(d["uid"], "aimesh");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 9, "panels for every area");
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap().to_owned();
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*");
            out.push((title.clone(), expr));
        }
    }
    out
}

/// The metric names an expression selects (via the PromQL parser's AST).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let ast = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut names = BTreeSet::new();
    collect(&ast, &mut names);
    names
}

fn collect(e: &promql_parser::parser::Expr, out: &mut BTreeSet<String>) {
    use promql_parser::parser::Expr;
    match e {
        Expr::Aggregate(a) => {
            collect(&a.expr, out);
            if let Some(p) = &a.param {
                collect(p, out);
            }
        }
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Subquery(s) => collect(&s.expr, out),
        Expr::VectorSelector(v) => {
            out.insert(v.name.clone().unwrap());
        }
        Expr::MatrixSelector(m) => {
            out.insert(m.vs.name.clone().unwrap());
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                collect(a, out);
            }
        }
        Expr::Extension(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
}

/// The list's name for an exported series name (`_bucket`/`_sum`/`_count` of histograms).
fn base_name(series: &str) -> Option<&'static str> {
    metrics_names::ALL.iter().find_map(|m| {
        let ok = series == m.name
            || (m.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.strip_suffix(s) == Some(m.name)));
        ok.then_some(m.name)
    })
}

/// Metrics that only appear after rare events (a fallback, a rate-limit wait, a cache hit, a
/// filtered answer, a cluster); they are checked against the list only.
const EVENT_ONLY: &[&str] = &[
    metrics_names::GATEWAY_FALLBACKS,
    metrics_names::GATEWAY_RATE_LIMIT_WAIT,
    metrics_names::GATEWAY_CACHE_HITS,
    metrics_names::GATEWAY_CACHE_MISSES,
    metrics_names::EMBEDDING_DURATION,
    metrics_names::CLUSTER_MEMBERS,
    metrics_names::CLUSTER_QUORUM,
    metrics_names::CLUSTER_HEARTBEAT_RTT,
];

#[test]
fn alert_rules_and_dashboard_parse_and_use_only_metrics_a_node_exports() {
    let mut used = BTreeSet::new();
    let alerts = alert_exprs();
    for needed in [
        "AimeshNodeDown",
        "AimeshRestartStorm",
        "AimeshTaskFailureRatio",
        "AimeshBudgetNearLimit",
        "AimeshProviderCircuitOpen",
    ] {
        assert!(alerts.iter().any(|(n, _)| n == needed), "alert {needed}");
    }
    for (_, expr) in alerts.iter().chain(dashboard_exprs().iter()) {
        used.extend(metric_names(expr));
    }
    // `up` is Prometheus's own scrape-health series.
    used.remove("up");
    for name in &used {
        assert!(
            base_name(name).is_some(),
            "{name} is used in deploy/ but not in metrics_names::ALL"
        );
    }

    // A real node with a budget, after a task through the fake provider and memory work.
    let fake = fake(0);
    let port = free_port();
    let (_dir, config) = cluster_file(
        &[("m1", port)],
        &format!(
            "[gateway]\nbudget_usd = 100\n[gateway.providers.anthropic]\nbase_url = \"{}\"\napi_key_env = \"FAKE_KEY\"\n",
            fake.url
        ),
    );
    let _node = Proc(
        std::process::Command::new(binary())
            .args(["node", "--config", config.to_str().unwrap(), "--name", "m1"])
            .env("RUST_LOG", "warn")
            .env("FAKE_KEY", "k")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = Api::new(port);
    api.wait_healthy();
    let (_, net) = api.post("/networks", &json!({"name": "metrics"}));
    let net = net["network_id"].as_str().unwrap().to_owned();
    let (status, t) = api.post(
        &format!("/networks/{net}/tasks"),
        &json!({"task": "Write a launch email for developers"}),
    );
    assert_eq!(status, 202, "{t}");
    let id = t["task_id"].as_str().unwrap().to_owned();
    api.post_empty(&format!("/networks/{net}/tasks/{id}/process"));
    eventually(Duration::from_secs(60), "the task to finish", || {
        let (_, t) = api.get(&format!("/networks/{net}/tasks/{id}"));
        (t["status"] == "completed").then_some(())
    });
    let (status, m) = api.post(
        &format!("/networks/{net}/memory"),
        &json!({"type": "fact", "content": "the launch is on Tuesday"}),
    );
    assert_eq!(status, 201, "{m}");
    let (status, _) = api.get(&format!("/networks/{net}/memory?query=launch&k=3"));
    assert_eq!(status, 200);

    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for series in &exported {
        if series.starts_with("aimesh_") {
            assert!(
                base_name(series).is_some(),
                "{series} is exported but not in metrics_names::ALL"
            );
        }
    }
    let exported_base: BTreeSet<&str> = exported.iter().filter_map(|s| base_name(s)).collect();
    for name in &used {
        let base = base_name(name).unwrap();
        if EVENT_ONLY.contains(&base) {
            continue;
        }
        assert!(
            exported_base.contains(base),
            "{name} (used in deploy/) is not in a working node's /metrics:\n{text}"
        );
    }
}

/// `promtool check rules`, when Prometheus is installed.
#[test]
fn promtool_accepts_the_alert_rules_when_installed() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: promtool not available ({e})");
            }
        }
    }
}
