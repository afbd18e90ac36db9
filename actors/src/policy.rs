//! Restart policies. ractor restarts nothing by itself (and its default supervisor handler stops
//! the parent when any child exits), so every supervisor here applies one of these.
//!
//! A policy is Erlang/OTP's and Akka's: a strategy (always one-for-one here: only the failed
//! child is restarted), an intensity (at most `max_restarts` restarts within `within`), and what
//! happens past it (escalate to the parent supervisor). Like Akka's `OneForOneStrategy`, the
//! intensity is counted per child, so one crash-looping agent does not use up its siblings'
//! budget.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max_restarts` restarts of one child within `within`; past that, escalate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// How many restarts are allowed inside the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

impl RestartPolicy {
    /// Agents and coordinators: 3 restarts in 5 s.
    pub const AGENT: RestartPolicy = RestartPolicy {
        max_restarts: 3,
        within: Duration::from_secs(5),
    };
    /// Whole networks (after an escalation): 3 restarts in 60 s.
    pub const NETWORK: RestartPolicy = RestartPolicy {
        max_restarts: 3,
        within: Duration::from_secs(60),
    };
    /// Node services (gateway, memory shards): 5 restarts in 10 s.
    pub const SERVICE: RestartPolicy = RestartPolicy {
        max_restarts: 5,
        within: Duration::from_secs(10),
    };
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} restarts in {:?}", self.max_restarts, self.within)
    }
}

/// What a supervisor does about one failure of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart it; this is restart number `n` inside the window.
    Restart {
        /// Restarts inside the window, this one included.
        n: u32,
    },
    /// The intensity is exceeded: give up on the child and escalate.
    Escalate,
}

/// The restart history of one child.
#[derive(Clone, Debug)]
pub struct RestartWindow {
    policy: RestartPolicy,
    restarts: VecDeque<Instant>,
    total: u64,
}

impl RestartWindow {
    /// An empty history under `policy`.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            restarts: VecDeque::new(),
            total: 0,
        }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        while let Some(&t) = self.restarts.front() {
            if now.saturating_duration_since(t) >= self.policy.within {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= self.policy.max_restarts as usize {
            return Decision::Escalate;
        }
        self.restarts.push_back(now);
        self.total += 1;
        Decision::Restart {
            n: u32::try_from(self.restarts.len()).unwrap_or(u32::MAX),
        }
    }

    /// Restarts over the child's whole life.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The policy applied.
    pub fn policy(&self) -> RestartPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalates_on_the_failure_after_the_allowed_restarts() {
        let t0 = Instant::now();
        let mut w = RestartWindow::new(RestartPolicy::AGENT);
        assert_eq!(w.on_failure(t0), Decision::Restart { n: 1 });
        assert_eq!(w.on_failure(t0), Decision::Restart { n: 2 });
        assert_eq!(w.on_failure(t0), Decision::Restart { n: 3 });
        assert_eq!(w.on_failure(t0), Decision::Escalate);
        assert_eq!(w.total(), 3);
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut w = RestartWindow::new(RestartPolicy::AGENT);
        for i in 0..10u32 {
            // One failure every 3 s: never more than 2 inside any 5 s window.
            let d = w.on_failure(t0 + Duration::from_secs(u64::from(i) * 3));
            assert!(
                matches!(d, Decision::Restart { n } if n <= 2),
                "{d:?} at {i}"
            );
        }
        assert_eq!(w.total(), 10);
    }
}
