//! Which queues a claim found empty, so that the next claims on them skip
//! the database until something may have put an item there. SQLite only:
//! one server owns a SQLite database (the data directory's lock), so every
//! write that can make an item claimable passes through this store. On
//! PostgreSQL other servers write too, and every claim asks the database.
//!
//! Measured before this hint: a run cost 2.25 claims in the store, most of
//! them empty (each agent waiting in a long-poll is woken by every
//! enqueue, and all but one find nothing); each was a transaction on the
//! one writer connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Queues seen empty, each with the generation at which it was seen.
#[derive(Default)]
pub(super) struct EmptyQueues {
    /// Goes up with every write that may make an item pending (an enqueue,
    /// a transition back to pending), done on the writer connection.
    generation: AtomicU64,
    /// `(entity, queue)` → the generation read before the claim that found
    /// it empty began. Bounded: cleared when full.
    seen: Mutex<HashMap<(String, String), u64>>,
}

/// Bound on remembered queues; a store with more is only slower, not wrong.
const MAX_QUEUES: usize = 10_000;

impl EmptyQueues {
    /// The generation now: read before a claim's transaction begins.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A write that may have made an item of some queue pending ran on the
    /// writer connection (called after its statement, before its commit: a
    /// claim on the writer after it sees the item, and one that read the
    /// generation before it does not trust its empty answer).
    pub(super) fn may_have_pending(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether `queue` was found empty at generation `at`, with nothing
    /// written since that could change it.
    pub(super) fn known_empty(&self, entity: &str, queue: &str, at: u64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&(entity.to_string(), queue.to_string())) == Some(&at)
    }

    /// A claim that read generation `at` before it began found `queue` empty.
    pub(super) fn found_empty(&self, entity: &str, queue: &str, at: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_QUEUES {
            seen.clear();
        }
        seen.insert((entity.to_string(), queue.to_string()), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_known_empty_only_at_the_generation_it_was_seen_at() {
        let hint = EmptyQueues::default();
        let at = hint.generation();
        assert!(!hint.known_empty("e", "q", at), "nothing is known at first");
        hint.found_empty("e", "q", at);
        assert!(hint.known_empty("e", "q", at));
        assert!(!hint.known_empty("e", "other", at), "only the queue seen");
        assert!(!hint.known_empty("f", "q", at), "only in its entity");
        hint.may_have_pending();
        assert!(!hint.known_empty("e", "q", hint.generation()), "a write since makes it unknown");
    }
}
