//! liftoff-server's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod api;
mod api_contract;
mod blob_backends;
mod events;
mod keys;
mod lifecycle;
mod metrics;
mod secrets_at_rest;
mod shutdown;
mod support;
mod tls;
mod ui;
