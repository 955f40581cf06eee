//! Ships a run's output to the server as sequenced chunks: in order, each
//! exactly once (the server ignores repeats of a sequence number, so a retry
//! after a lost response cannot duplicate), none dropped while the lease holds.

use liftoff_client::Client;
use liftoff_core::api::{AppendLog, LogStream, LogTail};
use liftoff_run::lines::floor_char_boundary;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest chunk sent, in bytes; lines are batched up to this size.
const CHUNK_BYTES: usize = liftoff_run::lines::MAX_LINE_BYTES;
/// How long a batch may wait for more lines before it is sent.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Handle to a running shipper. Clone the sender for each output stream.
pub struct LogShipper {
    tx: mpsc::Sender<(LogStream, String)>,
    /// Set by [`LogShipper::finish_keeping_tail`] before it closes its sender.
    keep_tail: Arc<AtomicBool>,
    task: JoinHandle<(ShipOutcome, Option<LogTail>)>,
}

/// How shipping ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipOutcome {
    /// Everything handed over was stored.
    Complete,
    /// The server refused our fencing token: someone else holds the item now.
    LeaseLost,
    /// The server refused a chunk for good, and then the marker that stood
    /// for it: the rest of the log was not sent.
    Refused,
}

impl LogShipper {
    pub fn start(client: Client, item_id: String, fence: i64, first_seq: i64) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let keep_tail = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(ship(client, item_id, fence, first_seq, rx, keep_tail.clone()));
        Self { tx, keep_tail, task }
    }

    pub fn sender(&self) -> mpsc::Sender<(LogStream, String)> {
        self.tx.clone()
    }

    /// Closes this handle's sender and waits until every line sent (by all
    /// senders, once they are dropped) is stored.
    pub async fn finish(self) -> ShipOutcome {
        drop(self.tx);
        self.task.await.map_or(ShipOutcome::LeaseLost, |(outcome, _)| outcome)
    }

    /// [`Self::finish`], except that the last chunk (the batch still being
    /// gathered when the senders closed) is handed back instead of sent,
    /// for the caller to send with the run's outcome (one request, not two).
    /// `None` when nothing was left to send.
    pub async fn finish_keeping_tail(self) -> (ShipOutcome, Option<LogTail>) {
        self.keep_tail.store(true, Ordering::SeqCst);
        drop(self.tx);
        self.task.await.unwrap_or((ShipOutcome::LeaseLost, None))
    }
}

async fn ship(
    client: Client,
    item_id: String,
    fence: i64,
    mut seq: i64,
    mut rx: mpsc::Receiver<(LogStream, String)>,
    keep_tail: Arc<AtomicBool>,
) -> (ShipOutcome, Option<LogTail>) {
    let mut held: Option<(LogStream, String)> = None;
    loop {
        // Start a batch with the held-over line or the next one.
        let (stream, mut data) = match held.take() {
            Some(x) => x,
            None => match rx.recv().await {
                Some(x) => x,
                None => return (ShipOutcome::Complete, None),
            },
        };
        // The senders closed while this batch gathered: it is the last.
        let mut closed = false;
        if data.len() > CHUNK_BYTES {
            // One message larger than a chunk (the agent's own lines can be:
            // a command line with 300 KB of arguments): send it in pieces.
            let cut = floor_char_boundary(&data, CHUNK_BYTES);
            let rest = data.split_off(cut);
            held = Some((stream, rest));
        } else {
            let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            while data.len() < CHUNK_BYTES {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((s, d))) if s == stream && data.len() + d.len() <= CHUNK_BYTES => data.push_str(&d),
                    Ok(Some(other)) => {
                        held = Some(other);
                        break;
                    }
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        // the senders closed first, then the flag was read: it was set
        // before the last of them closed, or the tail is sent here
        if closed && keep_tail.load(Ordering::SeqCst) {
            return (ShipOutcome::Complete, Some(LogTail { seq, stream, data }));
        }
        let mut chunk = AppendLog { fence, seq, stream, data };
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.append_log(&item_id, &chunk).await {
                Ok(()) => break,
                Err(e) if e.is_conflict() => {
                    tracing::warn!(item = %item_id, error = %e, "log shipping stopped: lease lost");
                    return (ShipOutcome::LeaseLost, None);
                }
                Err(e) if e.is_transient() => {
                    // Keep the chunk and retry: losing log lines is worse than waiting.
                    tracing::warn!(item = %item_id, seq, error = %e, "log chunk not stored; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) if !chunk.data.starts_with(REFUSED_MARKER) => {
                    // A refusal is final: retrying the same chunk would never
                    // end. Its sequence number carries a marker instead, so
                    // the log says what is missing and goes on.
                    tracing::error!(item = %item_id, seq, error = %e, "the server refused a log chunk; replacing it with a marker");
                    chunk.data =
                        format!("{REFUSED_MARKER} {} bytes were refused by the server: {e}\n", chunk.data.len());
                    chunk.data.truncate(floor_char_boundary(&chunk.data, 4096));
                    chunk.stream = LogStream::Agent;
                }
                Err(e) => {
                    tracing::error!(item = %item_id, seq, error = %e, "the server refused even the marker chunk; log shipping stopped");
                    // Keep reading, so that the run never blocks on a full pipe.
                    while rx.recv().await.is_some() {}
                    return (ShipOutcome::Refused, None);
                }
            }
        }
        seq += 1;
    }
}

/// Starts the line that replaces a chunk the server refused.
pub const REFUSED_MARKER: &str = "liftoff agent: [log chunk refused]";
