//! Wakes event streams when an item changed or its log grew on this server.
//!
//! A wake-up only says "look again": every stream re-reads the store from
//! its own position, so a lost or lagging notification costs latency, never
//! an event. Changes made through another server sharing the PostgreSQL
//! database wake nobody here; streams also look every
//! `ServerConfig::stream_recheck` (1 s) for those.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

/// What changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// An item's state or log. `name` is how the writer named it (its item
    /// id or run id); `queue` is known for state changes.
    Item { entity: String, name: String, queue: Option<String> },
    /// Items changed that the writer did not list (the reaper, a release).
    Any,
}

impl Change {
    /// Whether a stream of the item `(entity, id, run_id)` should look again.
    pub fn concerns_item(&self, entity: &str, id: &str, run_id: &str) -> bool {
        match self {
            Self::Item { entity: e, name, .. } => e == entity && (name == id || name == run_id),
            Self::Any => true,
        }
    }

    /// Whether a stream of the queue should look again.
    pub fn concerns_queue(&self, entity: &str, queue: &str) -> bool {
        match self {
            Self::Item { entity: e, queue: q, .. } => e == entity && q.as_deref() == Some(queue),
            Self::Any => true,
        }
    }
}

/// The server's change notifications and its bound on open streams.
#[derive(Clone)]
pub struct Changes {
    tx: broadcast::Sender<Change>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// `liftoff_event_streams`
    open: Gauge,
}

/// An open stream's place under the cap; given back (and counted out) when
/// the stream is dropped, which happens when its client goes away.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Changes {
    pub fn new(max_streams: usize, open: Gauge) -> Self {
        Self { tx: broadcast::channel(1024).0, streams: Arc::new(Semaphore::new(max_streams)), max_streams, open }
    }

    /// After the commit of a state change or a log append of item `name`.
    pub fn item(&self, entity: &str, name: &str, queue: Option<&str>) {
        // no receiver: no stream is open, nobody to wake
        let _ = self.tx.send(Change::Item {
            entity: entity.to_string(),
            name: name.to_string(),
            queue: queue.map(str::to_string),
        });
    }

    /// After changes to items the caller cannot list cheaply.
    pub fn any(&self) {
        let _ = self.tx.send(Change::Any);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// A slot for one more open stream, or `None` when all are taken.
    pub fn open_stream(&self) -> Option<StreamSlot> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        self.open.inc();
        Some(StreamSlot { _permit: permit, open: self.open.clone() })
    }

    pub fn max_streams(&self) -> usize {
        self.max_streams
    }
}
