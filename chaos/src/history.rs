//! The history of every request (submitted -> acknowledged -> terminal) and the invariant
//! checks over it, in the style of Jepsen's "acknowledged writes lost".

use std::collections::BTreeMap;

use serde::Serialize;

/// What happened to one submission.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskRecord {
    /// The network it was submitted to.
    pub network: String,
    /// Priority 1 (highest) .. 5.
    pub priority: u8,
    /// Milliseconds since the run started.
    pub submitted_ms: u64,
    /// When the node answered 202 (None: refused, 429/503/error).
    pub acked_ms: Option<u64>,
    /// The task id from the 202.
    pub task_id: Option<String>,
    /// Every distinct terminal state observed, with when it was first seen.
    pub terminals: Vec<(String, u64)>,
    /// The task's deadline (ms since start) after which it counts as stuck or lost.
    pub deadline_ms: u64,
    /// The task vanished from the API (404 after having been acknowledged).
    pub vanished: bool,
    /// Whether it was submitted as part of a low-priority flood.
    pub flood: bool,
    /// The node's own account of its latency: `finished_at - created_at` from the task, ms.
    /// Observation lags (a poll pass over many pending tasks, a paused node answering late)
    /// do not inflate it.
    pub server_ms: Option<u64>,
    /// The node's account of a slow task (acknowledged to terminal over 10 s, or 3 s at
    /// priority 1): its timeline,
    /// subtasks and notes, condensed, for the report's slowest tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// One acknowledged memory write.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRecord {
    /// Network of the write.
    pub network: String,
    /// Unique content written.
    pub content: String,
    /// Whether it was found again at the end.
    pub found: bool,
}

/// Everything the workload did.
#[derive(Debug, Default, Serialize)]
pub struct History {
    /// Task submissions in order.
    pub tasks: Vec<TaskRecord>,
    /// Acknowledged memory writes.
    pub memory: Vec<MemoryRecord>,
    /// Memory writes refused (not acknowledged).
    pub memory_refused: u64,
    /// Budget per network and the largest spend seen.
    pub budgets: BTreeMap<String, (f64, f64)>,
}

/// The checked outcome.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Outcome {
    /// Submissions made.
    pub submitted: u64,
    /// Submissions answered 202.
    pub acknowledged: u64,
    /// Submissions refused (429/503/connection errors): not promises.
    pub refused: u64,
    /// Acknowledged and completed.
    pub completed: u64,
    /// Acknowledged and failed or cancelled (a terminal state, not a loss).
    pub failed: u64,
    /// Acknowledged and never terminal by deadline+grace, or vanished.
    pub lost: u64,
    /// Observed in more than one distinct terminal state.
    pub duplicated: u64,
    /// Acknowledged memory writes lost.
    pub memory_lost: u64,
    /// Networks whose spend exceeded their budget.
    pub budget_overshoots: u64,
    /// Human-readable violations (empty when all invariants hold).
    pub violations: Vec<String>,
}

/// Latency past which a terminal task's own account is kept (see `TaskRecord::detail`).
pub const SLOW_MS: u64 = 10_000;

/// The same for priority-1 tasks, whose latency is bounded during floods.
pub const SLOW_HIGH_MS: u64 = 3_000;

