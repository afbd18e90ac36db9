//! Live counters an actor publishes without being asked, so listings and metrics never queue
//! behind its work. They outlive restarts: the supervisor owns them and hands them to each new
//! incarnation.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

/// What an agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Starting up.
    Starting,
    /// Nothing to do.
    Idle,
    /// Working.
    Busy,
    /// Crashed, being restarted by its supervisor.
    Restarting,
    /// Crashed past its restart intensity; out of service.
    Failed,
    /// Removed from the network.
    Stopped,
}

impl AgentStatus {
    /// Every status's word, in a fixed order.
    pub const WORDS: [&'static str; 6] = [
        "starting",
        "idle",
        "busy",
        "restarting",
        "failed",
        "stopped",
    ];

    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Idle,
            2 => Self::Busy,
            3 => Self::Restarting,
            4 => Self::Failed,
            _ => Self::Stopped,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Starting => 0,
            Self::Idle => 1,
            Self::Busy => 2,
            Self::Restarting => 3,
            Self::Failed => 4,
            Self::Stopped => 5,
        }
    }
}

/// One agent's counters.
#[derive(Debug, Default)]
pub struct AgentStats {
    status: AtomicU8,
    queued: AtomicU64,
    running: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    restarts: AtomicU64,
    messages: AtomicU64,
}

/// A copy of an agent's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AgentStatsView {
    /// What it is doing.
    pub status: AgentStatus,
    /// Subtasks waiting in its priority mailbox.
    pub mailbox_depth: u64,
    /// Subtasks it is running.
    pub running: u64,
    /// Subtasks it completed.
    pub tasks_handled: u64,
    /// Subtasks it failed.
    pub tasks_failed: u64,
    /// Times its supervisor restarted it.
    pub restarts: u64,
    /// Messages its actor handled.
    pub messages: u64,
}

/// Counters summed over actors of one kind (a network's agents, or its coordinator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsTotals {
    /// Actors by status, in the order of [`AgentStatus::WORDS`].
    pub by_status: [u64; AgentStatus::WORDS.len()],
    /// Subtasks waiting in their mailboxes.
    pub mailbox_depth: u64,
    /// Messages they handled.
    pub messages: u64,
    /// Times they were restarted.
    pub restarts: u64,
}

impl StatsTotals {
    /// Adds one actor's counters.
    pub fn add(&mut self, v: &AgentStatsView) {
        if let Some(n) = self.by_status.get_mut(usize::from(v.status.to_u8())) {
            *n += 1;
        }
        self.mailbox_depth += v.mailbox_depth;
        self.messages += v.messages;
        self.restarts += v.restarts;
    }
}

impl AgentStats {
    /// Sets the status.
    pub fn set_status(&self, s: AgentStatus) {
        self.status.store(s.to_u8(), Ordering::Relaxed);
    }

    /// The status.
    pub fn status(&self) -> AgentStatus {
        AgentStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Publishes the current queue and running counts, and the status they imply.
    pub fn set_load(&self, queued: usize, running: usize) {
        self.queued.store(queued as u64, Ordering::Relaxed);
        self.running.store(running as u64, Ordering::Relaxed);
        let busy = queued + running > 0;
        self.set_status(if busy {
            AgentStatus::Busy
        } else {
            AgentStatus::Idle
        });
    }

    /// Queued plus running work, for load balancing.
    pub fn load(&self) -> usize {
        (self.queued.load(Ordering::Relaxed) + self.running.load(Ordering::Relaxed)) as usize
    }

    /// Counts a completed subtask.
    pub fn handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed subtask.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message handled.
    #[inline]
    pub fn message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a restart.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn view(&self) -> AgentStatsView {
        AgentStatsView {
            status: self.status(),
            mailbox_depth: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            tasks_handled: self.handled.load(Ordering::Relaxed),
            tasks_failed: self.failed.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_each_status_under_its_word() {
        let mut totals = StatsTotals::default();
        for code in 0..AgentStatus::WORDS.len() as u8 {
            let status = AgentStatus::from_u8(code);
            assert_eq!(AgentStatus::WORDS[usize::from(code)], status.as_str());
            assert_eq!(status.to_u8(), code);
            let view = AgentStatsView {
                status,
                mailbox_depth: 2,
                running: 0,
                tasks_handled: 0,
                tasks_failed: 0,
                restarts: 1,
                messages: 10,
            };
            for _ in 0..=code {
                totals.add(&view);
            }
        }
        assert_eq!(totals.by_status, [1, 2, 3, 4, 5, 6]);
        assert_eq!(totals.mailbox_depth, 42);
        assert_eq!((totals.messages, totals.restarts), (210, 21));
    }
}
