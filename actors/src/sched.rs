//! The priority mailbox every scheduling hop uses (coordinator, agents, gateway admission).
//!
//! ractor's mailbox is one FIFO, so work is buffered here, inside the actor, and control
//! messages stay in the real mailbox where nothing queues in front of them.
//!
//! Order: lowest *effective* level first, FIFO within a level. The effective level of an entry
//! is its priority index minus one level for every `aging` interval it has waited, floored at
//! the top level; ties go to the oldest entry. So a priority-5 entry that has waited
//! `4 × aging` is served before any newer priority-1 entry: low priority cannot starve, and the
//! longest it can be overtaken is bounded.
//!
//! Only the head of each level can be the best of that level (it is the oldest there), so `pop`
//! looks at five entries: O(1).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::priority::Priority;

/// A priority queue with FIFO levels and aging.
#[derive(Debug)]
pub struct AgingQueue<T> {
    levels: [VecDeque<Entry<T>>; Priority::LEVELS],
    aging: Duration,
    seq: u64,
    len: usize,
}

#[derive(Debug)]
struct Entry<T> {
    seq: u64,
    since: Instant,
    item: T,
}

/// One entry taken out of the queue, with how long it waited.
#[derive(Debug, PartialEq)]
pub struct Popped<T> {
    /// The item.
    pub item: T,
    /// Its own priority (not the aged one).
    pub priority: Priority,
    /// How long it waited in the queue.
    pub waited: Duration,
}

impl<T> AgingQueue<T> {
    /// An empty queue; entries gain one level per `aging` waited (a zero `aging` disables it).
    pub fn new(aging: Duration) -> Self {
        Self {
            levels: Default::default(),
            aging,
            seq: 0,
            len: 0,
        }
    }

    /// Queues an item at `priority`, as of `now`.
    pub fn push(&mut self, priority: Priority, item: T, now: Instant) {
        self.seq += 1;
        self.levels[priority.index()].push_back(Entry {
            seq: self.seq,
            since: now,
            item,
        });
        self.len += 1;
    }

    /// Queues an item at the front of its level: work that had already started elsewhere (a
    /// redelivery) resumes before newer work of the same priority.
    pub fn push_front(&mut self, priority: Priority, item: T, now: Instant) {
        self.seq += 1;
        self.levels[priority.index()].push_front(Entry {
            seq: self.seq,
            since: now,
            item,
        });
        self.len += 1;
    }

