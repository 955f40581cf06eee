//! `liftoff agent --health-listen ADDR`: `GET /healthz` answers `ok` while
//! the agent's runtime runs, for a Kubernetes liveness and readiness probe
//! (the agent has no other port).

use anyhow::Context;
use std::net::SocketAddr;

/// Binds `addr` and serves `/healthz` in a task of its own for as long as the process runs.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--health-listen: failed to listen on {addr}"))?;
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the health endpoint stopped");
        }
    });
    Ok(())
}
