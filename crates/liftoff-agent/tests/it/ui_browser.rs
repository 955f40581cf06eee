//! The web UI in a real browser: Debian's headless chromium driven through
//! chromedriver's WebDriver (fantoccini, plain HTTP on loopback, so no TLS
//! stack), against a real server and a real agent running local processes.
//! Screenshots of every main page go to `target/ui-screenshots/`.
//!
//! Needs `LIFTOFF_TEST_CHROMEDRIVER` (and `LIFTOFF_TEST_CHROMIUM`), which
//! `.ci/browser.sh` exports; under `CI` a missing driver fails the tests.

use crate::support;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use liftoff_client::Client;
use liftoff_core::api::{AppendLog, CreateQueue, LaunchRequest, LogStream, RegisterAgent};
use liftoff_core::{ItemEvent, ItemState, ResourceType, Stage};
use liftoff_server::{ServerConfig, start};
use liftoff_testkit::{ProcessGroup, is_alive, processes_with_env};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Rig, required_env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chromedriver of our own on a free loopback port and the headless
/// chromium it starts, tied to the test: dropping it, pass or fail, kills
/// the process group chromedriver leads and every process carrying its
/// marker (`ProcessGroup`). Chromium inherits chromedriver's environment,
/// marker included, and so do its crash handlers, which leave the group;
/// its zygote's children stay in the group but overwrite the memory that
/// `/proc/<pid>/environ` shows. Every chromium process names `profile` on
/// its command line (the crash handlers through their database under its
/// `XDG_CONFIG_HOME`), which the checks look for too.
struct Chrome {
    // dropped first: the browser goes before its profile
    group: ProcessGroup,
    profile: tempfile::TempDir,
}

impl Chrome {
    /// What finds this browser's processes once it is gone.
    fn trace(&self) -> Trace {
        Trace {
            marker: self.group.marker().to_string(),
            group: self.group.id() as i32,
            profile: self.profile.path().to_string_lossy().into_owned(),
        }
    }
}

/// How to find a browser's processes, kept past its guard.
struct Trace {
    marker: String,
    group: i32,
    profile: String,
}

impl Trace {
    /// Live processes carrying the marker in their environment, in the
    /// group, or naming the profile on their command line.
    fn live(&self) -> Vec<i32> {
        let mut pids = processes_with_env(&self.marker);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let in_group =
                nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == self.group);
            if (in_group || String::from_utf8_lossy(&cmdline).contains(&self.profile))
                && is_alive(pid)
                && !pids.contains(&pid)
            {
                pids.push(pid);
            }
        }
        pids
    }
}

/// The short names (`comm`) of `pids`.
fn names(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_string())
        .collect()
}

/// `pid name` of each of `pids`, for messages.
fn described(pids: &[i32]) -> Vec<String> {
    pids.iter().zip(names(pids)).map(|(p, n)| format!("{p} {n}")).collect()
}

/// A headless chromium; `dark` asks it for `prefers-color-scheme: dark`.
async fn browser(dark: bool) -> Option<(Chrome, Browser)> {
    browser_with(dark, &[]).await
}

/// [`browser`], with more chromium flags.
async fn browser_with(dark: bool, flags: &[&str]) -> Option<(Chrome, Browser)> {
    let driver = required_env("LIFTOFF_TEST_CHROMEDRIVER")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let profile = tempfile::tempdir().unwrap();
    let group = ProcessGroup::spawn(
        std::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
    let user_data = format!("--user-data-dir={}", profile.path().join("data").display());
    let guard = Chrome { group, profile };
    let mut chrome = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--force-prefers-reduced-motion", user_data],
    });
    if dark {
        chrome["args"].as_array_mut().unwrap().push("--blink-settings=preferredColorScheme=0".into());
    }
    for flag in flags {
        chrome["args"].as_array_mut().unwrap().push((*flag).into());
    }
    if let Ok(bin) = std::env::var("LIFTOFF_TEST_CHROMIUM") {
        chrome["binary"] = bin.into();
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    let url = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .clone();
        match builder.connect(&url).await {
            Ok(b) => return Some((guard, b)),
            Err(e) if Instant::now() < until => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver at {url} did not start a session: {e}"),
        }
    }
}

/// A server with no queue yet (the rig's usual `local` queue would hide the empty state).
async fn bare_rig() -> Rig {
    bare_rig_with_ttl(Duration::from_secs(3)).await
}

