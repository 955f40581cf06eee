//! Reading `text/event-stream` (server-sent events) as the HTML standard
//! defines it: fields `event`, `data` (joined with newlines), `id`; lines
//! starting with `:` are comments (keep-alives); a blank line dispatches.
//! Small enough that a crate would cost more than it saves.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the server named none.
    pub event: String,
    pub data: String,
    /// The last id the stream set (ids persist across events, as in browsers).
    pub id: Option<String>,
}

/// Turns bytes, in whatever pieces they arrive, into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line (a UTF-8 sequence may straddle two reads).
    partial: Vec<u8>,
    /// The previous read ended in `\r`: a `\n` starting the next one ends no line.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
                    if let Some(event) = self.line(&line) {
                        out.push(event);
                    }
                }
                _ => self.partial.push(b),
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(SseEvent { event: event.unwrap_or_else(|| "message".into()), data, id: self.id.clone() });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_arbitrary_splits() {
        let text =
            ": keep-alive\n\nevent: log\nid: 1.2\ndata: {\"a\":\ndata: 1}\n\r\nevent: end\r\ndata: x\r\rdata: é\n\n";
        let whole = SseParser::default().push(text.as_bytes());
        assert_eq!(
            whole,
            [
                SseEvent { event: "log".into(), data: "{\"a\":\n1}".into(), id: Some("1.2".into()) },
                SseEvent { event: "end".into(), data: "x".into(), id: Some("1.2".into()) },
                SseEvent { event: "message".into(), data: "é".into(), id: Some("1.2".into()) },
            ]
        );
        // byte by byte (splitting the \r\n and the two bytes of é) gives the same
        let mut p = SseParser::default();
        let bytes: Vec<_> = text.as_bytes().iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(bytes, whole);
    }
}
