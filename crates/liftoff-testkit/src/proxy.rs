//! [`RecordingProxy`]: a TCP proxy in front of a real server (a registry, a
//! Docker engine's unix socket, Liftoff's own API) that keeps every byte
//! its clients send, so a test can count the requests a component really
//! made (`PUT .../blobs/`, `POST /build`), and that can hold a request
//! (stop forwarding a connection once a given request line goes through
//! it) to freeze a client between two steps for fault injection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Where a [`RecordingProxy`] forwards to.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(SocketAddr),
    /// A unix socket (`/var/run/docker.sock`).
    Unix(PathBuf),
}

/// What a held connection does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Wait,
    /// Forwards what it held and goes on.
    Release,
    /// Closes without forwarding it.
    Cut,
}

#[derive(Default)]
struct Shared {
    sent: Vec<u8>,
    /// Connections that sent this are held: nothing more is forwarded.
    hold: Option<Vec<u8>>,
    held: usize,
}

/// See the module documentation. The proxy stops with the runtime.
pub struct RecordingProxy {
    /// `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// What held connections do next.
    resume: watch::Sender<Resume>,
}

impl RecordingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: Upstream) -> RecordingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (resume, resume_rx) = watch::channel(Resume::Wait);
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (state, upstream, resume_rx) = (state.clone(), upstream.clone(), resume_rx.clone());
                tokio::spawn(async move {
                    match upstream {
                        Upstream::Tcp(a) => {
                            if let Ok(server) = tokio::net::TcpStream::connect(a).await {
                                let (rx, tx) = server.into_split();
                                forward(client, rx, tx, state, resume_rx).await;
                            }
                        }
                        Upstream::Unix(p) => {
                            if let Ok(server) = tokio::net::UnixStream::connect(p).await {
                                let (rx, tx) = server.into_split();
                                forward(client, rx, tx, state, resume_rx).await;
                            }
                        }
                    }
                });
            }
        });
        RecordingProxy { addr, shared, resume }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every byte clients sent so far.
    pub fn sent(&self) -> Vec<u8> {
        self.shared.lock().expect("proxy state").sent.clone()
    }

    /// How many times clients sent `needle` (a request line's start, e.g.
    /// `b"PUT /v2/team/app/manifests/"`).
    pub fn count(&self, needle: &[u8]) -> usize {
        let shared = self.shared.lock().expect("proxy state");
        shared.sent.windows(needle.len()).filter(|w| *w == needle).count()
    }

    /// From now on, a connection whose client sends `needle` is held: that
    /// chunk and everything after it stay here, and the server never sees
    /// the request, until [`RecordingProxy::release_held`] or
    /// [`RecordingProxy::cut_held`].
    pub fn hold(&self, needle: &[u8]) {
        self.shared.lock().expect("proxy state").hold = Some(needle.to_vec());
    }

    /// How many connections are held.
    pub fn held(&self) -> usize {
        self.shared.lock().expect("proxy state").held
    }

    /// Stops holding, and closes the held connections without forwarding
    /// what they were sending.
    pub fn cut_held(&self) {
        self.shared.lock().expect("proxy state").hold = None;
        let _ = self.resume.send(Resume::Cut);
    }

    /// Stops holding, and lets the held connections go on as if nothing happened.
    pub fn release_held(&self) {
        self.shared.lock().expect("proxy state").hold = None;
        let _ = self.resume.send(Resume::Release);
    }
}

async fn forward(
    client: tokio::net::TcpStream,
    mut server_rx: impl AsyncRead + Unpin + Send + 'static,
    mut server_tx: impl AsyncWrite + Unpin,
    state: Arc<Mutex<Shared>>,
    mut resume: watch::Receiver<Resume>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        // the end of the previous chunk: a needle split across two reads is still seen
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let hold = {
                let mut s = state.lock().expect("proxy state");
                s.sent.extend_from_slice(&buf[..n]);
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&buf[..n]);
                let hit = s.hold.as_ref().is_some_and(|h| window.windows(h.len()).any(|w| w == h.as_slice()));
                tail = window[window.len().saturating_sub(256)..].to_vec();
                if hit {
                    s.held += 1;
                }
                hit
            };
            if hold {
                let next = resume.wait_for(|r| *r != Resume::Wait).await.map(|r| *r).unwrap_or(Resume::Cut);
                if next == Resume::Cut {
                    return true;
                }
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
        false
    };
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    });
    if up.await {
        // a held connection ends both ways when it is cut
        down.abort();
    } else {
        let _ = down.await;
    }
}
