//! Code archives (and diff patches) this agent has downloaded and checked,
//! kept in memory by digest, so that the runs of one job (a sweep, an
//! evaluation fan-out) fetch its archive from the server once. A digest
//! names its bytes, so an entry never goes stale; only bytes that hashed to
//! their digest are kept.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Bytes the cache holds at most by default.
pub const DEFAULT_BUDGET: usize = 64 << 20;

/// A bounded map from digest to bytes; the oldest entries go first. Clones
/// share one cache.
#[derive(Clone)]
pub struct BlobCache {
    budget: usize,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<String, Bytes>,
    /// Digests, oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("BlobCache").field("blobs", &inner.blobs.len()).field("bytes", &inner.bytes).finish()
    }
}

impl Default for BlobCache {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl BlobCache {
    /// A cache of at most `budget` bytes; a blob larger than a quarter of it
    /// is never kept (it would push out everything else).
    pub fn new(budget: usize) -> Self {
        Self { budget, inner: Arc::default() }
    }

    pub fn get(&self, digest: &str) -> Option<Bytes> {
        self.lock().blobs.get(digest).cloned()
    }

    /// Keeps `bytes`, which the caller has checked hash to `digest`.
    pub fn put(&self, digest: &str, bytes: Bytes) {
        if bytes.len() > self.budget / 4 {
            return;
        }
        let mut inner = self.lock();
        if inner.blobs.contains_key(digest) {
            return;
        }
        while inner.bytes + bytes.len() > self.budget {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(b) = inner.blobs.remove(&old) {
                inner.bytes -= b.len();
            }
        }
        inner.bytes += bytes.len();
        inner.order.push_back(digest.to_string());
        inner.blobs.insert(digest.to_string(), bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_blobs_go_first_and_the_budget_holds() {
        let cache = BlobCache::new(100);
        cache.put("a", Bytes::from(vec![1; 20]));
        cache.put("b", Bytes::from(vec![2; 25]));
        cache.put("c", Bytes::from(vec![3; 25]));
        cache.put("d", Bytes::from(vec![4; 25]));
        assert_eq!(cache.get("a").unwrap().len(), 20, "all four fit");
        cache.put("e", Bytes::from(vec![5; 25]));
        assert!(cache.get("a").is_none(), "the oldest went");
        assert_eq!(cache.get("e").unwrap()[0], 5);
        assert_eq!(cache.lock().bytes, 100);
        cache.put("big", Bytes::from(vec![6; 26]));
        assert!(cache.get("big").is_none(), "more than a quarter of the budget is not kept");
        assert_eq!(cache.get("b").unwrap()[0], 2, "and pushed nothing out");
        let shared = cache.clone();
        cache.put("b", Bytes::from(vec![9; 25]));
        assert_eq!(shared.get("b").unwrap()[0], 2, "clones share one cache; an entry is never replaced");
    }
}
