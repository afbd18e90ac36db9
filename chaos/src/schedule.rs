//! The seeded fault schedule: the same seed, duration and node list give the same faults.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One kind of fault the harness can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a node, restart it after the fault's duration.
    KillNode,
    /// SIGSTOP a node, SIGCONT it after the fault's duration.
    PauseNode,
    /// Kill an agent actor through the admin API.
    KillActor,
    /// The fake provider answers 429 for a while.
    Provider429,
    /// The fake provider answers 5xx for a while.
    Provider5xx,
    /// The fake provider answers slowly for a while.
    ProviderLatency,
    /// The fake provider cuts streams for a while.
    ProviderCut,
    /// The proxy in front of a node delays traffic (with jitter).
    ProxyDelay,
    /// The proxy resets connections.
    ProxyReset,
    /// The proxy blackholes traffic (accepts, forwards nothing).
    ProxyBlackhole,
    /// A flood of low-priority work.
    Flood,
    /// Cut a node off from its peers, both directions, with nftables in its network namespace
    /// (needs root and `--netns`; the harness and the provider still reach it).
    Partition,
}

impl FaultKind {
    /// All kinds, in a fixed order (the order matters for determinism).
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillNode,
        FaultKind::PauseNode,
        FaultKind::KillActor,
        FaultKind::Provider429,
        FaultKind::Provider5xx,
        FaultKind::ProviderLatency,
        FaultKind::ProviderCut,
        FaultKind::ProxyDelay,
        FaultKind::ProxyReset,
        FaultKind::ProxyBlackhole,
        FaultKind::Flood,
        FaultKind::Partition,
    ];

    /// The kind's name as reported.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillNode => "kill_node",
            FaultKind::PauseNode => "pause_node",
            FaultKind::KillActor => "kill_actor",
            FaultKind::Provider429 => "provider_429",
            FaultKind::Provider5xx => "provider_5xx",
            FaultKind::ProviderLatency => "provider_latency",
            FaultKind::ProviderCut => "provider_cut",
            FaultKind::ProxyDelay => "proxy_delay",
            FaultKind::ProxyReset => "proxy_reset",
            FaultKind::ProxyBlackhole => "proxy_blackhole",
            FaultKind::Flood => "flood",
            FaultKind::Partition => "partition",
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// When to inject it, from the start of the run.
    pub at_ms: u64,
    /// What to inject.
    pub kind: FaultKind,
    /// Index of the target node (for node and proxy faults).
    pub node: usize,
    /// How long the fault lasts before it is healed.
    pub duration_ms: u64,
}

/// Builds `count` faults spread over `duration_ms`, leaving the last fifth fault-free so the
/// cluster can settle before the final checks. Faults never overlap: each starts after the
/// previous one has healed plus a recovery gap.
pub fn generate(
    seed: u64,
    duration_ms: u64,
    nodes: usize,
    count: usize,
    kinds: &[FaultKind],
) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes = nodes.max(1);
    let active = duration_ms.saturating_mul(4) / 5;
    if count == 0 || kinds.is_empty() || active == 0 {
        return Vec::new();
    }
    let slot = active / count as u64;
    let mut out = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let kind = kinds[rng.random_range(0..kinds.len())];
        // A fault holds at most half its slot, leaving the rest for recovery.
        let max_len = (slot / 2).max(1);
        let duration_ms = rng.random_range((max_len / 4).max(1)..=max_len);
        let jitter = rng.random_range(0..=(slot / 4).max(1));
        out.push(Fault {
            at_ms: i * slot + jitter.min(slot.saturating_sub(duration_ms)),
            kind,
            node: rng.random_range(0..nodes),
            duration_ms,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let a = generate(42, 120_000, 3, 20, &FaultKind::ALL);
        let b = generate(42, 120_000, 3, 20, &FaultKind::ALL);
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn different_seed_different_schedule() {
        let a = generate(1, 120_000, 3, 20, &FaultKind::ALL);
        let b = generate(2, 120_000, 3, 20, &FaultKind::ALL);
        assert_ne!(a, b);
    }

    #[test]
    fn faults_do_not_overlap_and_end_before_the_quiet_tail() {
        let f = generate(7, 1_800_000, 3, 240, &FaultKind::ALL);
        for w in f.windows(2) {
            assert!(w[0].at_ms + w[0].duration_ms <= w[1].at_ms, "{w:?}");
        }
        let last = f.last().map(|x| x.at_ms + x.duration_ms).unwrap_or(0);
        assert!(last <= 1_800_000 * 4 / 5);
        assert!(f.iter().all(|x| x.node < 3));
    }
}