/// `finished_at - created_at` of a task's JSON, in ms.
pub fn server_latency(v: &serde_json::Value) -> Option<u64> {
    let at = |k: &str| {
        time::OffsetDateTime::parse(
            v.get(k)?.as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    };
    let ms = (at("finished_at")? - at("created_at")?).whole_milliseconds();
    u64::try_from(ms).ok()
}

impl TaskRecord {
    /// Acknowledged -> terminal, ms: the node's account when known, else as observed.
    pub fn latency_ms(&self) -> Option<u64> {
        let (a, (_, at)) = (self.acked_ms?, self.terminals.first()?);
        Some(self.server_ms.unwrap_or_else(|| at.saturating_sub(a)))
    }
}

/// The parts of a task's JSON that explain where its time went.
pub fn condense(v: &serde_json::Value) -> serde_json::Value {
    let pick = |v: &serde_json::Value, keys: &[&str]| {
        let mut o = serde_json::Map::new();
        for k in keys {
            if let Some(x) = v.get(*k)
                && !x.is_null()
            {
                o.insert((*k).to_string(), x.clone());
            }
        }
        serde_json::Value::Object(o)
    };
    let mut out = pick(
        v,
        &[
            "task_id",
            "status",
            "priority",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "errors",
        ],
    );
    let subtasks: Vec<serde_json::Value> = v["subtasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    pick(
                        s,
                        &[
                            "step",
                            "agent",
                            "status",
                            "attempts",
                            "node",
                            "queued_at",
                            "started_at",
                            "finished_at",
                            "error",
                        ],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let serde_json::Value::Object(o) = &mut out {
        o.insert("subtasks".into(), serde_json::Value::Array(subtasks));
    }
    out
}

/// Whether a status is terminal.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

impl History {
    /// Records a terminal observation for task `i`; a different terminal state than the one
    /// already seen is kept too, so the checker counts it as duplicated.
    pub fn observe_terminal(&mut self, i: usize, status: &str, now_ms: u64) {
        if let Some(t) = self.tasks.get_mut(i)
            && !t.terminals.iter().any(|(s, _)| s == status)
        {
            t.terminals.push((status.to_string(), now_ms));
        }
    }

    /// Checks every invariant as of `now_ms`, with `grace_ms` past each deadline.
    pub fn check(&self, now_ms: u64, grace_ms: u64) -> Outcome {
        let mut o = Outcome::default();
        for (i, t) in self.tasks.iter().enumerate() {
            o.submitted += 1;
            if t.acked_ms.is_none() {
                o.refused += 1;
                continue;
            }
            o.acknowledged += 1;
            let id = t.task_id.as_deref().unwrap_or("?");
            if t.terminals.len() > 1 {
                o.duplicated += 1;
                o.violations.push(format!(
                    "task {id} (#{i}, network {}) reached several terminal states: {:?}",
                    t.network, t.terminals
                ));
            }
            if t.vanished {
                o.lost += 1;
                o.violations.push(format!(
                    "task {id} (#{i}, network {}) vanished from the API after its 202",
                    t.network
                ));
                continue;
            }
            match t.terminals.first() {
                Some((s, _)) if s == "completed" => o.completed += 1,
                Some(_) => o.failed += 1,
                None if now_ms > t.deadline_ms + grace_ms => {
                    o.lost += 1;
                    o.violations.push(format!(
                        "task {id} (#{i}, network {}) acknowledged at {} ms, not terminal by its deadline {} ms + {grace_ms} ms grace",
                        t.network,
                        t.acked_ms.unwrap_or(0),
                        t.deadline_ms
                    ));
                }
                None => {}
            }
        }
        for m in &self.memory {
            if !m.found {
                o.memory_lost += 1;
                o.violations.push(format!(
                    "memory write {:?} in network {} lost",
                    m.content, m.network
                ));
            }
        }
        for (net, (budget, spent)) in &self.budgets {
            if spent > budget {
                o.budget_overshoots += 1;
                o.violations.push(format!(
                    "network {net} spent ${spent:.6} of a ${budget:.6} budget"
                ));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(i: u64) -> TaskRecord {
        TaskRecord {
            network: "n".into(),
            priority: 3,
            submitted_ms: i,
            acked_ms: Some(i + 1),
            task_id: Some(format!("t{i}")),
            deadline_ms: 1_000,
            ..TaskRecord::default()
        }
    }

    #[test]
    fn latency_is_the_nodes_account_when_known() {
        let v = serde_json::json!({
            "created_at": "2026-11-22T15:24:40.355Z",
            "finished_at": "2026-11-22T15:24:41.105Z",
        });
        assert_eq!(server_latency(&v), Some(750));
        assert_eq!(
            server_latency(&serde_json::json!({"created_at": "x"})),
            None
        );
        let mut t = acked(0);
        t.terminals.push(("completed".into(), 5_001));
        assert_eq!(t.latency_ms(), Some(5_000));
        t.server_ms = Some(750);
        assert_eq!(t.latency_ms(), Some(750));
    }

    #[test]
    fn clean_history_passes() {
        let mut h = History::default();
        h.tasks.push(acked(0));
        h.tasks.push(acked(1));
        h.tasks.push(TaskRecord {
            acked_ms: None,
            ..acked(2)
        });
        h.observe_terminal(0, "completed", 10);
        h.observe_terminal(0, "completed", 20);
        h.observe_terminal(1, "failed", 10);
        let o = h.check(5_000, 1_000);
        assert_eq!(o.violations, Vec::<String>::new());
        assert_eq!(
            (o.acknowledged, o.completed, o.failed, o.refused, o.lost),
            (2, 1, 1, 1, 0)
        );
    }

    #[test]
    fn lost_and_duplicated_tasks_are_violations() {
        let mut h = History::default();
        h.tasks.push(acked(0)); // never terminal: lost once past deadline + grace
        h.tasks.push(acked(1)); // two terminal states: duplicated
        h.tasks.push(acked(2)); // vanished
        h.observe_terminal(1, "completed", 10);
        h.observe_terminal(1, "failed", 30);
        h.tasks[2].vanished = true;
        // Before the deadline the pending task is not lost yet.
        let early = h.check(1_500, 1_000);
        assert_eq!((early.lost, early.duplicated), (1, 1));
        let o = h.check(2_001, 1_000);
        assert_eq!((o.lost, o.duplicated), (2, 1));
        assert_eq!(o.violations.len(), 3);
    }

    #[test]
    fn memory_loss_and_budget_overshoot_are_violations() {
        let mut h = History::default();
        h.memory.push(MemoryRecord {
            network: "n".into(),
            content: "a".into(),
            found: true,
        });
        h.memory.push(MemoryRecord {
            network: "n".into(),
            content: "b".into(),
            found: false,
        });
        h.budgets.insert("n".into(), (1.0, 1.5));
        h.budgets.insert("m".into(), (1.0, 0.5));
        let o = h.check(0, 0);
        assert_eq!((o.memory_lost, o.budget_overshoots), (1, 1));
        assert_eq!(o.violations.len(), 2);
    }
}
