//! Waiting for tasks to end without polling: the coordinator announces each terminal state, and
//! whoever subscribed (an HTTP `?wait`, a benchmark) is woken.

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::ids::TaskId;
use crate::types::TaskStatus;

/// Subscribers to task endings.
#[derive(Debug, Default)]
pub struct TaskWatch {
    waiters: DashMap<TaskId, Vec<oneshot::Sender<TaskStatus>>>,
}

impl TaskWatch {
    /// A receiver that gets the task's terminal status. Subscribe *before* reading the task's
    /// current status, or an ending in between is missed.
    pub fn subscribe(&self, task: TaskId) -> oneshot::Receiver<TaskStatus> {
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(task).or_default().push(tx);
        rx
    }

    /// Announces that `task` ended.
    pub fn finished(&self, task: TaskId, status: TaskStatus) {
        if let Some((_, waiters)) = self.waiters.remove(&task) {
            for w in waiters {
                let _ = w.send(status);
            }
        }
    }

    /// Drops subscriptions whose receivers are gone (callers that gave up).
    pub fn forget(&self, task: TaskId) {
        if let Some(mut e) = self.waiters.get_mut(&task) {
            e.retain(|w| !w.is_closed());
            if e.is_empty() {
                drop(e);
                self.waiters.remove_if(&task, |_, v| v.is_empty());
            }
        }
    }
}
