use crate::ClientError;
use crate::events::{EventStream, QueueEvents, RunEvents};
use bytes::Bytes;
use liftoff_core::api::*;
use liftoff_core::{ItemEvent, ItemTransition, Priority};
use liftoff_core::{Queue, api::ErrorBody};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A connection to one server as one entity, with one API key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For event streams: no overall timeout, but one on each read (the
    /// server sends a keep-alive every 15 s), so a dead peer is noticed.
    streams: reqwest::Client,
    base: String,
    key: String,
    entity: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the key
        f.debug_struct("Client").field("base", &self.base).field("entity", &self.entity).finish_non_exhaustive()
    }
}

/// Silence after which an event stream counts as broken: three keep-alives missed.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// Largest response body read into memory (a log page or a code archive).
const MAX_RESPONSE: usize = 512 << 20;

impl Client {
    /// A client trusting the system's certificate authorities (for `https`).
    pub fn new(base_url: &str, api_key: &str, entity: &str) -> Result<Self, ClientError> {
        Self::build(base_url, api_key, entity, Vec::new())
    }

    /// A client that also trusts the CA certificates of `ca_pem` (a PEM
    /// bundle): a server whose certificate a private CA issued.
    pub fn with_ca(base_url: &str, api_key: &str, entity: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let roots =
            reqwest::Certificate::from_pem_bundle(ca_pem).map_err(|source| ClientError::Http { url: base, source })?;
        if roots.is_empty() {
            return Err(ClientError::Decode {
                url: base_url.to_string(),
                detail: "the CA bundle holds no PEM certificate".into(),
            });
        }
        Self::build(base_url, api_key, entity, roots)
    }

