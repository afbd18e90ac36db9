//! The run report: JSON and a readable table.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::history::Outcome;

/// Figures for one phase (fault-free baseline or chaos).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Phase {
    /// Wall time of the phase, seconds.
    pub seconds: f64,
    /// The checked outcome.
    pub outcome: Outcome,
    /// Completed tasks per second.
    pub goodput: f64,
    /// Priority-1 latency (acknowledged -> completed) p50 / p99, ms.
    pub high_p50_ms: u64,
    /// See `high_p50_ms`.
    pub high_p99_ms: u64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The seed (replays the schedule).
    pub seed: u64,
    /// The scenario name.
    pub scenario: String,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Fault kinds skipped and why.
    pub skipped: BTreeMap<String, String>,
    /// The fault-free run of the same workload.
    pub baseline: Phase,
    /// The run under faults.
    pub chaos: Phase,
    /// chaos goodput / baseline goodput.
    pub goodput_ratio: f64,
    /// Recovery time after each fault, p50 / p99 / max, ms.
    pub recovery_p50_ms: u64,
    /// See `recovery_p50_ms`.
    pub recovery_p99_ms: u64,
    /// See `recovery_p50_ms`.
    pub recovery_max_ms: u64,
    /// Priority-1 latency p99 during low-priority floods, ms, and the bound it must stay under:
    /// over the priority-1 tasks acknowledged during a flood (or within 5 s of its end) that
    /// did not also live through another fault (a SIGKILL or a blackhole measures that fault,
    /// not the flood's effect on scheduling).
    pub flood_high_p99_ms: u64,
    /// How many priority-1 tasks `flood_high_p99_ms` is over.
    pub flood_high_samples: u64,
    /// The same p99 over every priority-1 task acknowledged during a flood, other faults
    /// included (reported, not bounded).
    pub flood_high_all_p99_ms: u64,
    /// See `flood_high_p99_ms`.
    pub flood_high_bound_ms: u64,
    /// Every fault injected, in order (ms since the chaos phase started).
    pub fault_log: Vec<FaultEntry>,
    /// The slowest acknowledged tasks (over 10 s), with the nodes' account of each.
    pub slowest: Vec<serde_json::Value>,
    /// The slowest priority-1 tasks behind `flood_high_p99_ms` (account kept over 3 s).
    pub flood_slowest: Vec<serde_json::Value>,
    /// Every violation (non-zero exit when not empty).
    pub violations: Vec<String>,
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEntry {
    /// When it was injected.
    pub at_ms: u64,
    /// When it was healed and the cluster had recovered (or given up on).
    pub until_ms: u64,
    /// The fault kind.
    pub kind: String,
    /// The node it targeted (node faults, proxies, actor kills).
    pub node: String,
    /// Time from healing to a task completing again.
    pub recovery_ms: Option<u64>,
}

/// Priority-1 latencies of tasks acknowledged during floods.
#[derive(Debug, Default)]
pub struct FloodFigures {
    /// Those that lived through no other fault.
    pub isolated: Vec<u64>,
    /// All of them.
    pub all: Vec<u64>,
    /// The slowest isolated ones: (latency, index in the history).
    pub worst: Vec<(u64, usize)>,
}

/// The `q` quantile (0..=1) of `v` (sorted in place); 0 when empty.
pub fn quantile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

impl Report {
    /// The readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== aimesh-chaos {} (seed {}) ==",
            self.scenario, self.seed
        );
        let _ = writeln!(s, "{:<22} {:>10}", "fault", "count");
        for (k, n) in &self.faults {
            let _ = writeln!(s, "{k:<22} {n:>10}");
        }
        for (k, why) in &self.skipped {
            let _ = writeln!(s, "{k:<22} skipped: {why}");
        }
        let _ = writeln!(s, "{:<22} {:>12} {:>12}", "tasks", "baseline", "chaos");
        let (b, c) = (&self.baseline.outcome, &self.chaos.outcome);
        for (name, x, y) in [
            ("submitted", b.submitted, c.submitted),
            ("refused (429/503)", b.refused, c.refused),
            ("acknowledged", b.acknowledged, c.acknowledged),
            ("completed", b.completed, c.completed),
            ("failed", b.failed, c.failed),
            ("LOST", b.lost, c.lost),
            ("DUPLICATED", b.duplicated, c.duplicated),
            ("memory writes lost", b.memory_lost, c.memory_lost),
            (
                "budget overshoots",
                b.budget_overshoots,
                c.budget_overshoots,
            ),
        ] {
            let _ = writeln!(s, "{name:<22} {x:>12} {y:>12}");
        }
        let _ = writeln!(
            s,
            "{:<22} {:>12.2} {:>12.2}   ratio {:.2}",
            "goodput (tasks/s)", self.baseline.goodput, self.chaos.goodput, self.goodput_ratio
        );
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12}",
            "p1 latency p99 (ms)", self.baseline.high_p99_ms, self.chaos.high_p99_ms
        );
        let _ = writeln!(
            s,
            "p1 latency p99 during floods: {} ms over {} tasks (bound {} ms); {} ms with other faults",
            self.flood_high_p99_ms,
            self.flood_high_samples,
            self.flood_high_bound_ms,
            self.flood_high_all_p99_ms
        );
        let _ = writeln!(
            s,
            "recovery after a fault: p50 {} ms, p99 {} ms, max {} ms",
            self.recovery_p50_ms, self.recovery_p99_ms, self.recovery_max_ms
        );
        if !self.slowest.is_empty() {
            let _ = writeln!(s, "slowest tasks (details in the JSON report):");
        }
        for t in self.slowest.iter().take(5) {
            let notes: Vec<&str> = t["detail"]["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|n| n["code"].as_str()).collect())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:>8} ms  p{} {} {} {}",
                t["latency_ms"],
                t["priority"],
                t["phase"].as_str().unwrap_or(""),
                t["terminal"][0].as_str().unwrap_or("?"),
                notes.join(",")
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(s, "RESULT: PASS (no invariant violated)");
        } else {
            let _ = writeln!(s, "RESULT: FAIL, {} violation(s):", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(s, "  - {v}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v = vec![5, 1, 3, 2, 4];
        assert_eq!(quantile(&mut v, 0.5), 3);
        assert_eq!(quantile(&mut v, 1.0), 5);
        assert_eq!(quantile(&mut [], 0.5), 0);
    }

    #[test]
    fn table_says_fail_on_violations() {
        let mut r = Report {
            seed: 9,
            ..Report::default()
        };
        assert!(r.table().contains("PASS"));
        r.violations.push("task x lost".into());
        assert!(r.table().contains("FAIL, 1 violation"));
        assert!(r.table().contains("seed 9"));
    }
}
