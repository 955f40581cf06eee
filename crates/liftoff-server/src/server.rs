use crate::app::{AppState, router};
use crate::auth::mint_admin_key;
use crate::config::ServerConfig;
use crate::data_dir_lock::DataDirLock;
use crate::dispatch::Dispatch;
use crate::metrics::Metrics;
use liftoff_store::{BlobStore, SqlStore, Store, now_ms};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The entity every fresh server starts with.
pub const DEFAULT_ENTITY: &str = "default";

/// A server accepting requests in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Whether it serves HTTPS (`ServerConfig::tls`).
    pub tls: bool,
    /// The admin key of entity `default`, when this start created it.
    pub admin_key: Option<String>,
    pub task: JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting requests and waits for in-flight ones.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Why a server could not start. Each message reads well after "failed to
/// start the server: ".
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created, or the admin key written into it.
    #[error("cannot write {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Another server holds the data directory, or its lock file is unusable.
    #[error(transparent)]
    Locked(#[from] crate::data_dir_lock::DataDirLockError),
    /// The database, the blob store or a first-start write failed.
    #[error("{what}: {source}")]
    Store {
        what: &'static str,
        #[source]
        source: liftoff_store::StoreError,
    },
    /// The TLS certificate or key could not be read or used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A secrets key file is unusable, or the stored secrets are under
    /// another key, or could not be read or rewritten.
    #[error(transparent)]
    SecretsAtRest(#[from] crate::secrets_at_rest::SecretsAtRestError),
    /// The listen address could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Locks the data directory (a second server on it refuses to start, naming
/// the holder), opens the store, creates entity `default` and its admin key
/// on first start, binds `config.listen` and serves until shut down.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    let dir_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| StartError::DataDir { path, source }
    };
    let store_error = |what: &'static str| move |source| StartError::Store { what, source };
    std::fs::create_dir_all(&config.data_dir).map_err(dir_error(&config.data_dir))?;
    let data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
    let url = match &config.db_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", config.data_dir.join("liftoff.db").display()),
    };
    let store =
        SqlStore::connect(&url, config.max_attempts).await.map_err(store_error("failed to open the database"))?;
    let blobs = match &config.blob_store {
        Some(url) => BlobStore::open(url, &config.blob_options),
        None => BlobStore::local(&config.data_dir.join("blobs")),
    }
    .map_err(store_error("failed to open the blob store"))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let secrets_keys = match &config.secrets_key_file {
        Some(current) => Some(Arc::new(
            crate::secrets_key::SecretsKeys::read(current, &config.old_secrets_key_files)
                .map_err(crate::secrets_at_rest::SecretsAtRestError::from)?,
        )),
        None => None,
    };
    // before anything reads a stored secret: seal the plain ones, re-wrap old ones
    let swept = crate::secrets_at_rest::sweep(store.as_ref(), secrets_keys.as_deref()).await?;
    if swept.sealed + swept.rewrapped > 0 {
        tracing::info!(
            sealed = swept.sealed,
            rewrapped = swept.rewrapped,
            "stored secrets encrypted under the current key"
        );
    }

    let now = now_ms();
    let mut admin_key = None;
    let first_start = store_error("failed to create the default entity and its admin key");
    if store.ensure_entity(DEFAULT_ENTITY, now).await.map_err(first_start)? {
        if let Some(given) = &config.admin_key {
            crate::auth::adopt_admin_key(store.as_ref(), DEFAULT_ENTITY, given).await.map_err(first_start)?;
            tracing::info!("created entity '{DEFAULT_ENTITY}' with the admin key given (--admin-key-file)");
        } else {
            let secret = mint_admin_key(store.as_ref(), DEFAULT_ENTITY).await.map_err(first_start)?;
            let path = config.data_dir.join("admin.key");
            write_secret_file(&path, &secret).map_err(dir_error(&path))?;
            if config.print_admin_key {
                println!(
                    "Created entity '{DEFAULT_ENTITY}'. Its admin API key (shown once, also in {}):\n  {secret}",
                    path.display()
                );
            }
            admin_key = Some(secret);
        }
    } else if let Some(given) = &config.admin_key {
        let known = store.find_api_key(&crate::auth::hash_key(given)).await.map_err(first_start)?;
        if known.is_none() {
            tracing::warn!(
                "the admin key given (--admin-key-file) is no key of this server: it was revoked, or the database was first started without it"
            );
        }
    }

    // Read before anything listens: a bad file fails the start, naming it.
    let cert = match &config.tls {
        Some(files) => Some(Arc::new(crate::tls::ReloadingCert::load(files.clone())?)),
        None => None,
    };
    let listen = |source| StartError::Listen { addr: config.listen, source };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        store: store.clone(),
        blobs,
        dispatch: Dispatch::new(),
        changes: crate::changes::Changes::new(config.max_event_streams, metrics.event_streams.clone()),
        config: Arc::new(config),
        metrics,
        key_cache: Default::default(),
        known_agents: Default::default(),
        run_keys: crate::auth::RunKeys::load(store.as_ref(), secrets_keys.as_deref()).await?,
        ui_sessions: crate::ui::session::Sessions::load(store.as_ref(), secrets_keys.as_deref()).await?,
        secrets_keys,
    };
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(reap_leases(state.clone(), shutdown.subscribe()));
    let dispatch = state.dispatch.clone();
    let app = router(state);
    let tls = cert.is_some();
    let stopped = async move {
        let _ = shutdown_rx.wait_for(|s| *s).await;
        dispatch.close();
    };
    let tls_listener = match cert {
        Some(c) => Ok(crate::tls::TlsListener::new(listener, c)?),
        None => Err(listener),
    };
    let task = tokio::spawn(async move {
        let served = match tls_listener {
            Ok(l) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
            Err(plain) => axum::serve(plain, app).with_graceful_shutdown(stopped).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "server stopped");
        }
        reaper.abort();
        let _ = reaper.await;
        // held while this task serves, however the RunningServer is dropped
        drop(data_dir_lock);
    });
    tracing::info!(%addr, tls, "liftoff server listening");
    Ok(RunningServer { addr, tls, admin_key, task, shutdown })
}

