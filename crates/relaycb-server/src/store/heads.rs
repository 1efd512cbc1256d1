//! The newest stored event of every task, in memory: the heads of the
//! per-task chains of the SQLite store.
//!
//! Each stored event of a task names the task's previous event
//! (`events.task_prev`), so a task's events are found by walking back from
//! its newest one instead of through an index on `task_id`. Such an index
//! costs every insert a write to a random page of it (tasks interleave),
//! which in WAL mode is a whole page written per event; a chain costs one
//! integer in the row.
//!
//! Tasks are keyed by a hash of their id under a key drawn at start, so the
//! map costs a few bytes a task. Two tasks whose ids collide share a chain;
//! whoever walks it keeps only the rows of the task asked for, so a
//! collision costs a longer walk, never a wrong answer, and nobody can
//! arrange one without the key.
//!
//! The writer links the events of its open transaction through
//! [`PendingHeads`] and publishes them with [`TaskHeads::publish`] once the
//! transaction commits; readers see only committed heads, so a walk never
//! starts at a row they cannot read.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

/// The committed head of every task chain.
#[derive(Debug, Default)]
pub(crate) struct TaskHeads {
    hasher: RandomState,
    committed: RwLock<HashMap<u64, i64>>,
}

impl TaskHeads {
    /// The chain a task's events are on.
    pub(crate) fn key(&self, task_id: &str) -> u64 {
        self.hasher.hash_one(task_id)
    }

    /// The newest committed event on that chain.
    pub(crate) fn get(&self, key: u64) -> Option<i64> {
        self.read().get(&key).copied()
    }

    /// The newest committed event of that task's chain.
    pub(crate) fn of_task(&self, task_id: &str) -> Option<i64> {
        self.get(self.key(task_id))
    }

    /// Makes the heads of a committed transaction visible.
    pub(crate) fn publish(&self, pending: &mut PendingHeads) {
        if pending.heads.is_empty() {
            return;
        }
        let mut committed = self.committed.write().unwrap_or_else(|p| p.into_inner());
        for (key, id) in pending.heads.drain() {
            let head = committed.entry(key).or_insert(id);
            *head = (*head).max(id);
        }
    }

    /// Records an event already committed: used when the heads are loaded
    /// from the store on open, in id order.
    pub(crate) fn load(&self, task_id: &str, id: i64) {
        let key = self.key(task_id);
        let mut committed = self.committed.write().unwrap_or_else(|p| p.into_inner());
        let head = committed.entry(key).or_insert(id);
        *head = (*head).max(id);
    }

    /// How many chains there are.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, i64>> {
        // Every write leaves the map whole; a poisoned lock is taken as is.
        self.committed.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The heads moved by the writer's open transaction.
#[derive(Debug, Default)]
pub(crate) struct PendingHeads {
    heads: HashMap<u64, i64>,
}

impl PendingHeads {
    /// The newest event on that chain, the open transaction's included.
    pub(crate) fn head(&self, committed: &TaskHeads, key: u64) -> Option<i64> {
        self.heads.get(&key).copied().or_else(|| committed.get(key))
    }

    /// Makes `id` the newest event on that chain.
    pub(crate) fn advance(&mut self, key: u64, id: i64) {
        self.heads.insert(key, id);
    }

    /// Forgets the open transaction's heads: it was rolled back.
    pub(crate) fn clear(&mut self) {
        self.heads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transactions_heads_are_seen_by_others_only_once_published() {
        let heads = TaskHeads::default();
        heads.load("7", 3);
        let seven = heads.key("7");
        let mut pending = PendingHeads::default();
        assert_eq!(pending.head(&heads, seven), Some(3));
        pending.advance(seven, 9);
        assert_eq!(pending.head(&heads, seven), Some(9));
        assert_eq!(heads.get(seven), Some(3), "not committed yet");
        heads.publish(&mut pending);
        assert_eq!(heads.of_task("7"), Some(9));
        assert_eq!(pending.head(&heads, seven), Some(9));
    }

    #[test]
    fn a_rolled_back_transaction_leaves_the_heads_as_they_were() {
        let heads = TaskHeads::default();
        heads.load("7", 3);
        let mut pending = PendingHeads::default();
        pending.advance(heads.key("7"), 4);
        pending.advance(heads.key("8"), 5);
        pending.clear();
        heads.publish(&mut pending);
        assert_eq!(heads.of_task("7"), Some(3));
        assert_eq!(heads.of_task("8"), None);
        assert_eq!(heads.len(), 1);
    }

    #[test]
    fn loading_keeps_the_newest_event_of_each_task() {
        let heads = TaskHeads::default();
        for (task, id) in [("7", 1), ("8", 2), ("7", 5), ("8", 4)] {
            heads.load(task, id);
        }
        assert_eq!(heads.of_task("7"), Some(5));
        assert_eq!(heads.of_task("8"), Some(4));
    }
}
