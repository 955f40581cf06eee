//! Typed client for the Liftoff REST API, shared by the CLI and the agent.

mod client;
mod error;

pub use client::Client;
pub use error::ClientError;
