//! Waiting for the signals that ask a long-running command to stop.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first ctrl-c (SIGINT) or SIGTERM.
pub async fn shutdown_requested() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
