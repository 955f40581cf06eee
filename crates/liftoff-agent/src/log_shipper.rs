//! Ships a run's output to the server as sequenced chunks: in order, each
//! exactly once (the server ignores repeats of a sequence number, so a retry
//! after a lost response cannot duplicate), none dropped while the lease holds.

use liftoff_client::Client;
use liftoff_core::api::{AppendLog, LogStream};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest chunk sent, in bytes; lines are batched up to this size.
const CHUNK_BYTES: usize = 64 * 1024;
/// How long a batch may wait for more lines before it is sent.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Handle to a running shipper. Clone the sender for each output stream.
pub struct LogShipper {
    tx: mpsc::Sender<(LogStream, String)>,
    task: JoinHandle<ShipOutcome>,
}

/// How shipping ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipOutcome {
    /// Everything handed over was stored.
    Complete,
    /// The server refused our fencing token: someone else holds the item now.
    LeaseLost,
}

impl LogShipper {
    pub fn start(client: Client, item_id: String, fence: i64, first_seq: i64) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(ship(client, item_id, fence, first_seq, rx));
        Self { tx, task }
    }

    pub fn sender(&self) -> mpsc::Sender<(LogStream, String)> {
        self.tx.clone()
    }

    /// Closes this handle's sender and waits until every line sent (by all
    /// senders, once they are dropped) is stored.
    pub async fn finish(self) -> ShipOutcome {
        drop(self.tx);
        self.task.await.unwrap_or(ShipOutcome::LeaseLost)
    }
}

async fn ship(
    client: Client,
    item_id: String,
    fence: i64,
    mut seq: i64,
    mut rx: mpsc::Receiver<(LogStream, String)>,
) -> ShipOutcome {
    let mut held: Option<(LogStream, String)> = None;
    loop {
        // Start a batch with the held-over line or the next one.
        let (stream, mut data) = match held.take() {
            Some(x) => x,
            None => match rx.recv().await {
                Some(x) => x,
                None => return ShipOutcome::Complete,
            },
        };
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while data.len() < CHUNK_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((s, d))) if s == stream && data.len() + d.len() <= CHUNK_BYTES => data.push_str(&d),
                Ok(Some(other)) => {
                    held = Some(other);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let chunk = AppendLog { fence, seq, stream, data };
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.append_log(&item_id, &chunk).await {
                Ok(()) => break,
                Err(e) if e.is_conflict() => {
                    tracing::warn!(item = %item_id, error = %e, "log shipping stopped: lease lost");
                    return ShipOutcome::LeaseLost;
                }
                Err(e) => {
                    // Keep the chunk and retry: losing log lines is worse than waiting.
                    tracing::warn!(item = %item_id, seq, error = %e, "log chunk not stored; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        seq += 1;
    }
}

/// Splits a byte stream into lines for the shipper. Over-long lines are cut
/// at a UTF-8 boundary so no character is split across chunks.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        while self.pending.len() >= CHUNK_BYTES {
            let cut = match std::str::from_utf8(&self.pending[..CHUNK_BYTES]) {
                Ok(_) => CHUNK_BYTES,
                Err(e) if e.valid_up_to() > 0 => e.valid_up_to(),
                Err(_) => CHUNK_BYTES,
            };
            let part: Vec<u8> = self.pending.drain(..cut).collect();
            out.push(String::from_utf8_lossy(&part).into_owned());
        }
        out
    }

    /// Whatever is left at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.pending);
        Some(String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_reads_and_keeps_characters_whole() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"ab").is_empty());
        assert_eq!(s.push(b"c\nd\ne"), vec!["abc\n", "d\n"]);
        assert_eq!(s.finish().as_deref(), Some("e"));
        let mut long = vec![b'x'; CHUNK_BYTES - 1];
        long.extend_from_slice("é".as_bytes());
        let parts = s.push(&long);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].len(), CHUNK_BYTES - 1, "cut before the 2-byte character");
        assert_eq!(s.finish().as_deref(), Some("é"));
    }
}
