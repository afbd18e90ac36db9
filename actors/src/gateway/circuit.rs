//! Circuit breakers: a failing provider link is cooled down instead of retried.
//!
//! Closed: calls flow; `failures` consecutive failures open it. A 429 opens it at once for the
//! provider's `Retry-After`. Open: calls skip this link (fallback to the next one) until the
//! cooldown ends. Half-open: one probe call goes through; its success closes the breaker, its
//! failure re-opens it with a doubled cooldown (capped).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Breaker tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// First cooldown.
    pub cooldown: Duration,
    /// Longest cooldown after repeated failed probes.
    pub max_cooldown: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

/// What a breaker says about a call now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead.
    Yes,
    /// Go ahead as the half-open probe.
    Probe,
    /// Skip this link until `until`.
    No {
        /// When the breaker lets a probe through.
        until: Instant,
    },
}

/// The breaker's state, for status displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls skip the link.
    Open,
    /// One probe is allowed (or out).
    HalfOpen,
}

/// One link's breaker.
#[derive(Clone, Debug)]
pub struct Circuit {
    policy: CircuitPolicy,
    consecutive: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
    opened: u64,
}

impl Circuit {
    /// A closed breaker.
    pub fn new(policy: CircuitPolicy) -> Self {
        Self {
            cooldown: policy.cooldown,
            policy,
            consecutive: 0,
            open_until: None,
            probing: false,
            opened: 0,
        }
    }

    /// May a call go through at `now`?
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.open_until {
            None => Admit::Yes,
            Some(until) if now < until => Admit::No { until },
            Some(until) => {
                if self.probing {
                    Admit::No { until }
                } else {
                    self.probing = true;
                    Admit::Probe
                }
            }
        }
    }

    /// A call through this link succeeded.
    pub fn success(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.probing = false;
        self.cooldown = self.policy.cooldown;
    }

    /// A call through this link failed; `retry_after` is the provider's own request to wait.
    pub fn failure(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.consecutive = self.consecutive.saturating_add(1);
        let was_probe = std::mem::take(&mut self.probing);
        let wait = if let Some(wait) = retry_after {
            Some(wait.min(self.policy.max_cooldown))
        } else if was_probe {
            self.cooldown = (self.cooldown * 2).min(self.policy.max_cooldown);
            Some(self.cooldown)
        } else if self.consecutive >= self.policy.failures {
            Some(self.cooldown)
        } else {
            None
        };
        if let Some(wait) = wait {
            if self.open_until.is_none_or(|u| u <= now) {
                self.opened += 1;
            }
            self.open_until = Some(now + wait);
        }
    }

    /// A probe ended without telling us anything (cancelled): let another probe through.
    pub fn probe_abandoned(&mut self) {
        self.probing = false;
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(until) if now < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// How many times it has opened.
    pub fn times_opened(&self) -> u64 {
        self.opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut c = Circuit::new(CircuitPolicy::default());
        c.failure(t0, None);
        c.failure(t0, None);
        assert_eq!(c.admit(t0), Admit::Yes);
        c.failure(t0, None);
        assert!(matches!(c.admit(t0), Admit::No { .. }));
        assert_eq!(c.state(t0), CircuitState::Open);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(c.state(later), CircuitState::HalfOpen);
        assert_eq!(c.admit(later), Admit::Probe);
        // Only one probe at a time.
        assert!(matches!(c.admit(later), Admit::No { .. }));
        c.success();
        assert_eq!(c.admit(later), Admit::Yes);
        assert_eq!(c.times_opened(), 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut c = Circuit::new(CircuitPolicy::default());
        c.failure(t0, None);
        c.failure(t0, None);
        c.success();
        c.failure(t0, None);
        assert_eq!(c.admit(t0), Admit::Yes);
    }

    #[test]
    fn retry_after_opens_at_once_for_that_long() {
        let t0 = Instant::now();
        let mut c = Circuit::new(CircuitPolicy::default());
        c.failure(t0, Some(Duration::from_secs(2)));
        assert_eq!(
            c.admit(t0 + Duration::from_millis(1999)),
            Admit::No {
                until: t0 + Duration::from_secs(2)
            }
        );
        assert_eq!(c.admit(t0 + Duration::from_secs(2)), Admit::Probe);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let t0 = Instant::now();
        let policy = CircuitPolicy {
            failures: 1,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(30),
        };
        let mut c = Circuit::new(policy);
        c.failure(t0, None);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.admit(t1), Admit::Probe);
        c.failure(t1, None);
        assert!(matches!(
            c.admit(t1 + Duration::from_secs(19)),
            Admit::No { .. }
        ));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(c.admit(t2), Admit::Probe);
        c.failure(t2, None);
        // 40 s capped at 30 s.
        assert_eq!(c.admit(t2 + Duration::from_secs(30)), Admit::Probe);
    }
}
