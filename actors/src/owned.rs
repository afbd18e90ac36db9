//! Owned background work: a spawned task that is aborted when its owner drops it.
//!
//! Actors keep these in their `State`. When an actor crashes its state is dropped, and with it
//! every call it had in flight, so no orphaned model call outlives its agent.

use std::future::Future;

use tokio::task::AbortHandle;

/// A spawned task, aborted on drop.
#[derive(Debug)]
pub struct OwnedTask(AbortHandle);

impl OwnedTask {
    /// Spawns `fut` on the current runtime, owned by the returned handle.
    pub fn spawn<F>(fut: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(fut).abort_handle())
    }

    /// True once the task has finished (or was aborted).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_handle_aborts_the_work() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let task = OwnedTask::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        drop(task);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!ran.load(Ordering::SeqCst));
    }
}
