//! The web UI over real HTTP, without a browser (the browser tests are in
//! liftoff-agent's `ui_browser.rs`): sessions and their cookie, CSRF, roles,
//! static assets, the queue page's pages and bulk stop, re-launch and the
//! launch form's errors.

use liftoff_client::Client;
use liftoff_core::api::{CreateQueue, LaunchRequest};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType, TemplateVariable, VarKind};
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
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
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
    assert!(page.text().await.unwrap().contains("hx-get=\"/runs/"), "an active run's log is polled");
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
