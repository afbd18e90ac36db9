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

    /// Casts `msg()` to `to` at once and then every `every` (a late tick is not made up),
    /// until the actor is gone or the handle is dropped.
    pub fn every<M: ractor::Message>(
        every: std::time::Duration,
        to: ractor::ActorRef<M>,
        msg: impl Fn() -> M + Send + 'static,
    ) -> Self {
        Self::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if to.cast(msg()).is_err() {
                    break;
                }
            }
        })
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

    struct Counter(Arc<std::sync::atomic::AtomicU32>);

    impl ractor::Actor for Counter {
        type Msg = ();
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ractor::ActorRef<()>,
            _: (),
        ) -> Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ractor::ActorRef<()>,
            _: (),
            _: &mut (),
        ) -> Result<(), ractor::ActorProcessingErr> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_casts_periodically_until_dropped() {
        let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (actor, join) = ractor::Actor::spawn(None, Counter(n.clone()), ())
            .await
            .unwrap();
        let ticker = OwnedTask::every(Duration::from_millis(5), actor.clone(), || ());
        while n.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(ticker);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = n.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(n.load(Ordering::SeqCst), after, "no casts once dropped");
        actor.stop(None);
        join.await.unwrap();
    }
}
