use tokio::sync::watch;

/// Wakes long-polling claims when work may have appeared: a new item, or
/// one put back by the lease reaper. A generation counter in a `watch`
/// channel cannot lose a wake-up: a waiter subscribes (and so marks the
/// current generation seen) before it looks at the store.
///
/// It also tells waiting claims that the server is stopping, so that a
/// SIGTERM ends every long poll at once instead of after its wait.
#[derive(Clone)]
pub struct Dispatch {
    tx: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Dispatch {
    pub fn new() -> Self {
        Self { tx: watch::channel(0).0, closing: watch::channel(false).0 }
    }

    /// Ends every wait now and every later one at once.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Self::close`] was called.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn notify(&self) {
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
