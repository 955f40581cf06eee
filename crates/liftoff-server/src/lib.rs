//! The Liftoff control plane: REST API under `/api/v1`, the web UI at `/`, API-key auth,
//! long-poll dispatch of leased claims, and the lease reaper.

mod app;
mod auth;
mod changes;
mod config;
mod data_dir_lock;
mod dispatch;
mod error;
mod extract;
mod log_archive;
mod metrics;
mod openapi;
mod routes;
mod secrets_at_rest;
mod secrets_key;
mod server;
mod streams;
mod tls;
mod ui;

pub use auth::{hash_key, mint_admin_key};
pub use config::{LOG_KEEP_MAX_BYTES, ServerConfig};
pub use data_dir_lock::{DataDirLock, DataDirLockError};
pub use secrets_at_rest::{SecretsAtRestError, SweepReport, sweep};
pub use secrets_key::{SecretsKeyError, SecretsKeys};
pub use server::{DEFAULT_ENTITY, RunningServer, StartError, start};
pub use tls::{TlsError, TlsFiles};
