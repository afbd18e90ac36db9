//! Admission at the edge: ractor mailboxes are unbounded, so the node bounds how many
//! unfinished tasks each network may hold, and the API answers 429 past it.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::ids::NetworkId;

/// Unfinished-task counts per network, with a cap.
#[derive(Debug)]
pub struct Admission {
    cap: usize,
    unfinished: DashMap<NetworkId, AtomicUsize>,
}

impl Admission {
    /// At most `cap` unfinished tasks per network.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            unfinished: DashMap::new(),
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Takes a place for a new task; false when the network is full.
    pub fn try_admit(&self, network: NetworkId) -> bool {
        let entry = self.unfinished.entry(network).or_default();
        let mut current = entry.load(Ordering::Relaxed);
        loop {
            if current >= self.cap {
                return false;
            }
            match entry.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives a place back when a task ends (or its submission failed).
    pub fn release(&self, network: NetworkId) {
        if let Some(entry) = self.unfinished.get(&network) {
            let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Sets a network's count (at start-up, from the store).
    pub fn set(&self, network: NetworkId, unfinished: usize) {
        self.unfinished
            .insert(network, AtomicUsize::new(unfinished));
    }

    /// A network's unfinished tasks.
    pub fn unfinished(&self, network: NetworkId) -> usize {
        self.unfinished
            .get(&network)
            .map(|e| e.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Forgets a deleted network.
    pub fn forget(&self, network: NetworkId) {
        self.unfinished.remove(&network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_releases() {
        let a = Admission::new(2);
        let n = NetworkId::new();
        assert!(a.try_admit(n));
        assert!(a.try_admit(n));
        assert!(!a.try_admit(n));
        a.release(n);
        assert!(a.try_admit(n));
        assert_eq!(a.unfinished(n), 2);
        // Releasing below zero is a no-op, never a wrap.
        let m = NetworkId::new();
        a.release(m);
        assert_eq!(a.unfinished(m), 0);
    }
}