    fn build(
        base_url: &str,
        api_key: &str,
        entity: &str,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let builder = || {
            let b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
            if roots.is_empty() { b } else { b.tls_certs_merge(roots.clone()) }
        };
        let http = builder()
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|source| ClientError::Http { url: base.clone(), source })?;
        let streams = builder()
            .read_timeout(STREAM_READ_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http { url: base.clone(), source })?;
        Ok(Self { http, streams, base, key: api_key.to_string(), entity: entity.to_string() })
    }

    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The same client for another entity.
    pub fn with_entity(&self, entity: &str) -> Self {
        Self { entity: entity.to_string(), ..self.clone() }
    }

    /// The entity and role of this client's key (needs no entity).
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        let url = format!("{}/api/v1/whoami", self.base);
        let rb = self.http.get(&url).bearer_auth(&self.key).timeout(Duration::from_secs(30));
        let (_, bytes) = Self::send(&url, rb).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1/entities/{}{path}", self.base, self.entity)
    }

    fn req(&self, method: Method, path: &str) -> (String, RequestBuilder) {
        let url = self.url(path);
        let rb = self.http.request(method, &url).bearer_auth(&self.key).timeout(Duration::from_secs(120));
        (url, rb)
    }

    async fn send(url: &str, rb: RequestBuilder) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = rb.send().await.map_err(|source| ClientError::Http { url: url.to_string(), source })?;
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n as usize > MAX_RESPONSE) {
            return Err(ClientError::Decode { url: url.to_string(), detail: "response too large".into() });
        }
        let body = resp.bytes().await.map_err(|source| ClientError::Http { url: url.to_string(), source })?;
        if !status.is_success() {
            return Err(ClientError::Api { status: status.as_u16(), body: error_body(&body) });
        }
        Ok((status, body))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let (url, mut rb) = self.req(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let (_, bytes) = Self::send(&url, rb).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }

    async fn call_empty(&self, method: Method, path: &str, body: &impl Serialize) -> Result<(), ClientError> {
        let (url, rb) = self.req(method, path);
        Self::send(&url, rb.json(body)).await.map(|_| ())
    }

    pub async fn create_queue(&self, req: &CreateQueue) -> Result<Queue, ClientError> {
        self.call(Method::POST, "/queues", Some(req)).await
    }

    pub async fn list_queues(&self) -> Result<Vec<Queue>, ClientError> {
        self.call(Method::GET, "/queues", None::<&()>).await
    }

    pub async fn get_queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.call(Method::GET, &format!("/queues/{}", enc(name)), None::<&()>).await
    }

    pub async fn upload_blob(&self, digest: &str, bytes: Vec<u8>) -> Result<BlobRef, ClientError> {
        let (url, rb) = self.req(Method::PUT, &format!("/blobs/{digest}"));
        let (_, body) = Self::send(&url, rb.header("content-type", "application/gzip").body(bytes)).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }

    pub async fn download_blob(&self, digest: &str) -> Result<Bytes, ClientError> {
        let (url, rb) = self.req(Method::GET, &format!("/blobs/{digest}"));
        Ok(Self::send(&url, rb).await?.1)
    }

    pub async fn create_job(&self, req: &CreateJob) -> Result<JobView, ClientError> {
        self.call(Method::POST, "/jobs", Some(req)).await
    }

    pub async fn list_jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.call(Method::GET, "/jobs", None::<&()>).await
    }

    pub async fn get_job(&self, project: &str, name: &str, alias: &str) -> Result<JobView, ClientError> {
        self.call(Method::GET, &format!("/jobs/{}/{}?alias={}", enc(project), enc(name), enc(alias)), None::<&()>).await
    }

    pub async fn launch(&self, queue: &str, req: &LaunchRequest) -> Result<LaunchResponse, ClientError> {
        self.call(Method::POST, &format!("/queues/{}/items", enc(queue)), Some(req)).await
    }

    pub async fn list_items(&self, queue: Option<&str>, limit: i64) -> Result<Vec<ItemView>, ClientError> {
        self.list_items_launched_by(queue, None, limit).await
    }

    /// [`Self::list_items`], only those launched by `launcher` when given
    /// (as items show it in `launched_by`).
    pub async fn list_items_launched_by(
        &self,
        queue: Option<&str>,
        launcher: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ItemView>, ClientError> {
        let q = queue.map(|q| format!("&queue={}", enc(q))).unwrap_or_default();
        let l = launcher.map(|l| format!("&launched_by={}", enc(l))).unwrap_or_default();
        self.call(Method::GET, &format!("/items?limit={limit}{q}{l}"), None::<&()>).await
    }

    /// A pending item's new priority (409 `not_pending` once it was claimed or ended).
    pub async fn set_priority(&self, id: &str, priority: Priority) -> Result<ItemView, ClientError> {
        self.call(Method::POST, &format!("/items/{}/priority", enc(id)), Some(&SetPriority { priority })).await
    }

    pub async fn get_item(&self, id: &str) -> Result<ItemView, ClientError> {
        self.call(Method::GET, &format!("/items/{}", enc(id)), None::<&()>).await
    }

    pub async fn stop_item(&self, id: &str) -> Result<ItemView, ClientError> {
        self.call(Method::POST, &format!("/items/{}/stop", enc(id)), None::<&()>).await
    }

    pub async fn read_logs(&self, id: &str, after: i64) -> Result<LogPage, ClientError> {
        self.call(Method::GET, &format!("/items/{}/logs?after={after}", enc(id)), None::<&()>).await
    }

    /// The item's state changes, oldest first, each with its time and cause.
    pub async fn item_history(&self, id: &str) -> Result<Vec<ItemTransition>, ClientError> {
        self.call(Method::GET, &format!("/items/{}/events", enc(id)), None::<&()>).await
    }

    /// The run's state changes and log as they happen, from its launch (or
    /// after `last_event_id`) until it ends; reconnects by itself.
    pub fn run_events(&self, id: &str, last_event_id: Option<String>) -> RunEvents {
        RunEvents::new(self.clone(), id, last_event_id)
    }

    /// The queue's state changes from now (or after `last_event_id`) on.
    pub async fn queue_events(&self, queue: &str, last_event_id: Option<&str>) -> Result<QueueEvents, ClientError> {
        Ok(QueueEvents::new(self.open_stream(&format!("/queues/{}/stream", enc(queue)), last_event_id).await?))
    }

    /// One connection to a run's event stream, as the server sends it.
    pub async fn open_run_stream(&self, id: &str, last_event_id: Option<&str>) -> Result<EventStream, ClientError> {
        self.open_stream(&format!("/items/{}/stream", enc(id)), last_event_id).await
    }

    async fn open_stream(&self, path: &str, last_event_id: Option<&str>) -> Result<EventStream, ClientError> {
        let url = self.url(path);
        let mut rb = self.streams.get(&url).bearer_auth(&self.key).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id);
        }
        let resp = rb.send().await.map_err(|source| ClientError::Http { url: url.clone(), source })?;
        if !resp.status().is_success() {
            return Self::send_error(&url, resp).await;
        }
        Ok(EventStream::new(url, resp))
    }

    async fn send_error<T>(url: &str, resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        let body = resp.bytes().await.map_err(|source| ClientError::Http { url: url.to_string(), source })?;
        Err(ClientError::Api { status: status.as_u16(), body: error_body(&body) })
    }

    pub async fn register_agent(&self, req: &RegisterAgent) -> Result<AgentView, ClientError> {
        self.call(Method::POST, "/agents", Some(req)).await
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentView>, ClientError> {
        self.call(Method::GET, "/agents", None::<&()>).await
    }

    pub async fn agent_heartbeat(&self, id: &str, status: AgentStatus) -> Result<AgentHeartbeatResponse, ClientError> {
        self.call(Method::POST, &format!("/agents/{}/heartbeat", enc(id)), Some(&AgentHeartbeat { status })).await
    }

    pub async fn stop_agent_polling(&self, id: &str) -> Result<AgentView, ClientError> {
        self.call(Method::POST, &format!("/agents/{}/stop-polling", enc(id)), None::<&()>).await
    }

    /// A new key of the entity with `role`; its secret is in the answer only.
    pub async fn create_key(&self, role: &str) -> Result<CreatedApiKey, ClientError> {
        self.create_named_key(role, None).await
    }

    /// [`Self::create_key`] with a name, which the runs it launches show.
    pub async fn create_named_key(&self, role: &str, name: Option<&str>) -> Result<CreatedApiKey, ClientError> {
        let req = CreateApiKey { role: role.to_string(), name: name.map(str::to_string) };
        self.call(Method::POST, "/keys", Some(&req)).await
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKeyView>, ClientError> {
        self.call(Method::GET, "/keys", None::<&()>).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyView, ClientError> {
        self.call(Method::DELETE, &format!("/keys/{}", enc(id)), None::<&()>).await
    }

    /// Gives back the items this agent claimed and never started, except `keep`.
    pub async fn release_claims(&self, agent_id: &str, keep: &[String]) -> Result<ReleasedClaims, ClientError> {
        let body = ReleaseClaims { keep: keep.to_vec() };
        self.call(Method::POST, &format!("/agents/{}/release", enc(agent_id)), Some(&body)).await
    }

    /// Long-polls for up to `wait`; `None` when nothing came.
    pub async fn claim(&self, agent_id: &str, queues: &[String], wait: Duration) -> Result<Option<Claim>, ClientError> {
        let body =
            ClaimRequest { agent_id: agent_id.to_string(), queues: queues.to_vec(), wait_ms: wait.as_millis() as u64 };
        let (url, rb) = self.req(Method::POST, "/claims");
        let (status, bytes) = Self::send(&url, rb.json(&body).timeout(wait + Duration::from_secs(30))).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }

    pub async fn renew_lease(&self, id: &str, fence: i64) -> Result<ItemHeartbeatResponse, ClientError> {
        let body = FencedHeartbeat { fence, resume: false };
        self.call(Method::POST, &format!("/items/{}/lease", enc(id)), Some(&body)).await
    }

    /// A lease renewal by an agent taking a run back after a restart: the
    /// answer also carries the next log sequence number.
    pub async fn resume_lease(&self, id: &str, fence: i64) -> Result<ItemHeartbeatResponse, ClientError> {
        let body = FencedHeartbeat { fence, resume: true };
        self.call(Method::POST, &format!("/items/{}/lease", enc(id)), Some(&body)).await
    }

    /// Records a warning on an item; `fence` is required with an admin key
    /// and omitted with the run's own key.
    pub async fn add_warning(
        &self,
        id: &str,
        fence: Option<i64>,
        stage: liftoff_core::Stage,
        message: &str,
    ) -> Result<(), ClientError> {
        let body = AddWarning { fence, stage, message: message.to_string() };
        self.call_empty(Method::POST, &format!("/items/{}/warnings", enc(id)), &body).await
    }

    pub async fn report(&self, id: &str, fence: i64, event: ItemEvent) -> Result<ItemView, ClientError> {
        self.report_with_log(id, fence, event, None).await
    }

    /// [`Self::report`], with the run's last log chunk stored in the same
    /// transaction (one request instead of two).
    pub async fn report_with_log(
        &self,
        id: &str,
        fence: i64,
        event: ItemEvent,
        log: Option<liftoff_core::api::LogTail>,
    ) -> Result<ItemView, ClientError> {
        self.call(Method::POST, &format!("/items/{}/events", enc(id)), Some(&FencedEvent { fence, event, log })).await
    }

    pub async fn append_log(&self, id: &str, chunk: &AppendLog) -> Result<(), ClientError> {
        self.call_empty(Method::POST, &format!("/items/{}/logs", enc(id)), chunk).await
    }

    /// Records the run's image (the item's holder, with its fence).
    pub async fn record_build(
        &self,
        id: &str,
        fence: i64,
        build: liftoff_core::api::BuildRecord,
    ) -> Result<(), ClientError> {
        let body = liftoff_core::api::FencedBuildRecord { fence, build };
        self.call_empty(Method::POST, &format!("/items/{}/build", enc(id)), &body).await
    }

    /// Asks to build image `key`; see [`liftoff_core::api::BuildClaimAnswer`].
    pub async fn claim_build(
        &self,
        key: &str,
        agent_id: &str,
        gone: bool,
    ) -> Result<liftoff_core::api::BuildClaimAnswer, ClientError> {
        let body = liftoff_core::api::BuildClaimRequest { key: key.to_string(), agent_id: agent_id.to_string(), gone };
        self.call(Method::POST, "/builds/claim", Some(&body)).await
    }

    /// Renews a build lease (`image: None`) through `/builds/renew`, or
    /// ends the build through `/builds/finish` (`finish`).
    pub async fn update_build(
        &self,
        key: &str,
        fence: i64,
        finish: bool,
        image: Option<&str>,
    ) -> Result<(), ClientError> {
        let body = liftoff_core::api::BuildUpdate { key: key.to_string(), fence, image: image.map(str::to_string) };
        let path = if finish { "/builds/finish" } else { "/builds/renew" };
        self.call_empty(Method::POST, path, &body).await
    }
}

/// Everything but RFC 3986's unreserved characters is encoded.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a path segment or query value (only unreserved characters pass).
pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

fn error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| ErrorBody {
        code: "http".into(),
        message: String::from_utf8_lossy(&body[..body.len().min(500)]).trim().to_string(),
        field: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_characters_pass_unencoded() {
        assert_eq!(super::enc("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(super::enc("x/y?z#é %"), "x%2Fy%3Fz%23%C3%A9%20%25");
    }
}
