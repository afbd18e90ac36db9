//! Rate limits per link (provider + model): requests and tokens per minute, with governor's
//! GCRA limiters. When a link is at its limit, calls wait in a priority queue ([`AgingQueue`])
//! rather than fail: the highest-priority call is admitted first when capacity returns, and
//! newcomers queue behind waiters instead of jumping ahead.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::priority::Priority;
use crate::sched::AgingQueue;

/// A call waiting for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    /// The gateway's call id.
    pub call: u64,
    /// Tokens it needs (prompt estimate + max_tokens).
    pub tokens: u32,
}

/// What the limiter says about a new call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Go now.
    Go,
    /// Queued; wake the limiter after this long (when set; a wake is pending otherwise).
    Queued(Option<Duration>),
    /// It can never fit (more tokens than a minute's quota): skip this link.
    Never,
}

/// One link's limiter.
pub struct LinkLimiter {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
    waiting: AgingQueue<Waiter>,
    wake_pending: bool,
}

enum Gate {
    Go,
    Wait(Duration),
    Never,
}

impl LinkLimiter {
    /// A limiter allowing `rpm` requests and `tpm` tokens per `window` (a minute in
    /// production; `None`: unlimited).
    pub fn new(rpm: Option<u32>, tpm: Option<u32>, window: Duration, aging: Duration) -> Self {
        let make = |n: Option<u32>| {
            let n = n.and_then(NonZeroU32::new)?;
            let quota = Quota::with_period(window / n.get())?.allow_burst(n);
            Some(RateLimiter::direct(quota))
        };
        Self {
            requests: make(rpm),
            tokens: make(tpm),
            waiting: AgingQueue::new(aging),
            wake_pending: false,
        }
    }

    /// True when the link has no limits.
    pub fn unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    fn gate(&self, tokens: u32) -> Gate {
        let now = DefaultClock::default().now();
        if let Some(t) = &self.tokens {
            match t.check_n(NonZeroU32::new(tokens.max(1)).unwrap_or(NonZeroU32::MIN)) {
                Err(_) => return Gate::Never,
                Ok(Err(not_until)) => return Gate::Wait(not_until.wait_time_from(now)),
                Ok(Ok(())) => {}
            }
        }
        if let Some(r) = &self.requests
            && let Err(not_until) = r.check()
        {
            // The token cells were taken for a call that now waits; they return with time.
            return Gate::Wait(not_until.wait_time_from(now));
        }
        Gate::Go
    }

    /// Admits a new call, or queues it by `priority`.
    pub fn admit(&mut self, waiter: Waiter, priority: Priority, now: Instant) -> Admission {
        if self.unlimited() {
            return Admission::Go;
        }
        if !self.waiting.is_empty() {
            self.waiting.push(priority, waiter, now);
            return Admission::Queued(self.schedule(Duration::ZERO));
        }
        match self.gate(waiter.tokens) {
            Gate::Go => Admission::Go,
            Gate::Never => Admission::Never,
            Gate::Wait(d) => {
                self.waiting.push(priority, waiter, now);
                Admission::Queued(self.schedule(d))
            }
        }
    }

    fn schedule(&mut self, after: Duration) -> Option<Duration> {
        if self.wake_pending {
            None
        } else {
            self.wake_pending = true;
            Some(after)
        }
    }

    /// The wake-up came: admits waiting calls in priority order while capacity lasts. Returns
    /// the admitted calls (with how long each waited), calls that can never fit, and when to
    /// wake next if calls still wait.
    pub fn wake(&mut self, now: Instant) -> Woken {
        self.wake_pending = false;
        let mut woken = Woken::default();
        while let Some(&next) = self.waiting.peek(now) {
            match self.gate(next.tokens) {
                Gate::Go => {
                    if let Some(p) = self.waiting.pop(now) {
                        metrics::histogram!(crate::metrics_names::QUEUE_WAIT, "queue" => "gateway")
                            .record(p.waited.as_secs_f64());
                        woken.admitted.push((p.item.call, p.waited));
                    }
                }
                Gate::Never => {
                    if let Some(p) = self.waiting.pop(now) {
                        woken.never.push(p.item.call);
                    }
                }
                Gate::Wait(d) => {
                    woken.next = self.schedule(d.max(Duration::from_millis(1)));
                    break;
                }
            }
        }
        woken
    }

    /// Takes a call out of the queue (it ended or moved on).
    pub fn remove(&mut self, call: u64) -> bool {
        !self.waiting.remove_where(|w| w.call == call).is_empty()
    }

    /// Calls waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The result of a wake-up.
#[derive(Debug, Default, PartialEq)]
pub struct Woken {
    /// Admitted calls and how long they waited.
    pub admitted: Vec<(u64, Duration)>,
    /// Calls that can never fit.
    pub never: Vec<u64>,
    /// When to wake again.
    pub next: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Priority {
        Priority::new(n).unwrap()
    }

    #[test]
    fn at_the_limit_calls_queue_and_leave_in_priority_order() {
        let now = Instant::now();
        // 2 requests per minute: the burst is 2, then one every 30 s.
        let mut l = LinkLimiter::new(
            Some(2),
            None,
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        let w = |call| Waiter { call, tokens: 1 };
        assert_eq!(l.admit(w(1), p(3), now), Admission::Go);
        assert_eq!(l.admit(w(2), p(3), now), Admission::Go);
        assert!(
            matches!(l.admit(w(3), p(5), now), Admission::Queued(Some(d)) if d > Duration::from_secs(25))
        );
        // Later arrivals queue behind, and no second wake is scheduled.
        assert_eq!(l.admit(w(4), p(1), now), Admission::Queued(None));
        assert_eq!(l.admit(w(5), p(3), now), Admission::Queued(None));
        assert_eq!(l.waiting(), 3);
        // Nothing has capacity yet.
        let woken = l.wake(now);
        assert!(woken.admitted.is_empty() && woken.next.is_some());
        assert!(l.remove(5));
        assert_eq!(l.waiting(), 2);
    }

    #[test]
    fn a_call_larger_than_a_minutes_tokens_never_fits() {
        let mut l = LinkLimiter::new(
            None,
            Some(100),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        assert_eq!(
            l.admit(
                Waiter {
                    call: 1,
                    tokens: 101
                },
                p(3),
                Instant::now()
            ),
            Admission::Never
        );
        assert_eq!(
            l.admit(
                Waiter {
                    call: 2,
                    tokens: 100
                },
                p(3),
                Instant::now()
            ),
            Admission::Go
        );
        assert!(LinkLimiter::new(None, None, Duration::from_secs(60), Duration::ZERO).unlimited());
    }
}
