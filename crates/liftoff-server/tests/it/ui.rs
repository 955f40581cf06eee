//! The web UI over real HTTP, without a browser (the browser tests are in
//! liftoff-agent's `ui_browser.rs`): sessions and their cookie, CSRF, roles,
//! static assets, the queue page's pages and bulk stop, re-launch and the
//! launch form's errors; the run and queue pages' live streams and the log
//! search.

use liftoff_client::Client;
use liftoff_core::api::{AppendLog, CreateQueue, LaunchRequest, LogStream};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, JobSource, ResourceType, TemplateVariable, VarKind};
use liftoff_server::{RunningServer, ServerConfig, start};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};

struct Ui {
    server: RunningServer,
    client: Client,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serve() -> Ui {
    serve_with(|_| {}).await
}

async fn serve_with(tweak: impl FnOnce(&mut ServerConfig)) -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    tweak(&mut cfg);
    let server = start(cfg).await.unwrap();
    let client = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    client
        .create_queue(&CreateQueue {
            name: "q".into(),
            resource: ResourceType::LocalContainer,
            config: serde_json::json!({"gpus": "{{gpus}}"}),
            template_variables: vec![TemplateVariable {
                name: "gpus".into(),
                kind: VarKind::Integer,
                min: Some(0.0),
                max: Some(4.0),
                allowed: None,
                default: Some(serde_json::json!(1)),
                description: None,
            }],
            prioritization: false,
        })
        .await
        .unwrap();
    let source =
        JobSourceSpec { image: Some(ImageSource { image: "busybox:1".into(), args: vec![] }), ..Default::default() };
    let job = liftoff_core::api::CreateJob {
        project: "default".into(),
        name: "hello".into(),
        source,
        aliases: vec![],
        runtime: None,
    };
    client.create_job(&job).await.unwrap();
    Ui { server, client, http, _dir: dir }
}

/// A signed-in browser, as far as HTTP goes: its cookie and CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

impl Ui {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    async fn sign_in(&self, key: &str) -> reqwest::Response {
        self.http
            .post(self.url("/signin"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("api_key={key}&next=%2Fjobs"))
            .send()
            .await
            .unwrap()
    }

    async fn session(&self, key: &str) -> Session {
        let resp = self.sign_in(key).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let cookie = resp.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
        let page = self.get(&cookie, "/").await.text().await.unwrap();
        let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        Session { cookie, csrf }
    }

    async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).header("cookie", cookie).send().await.unwrap()
    }

    async fn post(&self, s: &Session, path: &str, form: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("cookie", &s.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={}&{form}", s.csrf))
            .send()
            .await
            .unwrap()
    }

    async fn launch(&self) -> String {
        self.client.launch("q", &LaunchRequest { job: "hello".into(), ..Default::default() }).await.unwrap().run_id
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_expiring_cookie_that_pages_need() {
    let ui = serve().await;
    let resp = ui.http.get(ui.url("/queues/q?state=pending")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/signin?next=%2Fqueues%2Fq%3Fstate%3Dpending");
    assert_eq!(ui.get("lft_session=forged.x.9999999999999.00", "/").await.status(), StatusCode::SEE_OTHER);

    assert_eq!(ui.sign_in("lft_nope").await.status(), StatusCode::UNAUTHORIZED);
    let agent_key = ui.client.create_key("agent").await.unwrap().secret;
    let refused = ui.sign_in(&agent_key).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.unwrap().contains("an agent key cannot sign in"));

    let key = ui.server.admin_key.clone().unwrap();
    let resp = ui.sign_in(&key).await;
    assert_eq!(resp.headers()[LOCATION], "/jobs", "back to the page asked for");
    let cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["lft_session=", "HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would never come back");
    let behind_tls = ui
        .http
        .post(ui.url("/signin"))
        .header("x-forwarded-proto", "https")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("api_key={key}"))
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()[SET_COOKIE].to_str().unwrap().ends_with("; Secure"));

    let s = ui.session(&key).await;
    let page = ui.get(&s.cookie, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains(" style="), "no inline script or style");

    // Signing out drops the cookie; a forged CSRF token is refused first.
    assert_eq!(ui.post(&Session { csrf: "x".into(), ..s.clone() }, "/signout", "").await.status(), 403);
    let out = ui.post(&s, "/signout", "").await;
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));

    // A member's session ends when its key is revoked; members do not manage agents.
    let member = ui.client.create_key("member").await.unwrap();
    let m = ui.session(&member.secret).await;
    assert_eq!(ui.get(&m.cookie, "/agents").await.status(), StatusCode::OK);
    let agent = liftoff_core::api::RegisterAgent {
        queues: vec!["q".into()],
        hostname: "h".into(),
        max_jobs: 1,
        version: String::new(),
    };
    let agent_id = ui.client.register_agent(&agent).await.unwrap().id;
    assert_eq!(ui.post(&m, &format!("/agents/{agent_id}/stop-polling"), "").await.status(), 403);
    assert!(!ui.client.list_agents().await.unwrap()[0].stop_polling);
    let admin = ui.session(&key).await;
    assert_eq!(ui.post(&admin, &format!("/agents/{agent_id}/stop-polling"), "").await.status(), 303);
    assert!(ui.client.list_agents().await.unwrap()[0].stop_polling);
    ui.client.revoke_key(&member.key.id).await.unwrap();
    assert_eq!(ui.get(&m.cookie, "/agents").await.status(), StatusCode::SEE_OTHER, "revoked key, no session");
}