    /// Takes the next item as of `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Popped<T>> {
        let level = self.best_level(now)?;
        let entry = self.levels[level].pop_front()?;
        self.len -= 1;
        Some(Popped {
            item: entry.item,
            priority: Priority::from_index(level),
            waited: now.saturating_duration_since(entry.since),
        })
    }

    /// The next item `pop` would return, without taking it.
    pub fn peek(&self, now: Instant) -> Option<&T> {
        let level = self.best_level(now)?;
        self.levels[level].front().map(|e| &e.item)
    }

    /// Removes and returns every item for which `matches` is true.
    pub fn remove_where(&mut self, mut matches: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for level in &mut self.levels {
            if !level.iter().any(|e| matches(&e.item)) {
                continue;
            }
            let (out, keep): (VecDeque<_>, VecDeque<_>) =
                level.drain(..).partition(|e| matches(&e.item));
            *level = keep;
            removed.extend(out.into_iter().map(|e| e.item));
        }
        self.len -= removed.len();
        removed
    }

    /// True if any queued item matches.
    pub fn contains(&self, mut matches: impl FnMut(&T) -> bool) -> bool {
        self.levels.iter().flatten().any(|e| matches(&e.item))
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queued items per priority level, highest first.
    pub fn depths(&self) -> [usize; Priority::LEVELS] {
        std::array::from_fn(|i| self.levels[i].len())
    }

    /// Removes everything, oldest first within each level, highest level first.
    pub fn drain(&mut self) -> Vec<T> {
        self.len = 0;
        self.levels
            .iter_mut()
            .flat_map(|l| l.drain(..).map(|e| e.item))
            .collect()
    }

    fn best_level(&self, now: Instant) -> Option<usize> {
        let mut best: Option<(u64, u64, usize)> = None;
        for (level, queue) in self.levels.iter().enumerate() {
            let Some(head) = queue.front() else { continue };
            let key = (self.effective(level, head.since, now), head.seq, level);
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map(|(_, _, level)| level)
    }

    fn effective(&self, level: usize, since: Instant, now: Instant) -> u64 {
        let level = level as u64;
        if self.aging.is_zero() {
            return level;
        }
        let waited = now.saturating_duration_since(since);
        let boost = waited.as_nanos() / self.aging.as_nanos().max(1);
        level.saturating_sub(u64::try_from(boost).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Priority {
        Priority::new(n).unwrap()
    }

    #[test]
    fn higher_priority_first_and_fifo_within_a_level() {
        let t0 = Instant::now();
        let mut q = AgingQueue::new(Duration::from_secs(10));
        for (i, prio) in [3, 5, 1, 3, 1, 2, 5].into_iter().enumerate() {
            q.push(p(prio), (prio, i), t0);
        }
        let order: Vec<_> = std::iter::from_fn(|| q.pop(t0).map(|e| e.item)).collect();
        assert_eq!(
            order,
            vec![(1, 2), (1, 4), (2, 5), (3, 0), (3, 3), (5, 1), (5, 6)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn redelivered_work_goes_first_within_its_level_but_not_past_higher_priority() {
        let t0 = Instant::now();
        let mut q = AgingQueue::new(Duration::from_secs(10));
        q.push(p(3), "a", t0);
        q.push(p(3), "b", t0);
        q.push(p(2), "urgent", t0);
        q.push_front(p(3), "redelivered", t0);
        let order: Vec<_> = std::iter::from_fn(|| q.pop(t0).map(|e| e.item)).collect();
        assert_eq!(order, vec!["urgent", "redelivered", "a", "b"]);
    }

    #[test]
    fn aging_promotes_waiting_low_priority_work_past_newer_high_priority_work() {
        let t0 = Instant::now();
        let aging = Duration::from_secs(1);
        let mut q = AgingQueue::new(aging);
        q.push(p(5), "old-low", t0);
        // After 4 intervals the low entry reaches the top level and is older than anything new.
        let later = t0 + aging * 4;
        q.push(p(1), "new-high", later);
        assert_eq!(q.pop(later).map(|e| e.item), Some("old-low"));
        assert_eq!(q.pop(later).map(|e| e.item), Some("new-high"));
    }

    #[test]
    fn without_enough_wait_priority_still_wins() {
        let t0 = Instant::now();
        let aging = Duration::from_secs(1);
        let mut q = AgingQueue::new(aging);
        q.push(p(5), "low", t0);
        let later = t0 + aging * 3; // effective level 1 (index), still behind index 0
        q.push(p(1), "high", later);
        let first = q.pop(later).unwrap();
        assert_eq!(first.item, "high");
        assert_eq!(first.priority, p(1));
        let second = q.pop(later).unwrap();
        assert_eq!(second.waited, aging * 3);
    }

    #[test]
    fn a_flood_of_high_priority_work_cannot_starve_low_priority_work() {
        // One item is served per tick; every tick two new priority-1 items arrive.
        let t0 = Instant::now();
        let aging = Duration::from_millis(100);
        let tick = Duration::from_millis(10);
        let mut q = AgingQueue::new(aging);
        q.push(p(5), u32::MAX, t0);
        let mut now = t0;
        let mut served_low_at = None;
        for n in 0..1_000u32 {
            q.push(p(1), 2 * n, now);
            q.push(p(1), 2 * n + 1, now);
            if q.pop(now).map(|e| e.item) == Some(u32::MAX) {
                served_low_at = Some(now - t0);
                break;
            }
            now += tick;
        }
        let waited = served_low_at.expect("the low-priority item was starved");
        assert!(waited <= aging * 4 + tick, "waited {waited:?}");
    }

    #[test]
    fn remove_where_takes_matching_items_from_every_level() {
        let t0 = Instant::now();
        let mut q = AgingQueue::new(Duration::ZERO);
        for i in 0..10u32 {
            q.push(p((i % 5 + 1) as u8), i, t0);
        }
        let mut removed = q.remove_where(|i| i % 2 == 0);
        removed.sort();
        assert_eq!(removed, vec![0, 2, 4, 6, 8]);
        assert_eq!(q.len(), 5);
        assert!(!q.contains(|i| i % 2 == 0));
        assert_eq!(q.depths().iter().sum::<usize>(), 5);
        assert_eq!(q.drain().len(), 5);
        assert!(q.is_empty());
    }
}