/// [`bare_rig`] with leases of `ttl`.
async fn bare_rig_with_ttl(ttl: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().join("server"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.lease_ttl = ttl;
    let server = start(cfg).await.unwrap();
    let client = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    let work = dir.path().join("work");
    Rig { server, client, dir, work }
}

fn shots_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Browser, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn submit_key(b: &Browser, base: &str, key: &str) {
    b.goto(&format!("{base}/signin")).await.unwrap();
    b.find(Locator::Css("#api_key")).await.unwrap().send_keys(key).await.unwrap();
    b.find(Locator::Css("form[action='/signin'] button[type=submit]")).await.unwrap().click().await.unwrap();
}

async fn sign_in(b: &Browser, base: &str, key: &str) {
    submit_key(b, base, key).await;
    wait_until(b, "the signed-in page", |b| async move { Ok(b.current_url().await?.path() != "/signin") }).await;
}

/// Polls `check` (a page look-up) until it holds; the page itself is never reloaded here.
async fn wait_until<F, Fut>(b: &Browser, what: &str, check: F)
where
    F: Fn(Browser) -> Fut,
    Fut: std::future::Future<Output = Result<bool, fantoccini::error::CmdError>>,
{
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        if check(b.clone()).await.unwrap_or(false) {
            return;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}; page: {}", b.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// The text of `css` once the page shows it: a click returns before the
/// page it submits is loaded.
async fn text_when(b: &Browser, css: &str) -> String {
    let css = css.to_string();
    let what = format!("{css} to appear");
    let probe = css.clone();
    wait_until(b, &what, move |b| {
        let css = probe.clone();
        async move { Ok(!b.find_all(Locator::Css(&css)).await?.is_empty()) }
    })
    .await;
    text_of(b, &css).await
}

async fn no_dialog(b: &Browser, page: &str) {
    assert!(b.get_alert_text().await.is_err(), "{page}: a dialog opened, so a script ran");
}

async fn queue(r: &Rig, name: &str, config: serde_json::Value, vars: serde_json::Value) {
    r.client
        .create_queue(&CreateQueue {
            name: name.into(),
            resource: ResourceType::LocalProcess,
            config,
            template_variables: serde_json::from_value(vars).unwrap(),
            prioritization: false,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_launch_from_the_form_watch_the_log_live_stop_and_see_the_agent() {
    let Some((_chrome, b)) = browser(false).await else { return };
    let r = bare_rig().await;
    let base = r.server.base_url();
    let key = r.server.admin_key.clone().unwrap();

    // Without a session every page leads to the sign-in page, and back after it.
    b.goto(&format!("{base}/queues/train?state=running")).await.unwrap();
    let url = b.current_url().await.unwrap();
    assert_eq!(url.path(), "/signin", "a page without a session redirects to sign-in");
    assert_eq!(url.query(), Some("next=%2Fqueues%2Ftrain%3Fstate%3Drunning"));
    shot(&b, "signin").await;

    // A wrong key is refused on the page; an agent key cannot sign in.
    b.find(Locator::Css("#api_key")).await.unwrap().send_keys("lft_wrong").await.unwrap();
    b.find(Locator::Css("form[action='/signin'] button")).await.unwrap().click().await.unwrap();
    assert_eq!(text_when(&b, "#api_key-error").await, "unknown API key");
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let agent_key = r.client.create_key("agent").await.unwrap().secret;
    submit_key(&b, &base, &agent_key).await;
    // the click returns before the answer's page replaced the form
    wait_until(&b, "the agent key's refusal", |b| async move {
        let errors = b.find_all(Locator::Css("#api_key-error")).await?;
        let Some(error) = errors.first() else { return Ok(false) };
        Ok(error.text().await?.contains("agent key cannot sign in"))
    })
    .await;
    assert_eq!(b.current_url().await.unwrap().path(), "/signin", "the refusal stays on the sign-in page");

    // The first page of a new installation: how to get a first run.
    sign_in(&b, &base, &key).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/");
    let empty = text_of(&b, ".empty").await;
    assert!(empty.contains("liftoff queue create") && empty.contains("liftoff launch"), "{empty}");
    shot(&b, "empty-state").await;
    // The keyboard's first stop is the link that skips to the content.
    b.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Tab).await.unwrap();
    assert_eq!(b.active_element().await.unwrap().text().await.unwrap(), "Skip to content");

    queue(
        &r,
        "train",
        serde_json::json!({"env": {"EPOCHS": "e{{epochs}}"}}),
        serde_json::json!([{"name": "epochs", "type": "integer", "min": 1, "max": 10, "default": 2,
                            "description": "passes over the data"}]),
    )
    .await;
    // Prints a coloured line to stdout and one to stderr every 0.2 s for two
    // minutes: the test stops it long before it could end by itself.
    let script = "i=0\nwhile [ $i -lt 600 ]; do i=$((i+1)); printf '\\033[32mtick %s\\033[0m\\n' $i; \
                  echo \"err $i\" >&2; sleep 0.2; done\n";
    r.job("ticker", script).await;
    // another job with two versions, for the launch form's version list
    r.job("other", "echo one\n").await;
    r.job("other", "echo two\n").await;
    let opts = liftoff_agent::AgentOptions { queues: vec!["train".into()], ..r.options(2, Duration::from_secs(5)) };
    let (stop_agent, agent) = r.agent_with(opts);

    // The agent appears on the Agents page (reloading the page is fine here).
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&format!("{base}/agents")).await.unwrap();
        let rows = b.find_all(Locator::Css("tbody tr")).await.unwrap();
        if !rows.is_empty() {
            let row = rows[0].text().await.unwrap();
            assert!(row.contains("test") && row.contains("train"), "{row}");
            break;
        }
        assert!(Instant::now() < until, "the agent never showed up on the Agents page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shot(&b, "agents").await;
    b.goto(&base).await.unwrap();
    let row = text_of(&b, "tbody tr").await;
    assert!(row.contains("train") && row.contains("local-process") && row.contains("test"), "{row}");
    shot(&b, "queues").await;

    // The launch form: a value out of bounds comes back beside its field.
    b.goto(&format!("{base}/queues/train/launch")).await.unwrap();
    let epochs = b.find(Locator::Css("#var-epochs")).await.unwrap();
    assert_eq!(epochs.attr("type").await.unwrap().as_deref(), Some("number"));
    assert_eq!(epochs.attr("max").await.unwrap().as_deref(), Some("10"));
    b.find(Locator::Css("#job")).await.unwrap().send_keys("ticker").await.unwrap();
    epochs.clear().await.unwrap();
    epochs.send_keys("50").await.unwrap();
    b.find(Locator::Css("form.launch button[type=submit]")).await.unwrap().click().await.unwrap();
    // the click returns before the answer's page replaced the form
    wait_until(&b, "the launch form's error", |b| async move {
        Ok(!b.find_all(Locator::Css(".field #var-epochs-error")).await?.is_empty())
    })
    .await;
    let error = text_of(&b, ".field #var-epochs-error").await;
    assert!(error.contains("10"), "the server's bound error is shown beside the field: {error}");
    let invalid = b.find(Locator::Css("#var-epochs")).await.unwrap().attr("aria-invalid").await.unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    assert_eq!(r.client.list_items(Some("train"), 10).await.unwrap().len(), 0, "nothing was launched");
    // Every field, then the button, by the keyboard alone.
    b.find(Locator::Css("#job")).await.unwrap().click().await.unwrap();
    for want in ["version", "entrypoint", "args", "run_config", "priority", "var-epochs"] {
        b.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Tab).await.unwrap();
        assert_eq!(b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some(want));
    }
    b.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Tab).await.unwrap();
    assert_eq!(b.active_element().await.unwrap().text().await.unwrap(), "Launch");
    shot(&b, "launch-form-error").await;

    // The version list shows the typed job's versions only (the page's script).
    let versions = |b: Browser| async move {
        let mut shown = Vec::new();
        for o in b.find_all(Locator::Css("#version option")).await.unwrap() {
            if o.attr("hidden").await.unwrap().is_none() {
                shown.push(o.attr("value").await.unwrap().unwrap_or_default());
            }
        }
        shown
    };
    assert_eq!(versions(b.clone()).await, ["latest", "v1"], "ticker's versions, not the other job's");
    b.find(Locator::Css("#job")).await.unwrap().clear().await.unwrap();
    b.find(Locator::Css("#job")).await.unwrap().send_keys("default/other").await.unwrap();
    assert_eq!(versions(b.clone()).await, ["latest", "v2", "v1"], "the other job's versions, newest first");
    b.find(Locator::Css("#job")).await.unwrap().clear().await.unwrap();
    b.find(Locator::Css("#job")).await.unwrap().send_keys("ticker").await.unwrap();
    b.find(Locator::Css("#version")).await.unwrap().select_by_value("v1").await.unwrap();
    // the command, its arguments and a run config in YAML, then a good value
    b.find(Locator::Css("#entrypoint")).await.unwrap().send_keys("sh run.sh").await.unwrap();
    b.find(Locator::Css("#args")).await.unwrap().send_keys("--from-form 'two words'").await.unwrap();
    b.find(Locator::Css("#run_config")).await.unwrap().send_keys("lr: 0.5\nname: from the form\n").await.unwrap();
    let epochs = b.find(Locator::Css("#var-epochs")).await.unwrap();
    epochs.clear().await.unwrap();
    epochs.send_keys("3").await.unwrap();
    b.find(Locator::Css("form.launch button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the run page", |b| async move { Ok(b.current_url().await?.path().starts_with("/runs/")) }).await;
    let run_id = b.current_url().await.unwrap().path().trim_start_matches("/runs/").to_string();
    let item = r.client.get_item(&run_id).await.unwrap();
    assert_eq!(item.spec.resource_config, serde_json::json!({"env": {"EPOCHS": "e3"}}));
    assert_eq!(item.spec.job, "default/default/ticker:v1");
    assert_eq!(
        (item.spec.entrypoint.as_slice(), item.spec.args.as_slice()),
        (&["sh".to_string(), "run.sh".into()][..], &["--from-form".to_string(), "two words".into()][..])
    );
    assert_eq!(item.spec.run_config, serde_json::json!({"lr": 0.5, "name": "from the form"}));

    // Log lines appear while it runs, without a reload: a mark set on the
    // page now is still there once they have.
    b.execute("window.liftoffMark = 'same page'; return null;", vec![]).await.unwrap();
    wait_until(&b, "stdout and stderr lines in the log", |b| async move {
        let out = b.find_all(Locator::Css("#log .ln.out")).await?.len();
        let err = b.find_all(Locator::Css("#log .ln.err")).await?.len();
        Ok(out >= 3 && err >= 3)
    })
    .await;
    let seen = b.find_all(Locator::Css("#log .ln")).await.unwrap().len();
    wait_until(&b, "more log lines", |b| async move { Ok(b.find_all(Locator::Css("#log .ln")).await?.len() > seen) })
        .await;
    let mark = b.execute("return window.liftoffMark || null;", vec![]).await.unwrap();
    assert_eq!(mark, serde_json::json!("same page"), "the log grew without reloading the page");
    // It grew through the page's live feed, open now (a WebSocket: see
    // `twelve_live_pages_...`), and no request polled: the browser fetched
    // nothing but the page's assets since.
    let source = b.execute(LIVE_SOURCE, vec![]).await.unwrap();
    assert_eq!(source[0], serde_json::json!(EVENT_SOURCE_OPEN), "{source}");
    assert_eq!(source[2], "websocket", "{source}");
    assert!(source[1].as_str().unwrap().contains(&format!("/runs/{run_id}/live?from=")), "{source}");
    let fetched = b.execute(FETCHED, vec![]).await.unwrap();
    assert!(fetched.as_array().unwrap().iter().all(|u| u.as_str().unwrap().contains("/assets/")), "{fetched}");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\nliftoff_event_streams 1\n"), "the server serves the page's stream");
    assert_eq!(text_of(&b, "#run-state").await, "running");
    assert!(text_of(&b, "#timeline").await.contains("claimed → running"), "the timeline follows the run too");
    let holder = text_of(&b, "#run-agent").await;
    assert!(!holder.contains("none yet") && !holder.is_empty(), "the Agent fact follows the claim: {holder:?}");
    assert!(b.find_all(Locator::Css("#priority-form")).await.unwrap().is_empty(), "no priority change once claimed");
    let green = b.find(Locator::Css("#log .ln.out span.fg2")).await.unwrap().text().await.unwrap();
    assert!(green.starts_with("tick "), "ANSI green became a class, its escape codes gone: {green:?}");
    assert!(!b.source().await.unwrap().contains('\u{1b}'));
    shot(&b, "run-live").await;
    b.execute("document.getElementById('log').scrollIntoView(); return null;", vec![]).await.unwrap();
    shot(&b, "run-live-log").await;
    b.set_window_size(390, 844).await.unwrap();
    shot(&b, "run-live-phone").await;
    b.execute("document.querySelector('form[role=search]').scrollIntoView(); return null;", vec![]).await.unwrap();
    shot(&b, "run-live-log-phone").await;
    b.set_window_size(1280, 900).await.unwrap();

    // Stop from the page; the state turns `stopped` on its own.
    b.find(Locator::Css("form[action$='/stop'] button")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the run to be stopped", |b| async move {
        Ok(b.find(Locator::Css("#run-state")).await?.text().await? == "stopped")
    })
    .await;
    assert_eq!(r.client.get_item(&run_id).await.unwrap().state, ItemState::Stopped);
    wait_until(&b, "the final page", final_page).await;
    assert!(text_of(&b, "#timeline").await.contains("stopping → stopped"));
    shot(&b, "run-stopped").await;

    // The log search: matching lines only, the match marked, counted.
    b.find(Locator::Css("input[name=q]")).await.unwrap().send_keys("TICK 1").await.unwrap();
    b.find(Locator::Css("form[role=search] button")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the search", |b| async move { Ok(b.current_url().await?.query() == Some("q=TICK+1")) }).await;
    let count = text_when(&b, "#search-count").await;
    assert!(count.contains(" “TICK 1” in "), "{count}");
    let hits = b.find_all(Locator::Css("#log .ln.out .hit")).await.unwrap();
    assert!(!hits.is_empty() && b.find_all(Locator::Css("#log .ln.err")).await.unwrap().is_empty());
    assert_eq!(hits[0].text().await.unwrap(), "tick 1");
    shot(&b, "run-search").await;

    // The queue page lists it, filtered by state in the URL.
    b.goto(&format!("{base}/queues/train?state=stopped")).await.unwrap();
    let rows = b.find_all(Locator::Css("#bulk tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.unwrap().contains(&run_id));
    shot(&b, "queue").await;
    // A run that ends while its page is open: the stream's end brings the
    // final state in place, without a reload.
    let ticker = LaunchRequest { job: "ticker".into(), ..Default::default() };
    let other = r.client.launch("train", &ticker).await.unwrap();
    b.goto(&format!("{base}/runs/{}", other.run_id)).await.unwrap();
    wait_until(&b, "the other run to log", |b| async move {
        Ok(!b.find_all(Locator::Css("#log .ln.out")).await?.is_empty())
    })
    .await;
    b.execute("window.liftoffMark = 'same page'; return null;", vec![]).await.unwrap();
    r.client.stop_item(&other.item_id).await.unwrap();
    wait_until(&b, "the other run's final page", final_page).await;
    assert_eq!(text_of(&b, "#run-state").await, "stopped");
    let mark = b.execute("return window.liftoffMark || null;", vec![]).await.unwrap();
    assert_eq!(mark, serde_json::json!("same page"), "the final state came without reloading the page");

    // A row's state changes on the open queue page, through its stream.
    let second = r.client.launch("train", &ticker).await.unwrap();
    b.goto(&format!("{base}/queues/train")).await.unwrap();
    b.execute("window.liftoffMark = 'same page'; return null;", vec![]).await.unwrap();
    let cell = format!("#state-{}", second.item_id);
    let running = cell.clone();
    wait_until(&b, "the second run to run", |b| {
        let cell = running.clone();
        async move { Ok(b.find(Locator::Css(&cell)).await?.text().await? == "running") }
    })
    .await;
    let holder = text_of(&b, &format!("#agent-{}", second.item_id)).await;
    assert!(!holder.is_empty(), "the row's agent column follows the claim");
    r.client.stop_item(&second.item_id).await.unwrap();
    wait_until(&b, "the second run's row to say stopped", |b| {
        let cell = cell.clone();
        async move { Ok(b.find(Locator::Css(&cell)).await?.text().await? == "stopped") }
    })
    .await;
    // A new launch joins the top of the table, and its row follows it too.
    let third = r.client.launch("train", &ticker).await.unwrap();
    let row = format!("#rows tr:first-child#row-{}", third.item_id);
    wait_until(&b, "the new launch's row", |b| {
        let row = row.clone();
        async move { Ok(!b.find_all(Locator::Css(&row)).await?.is_empty()) }
    })
    .await;
    r.client.stop_item(&third.item_id).await.unwrap();
    let third_state = format!("#state-{}", third.item_id);
    wait_until(&b, "the new row to say stopped", |b| {
        let cell = third_state.clone();
        async move { Ok(b.find(Locator::Css(&cell)).await?.text().await? == "stopped") }
    })
    .await;
    let mark = b.execute("return window.liftoffMark || null;", vec![]).await.unwrap();
    assert_eq!(mark, serde_json::json!("same page"), "the rows changed without reloading the page");
    let fetched = b.execute(FETCHED, vec![]).await.unwrap();
    assert!(fetched.as_array().unwrap().iter().all(|u| u.as_str().unwrap().contains("/assets/")), "{fetched}");
    b.goto(&format!("{base}/queues/train?state=pending")).await.unwrap();
    assert!(b.find_all(Locator::Css("#bulk tbody tr")).await.unwrap().is_empty());
    assert!(text_of(&b, "main").await.contains("No item matches these filters."));
    b.goto(&format!("{base}/jobs")).await.unwrap();
    assert!(text_of(&b, "tbody").await.contains("default/ticker"));
    shot(&b, "jobs").await;
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&base).await.unwrap();
    shot(&b, "queues-phone").await;
    b.goto(&format!("{base}/queues/train")).await.unwrap();
    shot(&b, "queue-phone").await;

    stop_agent.send(()).unwrap();
    agent.await.unwrap().unwrap();
    b.close().await.unwrap();
}

/// The run page once its run ended: no stream, no Stop button.
async fn final_page(b: Browser) -> Result<bool, fantoccini::error::CmdError> {
    let state = b.find(Locator::Css("#run-state")).await?.text().await?;
    let live = b.find_all(Locator::Css("[sse-connect], form[action$='/stop']")).await?;
    Ok(live.is_empty() && ["stopped", "finished", "failed"].contains(&state.as_str()))
}

/// `[readyState, url]` of the event source of the page's live part (htmx
/// keeps it in the element's internal data).
const LIVE_SOURCE: &str = "const el = document.querySelector('[sse-connect]'); \
    const s = el && el['htmx-internal-data'] && el['htmx-internal-data'].sseEventSource; \
    return s ? [s.readyState, s.url, s.ws instanceof WebSocket ? 'websocket' : 'other'] : [null, null, null];";
const EVENT_SOURCE_OPEN: u16 = 1;
/// Every URL the page fetched since it loaded (XHRs and fetches included).
const FETCHED: &str = "return performance.getEntriesByType('resource').map(e => e.name);";

/// Counts connections to a loopback port an injected tag would load from;
/// each is answered 404, so an injected image errors at once.
async fn attacker() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ =
                    conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (url, hits)
}

/// Markup that runs a script and loads from `evil` if it is not escaped.
fn payload(evil: &str, tag: &str) -> String {
    format!("<script>alert('{tag}')</script><img src={evil}/{tag} onerror=alert('{tag}')>")
}

/// A shorter one, for values of at most 64 characters.
fn short(evil: &str, tag: &str) -> String {
    format!("<img src={evil}/{tag} onerror=alert(1)>")
}

/// Scripts, images, frames and objects the page does not have itself,
/// anywhere in the document (head, header and navigation included): a
/// script not served from `/assets/`, any image, frame or object, any
/// element with an event-handler attribute or a `src` at the attacker's
/// address (`arguments[0]`). Their markup, for the message.
const INJECTED: &str = "const evil = arguments[0]; const found = []; \
    for (const el of document.querySelectorAll('*')) { \
      const tag = el.localName; const src = el.getAttribute('src') || ''; \
      const handler = [...el.attributes].some(a => a.name.startsWith('on')); \
      if ((tag === 'script' && !src.startsWith('/assets/')) || ['img', 'iframe', 'object', 'embed'].includes(tag) \
          || handler || src.includes(evil)) found.push(el.outerHTML.slice(0, 300)); \
    } \
    return found;";

async fn no_injected_element(b: &Browser, evil: &str, page: &str) {
    let found = b.execute(INJECTED, vec![evil.into()]).await.unwrap();
    assert_eq!(found, serde_json::json!([]), "{page}: elements were injected into the document");
}

struct Seeded {
    /// A run whose launch spec, log, warning and failure carry markup,
    /// claimed by an agent whose host name and version carry it too.
    run_id: String,
    /// A run launched by a key whose name carries markup.
    named_run: String,
}

/// Values carrying markup in every place a user or a job can put one, in
/// the queue `xss` of the rig's entity.
async fn seed_markup(r: &Rig, evil: &str) -> Seeded {
    let base = r.server.base_url();
    queue(r, "xss", serde_json::json!({}), serde_json::json!([])).await;
    r.job("plain", "echo hi\n").await;
    let req = LaunchRequest {
        job: "plain".into(),
        run_config: serde_json::json!({"note": payload(evil, "spec")}),
        ..Default::default()
    };
    let run_id = r.client.launch("xss", &req).await.unwrap().run_id;
    // A run launched with a key whose name carries markup (names are at
    // most 64 characters, hence a shorter payload).
    let named = r.client.create_named_key("member", Some(&short(evil, "k"))).await.unwrap();
    let by_named = Client::new(&base, &named.secret, "default").unwrap();
    let plain = LaunchRequest { job: "plain".into(), ..Default::default() };
    let named_run = by_named.launch("xss", &plain).await.unwrap().run_id;
    // An agent (the admin key acting as one) whose host name, log, warning
    // and failure reason all carry markup.
    let agent = r
        .client
        .register_agent(&RegisterAgent {
            queues: vec!["xss".into()],
            hostname: payload(evil, "host"),
            max_jobs: 1,
            version: short(evil, "v"),
        })
        .await
        .unwrap();
    let claim = r.client.claim(&agent.id, &["xss".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let id = claim.item.id.clone();
    r.client.report(&id, claim.fence, ItemEvent::Start).await.unwrap();
    for (seq, stream, data) in [
        (0, LogStream::Stdout, format!("{}\n", payload(evil, "log"))),
        (1, LogStream::Stderr, format!("\u{1b}[31m{}\u{1b}[0m\n", payload(evil, "stderr"))),
    ] {
        let chunk = AppendLog { fence: claim.fence, seq: claim.log_seq_start + seq, stream, data };
        r.client.append_log(&id, &chunk).await.unwrap();
    }
    r.client.add_warning(&id, Some(claim.fence), Stage::Run, &payload(evil, "warning")).await.unwrap();
    let fail = ItemEvent::Fail { reason: payload(evil, "reason"), exit_code: Some(3), stage: Some(Stage::Run) };
    r.client.report(&id, claim.fence, fail).await.unwrap();
    Seeded { run_id, named_run }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_job_values_render_as_text_and_entities_stay_apart() {
    // in the dark colour scheme, to see that one too
    let Some((_chrome, b)) = browser(true).await else { return };
    let r = bare_rig().await;
    let base = r.server.base_url();
    let (evil, hits) = attacker().await;
    let payload = |tag: &str| payload(&evil, tag);
    let short = |tag: &str| short(&evil, tag);
    let Seeded { run_id, named_run } = seed_markup(&r, &evil).await;

    // (The page's CSP would keep an injected script from running and an
    // injected image from loading; the test below without it sees whether
    // the escaping alone holds. Here the document must hold no injected
    // element either way.)
    sign_in(&b, &base, r.server.admin_key.as_deref().unwrap()).await;
    b.goto(&format!("{base}/runs/{run_id}")).await.unwrap();
    no_dialog(&b, "run page").await;
    let page = text_of(&b, "main").await;
    for tag in ["log", "stderr", "warning", "reason"] {
        assert!(page.contains(&payload(tag)), "the {tag} shows as text: {page}");
    }
    let spec = b.find(Locator::Css("pre.spec")).await.unwrap().prop("textContent").await.unwrap().unwrap();
    assert!(spec.contains(&payload("spec")), "the launch spec shows the markup as text: {spec}");
    assert_eq!(text_of(&b, ".failure h2").await, "Failed at stage run");
    no_injected_element(&b, &evil, "run page").await;
    let bg = b.execute("return getComputedStyle(document.body).backgroundColor;", vec![]).await.unwrap();
    assert_eq!(bg, serde_json::json!("rgb(18, 19, 23)"), "the dark scheme follows the system setting");
    shot(&b, "run-failed-with-markup-dark").await;
    for page in ["/", "/agents", "/queues/xss", "/jobs"] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        no_dialog(&b, page).await;
        no_injected_element(&b, &evil, page).await;
    }
    assert!(text_of(&b, "body").await.contains("Jobs"));
    b.goto(&format!("{base}/agents")).await.unwrap();
    assert!(text_of(&b, "tbody").await.contains(&payload("host")), "the host name shows as text");
    assert!(text_of(&b, "tbody").await.contains(&short("v")), "the agent's version shows as text");
    // the launcher's name, on the run page (and on the queue page above)
    b.goto(&format!("{base}/runs/{named_run}")).await.unwrap();
    no_dialog(&b, "a run launched by a key named with markup").await;
    assert!(text_of(&b, "main").await.contains(&short("k")), "the launcher shows as text");
    no_injected_element(&b, &evil, "a run launched by a key named with markup").await;
    // a saved filter named with markup, saved through the page's own form
    b.goto(&format!("{base}/queues/xss?state=pending")).await.unwrap();
    let name = b.find(Locator::Css("form[action$='/filters'] input[name=name]")).await.unwrap();
    name.send_keys(&short("f")).await.unwrap();
    b.find(Locator::Css("form[action$='/filters'] button")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the saved filter's link", |b| async move {
        Ok(b.find_all(Locator::Css(".saved-filters a")).await?.len() == 1)
    })
    .await;
    no_dialog(&b, "a saved filter named with markup").await;
    assert_eq!(text_of(&b, ".saved-filters a").await, short("f"), "the name shows as text");
    no_injected_element(&b, &evil, "a saved filter named with markup").await;
    b.goto(&format!("{base}/queues/xss")).await.unwrap();
    b.find(Locator::Css(".saved-filters a")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the saved view", |b| async move { Ok(b.current_url().await?.query() == Some("state=pending")) })
        .await;

    // Another entity's run: not found, as if it did not exist.
    let store =
        liftoff_store::SqlStore::connect(&format!("sqlite://{}", r.dir.path().join("server/liftoff.db").display()), 3)
            .await
            .unwrap();
    liftoff_store::Store::ensure_entity(&store, "other", liftoff_store::now_ms()).await.unwrap();
    let other_key = liftoff_server::mint_admin_key(&store, "other").await.unwrap();
    let other = Client::new(&base, &other_key, "other").unwrap();
    other
        .create_queue(&CreateQueue {
            name: "xss".into(),
            resource: ResourceType::LocalProcess,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("run.sh"), "echo secret\n").unwrap();
    let gz = liftoff_archive::pack_dir(src.path()).unwrap();
    let digest = liftoff_archive::sha256_digest(&gz);
    other.upload_blob(&digest, gz).await.unwrap();
    let source = liftoff_core::job::JobSourceSpec {
        code: Some(liftoff_core::job::CodeSource {
            digest,
            entrypoint: vec!["sh".into(), "run.sh".into()],
            build_context: None,
            dockerfile: None,
            base_image: None,
        }),
        ..Default::default()
    };
    let job = liftoff_core::api::CreateJob {
        project: "default".into(),
        name: "secret".into(),
        source,
        aliases: vec![],
        runtime: None,
    };
    other.create_job(&job).await.unwrap();
    let theirs = other.launch("xss", &LaunchRequest { job: "secret".into(), ..Default::default() }).await.unwrap();
    b.goto(&format!("{base}/runs/{}", theirs.run_id)).await.unwrap();
    assert_eq!(text_of(&b, "h1").await, "Not found");
    b.goto(&format!("{base}/queues/xss")).await.unwrap();
    let rows = text_of(&b, "#bulk tbody").await;
    assert!(rows.contains(&run_id) && !rows.contains(&theirs.run_id), "only this entity's items: {rows}");

    // The same over plain HTTP with the browser's session: status codes,
    // headers, and a mutation without the CSRF token.
    let cookie = b.get_named_cookie("lft_session").await.unwrap();
    assert!(cookie.http_only().unwrap_or(false), "the session cookie is HttpOnly");
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_session =
        |path: &str| http.get(format!("{base}{path}")).header("cookie", format!("lft_session={}", cookie.value()));
    let resp = with_session(&format!("/runs/{}", theirs.run_id)).send().await.unwrap();
    assert_eq!(resp.status(), 404, "another entity's run id");
    assert_eq!(with_session(&format!("/runs/{}/log.txt", theirs.run_id)).send().await.unwrap().status(), 404);
    let log = with_session(&format!("/runs/{run_id}/log.txt")).send().await.unwrap();
    assert_eq!(log.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(log.headers()["content-disposition"], format!("attachment; filename=\"run-{run_id}.log\""));
    let log = log.text().await.unwrap();
    assert!(log.contains(&payload("log")) && log.contains(&payload("stderr")), "the whole log, as written: {log}");
    let resp = with_session(&format!("/runs/{run_id}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let resp = http.get(format!("{base}/agents")).send().await.unwrap();
    assert_eq!(resp.status(), 303, "no session");
    assert_eq!(resp.headers()["location"], "/signin?next=%2Fagents");
    let pending = other.get_item(&theirs.run_id).await.unwrap();
    assert_eq!(pending.state, ItemState::Pending);
    let mine = r.client.launch("xss", &LaunchRequest { job: "plain".into(), ..Default::default() }).await.unwrap();
    let stop = |csrf: Option<&str>| {
        http.post(format!("{base}/runs/{}/stop", mine.run_id))
            .header("cookie", format!("lft_session={}", cookie.value()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(csrf.map(|t| format!("csrf={t}")).unwrap_or_default())
    };
    assert_eq!(stop(None).send().await.unwrap().status(), 403, "a mutation without the CSRF token");
    assert_eq!(stop(Some("forged")).send().await.unwrap().status(), 403);
    assert_eq!(r.client.get_item(&mine.run_id).await.unwrap().state, ItemState::Pending);
    b.goto(&format!("{base}/runs/{}", mine.run_id)).await.unwrap();
    b.find(Locator::Css("form[action$='/stop'] button")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the pending run to stop", |b| async move {
        Ok(b.find(Locator::Css("#run-state")).await?.text().await? == "stopped")
    })
    .await;

    assert_eq!(hits.load(Ordering::SeqCst), 0, "no page made a request to the attacker's address");
    b.close().await.unwrap();
}

/// A loopback proxy in front of `upstream` (`host:port`) that removes the
/// `content-security-policy` header from every response, to see what the
/// escaping holds alone; its URL. Each exchange gets a connection of its own
/// (`connection: close` both ways), so only the heads need reading.
async fn without_csp(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let _ = relay(conn, &upstream).await;
            });
        }
    });
    url
}

async fn relay(mut client: tokio::net::TcpStream, upstream: &str) -> std::io::Result<()> {
    let (head, rest) = read_head(&mut client).await?;
    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    server.write_all(&rewrite_head(&head, &["connection", "keep-alive"])).await?;
    server.write_all(&rest).await?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // a request body, if any, follows as it comes
    let body = tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
    let answer = async {
        let (head, rest) = read_head(&mut from_server).await?;
        let drop = ["connection", "keep-alive", "content-security-policy"];
        to_client.write_all(&rewrite_head(&head, &drop)).await?;
        to_client.write_all(&rest).await?;
        tokio::io::copy(&mut from_server, &mut to_client).await?;
        to_client.shutdown().await
    };
    let done = answer.await;
    body.abort();
    done
}

/// An HTTP head (up to its blank line) read from `conn`, and what followed it.
async fn read_head(conn: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            return Ok((head, rest));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// `head` without the header fields named in `drop` (lower case), and with
/// `connection: close`.
fn rewrite_head(head: &[u8], drop: &[&str]) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.trim_end_matches("\r\n").split("\r\n");
    let mut out = format!("{}\r\n", lines.next().unwrap_or_default());
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !drop.contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

/// The open page ran nothing, loaded nothing from the attacker and holds
/// no injected element.
async fn inert(b: &Browser, evil: &str, hits: &AtomicUsize, page: &str) {
    no_dialog(b, page).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "{page}: the page made a request to the attacker's address");
    no_injected_element(b, evil, page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_csp_the_escaping_alone_keeps_markup_inert() {
    let Some((_chrome, b)) = browser(false).await else { return };
    let r = bare_rig().await;
    let (evil, hits) = attacker().await;
    let Seeded { run_id, named_run } = seed_markup(&r, &evil).await;
    // An entity whose name carries markup: the header shows it on every page.
    let db = format!("sqlite://{}", r.dir.path().join("server/liftoff.db").display());
    let store = liftoff_store::SqlStore::connect(&db, 1).await.unwrap();
    let entity = short(&evil, "entity");
    liftoff_store::Store::ensure_entity(&store, &entity, liftoff_store::now_ms()).await.unwrap();
    let entity_key = liftoff_server::mint_admin_key(&store, &entity).await.unwrap();

    let upstream = r.server.base_url().trim_start_matches("http://").to_string();
    let base = without_csp(upstream).await;
    let resp = reqwest::get(format!("{base}/signin")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-content-type-options"), "the server's answer, through the proxy");
    assert!(!resp.headers().contains_key("content-security-policy"), "the proxy removes the CSP");

    sign_in(&b, &base, r.server.admin_key.as_deref().unwrap()).await;
    b.goto(&format!("{base}/runs/{run_id}")).await.unwrap();
    inert(&b, &evil, &hits, "run page").await;
    let page = text_of(&b, "main").await;
    for tag in ["log", "stderr", "warning", "reason"] {
        assert!(page.contains(&payload(&evil, tag)), "the {tag} shows as text: {page}");
    }
    b.goto(&format!("{base}/runs/{named_run}")).await.unwrap();
    inert(&b, &evil, &hits, "a run launched by a key named with markup").await;
    assert!(text_of(&b, "main").await.contains(&short(&evil, "k")), "the launcher shows as text");
    for page in ["/", "/queues/xss", "/jobs", "/agents"] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        inert(&b, &evil, &hits, page).await;
    }
    assert!(text_of(&b, "tbody").await.contains(&payload(&evil, "host")), "the host name shows as text");
    b.goto(&format!("{base}/queues/xss?state=pending")).await.unwrap();
    let name = b.find(Locator::Css("form[action$='/filters'] input[name=name]")).await.unwrap();
    name.send_keys(&short(&evil, "f")).await.unwrap();
    b.find(Locator::Css("form[action$='/filters'] button")).await.unwrap().click().await.unwrap();
    wait_until(&b, "the saved filter's link", |b| async move {
        Ok(b.find_all(Locator::Css(".saved-filters a")).await?.len() == 1)
    })
    .await;
    inert(&b, &evil, &hits, "a saved filter named with markup").await;
    assert_eq!(text_of(&b, ".saved-filters a").await, short(&evil, "f"), "the name shows as text");

    // The header of the entity named with markup.
    b.delete_all_cookies().await.unwrap();
    sign_in(&b, &base, &entity_key).await;
    for page in ["/", "/agents", "/jobs"] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        inert(&b, &evil, &hits, page).await;
        assert_eq!(text_of(&b, "header .entity").await, entity, "{page}: the entity shows as text in the header");
    }
    // The check sees the header's navigation: an element put there is found.
    let put = "document.querySelector('header nav').insertAdjacentHTML('beforeend', '<img alt=control>'); return null;";
    b.execute(put, vec![]).await.unwrap();
    let found = b.execute(INJECTED, vec![evil.as_str().into()]).await.unwrap();
    assert_eq!(found, serde_json::json!(["<img alt=\"control\">"]), "an element in the navigation is found");
    b.close().await.unwrap();
}

/// A browser test that fails while its browser runs leaves no process of
/// it behind: not chromedriver, not chromium, not its crash handlers (which
/// leave the process group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_browser_test_leaves_no_browser_process() {
    let Some((chrome, b)) = browser(false).await else { return };
    let r = bare_rig().await;
    let base = r.server.base_url();
    b.goto(&format!("{base}/signin")).await.unwrap();
    let trace = chrome.trace();
    let before = trace.live();
    let all = names(&before);
    for name in ["chromedriver", "chromium", "chrome_crashpad"] {
        assert!(all.iter().any(|n| n == name), "the browser runs a {name}: {all:?}");
    }
    // chromium inherits the marker from chromedriver, and the crash
    // handlers, which leave the group, carry it too
    let marked = names(&processes_with_env(&trace.marker));
    for name in ["chromium", "chrome_crashpad"] {
        assert!(marked.iter().any(|n| n == name), "a {name} carries the marker: {marked:?}");
    }
    // A handle kept outside, so that no session's end closes the browser:
    // only the guard's drop may end it.
    let _session = b.clone();
    let failed = tokio::spawn(async move {
        let _held = chrome;
        b.goto(&format!("{base}/agents")).await.unwrap();
        panic!("a browser test fails while its browser runs");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()), "the test failed");
    let left = processes_with_env(&trace.marker);
    assert!(left.is_empty(), "processes carrying the marker outlive the test: {:?}", described(&left));
    // The rest of the group got its SIGKILL with them; exiting takes a moment.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = trace.live();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "browser processes outlive the test: {:?}", described(&left));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alive: Vec<i32> = before.into_iter().filter(|p| is_alive(*p)).collect();
    assert!(alive.is_empty(), "processes of the browser are still alive: {:?}", described(&alive));
}

/// The event streams this server has open (its `liftoff_event_streams`).
async fn streams_open(base: &str) -> u64 {
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("liftoff_event_streams ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no liftoff_event_streams in:\n{metrics}"))
}

/// Waits until the server has exactly `n` streams open; panics naming
/// `what` after 20 s (a stream the browser dropped ends on the server at
/// its next write; keep-alives go every 15 s).
async fn wait_for_streams(base: &str, n: u64, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let open = streams_open(base).await;
        if open == n {
            return;
        }
        assert!(Instant::now() < until, "{what}: {open} event streams open on the server, not {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A page left behind closes its live stream: the browser keeps pages in
/// its back/forward cache, and a cached page holding its SSE connection
/// open would take one of the six connections a browser allows per host,
/// until every further request waited for one. Going back shows the page
/// following its run live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_page_left_behind_closes_its_stream_and_follows_again_when_shown() {
    let Some((_chrome, b)) = browser(false).await else { return };
    let r = bare_rig().await;
    let base = r.server.base_url();
    let key = r.server.admin_key.clone().unwrap();
    queue(&r, "waiting", serde_json::json!({}), serde_json::json!([])).await;
    r.job("sleeper", "sleep 600\n").await;
    // pending runs (no agent): each run page follows its run live
    let mut runs = vec![];
    for _ in 0..8 {
        let req = LaunchRequest { job: "sleeper".into(), ..Default::default() };
        runs.push(r.client.launch("waiting", &req).await.unwrap().run_id);
    }
    sign_in(&b, &base, &key).await;
    for (n, run) in runs.iter().enumerate() {
        b.goto(&format!("{base}/runs/{run}")).await.unwrap();
        assert_eq!(text_of(&b, "#run-state").await, "pending");
        wait_for_streams(&base, 1, &format!("on the run page {}, after {n} others", n + 1)).await;
    }
    // back to the previous run page: it follows its run again
    b.back().await.unwrap();
    wait_until(&b, "the previous run page", |b| {
        let path = format!("/runs/{}", runs[6]);
        async move { Ok(b.current_url().await?.path() == path) }
    })
    .await;
    wait_for_streams(&base, 1, "back on the previous run page").await;
    r.client.stop_item(&runs[6]).await.unwrap();
    wait_until(&b, "the page to show the run stopped", |b| async move {
        Ok(b.find(Locator::Css("#run-state")).await?.text().await? == "stopped")
    })
    .await;
    b.close().await.unwrap();
}

/// Twelve live run pages open in one browser, as a person keeps them in
/// tabs all day: every page keeps following its run, and any other page
/// still loads at once. A browser opens at most six HTTP/1.1 connections
/// per host, and each live page holds one stream: over server-sent events
/// the seventh tab and every page after it waited for one of the six.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_live_pages_keep_following_their_runs_and_another_page_loads_within_a_second() {
    let Some((_chrome, b)) = browser(false).await else { return };
    let r = bare_rig_with_ttl(TWELVE_TTL).await;
    let base = r.server.base_url();
    twelve_live_pages(&b, &r, &base).await;
}

/// The same over HTTPS, through a TLS-terminating proxy before the server
/// (as users deploy it; the server itself speaks plain HTTP), which offers
/// only HTTP/1.1, so the six-connection limit holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_twelve_live_pages_keep_following_and_another_page_loads_within_a_second() {
    let Some((_chrome, b)) = browser_with(false, &["--ignore-certificate-errors"]).await else { return };
    let r = bare_rig_with_ttl(TWELVE_TTL).await;
    let (front, _tls) = tls_front(r.server.base_url().trim_start_matches("http://")).await;
    twelve_live_pages(&b, &r, &front).await;
}

/// The leases of the twelve runs the test holds (it plays their agent and
/// renews nothing): longer than the test.
const TWELVE_TTL: Duration = Duration::from_secs(300);

/// Opens a live page for each of twelve running runs in its own tab of
/// `b`, at `base` (the server, or a front of it), then the agents page in
/// a thirteenth; a new log line of each run then reaches its page.
async fn twelve_live_pages(b: &Browser, r: &Rig, base: &str) {
    const PAGES: usize = 12;
    // a page that cannot load fails the test in seconds rather than minutes
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(None, Some(Duration::from_secs(15)), None);
    b.update_timeouts(timeouts).await.unwrap();
    let server = r.server.base_url();
    let key = r.server.admin_key.clone().unwrap();
    queue(r, "live", serde_json::json!({}), serde_json::json!([])).await;
    r.job("talker", "true\n").await;
    // this test plays the agent: each run running, with a first line in its log
    let agent = r
        .client
        .register_agent(&RegisterAgent {
            queues: vec!["live".into()],
            hostname: "player".into(),
            max_jobs: -1,
            version: "t".into(),
        })
        .await
        .unwrap()
        .id;
    let mut held = vec![];
    for _ in 0..PAGES {
        let req = LaunchRequest { job: "talker".into(), ..Default::default() };
        let run = r.client.launch("live", &req).await.unwrap().run_id;
        let claim = r.client.claim(&agent, &["live".into()], Duration::from_secs(5)).await.unwrap().unwrap();
        let (id, fence) = (claim.item.id.clone(), claim.fence);
        r.client.report(&id, fence, ItemEvent::Start).await.unwrap();
        let chunk = AppendLog { fence, seq: 0, stream: LogStream::Stdout, data: format!("first of {run}\n") };
        r.client.append_log(&id, &chunk).await.unwrap();
        held.push((run, id, fence));
    }
    sign_in(b, base, &key).await;
    let mut tabs = vec![b.window().await.unwrap()];
    for (n, (run, ..)) in held.iter().enumerate() {
        if n > 0 {
            let tab = b.new_window(true).await.unwrap().handle;
            b.switch_to_window(tab.clone()).await.unwrap();
            tabs.push(tab);
        }
        b.goto(&format!("{base}/runs/{run}"))
            .await
            .unwrap_or_else(|e| panic!("live page {} of {PAGES} did not load: {e}", n + 1));
        assert!(text_of(b, "#log").await.contains("first of"), "page {}", n + 1);
    }
    wait_for_streams(&server, PAGES as u64, "every page follows its run").await;

    // another page, in a thirteenth tab, while the twelve stay live
    let tab = b.new_window(true).await.unwrap().handle;
    b.switch_to_window(tab).await.unwrap();
    let started = Instant::now();
    b.goto(&format!("{base}/agents")).await.unwrap();
    let took = started.elapsed();
    assert!(text_of(b, "tbody").await.contains("player"), "the agents page shows the agent");
    eprintln!("the agents page loaded in {took:?} beside {PAGES} live pages at {base}");
    assert!(took < Duration::from_secs(1), "the agents page took {took:?} beside {PAGES} live pages");

    // a new line for every run reaches every open page
    for (run, id, fence) in &held {
        let chunk = AppendLog { fence: *fence, seq: 1, stream: LogStream::Stdout, data: format!("second of {run}\n") };
        r.client.append_log(id, &chunk).await.unwrap();
    }
    for (n, (tab, (run, ..))) in tabs.iter().zip(&held).enumerate() {
        b.switch_to_window(tab.clone()).await.unwrap();
        let want = format!("second of {run}");
        wait_until(b, &format!("the new line on live page {}", n + 1), |b| {
            let want = want.clone();
            async move { Ok(b.find(Locator::Css("#log")).await?.text().await?.contains(&want)) }
        })
        .await;
    }
    for (_, id, fence) in &held {
        r.client.report(id, *fence, ItemEvent::Finish).await.unwrap();
    }
}

/// An HTTPS front for the server at `upstream` (`host:port`): TLS with a
/// self-signed certificate for 127.0.0.1 (made by `openssl`), HTTP/1.1
/// only, each connection relayed as is. Its URL, and the task serving it.
async fn tls_front(upstream: &str) -> (String, tokio::task::JoinHandle<()>) {
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the front's certificate");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let upstream = upstream.to_string();
    let task = tokio::spawn(async move {
        let _dir = dir;
        while let Ok((conn, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else { return };
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (url, task)
}