/// Puts items whose lease ran out back in their queue (or fails them), and
/// wakes waiting claims; then moves the logs of ended runs to the blob store.
/// Runs four times per lease TTL, at least once a second.
///
/// Expiry waits one TTL after the server starts, and again after a spell in
/// which the reaper could not run (the database unreachable, the process
/// paused): agents that could not reach this server meanwhile get one TTL
/// to renew before any lease of theirs is expired, so a restart or a
/// network blip shorter than that costs no run.
async fn reap_leases(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    use std::time::Duration;
    use tokio::time::Instant;
    let ttl = state.config.lease_ttl;
    let period = (ttl / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut grace = LeaseGrace::new(Instant::now(), ttl, period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        if grace.may_expire(now) {
            let expired = {
                let _t = state.metrics.db_timer("expire_leases");
                state.store.expire_leases().await
            };
            match expired {
                Ok(ids) => {
                    grace.reached_store(Instant::now());
                    if !ids.is_empty() {
                        state.metrics.lease_expiries(ids.len() as u64);
                        // Some ended (failed at max attempts, or stopped): count those.
                        match state.store.items_by_id(&ids).await {
                            Ok(items) => items.iter().for_each(|i| state.metrics.transitioned(i)),
                            Err(e) => tracing::warn!(error = %e, "cannot read expired items for the metrics"),
                        }
                        tracing::warn!(count = ids.len(), items = ?ids, "leases expired");
                        state.dispatch.notify();
                        state.changes.any();
                    }
                }
                Err(e) => tracing::error!(error = %e, "lease reaper failed"),
            }
        }
        if let Err(e) = crate::log_archive::archive_ended(&state, 100).await {
            tracing::error!(error = %e, "log archiving failed");
        }
    }
}

/// When the reaper may expire leases: not before one TTL has passed since
/// the server started, nor within one TTL of a gap (longer than half a TTL)
/// since it last reached the store.
struct LeaseGrace {
    ttl: std::time::Duration,
    period: std::time::Duration,
    not_before: tokio::time::Instant,
    last_ok: tokio::time::Instant,
}

impl LeaseGrace {
    fn new(started: tokio::time::Instant, ttl: std::time::Duration, period: std::time::Duration) -> Self {
        Self { ttl, period, not_before: started + ttl, last_ok: started }
    }

    fn may_expire(&mut self, now: tokio::time::Instant) -> bool {
        let gap = now.saturating_duration_since(self.last_ok);
        if gap > (self.ttl / 2).max(self.period * 2) && now >= self.not_before {
            tracing::warn!(
                ?gap,
                "the lease reaper has not reached the database for a while; waiting one lease TTL before expiring leases"
            );
            self.not_before = now + self.ttl;
        }
        if now < self.not_before {
            // Still in grace: count it as reached, so the gap does not re-arm.
            self.last_ok = now;
            return false;
        }
        true
    }

    fn reached_store(&mut self, now: tokio::time::Instant) {
        self.last_ok = now;
    }
}

fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::LeaseGrace;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn no_expiry_within_one_ttl_of_start_or_of_a_gap() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut g = LeaseGrace::new(t0, ttl, Duration::from_secs(1));
        assert!(!g.may_expire(t0 + Duration::from_secs(1)));
        assert!(!g.may_expire(t0 + Duration::from_secs(29)));
        assert!(g.may_expire(t0 + Duration::from_secs(30)));
        g.reached_store(t0 + Duration::from_secs(30));
        assert!(g.may_expire(t0 + Duration::from_secs(31)));
        g.reached_store(t0 + Duration::from_secs(31));
        // the store was unreachable (or the process paused) for 20 s
        let back = t0 + Duration::from_secs(51);
        assert!(!g.may_expire(back), "a gap over half a TTL re-arms the grace");
        assert!(!g.may_expire(back + Duration::from_secs(29)));
        assert!(g.may_expire(back + Duration::from_secs(30)));
    }
}
