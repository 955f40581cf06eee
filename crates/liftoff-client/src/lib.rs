//! Typed client for the Liftoff REST API, shared by the CLI and the agent.

mod client;
mod error;
mod events;
mod sse;

pub use client::Client;
pub use error::ClientError;
pub use events::{EventStream, QueueEvents, RunEvent, RunEvents};
pub use sse::SseEvent;
