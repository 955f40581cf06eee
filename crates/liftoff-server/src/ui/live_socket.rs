//! How a live page's feed reaches the browser: over a WebSocket when the
//! page's script asks for one (`app.js` does), as server-sent events
//! otherwise (the same events, for any other client).
//!
//! Why WebSockets: a browser opens at most six HTTP/1.1 connections per
//! host, and an event stream holds one for as long as its page is open.
//! With six live pages open (tabs left open all day), the seventh and
//! every other request to the server waited for one of them: measured,
//! the seventh tab never loaded. Browsers pool WebSockets apart from that
//! limit (Chromium: 255 per profile), over plain HTTP and behind an HTTPS
//! proxy alike, so no page waits for another's stream. Each frame carries
//! one event as the stream would, `{"event", "id", "data"}`; a reconnect
//! names the last id it received in `last_event_id` (a browser cannot set
//! `Last-Event-ID` on a WebSocket), so nothing is missed or repeated.

use super::page::UiError;
use crate::streams;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, Stream, StreamExt};

/// One event of a live page's feed.
pub struct LiveEvent {
    pub kind: &'static str,
    pub id: String,
    pub data: String,
}

/// The extractor a live route takes: a WebSocket handshake, or not one.
pub type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

/// The feed as a WebSocket when the request is a handshake (from a page of
/// this server: its `Origin` must be the server's own), else as a
/// `text/event-stream`.
pub fn respond(
    upgrade: Upgrade,
    headers: &HeaderMap,
    events: impl Stream<Item = LiveEvent> + Send + 'static,
) -> Result<Response, UiError> {
    match upgrade {
        Ok(ws) => {
            same_origin(headers)?;
            Ok(ws.on_upgrade(move |socket| forward(socket, events)))
        }
        // a handshake that went wrong is refused as such, not answered with a stream
        Err(rejection) if headers.contains_key("upgrade") => Ok(rejection.into_response()),
        Err(_) => Ok(streams::sse(events.map(|e| Ok(Event::default().event(e.kind).id(e.id).data(e.data))))),
    }
}

/// The id a reconnecting client resumes after: the `Last-Event-ID` header
/// (server-sent events), else the `last_event_id` parameter (WebSockets).
pub fn resume_id<'a>(headers: &'a HeaderMap, param: Option<&'a str>) -> Result<Option<&'a str>, UiError> {
    let header = streams::last_event_id(headers).map_err(|m| UiError::BadRequest(m.to_string()))?;
    Ok(header.or(param))
}

/// A WebSocket is not bound by the same-origin policy: a page elsewhere
/// could open one with this browser's cookie (which is `SameSite=Strict`,
/// so browsers already hold it back). The handshake's `Origin` must name
/// this server as the browser reached it (`Host`, or `X-Forwarded-Host`
/// behind a proxy); a client that sends none is not a page.
fn same_origin(headers: &HeaderMap) -> Result<(), UiError> {
    let Some(origin) = headers.get("origin") else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    let ours = ["host", "x-forwarded-host"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .any(|host| !authority.is_empty() && host.eq_ignore_ascii_case(authority));
    if ours {
        Ok(())
    } else {
        Err(UiError::Forbidden(format!("a live feed opens only from this server's own pages, not from {origin}")))
    }
}

/// Sends the feed's events as text frames, with a ping every keep-alive
/// interval, until the feed ends (the run ended, or the server stops: then
/// a normal close, after which the page's script reconnects if it still
/// wants the feed) or the browser goes away.
async fn forward(socket: WebSocket, events: impl Stream<Item = LiveEvent> + Send + 'static) {
    let (mut tx, mut rx) = socket.split();
    let mut events = std::pin::pin!(events);
    let mut ping = tokio::time::interval(streams::KEEP_ALIVE);
    ping.tick().await; // the first tick is now
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(e) = event else { break };
                let frame = serde_json::json!({"event": e.kind, "id": e.id, "data": e.data}).to_string();
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            got = rx.next() => match got {
                // the page sends nothing; pongs and the like are read and dropped
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    let close = CloseFrame { code: close_code::NORMAL, reason: "the feed ended".into() };
    let _ = tx.send(Message::Close(Some(close))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_this_servers_own_pages_open_a_feed() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:7434"), ("origin", "http://127.0.0.1:7434")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "a:1"),
                ("origin", "https://liftoff.example"),
                ("x-forwarded-host", "liftoff.example")
            ]))
            .is_ok()
        );
        assert!(same_origin(&headers(&[("host", "127.0.0.1:7434")])).is_ok(), "not a page");
        for evil in ["http://evil.example", "http://127.0.0.1:7435", "null", "http://127.0.0.1:7434.evil.example"] {
            let h = headers(&[("host", "127.0.0.1:7434"), ("origin", evil)]);
            assert!(same_origin(&h).is_err(), "{evil}");
        }
    }
}
