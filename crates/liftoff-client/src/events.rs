//! The server's event streams: a run's state changes and log, live and
//! resumed after a broken connection from the last event id.

use crate::sse::{SseEvent, SseParser};
use crate::{Client, ClientError};
use liftoff_core::api::LogChunk;
use liftoff_core::{ItemState, ItemTransition};
use std::collections::VecDeque;
use std::time::Duration;

/// Reconnections in a row (without an event between) before giving up.
const MAX_RECONNECTS: u32 = 5;

/// One open `text/event-stream` response.
pub struct EventStream {
    url: String,
    response: reqwest::Response,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl EventStream {
    pub(crate) fn new(url: String, response: reqwest::Response) -> Self {
        Self { url, response, parser: SseParser::default(), ready: VecDeque::new() }
    }

    /// The next event; `None` once the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let chunk =
                self.response.chunk().await.map_err(|source| ClientError::Http { url: self.url.clone(), source })?;
            match chunk {
                Some(bytes) => self.ready.extend(self.parser.push(&bytes)),
                None => return Ok(None),
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, e: &SseEvent) -> Result<T, ClientError> {
        serde_json::from_str(&e.data)
            .map_err(|err| ClientError::Decode { url: self.url.clone(), detail: format!("'{}' event: {err}", e.event) })
    }
}

/// What a run's stream says.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    Transition(ItemTransition),
    Log(LogChunk),
    /// The run ended and everything was sent.
    End {
        state: ItemState,
    },
}

/// A run's events, from its launch (or from a given event id) to its end.
/// A broken connection is opened again with the last event id seen, so
/// nothing is missed and nothing comes twice.
pub struct RunEvents {
    client: Client,
    id: String,
    last_event_id: Option<String>,
    stream: Option<EventStream>,
    ended: bool,
}

impl RunEvents {
    pub(crate) fn new(client: Client, id: &str, last_event_id: Option<String>) -> Self {
        Self { client, id: id.to_string(), last_event_id, stream: None, ended: false }
    }

    /// The id of the last event returned, to resume from later.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The next event; `None` after [`RunEvent::End`].
    pub async fn next(&mut self) -> Result<Option<RunEvent>, ClientError> {
        let mut failures = 0;
        while !self.ended {
            let got = match self.stream.as_mut() {
                Some(s) => s.next().await,
                None => match self.client.open_run_stream(&self.id, self.last_event_id.as_deref()).await {
                    Ok(s) => {
                        self.stream = Some(s);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            let event = match got {
                Ok(Some(e)) => e,
                // closed without `end` (the server stopped): open it again
                Ok(None) => {
                    self.stream = None;
                    failures += 1;
                    self.pause(failures, None).await?;
                    continue;
                }
                Err(e) if e.is_transient() => {
                    self.stream = None;
                    failures += 1;
                    self.pause(failures, Some(e)).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(stream) = self.stream.as_ref() else { continue };
            let decoded = match event.event.as_str() {
                "transition" => RunEvent::Transition(stream.decode(&event)?),
                "log" => RunEvent::Log(stream.decode(&event)?),
                "end" => {
                    self.ended = true;
                    RunEvent::End { state: stream.decode::<liftoff_core::RunStreamEnd>(&event)?.state }
                }
                _ => continue, // a kind this client does not know
            };
            self.last_event_id = event.id;
            return Ok(Some(decoded));
        }
        Ok(None)
    }

    async fn pause(&self, failures: u32, error: Option<ClientError>) -> Result<(), ClientError> {
        if failures > MAX_RECONNECTS {
            return Err(error.unwrap_or_else(|| ClientError::Decode {
                url: self.client.url(&format!("/items/{}/stream", crate::client::enc(&self.id))),
                detail: format!("the event stream closed {failures} times in a row before the run ended"),
            }));
        }
        tokio::time::sleep(Duration::from_millis(200) * failures).await;
        Ok(())
    }
}

/// A queue's state changes, as they happen: `(event id, change)`.
pub struct QueueEvents {
    stream: EventStream,
}

impl QueueEvents {
    pub(crate) fn new(stream: EventStream) -> Self {
        Self { stream }
    }

    /// The next change; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<ItemTransition>, ClientError> {
        while let Some(e) = self.stream.next().await? {
            if e.event == "transition" {
                return self.stream.decode(&e).map(Some);
            }
        }
        Ok(None)
    }
}
