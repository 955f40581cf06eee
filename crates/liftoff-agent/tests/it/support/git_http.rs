//! Test support: a loopback git smart-HTTP server (`git http-backend` run as
//! CGI by a tiny HTTP/1.1 bridge) and helpers to build the repositories it
//! serves. It runs on its own thread and runtime, so tests may call blocking
//! `git` against it; dropping it stops the thread and kills any backend.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Serves every bare repository under `root` at `http://127.0.0.1:<port>/<name>`.
/// Started with [`GitHttpServer::start_with_basic_auth`], it answers 401 to any request
/// without that user and password, as a private repository's host does.
pub struct GitHttpServer {
    pub root: PathBuf,
    pub port: u16,
    /// `METHOD /path?query` of each request, in order; followed by `401 METHOD /path?query`
    /// (and ` (wrong credentials)` when it carried some) when refused.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GitHttpServer {
    pub fn start(root: &Path) -> Self {
        Self::serve_root(root, None)
    }

    /// Like [`GitHttpServer::start`], requiring HTTP Basic auth as `user`:`password`.
    pub fn start_with_basic_auth(root: &Path, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::serve_root(root, Some(format!("Basic {expected}")))
    }

    fn serve_root(root: &Path, authorization: Option<String>) -> Self {
        let root = root.to_path_buf();
        let authorization = Arc::new(authorization);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let (served_root, log) = (root.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else { continue };
                        let (root, log, auth) = (served_root.clone(), log.clone(), authorization.clone());
                        tokio::spawn(async move {
                            if let Err(e) = serve(sock, &root, &log, auth.as_deref()).await {
                                eprintln!("git http test server: {e}");
                            }
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops in-flight requests, and kill_on_drop kills their backends.
        });
        Self { root, port, requests, stop: Some(stop), thread: Some(thread) }
    }

    /// The URL of the repository `name` (e.g. `a.git`).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection: parse it, check its `Authorization` when one is required,
/// run `git http-backend`, relay its answer, close.
async fn serve(
    mut sock: TcpStream,
    root: &Path,
    log: &Mutex<Vec<String>>,
    authorization: Option<&str>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut request_line = head.split("\r\n").next().unwrap_or_default().split(' ');
    let (method, target) = (request_line.next().unwrap_or_default(), request_line.next().unwrap_or_default());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    log.lock().unwrap().push(format!("{method} {target}"));
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    if let Some(expected) = authorization
        && header("authorization").as_deref() != Some(expected)
    {
        let sent = if header("authorization").is_some() { " (wrong credentials)" } else { "" };
        log.lock().unwrap().push(format!("401 {method} {target}{sent}"));
        let refusal = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                       Content-Length: 0\r\nConnection: close\r\n\r\n";
        sock.write_all(refusal.as_bytes()).await?;
        return sock.shutdown().await;
    }

    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut sock, &mut rest).await?
    } else {
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while rest.len() < len {
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    };

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(v) = header(name) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| std::io::Error::other(format!("cannot run git http-backend: {e}")))?;
    let mut stdin = child.stdin.take().unwrap();
    let feed = async move {
        let _ = stdin.write_all(&body).await;
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let (_, read) = tokio::join!(feed, stdout.read_to_end(&mut out));
    read?;
    child.wait().await?;

    // CGI answer: headers (with an optional Status), a blank line, the body.
    let (cgi_head, cgi_body) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => (&out[..0], &out[..]),
        },
    };
    let cgi_head = String::from_utf8_lossy(cgi_head);
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut headers = String::new();
    for line in cgi_head.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            _ => headers.push_str(&format!("{line}\r\n")),
        }
    }
    response.extend_from_slice(
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", cgi_body.len())
            .as_bytes(),
    );
    response.extend_from_slice(cgi_body);
    sock.write_all(&response).await?;
    sock.shutdown().await
}

/// Decodes a chunked body; `buf` holds what was read after the headers.
async fn read_chunked(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            fill(sock, buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size '{size_text}'")))?;
        pos = line_end + 2;
        while buf.len() < pos + size + 2 {
            fill(sock, buf).await?;
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = sock.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::Error::other("connection closed inside a chunked body"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Runs the system git for test setup with a fixed identity and no user or system config,
/// and returns its trimmed stdout; panics with git's stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(["-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "git {} in {} failed: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working repository the test commits to, then publishes as a bare repository.
pub struct WorkRepo {
    pub dir: PathBuf,
}

impl WorkRepo {
    /// `git init -b <branch>` in a new directory `dir`.
    pub fn init(dir: &Path, branch: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "--quiet", "-b", branch]);
        Self { dir: dir.to_path_buf() }
    }

    /// Writes `path` (relative) with `content` and commits it; returns the commit's SHA.
    pub fn commit_file(&self, path: &str, content: &str) -> String {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        git(&self.dir, &["add", "--", path]);
        self.commit(&format!("write {path}"))
    }

    /// Commits what is staged; returns the commit's SHA.
    pub fn commit(&self, message: &str) -> String {
        git(&self.dir, &["commit", "--quiet", "-m", message]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }

    /// Publishes every branch and tag as the bare repository `<root>/<name>`.
    pub fn publish(&self, root: &Path, name: &str) {
        let bare = root.join(name);
        git(root, &["clone", "--quiet", "--bare", "--", &self.dir.to_string_lossy(), &bare.to_string_lossy()]);
        git(&bare, &["update-server-info"]);
    }
}
