//! Splitting a byte stream into lines for the log shipper, and the lines
//! the agent itself writes into a run's log.

use liftoff_core::api::LogStream;
use tokio::sync::mpsc;

/// Longest line handed on, in bytes; longer lines are cut (the log
/// shipper's chunk size).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

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
        while self.pending.len() >= MAX_LINE_BYTES {
            let cut = match std::str::from_utf8(&self.pending[..MAX_LINE_BYTES]) {
                Ok(_) => MAX_LINE_BYTES,
                Err(e) if e.valid_up_to() > 0 => e.valid_up_to(),
                Err(_) => MAX_LINE_BYTES,
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

/// Longest line the agent itself writes into a run's log; the rest is cut
/// with a marker (a command line can carry hundreds of KB of arguments).
pub const MAX_AGENT_LINE_BYTES: usize = 8 * 1024;

/// A line on the run's `agent` stream.
pub async fn agent_line(logs: &mpsc::Sender<crate::LogLine>, line: impl Into<String>) {
    let _ = logs.send((LogStream::Agent, cut_line(line.into(), MAX_AGENT_LINE_BYTES))).await;
}

/// The largest index `<= at` that is a character boundary of `s`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

/// `line` and a newline, cut to at most `max` bytes of text with a marker
/// saying how much was left out.
fn cut_line(mut line: String, max: usize) -> String {
    if line.len() > max {
        let total = line.len();
        let cut = floor_char_boundary(&line, max);
        line.truncate(cut);
        line.push_str(&format!(" ... [{} more bytes cut by the agent]", total - cut));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let s = "aé€";
        assert_eq!(floor_char_boundary(s, 0), 0);
        assert_eq!(floor_char_boundary(s, 2), 1, "inside the 2-byte é");
        assert_eq!(floor_char_boundary(s, 3), 3);
        assert_eq!(floor_char_boundary(s, 5), 3, "inside the 3-byte euro sign");
        assert_eq!(floor_char_boundary(s, 99), s.len());
    }

    #[test]
    fn long_agent_lines_are_cut_with_a_marker() {
        assert_eq!(cut_line("short".into(), 8), "short\n");
        let cut = cut_line("é".repeat(10), 5);
        assert_eq!(cut, "éé ... [16 more bytes cut by the agent]\n");
    }

    #[test]
    fn splits_lines_across_reads_and_keeps_characters_whole() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"ab").is_empty());
        assert_eq!(s.push(b"c\nd\ne"), vec!["abc\n", "d\n"]);
        assert_eq!(s.finish().as_deref(), Some("e"));
        let mut long = vec![b'x'; MAX_LINE_BYTES - 1];
        long.extend_from_slice("é".as_bytes());
        let parts = s.push(&long);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].len(), MAX_LINE_BYTES - 1, "cut before the 2-byte character");
        assert_eq!(s.finish().as_deref(), Some("é"));
    }
}
