//! Where a streamed answer's pieces go: a bounded channel to the client, which remembers
//! whether anything was sent (after the first piece, a failure can no longer fall back).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

/// The sending side of a streamed answer.
#[derive(Clone, Debug)]
pub struct DeltaSink {
    tx: mpsc::Sender<String>,
    started: Arc<AtomicBool>,
}

impl DeltaSink {
    /// A sink and the receiver the client reads from; `capacity` pieces may wait unread.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                started: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// Sends a piece; false if the client has gone.
    pub async fn send(&self, delta: String) -> bool {
        if delta.is_empty() {
            return !self.tx.is_closed();
        }
        self.started.store(true, Ordering::Release);
        self.tx.send(delta).await.is_ok()
    }

    /// Sends a whole answer as one piece without waiting (a cached answer); false if it did
    /// not fit or the client has gone.
    pub fn try_send_whole(&self, text: String) -> bool {
        self.started.store(true, Ordering::Release);
        self.tx.try_send(text).is_ok()
    }

    /// True once a piece has been sent.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// True if the client has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
