//! The server's own TLS (rustls on aws-lc-rs): a certificate chain and key
//! read from PEM files and read again when they change on disk (a
//! Kubernetes Secret's files are swapped in place), so new connections get
//! the new certificate without a restart; HTTP/2 and HTTP/1.1 offered
//! through ALPN.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the server's certificate and key are, and how often they are looked at.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are read again to see whether they changed.
    pub reload_every: Duration,
}

/// Why the certificate or key could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or an unreadable one.
    #[error("{path} holds no PEM certificate{detail}")]
    NoCertificate { path: String, detail: String },
    /// The key file holds no PEM private key rustls can use.
    #[error("{path} holds no usable PEM private key: {detail}")]
    BadKey { path: String, detail: String },
    /// The key is not the certificate's.
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: String, key: String },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Config(#[source] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The files' bytes as last loaded, and the key they made.
struct Loaded {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    key: Arc<CertifiedKey>,
}

/// Hands every handshake the certificate last loaded from the files.
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files once; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        let (cert_pem, key_pem) = read_both(&files)?;
        let key = certified_key(&provider, &files, &cert_pem, &key_pem)?;
        Ok(Self { files, provider, current: RwLock::new(Loaded { cert_pem, key_pem, key }) })
    }

    /// Reads the files again; a change is parsed and, if good, served from
    /// now on. Returns whether the certificate changed; a bad new pair (a
    /// half-written file) keeps the old one and is an error.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_both(&self.files)?;
        {
            let cur = self.current.read().expect("certificate lock");
            if cur.cert_pem == cert_pem && cur.key_pem == key_pem {
                return Ok(false);
            }
        }
        let key = certified_key(&self.provider, &self.files, &cert_pem, &key_pem)?;
        *self.current.write().expect("certificate lock") = Loaded { cert_pem, key_pem, key };
        Ok(true)
    }

    /// The rustls configuration: this resolver, no client certificates,
    /// ALPN `h2` then `http/1.1`.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").key.clone())
    }
}

fn read_both(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source });
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn certified_key(
    provider: &CryptoProvider,
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate { path: cert_path.clone(), detail: format!(": {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path, detail: String::new() });
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::BadKey { path: key_path.clone(), detail: e.to_string() })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey { path: key_path.clone(), detail: e.to_string() })?;
    let key = CertifiedKey::new(certs, signing);
    match key.keys_match() {
        Ok(()) => Ok(Arc::new(key)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch { cert: cert_path, key: key_path }),
        // a key whose public half rustls cannot tell (it then cannot check): served as is
        Err(_) => Ok(Arc::new(key)),
    }
}

/// A listener for `axum::serve` whose connections have finished their TLS
/// handshake. Handshakes run in tasks of their own (bounded by a timeout),
/// so a slow client holds up no other; the files are looked at again every
/// `reload_every` by the same task that accepts.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, cert: Arc<ReloadingCert>) -> Result<Self, TlsError> {
        let local =
            tcp.local_addr().map_err(|source| TlsError::Read { path: "the listening socket".into(), source })?;
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()?));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, acceptor, cert, tx));
        Ok(Self { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    cert: Arc<ReloadingCert>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut reload = tokio::time::interval(cert.files.reload_every);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // a bad pair is reported once, not at every look
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            // the server stopped serving (shutdown): so does this
            _ = tx.closed() => return,
            _ = reload.tick() => match cert.reload() {
                Ok(changed) => {
                    if changed {
                        tracing::info!(cert = %cert.files.cert.display(), "TLS certificate reloaded");
                    }
                    last_error = None;
                }
                Err(e) => {
                    let e = e.to_string();
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "TLS certificate not reloaded; serving the previous one");
                        last_error = Some(e);
                    }
                }
            },
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // out of descriptors and the like: back off as axum's own accept loop does
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // the accept task only ends once this listener is dropped
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
