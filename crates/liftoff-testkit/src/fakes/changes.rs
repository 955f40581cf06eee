//! How a test waits on a fake: every change the fake makes bumps a
//! counter, and a waiter re-checks its condition at each bump, until a
//! deadline. No polling interval, so no sleep decides a test.

use std::time::Duration;
use tokio::sync::watch;

pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Changes {
    /// Something changed: wake the waiters.
    pub fn bump(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    /// A receiver woken at each change (for streams that wait on the fake).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// `f`'s value once it has one, or its last answer after `within`.
    pub async fn wait_until<T>(&self, within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let mut rx = self.0.subscribe();
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                return f();
            }
        }
    }
}