#[tokio::test]
async fn static_assets_are_embedded_typed_and_cached_for_long() {
    let ui = serve().await;
    let v = env!("CARGO_PKG_VERSION");
    for (file, kind, starts) in [
        ("htmx.min.js", "text/javascript; charset=utf-8", "var htmx"),
        ("app.css", "text/css; charset=utf-8", ":root"),
        ("app.js", "text/javascript; charset=utf-8", "//"),
        ("sse.js", "text/javascript; charset=utf-8", "/*\nServer Sent Events Extension"),
    ] {
        let resp = ui.http.get(ui.url(&format!("/assets/{v}/{file}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        assert_eq!(resp.headers()[CONTENT_TYPE], kind);
        assert_eq!(resp.headers()[CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert!(resp.text().await.unwrap().starts_with(starts), "{file}");
    }
    let old = ui.http.get(ui.url("/assets/0.0.0-old/app.css")).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND, "another build's asset");
    let other = ui.http.get(ui.url(&format!("/assets/{v}/../Cargo.toml"))).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queue_pages_bulk_stop_relaunch_and_the_launch_form() {
    let ui = serve().await;
    let s = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let mut runs = Vec::new();
    for _ in 0..53 {
        runs.push(ui.launch().await);
    }
    // Keyset pages of 50, newest first, then the rest.
    let first = ui.get(&s.cookie, "/queues/q").await.text().await.unwrap();
    assert!(first.contains(&runs[52]) && first.contains(&runs[3]) && !first.contains(&runs[2]));
    let next = first.split("href=\"/queues/q?").nth(1).expect("a link to older items").split('"').next().unwrap();
    let next = next.replace("&amp;", "&");
    let second = ui.get(&s.cookie, &format!("/queues/q?{next}")).await.text().await.unwrap();
    for r in &runs[..3] {
        assert!(second.contains(r.as_str()));
    }
    assert!(!second.contains(&runs[3]) && !second.contains("Older items"));

    // Bulk stop of two selected items; the others stay pending.
    let (a, b) = (ui.client.get_item(&runs[0]).await.unwrap(), ui.client.get_item(&runs[1]).await.unwrap());
    let resp = ui.post(&s, "/queues/q/stop", &format!("item={}&item={}&back=%3Fstate%3Dstopped", a.id, b.id)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/queues/q?state=stopped");
    assert_eq!(ui.client.get_item(&a.id).await.unwrap().state, ItemState::Stopped);
    assert_eq!(ui.client.get_item(&b.id).await.unwrap().state, ItemState::Stopped);
    assert_eq!(ui.client.get_item(&runs[2]).await.unwrap().state, ItemState::Pending);
    let stopped = ui.get(&s.cookie, "/queues/q?state=stopped").await.text().await.unwrap();
    assert_eq!(stopped.matches("class=\"state s-stopped\"").count(), 2);
    // the run page's timeline is the recorded history: each change, its time and cause
    let page = ui.get(&s.cookie, &format!("/runs/{}", a.run_id)).await.text().await.unwrap();
    let timeline = page.split("id=\"timeline\"").nth(1).unwrap().split("</ol>").next().unwrap();
    assert!(timeline.contains("pending in q (launch, by user)"), "{timeline}");
    assert!(timeline.contains("pending → stopped") && timeline.matches("by user").count() == 2, "{timeline}");
    let without_token = ui
        .http
        .post(ui.url("/queues/q/stop"))
        .header("cookie", &s.cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("item={}", runs[2]))
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(ui.client.get_item(&runs[2]).await.unwrap().state, ItemState::Pending);

    // Re-launch: a new run of the same spec.
    let resp = ui.post(&s, &format!("/runs/{}/relaunch", runs[0]), "").await;
    let to = resp.headers()[LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    let again = ui.client.get_item(&to).await.unwrap();
    assert_ne!(again.id, a.id);
    assert_eq!((again.state, again.spec), (ItemState::Pending, a.spec));

    // The launch form: the server's bound error beside the field, then a launch.
    let resp = ui.post(&s, "/queues/q/launch", "job=hello&priority=high&var.gpus=9").await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = resp.text().await.unwrap();
    let error = page.split("id=\"var-gpus-error\">").nth(1).unwrap().split('<').next().unwrap();
    assert!(error.contains("above the maximum 4"), "{error}");
    let resp = ui.post(&s, "/queues/q/launch", "job=nope&var.gpus=2").await;
    assert!(resp.text().await.unwrap().contains("id=\"job-error\">job &#39;nope&#39; not found"));
    let resp = ui.post(&s, "/queues/q/launch", "job=hello&priority=high&var.gpus=2").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let run = resp.headers()[LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    let item = ui.client.get_item(&run).await.unwrap();
    assert_eq!(item.spec.resource_config, serde_json::json!({"gpus": 2}));
    assert_eq!(item.priority, liftoff_core::Priority::High);
    let page = ui.get(&s.cookie, &format!("/runs/{run}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains(&format!("sse-connect=\"/runs/{run}/live?from=")), "an active run's page is live");
    assert!(!page.contains("hx-trigger=\"every"), "and polls nothing");

    // The form offers each job's versions, newest first, and launches one
    // with its command, arguments and run config (YAML or JSON) overridden.
    let v2 =
        JobSourceSpec { image: Some(ImageSource { image: "busybox:2".into(), args: vec![] }), ..Default::default() };
    let job = liftoff_core::api::CreateJob {
        project: "default".into(),
        name: "hello".into(),
        source: v2,
        aliases: vec!["best".into()],
        runtime: None,
    };
    ui.client.create_job(&job).await.unwrap();
    let form = ui.get(&s.cookie, "/queues/q/launch?job=default/hello").await.text().await.unwrap();
    let versions: Vec<&str> = form
        .split("data-job=\"default/hello\"")
        .skip(1)
        .map(|o| o.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{form}");
    assert!(versions[0].starts_with("v2 (best, latest) · image busybox:2 · "), "{versions:?}");
    assert!(versions[1].starts_with("v1 · image busybox:1 · "), "{versions:?}");
    let sent = "job=default/hello&version=v1&entrypoint=python3+train.py&args=--lr+0.1+%27two+words%27\
        &run_config=lr%3A+0.1%0Alayers%3A+%5B1%2C+2%5D%0A&priority=low&var.gpus=3";
    let resp = ui.post(&s, "/queues/q/launch", sent).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", resp.text().await.unwrap());
    let run = resp.headers()[LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    let item = ui.client.get_item(&run).await.unwrap();
    assert_eq!(item.spec.job, "default/default/hello:v1", "the version picked");
    assert!(matches!(&item.spec.source, JobSource::Image(i) if i.image == "busybox:1"), "{:?}", item.spec.source);
    assert_eq!(item.spec.entrypoint, ["python3", "train.py"]);
    assert_eq!(item.spec.args, ["--lr", "0.1", "two words"]);
    assert_eq!(item.spec.run_config, serde_json::json!({"lr": 0.1, "layers": [1, 2]}));
    assert_eq!(
        (item.priority, &item.spec.resource_config),
        (liftoff_core::Priority::Low, &serde_json::json!({"gpus": 3}))
    );
    // every mistake is named beside its field, and what was typed is kept
    let bad = "job=default/hello&version=v1&entrypoint=python3+%27oops&args=ok&run_config=%7B%22lr%22%3A&var.gpus=2";
    let resp = ui.post(&s, "/queues/q/launch", bad).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = resp.text().await.unwrap();
    let error =
        |id: &str| page.split(&format!("id=\"{id}-error\">")).nth(1).map(|e| e.split('<').next().unwrap().to_string());
    assert!(error("entrypoint").is_some_and(|e| e.contains("quotes")), "{page}");
    assert!(error("run_config").is_some_and(|e| e.starts_with("not valid JSON")), "{page}");
    assert_eq!(error("args"), None);
    assert!(page.contains(">{&#34;lr&#34;:</textarea>"), "the config as typed: {page}");
    let page = ui.post(&s, "/queues/q/launch", "job=default/hello&run_config=-+1%0A-+2").await.text().await.unwrap();
    assert!(page.contains("id=\"run_config-error\">must be an object"), "{page}");
    let page = ui.post(&s, "/queues/q/launch", "job=default/hello&version=v9").await.text().await.unwrap();
    assert!(page.contains("id=\"job-error\">"), "a version that does not exist is the job's error: {page}");
    let page = ui.post(&s, "/queues/q/launch", "job=hello&priority=urgent").await.text().await.unwrap();
    assert!(page.contains("id=\"priority-error\">&#39;urgent&#39; is not one of"), "{page}");
    // An enumeration becomes a select of its values, the default chosen.
    ui.client
        .create_queue(&CreateQueue {
            name: "sizes".into(),
            resource: ResourceType::LocalContainer,
            config: serde_json::json!({"env": ["SIZE={{size}}"]}),
            template_variables: vec![TemplateVariable {
                name: "size".into(),
                kind: VarKind::String,
                min: None,
                max: None,
                allowed: Some(vec![serde_json::json!("small"), serde_json::json!("large")]),
                default: Some(serde_json::json!("large")),
                description: None,
            }],
            prioritization: false,
        })
        .await
        .unwrap();
    let form = ui.get(&s.cookie, "/queues/sizes/launch").await.text().await.unwrap();
    assert!(form.contains("<select id=\"var-size\" name=\"var.size\""), "{form}");
    assert!(form.contains("<option value=\"small\" >small</option>"), "{form}");
    assert!(form.contains("<option value=\"large\" selected>large</option>"), "{form}");
    let resp = ui.post(&s, "/queues/sizes/launch", "job=hello&var.size=huge").await;
    assert!(resp.text().await.unwrap().contains("id=\"var-size-error\""), "a value outside the enum");
    assert_eq!(ui.get(&s.cookie, "/runs/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(ui.get(&s.cookie, "/queues/nope").await.status(), StatusCode::NOT_FOUND);
}

/// One server-sent event: `(event, id, data)`.
type Sse = (String, String, String);

/// A live stream of the UI read as a browser's `EventSource` would.
struct Live {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Live {
    async fn open(ui: &Ui, cookie: &str, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = ui.http.get(ui.url(path)).header("cookie", cookie);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }

    async fn new(ui: &Ui, cookie: &str, path: &str, last_event_id: Option<&str>) -> Live {
        let resp = Self::open(ui, cookie, path, last_event_id).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        Live { resp, buf: Vec::new() }
    }

    /// The next event (keep-alive comments skipped), `None` once the
    /// server ended the stream; a failure after 20 s of nothing.
    async fn next(&mut self, what: &str) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), String::new(), Vec::new());
                for line in String::from_utf8(block).unwrap().lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    match field {
                        "event" => event = value,
                        "id" => id = value,
                        "data" => data.push(value),
                        _ => {}
                    }
                }
                if !data.is_empty() {
                    return Some((event, id, data.join("\n")));
                }
                continue;
            }
            let got = tokio::time::timeout(std::time::Duration::from_secs(20), self.resp.chunk()).await;
            match got.unwrap_or_else(|_| panic!("no event within 20 s while waiting for {what}")).unwrap() {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return None,
            }
        }
    }

    async fn expect(&mut self, what: &str) -> Sse {
        self.next(what).await.unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
    }

    async fn rest(mut self) -> Vec<Sse> {
        let mut all = Vec::new();
        while let Some(e) = self.next("the rest").await {
            all.push(e);
        }
        all
    }
}

/// A server, an admin's session, and a run of it that an agent holds:
/// `(run id, item id, fence)`.
async fn claimed_run() -> (Ui, Session, String, String, i64) {
    let ui = serve().await;
    let s = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let run = ui.launch().await;
    let (id, fence) = claim(&ui).await;
    (ui, s, run, id, fence)
}

/// An agent holding the one pending run of queue `q`: `(item id, fence)`.
async fn claim(ui: &Ui) -> (String, i64) {
    let agent = liftoff_core::api::RegisterAgent {
        queues: vec!["q".into()],
        hostname: "h".into(),
        max_jobs: -1,
        version: "t".into(),
    };
    let agent = ui.client.register_agent(&agent).await.unwrap().id;
    let claim = ui.client.claim(&agent, &["q".into()], std::time::Duration::from_secs(5)).await.unwrap().unwrap();
    (claim.item.id, claim.fence)
}

async fn append(ui: &Ui, id: &str, fence: i64, seq: i64, stream: LogStream, data: &str) {
    ui.client.append_log(id, &AppendLog { fence, seq, stream, data: data.into() }).await.unwrap();
}

/// A session of another entity's admin.
async fn intruder(ui: &Ui) -> Session {
    let db = format!("sqlite://{}", ui._dir.path().join("liftoff.db").display());
    use liftoff_store::Store;
    let store = liftoff_store::SqlStore::connect(&db, 1).await.unwrap();
    store.ensure_entity("other", 1).await.unwrap();
    let key = liftoff_store::ApiKeyRecord {
        id: "o".into(),
        hash: liftoff_server::hash_key("lft_other"),
        entity: "other".into(),
        role: liftoff_store::KeyRole::Admin,
        created_at_ms: 1,
        expires_at_ms: None,
        name: None,
    };
    store.insert_api_key(&key).await.unwrap();
    ui.session("lft_other").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_follows_its_live_stream_of_fragments_resumable_to_the_end() {
    let (ui, s, run, id, fence) = claimed_run().await;
    append(&ui, &id, fence, 0, LogStream::Stdout, "before the page\n").await;

    // The page shows the log and timeline so far, and where its stream goes on.
    let page = ui.get(&s.cookie, &format!("/runs/{run}")).await.text().await.unwrap();
    assert!(page.contains("before the page") && page.contains("pending → claimed"), "{page}");
    let connect = page.split("sse-connect=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(connect, format!("/runs/{run}/live?from=2.1"), "after launch and claim, and chunk 0");
    assert!(page.contains("sse-swap=\"log\" hx-swap=\"beforeend\"") && page.contains("sse-close=\"end\""));
    assert!(!page.contains("hx-trigger=\"every"), "nothing polls");

    // Each write arrives as a fragment while the stream is open: it is live.
    let mut live = Live::new(&ui, &s.cookie, &connect, None).await;
    ui.client.report(&id, fence, liftoff_core::ItemEvent::Start).await.unwrap();
    let (kind, start_id, html) = live.expect("the start").await;
    assert_eq!((kind.as_str(), start_id.as_str()), ("transition", "3.1"));
    assert!(html.starts_with("<ol id=\"timeline\" hx-swap-oob=\"beforeend\"><li><time>"), "{html}");
    assert!(html.contains("claimed → running (start, by agent <a class=\"agent\" href=\"/agents#agent-"), "{html}");
    assert!(html.contains("\">h <code>"), "the live timeline and fact name the agent by host: {html}");
    assert!(html.contains("<span class=\"state s-running\" id=\"run-state\" hx-swap-oob=\"true\">running</span>"));
    // the Agent fact follows the holder, and a held run's priority form goes
    assert!(html.contains("<dd class=\"wrap\" id=\"run-agent\" hx-swap-oob=\"true\">"), "{html}");
    assert!(html.contains("<form id=\"priority-form\" hx-swap-oob=\"delete\"></form>"), "{html}");
    append(&ui, &id, fence, 1, LogStream::Stdout, "<script>alert(1)</script> \u{1b}[1;31mred\u{1b}[0m\n").await;
    let (kind, _, html) = live.expect("the escaped line").await;
    assert_eq!(kind, "log");
    assert_eq!(
        html,
        "<div class=\"ln out\"><span class=\"\">&#60;script&#62;alert(1)&#60;/script&#62; </span>\
         <span class=\"fg1 b\">red</span></div>"
    );
    append(&ui, &id, fence, 2, LogStream::Stderr, "warn a\nwarn b\n").await;
    let (_, line_id, html) = live.expect("two stderr lines").await;
    assert_eq!(line_id, "3.3");
    assert_eq!(html.matches("<div class=\"ln err\">").count(), 2, "{html}");
    drop(live);

    // A reconnect with Last-Event-ID gets what came since, nothing twice.
    append(&ui, &id, fence, 3, LogStream::Stdout, "while away\n").await;
    ui.client.report(&id, fence, liftoff_core::ItemEvent::Finish).await.unwrap();
    let resumed = Live::new(&ui, &s.cookie, &connect, Some(&line_id)).await.rest().await;
    let got: Vec<_> = resumed.iter().map(|(k, i, _)| (k.as_str(), i.as_str())).collect();
    assert_eq!(got, [("log", "3.4"), ("transition", "4.4"), ("end", "4.4")]);
    assert!(resumed[0].2.contains("while away") && resumed[1].2.contains("running → finished"));
    assert_eq!(resumed[2].2, "finished", "the end names the final state, and the stream closes");

    // The whole stream, then from each id exactly the rest.
    let all = Live::new(&ui, &s.cookie, &format!("/runs/{run}/live"), None).await.rest().await;
    assert_eq!(all.len(), 9, "launch, claim, chunk 0, start, 3 chunks, finish, end: {all:?}");
    for k in 0..all.len() - 1 {
        let rest = Live::new(&ui, &s.cookie, &connect, Some(&all[k].1)).await.rest().await;
        assert_eq!(rest, all[k + 1..], "resuming after event {k} ({})", all[k].1);
    }
    let bad = Live::open(&ui, &s.cookie, &connect, Some("nonsense")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // The ended run's page is static: the final state, no stream.
    let page = ui.get(&s.cookie, &format!("/runs/{run}")).await.text().await.unwrap();
    assert!(!page.contains("sse-connect") && page.contains("id=\"run-state\">finished</span>"));

    // Another entity's run is not found, live or not.
    let other = intruder(&ui).await;
    assert_eq!(Live::open(&ui, &other.cookie, &connect, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(ui.get(&other.cookie, &format!("/runs/{run}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(Live::open(&ui, &other.cookie, "/queues/q/live", None).await.status(), StatusCode::NOT_FOUND);
    let signed_out = ui.http.get(ui.url(&connect)).send().await.unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER, "no session, no stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_page_gets_its_rows_states_live() {
    let ui = serve().await;
    let s = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let run = ui.launch().await;
    let page = ui.get(&s.cookie, "/queues/q").await.text().await.unwrap();
    let item = ui.client.get_item(&run).await.unwrap();
    assert!(page.contains(&format!("<span class=\"state s-pending\" id=\"state-{}\">pending</span>", item.id)));
    let connect = page.split("sse-connect=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    assert_eq!(connect, "/queues/q/live?after=1&rows=new", "the launch is on the page, which shows the newest");

    let mut live = Live::new(&ui, &s.cookie, &connect, None).await;
    let (id, fence) = claim(&ui).await;
    let (kind, n, html) = live.expect("the claim").await;
    assert_eq!((kind.as_str(), n.as_str()), ("transition", "2"));
    assert!(
        html.starts_with(&format!(
            "<span class=\"state s-claimed\" id=\"state-{id}\" hx-swap-oob=\"true\">claimed</span>"
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!("id=\"agent-{id}\" hx-swap-oob=\"true\"><a class=\"agent\" href=\"/agents#agent-")),
        "the agent column follows, by name: {html}"
    );
    assert!(!html.contains("sel-"), "a claimed run can still be stopped: {html}");
    // a launch joins the top of the table, as the page renders rows
    let second = ui.launch().await;
    let (_, n, html) = live.expect("the new launch").await;
    assert_eq!(n, "3");
    assert!(html.starts_with("<tbody hx-swap-oob=\"afterbegin:#rows\"><tr id=\"row-"), "{html}");
    assert!(html.contains(&format!("<code>{second}</code>")) && html.contains(">pending</span>"), "{html}");
    drop(live);
    ui.client.report(&id, fence, liftoff_core::ItemEvent::Start).await.unwrap();
    let mut resumed = Live::new(&ui, &s.cookie, &connect, Some("3")).await;
    let (_, n, html) = resumed.expect("the start, missed while away").await;
    assert_eq!(n, "4");
    assert!(html.contains(">running</span>"), "{html}");
    ui.client.stop_item(&id).await.unwrap();
    let (_, _, html) = resumed.expect("the stop request").await;
    assert!(html.contains(&format!("<input id=\"sel-{id}\" hx-swap-oob=\"delete\">")), "no more stopping: {html}");
    // a filtered page gets no new rows: a launch may not match its filters
    let filtered = ui.get(&s.cookie, "/queues/q?state=pending").await.text().await.unwrap();
    assert!(filtered.contains("sse-connect") && !filtered.contains("rows=new"), "{filtered}");
    assert_eq!(Live::open(&ui, &s.cookie, "/queues/nope/live", None).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_pages_share_the_stream_cap_and_end_when_the_server_stops() {
    let ui = serve_with(|cfg| cfg.max_event_streams = 1).await;
    let s = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let run = ui.launch().await;
    let mut open = Live::new(&ui, &s.cookie, &format!("/runs/{run}/live"), None).await;
    open.expect("the launch").await;
    assert_eq!(Live::open(&ui, &s.cookie, "/queues/q/live", None).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    let api = ui.client.queue_events("q", None).await.err().expect("the API shares the cap");
    assert_eq!(api.status(), Some(503));
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), ui.server.shutdown()).await;
    assert!(stopped.is_ok(), "the server did not stop within 20 s with a live page open");
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), open.resp.chunk()).await.expect("it ended");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_search_shows_matching_lines_marked_counted_and_bounded() {
    let (ui, s, run, id, fence) = claimed_run().await;
    append(&ui, &id, fence, 0, LogStream::Stdout, "Loading\nan ERROR here\nfine\n").await;
    append(&ui, &id, fence, 1, LogStream::Stderr, "\u{1b}[31merror: <b>x</b> and Error again\u{1b}[0m\n").await;
    let page = ui.get(&s.cookie, &format!("/runs/{run}?q=error")).await.text().await.unwrap();
    let log = page.split("id=\"log\"").nth(1).unwrap().split("<details>").next().unwrap().to_string();
    assert!(page.contains("2 lines match “error” in 4 lines."), "{page}");
    assert!(!log.contains("Loading") && !log.contains("fine"), "{log}");
    assert!(log.contains("<span class=\"\">an </span><span class=\"hit\">ERROR</span><span class=\"\"> here</span>"));
    assert!(
        log.contains(
            "<div class=\"ln err\"><span class=\"fg1 hit\">error</span><span class=\"fg1\">: &#60;b&#62;x&#60;/b&#62; and </span>\
             <span class=\"fg1 hit\">Error</span><span class=\"fg1\"> again</span></div>"
        ),
        "{log}"
    );
    assert!(!page.contains("sse-swap=\"log\""), "a search's result does not grow");
    assert!(page.contains("The run goes on: search again for newer lines."), "and the page says so");
    assert!(page.contains("value=\"error\"") && page.contains(&format!("href=\"/runs/{run}\">Whole log</a>")));
    let escaped = ui.get(&s.cookie, &format!("/runs/{run}?q=%3Cb%3E")).await.text().await.unwrap();
    assert!(escaped.contains("1 line matches “&#60;b&#62;” in 4 lines."), "the query is escaped");

    // A search reads 50,000 lines at most and says it stopped.
    let block: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    for seq in 2..8 {
        append(&ui, &id, fence, seq, LogStream::Stdout, &block).await;
    }
    append(&ui, &id, fence, 8, LogStream::Stdout, "needle past the bound\n").await;
    let page = ui.get(&s.cookie, &format!("/runs/{run}?q=NEEDLE")).await.text().await.unwrap();
    assert!(page.contains("0 lines match “NEEDLE” in 50000 lines. The search stopped there"), "{page}");
    let page = ui.get(&s.cookie, &format!("/runs/{run}?q=line%2009999")).await.text().await.unwrap();
    // the fifth block's last line is line 50,004: the bound cuts inside a chunk
    assert!(page.contains("4 lines match “line 09999” in 50000 lines."), "{page}");
    let page = ui.get(&s.cookie, &format!("/runs/{run}?q=line%200")).await.text().await.unwrap();
    assert!(page.contains("lines match “line 0” in 50000 lines; the first 1000 are shown."), "shown lines are bounded");
    assert_eq!(page.matches("<span class=\"hit\">line 0</span>").count(), 1000);
    // The download is the whole log.
    let text = ui.get(&s.cookie, &format!("/runs/{run}/log.txt")).await.text().await.unwrap();
    assert!(text.ends_with("needle past the bound\n") && text.lines().count() == 60_005);
}

#[tokio::test]
async fn launcher_time_filters_and_saved_filters() {
    let ui = serve().await;
    let admin = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let evil = "<script>alert(1)</script>";
    let member = ui.client.create_named_key("member", Some(evil)).await.unwrap();
    let m = ui.session(&member.secret).await;

    // The launch form and re-launch record the session's key.
    let resp = ui.post(&m, "/queues/q/launch", "job=hello&var.gpus=1").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let by_member = resp.headers()[LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    assert_eq!(ui.client.get_item(&by_member).await.unwrap().launched_by.as_deref(), Some(evil));
    let by_admin = ui.launch().await;
    let resp = ui.post(&m, &format!("/runs/{by_admin}/relaunch"), "").await;
    let relaunched = resp.headers()[LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    assert_eq!(ui.client.get_item(&relaunched).await.unwrap().launched_by.as_deref(), Some(evil));
    assert_eq!(ui.client.get_item(&by_admin).await.unwrap().launched_by.as_deref(), Some("admin"));

    // Shown escaped on the queue page and the run page.
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let page = ui.get(&admin.cookie, "/queues/q").await.text().await.unwrap();
    assert!(page.contains(escaped) && !page.contains(evil), "the launcher is escaped");
    assert!(page.contains("<td data-label=\"Launched by\" class=\"wrap\">admin</td>"), "{page}");
    let run = ui.get(&admin.cookie, &format!("/runs/{by_member}")).await.text().await.unwrap();
    assert!(run.contains(&format!("<dt>Launched by</dt><dd class=\"wrap\">{escaped}</dd>")), "{run}");

    // Filter by launcher, kept in the older-items link with the other filters.
    let mut admins = vec![by_admin.clone()];
    for _ in 0..50 {
        admins.push(ui.launch().await);
    }
    let first = ui.get(&admin.cookie, "/queues/q?launched_by=admin&since=1h").await.text().await.unwrap();
    assert!(first.contains(&admins[50]) && first.contains(&admins[1]) && !first.contains(&admins[0]));
    assert!(!first.contains(&by_member) && !first.contains(&relaunched), "only the admin's runs");
    assert!(first.contains("name=\"launched_by\" value=\"admin\""), "the filter stays in its field");
    let next = first.split("href=\"/queues/q?").find(|l| l.contains("before=")).unwrap().split('"').next().unwrap();
    let next = next.replace("&#38;", "&");
    assert!(next.starts_with("launched_by=admin&since=1h&before="), "{next}");
    let second = ui.get(&admin.cookie, &format!("/queues/q?{next}")).await.text().await.unwrap();
    assert!(second.contains(&admins[0]) && !second.contains(&admins[1]) && !second.contains(&by_member));
    let by_name = ui.get(&admin.cookie, "/queues/q?launched_by=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    let by_name = by_name.text().await.unwrap();
    assert!(by_name.contains(&by_member) && by_name.contains(&relaunched) && !by_name.contains(&by_admin));

    // Launch time: everything was launched within the hour, nothing before it.
    let none = ui.get(&admin.cookie, "/queues/q?until=1h").await.text().await.unwrap();
    assert!(none.contains("No item matches these filters."), "{none}");
    for (query, field) in
        [("since=yesterday", "since"), ("until=5x", "until"), ("since=-1h", "since"), ("state=bogus", "state")]
    {
        let resp = ui.get(&admin.cookie, &format!("/queues/q?{query}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(&format!("{field} must be")), "{query}: {body}");
    }
    let resp = ui.get(&admin.cookie, "/queues/q?since=9999d").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Saved filters: the page's own fields, under an escaped name.
    let save = "name=%3Cb%3Emine%3C%2Fb%3E&state=&job=&agent=&launched_by=admin&since=24h&until=";
    let resp = ui.post(&admin, "/queues/q/filters", save).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/queues/q?launched_by=admin&since=24h");
    let page = ui.get(&admin.cookie, "/queues/q").await.text().await.unwrap();
    assert!(
        page.contains("<a href=\"/queues/q?launched_by=admin&#38;since=24h\">&#60;b&#62;mine&#60;/b&#62;</a>"),
        "{page}"
    );
    assert!(!page.contains("<b>mine"), "the name is escaped");
    let again = ui.post(&admin, "/queues/q/filters", save).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("already has a saved filter named"));
    for bad in ["name=&state=failed", "name=a%09b&state=failed", "name=ok&since=forever"] {
        assert_eq!(ui.post(&admin, "/queues/q/filters", bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let forged = Session { csrf: "x".into(), ..admin.clone() };
    assert_eq!(ui.post(&forged, "/queues/q/filters", "name=x&state=failed").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(ui.post(&forged, "/queues/q/filters/delete", "name=%3Cb%3Emine%3C%2Fb%3E").await.status(), 403);
    assert_eq!(ui.post(&admin, "/queues/nope/filters", "name=x&state=failed").await.status(), StatusCode::NOT_FOUND);
    // every session of the entity sees the queue's saved filters
    assert!(ui.get(&m.cookie, "/queues/q").await.text().await.unwrap().contains("&#60;b&#62;mine&#60;/b&#62;"));
    let resp = ui.post(&admin, "/queues/q/filters/delete", "name=%3Cb%3Emine%3C%2Fb%3E").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(!ui.get(&admin.cookie, "/queues/q").await.text().await.unwrap().contains("mine"));
    let gone = ui.post(&admin, "/queues/q/filters/delete", "name=%3Cb%3Emine%3C%2Fb%3E").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn priority_form_while_pending_and_agent_versions() {
    let ui = serve().await;
    let s = ui.session(ui.server.admin_key.as_deref().unwrap()).await;
    let run = ui.launch().await;
    let page = ui.get(&s.cookie, &format!("/runs/{run}")).await.text().await.unwrap();
    assert!(page.contains(&format!("action=\"/runs/{run}/priority\"")), "a pending run's page offers the form");
    assert!(page.contains("<option value=\"medium\" selected>medium</option>"), "{page}");
    let resp = ui.post(&s, &format!("/runs/{run}/priority"), "priority=critical").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(ui.client.get_item(&run).await.unwrap().priority, liftoff_core::Priority::Critical);
    let bad = ui.post(&s, &format!("/runs/{run}/priority"), "priority=urgent").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("priority must be one of critical, high, medium, low"));
    let forged = Session { csrf: "x".into(), ..s.clone() };
    assert_eq!(ui.post(&forged, &format!("/runs/{run}/priority"), "priority=low").await.status(), 403);
    assert_eq!(ui.client.get_item(&run).await.unwrap().priority, liftoff_core::Priority::Critical);
    let timeline = ui.get(&s.cookie, &format!("/runs/{run}")).await.text().await.unwrap();
    assert!(timeline.contains("pending → pending (priority, by user): priority medium → critical"), "{timeline}");

    // Claimed: no form, and a late form post is refused with the reason.
    let agent = liftoff_core::api::RegisterAgent {
        queues: vec!["q".into()],
        hostname: "gpu-<1>".into(),
        max_jobs: 1,
        version: "9.8.7".into(),
    };
    let agent_id = ui.client.register_agent(&agent).await.unwrap().id;
    ui.client.claim(&agent_id, &["q".into()], std::time::Duration::ZERO).await.unwrap().expect("the run");
    let page = ui.get(&s.cookie, &format!("/runs/{run}")).await.text().await.unwrap();
    assert!(!page.contains("/priority\""), "no form once claimed");
    let late = ui.post(&s, &format!("/runs/{run}/priority"), "priority=low").await;
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    assert!(late.text().await.unwrap().contains("is claimed: only a pending run&#39;s priority can change"));

    // Wherever the agent is shown, it is its host and short id, linked to its row on the Agents page.
    let label = format!(
        "<a class=\"agent\" href=\"/agents#agent-{agent_id}\" title=\"agent {agent_id}\">gpu-&#60;1&#62; <code>{}</code></a>",
        &agent_id[..8]
    );
    let facts = page.split("id=\"run-agent\">").nth(1).unwrap().split("</dd>").next().unwrap();
    assert_eq!(facts, label, "the run's Agent fact");
    let timeline = page.split("id=\"timeline\"").nth(1).unwrap().split("</ol>").next().unwrap();
    assert!(timeline.contains(&format!("pending → claimed (claim, by agent {label})")), "{timeline}");
    let queue = ui.get(&s.cookie, "/queues/q").await.text().await.unwrap();
    let cell = queue.split(&format!("id=\"agent-{}\">", item_id(&ui, &run).await)).nth(1).unwrap();
    assert!(cell.starts_with(&format!("{label}</td>")), "the queue row's Agent cell: {cell}");
    let queues = ui.get(&s.cookie, "/").await.text().await.unwrap();
    assert!(queues.contains(&label), "the queues list names the agents polling: {queues}");

    // The Agents page shows each agent's version beside its host.
    let agents = ui.get(&s.cookie, "/agents").await.text().await.unwrap();
    assert!(agents.contains(&format!("<tr id=\"agent-{agent_id}\">")), "the label's link target: {agents}");
    assert!(agents.contains("<td data-label=\"Host\">gpu-&#60;1&#62;</td>"), "{agents}");
    assert!(agents.contains("<td data-label=\"Version\">9.8.7</td>"), "{agents}");
}

/// The item id of run `run`.
async fn item_id(ui: &Ui, run: &str) -> String {
    ui.client.get_item(run).await.unwrap().id
}

/// A live page's feed over a WebSocket, as the page's script opens it:
/// the same events as frames `{event, id, data}`, resumed after a drop
/// from `last_event_id` with nothing missed or repeated, closed normally
/// after `end`; a page of another origin cannot open it, nor can a request
/// without the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_feed_over_a_websocket_resumes_from_its_last_event_and_only_for_this_servers_pages() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let (ui, s, run, id, fence) = claimed_run().await;
    let ws_url = |query: &str| format!("{}/runs/{run}/live?{query}", ui.server.base_url().replace("http://", "ws://"));
    let host = ui.server.base_url().trim_start_matches("http://").to_string();
    let open = |url: String, origin: String| {
        let cookie = s.cookie.clone();
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert("cookie", cookie.parse().unwrap());
            req.headers_mut().insert("origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(req).await
        }
    };
    async fn event(
        ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        what: &str,
    ) -> (String, String, String) {
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .unwrap_or_else(|_| panic!("no frame for {what} within 10 s"))
                .unwrap_or_else(|| panic!("the socket closed before {what}"))
                .unwrap();
            if let Message::Text(text) = frame {
                let e: serde_json::Value = serde_json::from_str(&text).unwrap();
                let field = |k: &str| e[k].as_str().unwrap().to_string();
                return (field("event"), field("id"), field("data"));
            }
        }
    }

    // from the page's position, as the page opens it
    let (mut ws, _) = open(ws_url("from=2.0"), format!("http://{host}")).await.expect("the handshake");
    append(&ui, &id, fence, 0, LogStream::Stdout, "zero\n").await;
    let (kind, first, html) = event(&mut ws, "chunk 0").await;
    assert_eq!((kind.as_str(), first.as_str()), ("log", "2.1"));
    assert!(html.contains("zero"), "{html}");
    append(&ui, &id, fence, 1, LogStream::Stdout, "one\n").await;
    let (_, second, _) = event(&mut ws, "chunk 1").await;
    assert_eq!(second, "2.2");
    // dropped: a reconnect from the last id gets only what came since
    ws.close(None).await.unwrap();
    append(&ui, &id, fence, 2, LogStream::Stdout, "two\n").await;
    let (mut ws, _) =
        open(ws_url(&format!("from=2.0&last_event_id={second}")), format!("http://{host}")).await.unwrap();
    let (kind, third, html) = event(&mut ws, "chunk 2").await;
    assert_eq!((kind.as_str(), third.as_str()), ("log", "2.3"), "{html}");
    assert!(html.contains("two") && !html.contains("one"), "nothing repeated: {html}");
    ui.client.report(&id, fence, liftoff_core::ItemEvent::Start).await.unwrap();
    ui.client.report(&id, fence, liftoff_core::ItemEvent::Finish).await.unwrap();
    assert_eq!(event(&mut ws, "the start").await.0, "transition");
    assert_eq!(event(&mut ws, "the finish").await.0, "transition");
    assert_eq!(event(&mut ws, "the end").await, ("end".into(), "4.3".into(), "finished".into()));
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.unwrap();
    assert!(matches!(closed, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000), "{closed:?}");

    // another origin, no session, a bad resume id: refused at the handshake
    let refused = open(ws_url("from=0.0"), "http://evil.example".into()).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let mut bare = ws_url("from=0.0").into_client_request().unwrap();
    bare.headers_mut().insert("origin", format!("http://{host}").parse().unwrap());
    let refused = tokio_tungstenite::connect_async(bare).await.unwrap_err();
    assert!(refused.to_string().contains("303") || refused.to_string().contains("401"), "no session: {refused}");
    let refused = open(ws_url("last_event_id=x.y"), format!("http://{host}")).await.unwrap_err();
    assert!(refused.to_string().contains("400"), "{refused}");
}
