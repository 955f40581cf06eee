use tokio::sync::watch;

/// Wakes long-polling claims when work may have appeared: a new item, or
/// one put back by the lease reaper. A generation counter in a `watch`
/// channel cannot lose a wake-up: a waiter subscribes (and so marks the
/// current generation seen) before it looks at the store.
#[derive(Clone)]
pub struct Dispatch {
    tx: watch::Sender<u64>,
}

impl Dispatch {
    pub fn new() -> Self {
        Self { tx: watch::channel(0).0 }
    }

    pub fn notify(&self) {
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
