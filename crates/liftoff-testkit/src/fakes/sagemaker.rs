//! A faithful fake of the SageMaker training-job API (JSON 1.1 over HTTP,
//! `X-Amz-Target: SageMaker.<Op>`), for tests and for trying Liftoff
//! without AWS: `CreateTrainingJob`, `DescribeTrainingJob`,
//! `StopTrainingJob`, `Search` (by tag).
//!
//! Like SageMaker it checks each request's SigV4 signature against the
//! credentials it was started with (`InvalidSignatureException`,
//! `UnrecognizedClientException`), answers errors as JSON 1.1 does
//! (`{"__type": ..., "message": ...}`, status 400), refuses a name in use
//! (`ResourceInUse`), an unknown job (`ValidationException: Requested
//! resource not found.`), a stop of an ended job (`ValidationException`).
//! A job stays `InProgress`/`Starting` until driven: [`SageMakerFake::drive`]
//! (or `POST /_fake/jobs/<name>/state`); a stop takes it to `Stopping`,
//! then `Stopped` after `stop_delay`. Its output goes to CloudWatch Logs,
//! which it does not serve: [`SageMakerFake::emit`] (or `POST
//! /_fake/jobs/<name>/logs`) writes the lines with `PutLogEvents` to the
//! logs endpoint it was given (the moto server), in the log group and
//! stream names SageMaker uses (`/aws/sagemaker/TrainingJobs`,
//! `<job>/algo-<n>-<epoch>`).
//!
//! Differences from SageMaker: no IAM (any role ARN of the right shape is
//! taken, none is assumed), no instances, images or S3 (nothing is pulled,
//! run or written); only the request fields Liftoff sends are checked;
//! `Search` supports only `Tags.<key> Equals <value>` filters; no other
//! operation exists (`UnknownOperationException`); state changes happen
//! only when driven (or with `--auto`), never on their own.

use super::changes::Changes;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";
pub const ACCOUNT: &str = "123456789012";

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct SageMakerFakeOptions {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// The CloudWatch Logs endpoint the job output is written to (moto).
    pub logs_endpoint: Option<String>,
    /// How long a stopped job stays `Stopping`.
    pub stop_delay: Duration,
    /// `Some(d)`: each job trains at once, writes a line a second and completes after `d`.
    pub auto_complete: Option<Duration>,
    pub listen: String,
}

impl Default for SageMakerFakeOptions {
    fn default() -> Self {
        Self {
            access_key: "testing".into(),
            secret_key: "testing".into(),
            region: "us-east-1".into(),
            logs_endpoint: None,
            stop_delay: Duration::from_millis(300),
            auto_complete: None,
            listen: "127.0.0.1:0".into(),
        }
    }
}

/// One training job as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeJob {
    /// The `CreateTrainingJob` request as received.
    pub request: Value,
    pub status: String,
    pub secondary: String,
    pub failure_reason: Option<String>,
    /// When `StopTrainingJob` was received, if it was.
    pub stop_requested: Option<Instant>,
    created: SystemTime,
    /// Per instance host (`algo-1`), the stream name.
    streams: BTreeMap<String, String>,
}

#[derive(Default)]
struct Jobs {
    jobs: BTreeMap<String, FakeJob>,
    /// Every operation received, in order (for tests).
    calls: Vec<String>,
}

/// A running fake; dropping it stops it.
pub struct SageMakerFake {
    pub url: String,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    opts: SageMakerFakeOptions,
    jobs: Mutex<Jobs>,
    changed: Changes,
    http: reqwest::Client,
}

impl Drop for SageMakerFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SageMakerFake {
    pub async fn start(opts: SageMakerFakeOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Shared {
            opts,
            jobs: Mutex::new(Jobs::default()),
            changed: Changes::default(),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/_fake/jobs", axum::routing::get(admin_list))
            .route("/_fake/jobs/{name}/state", axum::routing::post(admin_state))
            .route("/_fake/jobs/{name}/logs", axum::routing::post(admin_logs))
            .fallback(api)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, server })
    }

    /// A job as the fake holds it now.
    pub fn job(&self, name: &str) -> Option<FakeJob> {
        self.state.jobs.lock().unwrap().jobs.get(name).cloned()
    }

    /// The names of every job created, in name order.
    pub fn job_names(&self) -> Vec<String> {
        self.state.jobs.lock().unwrap().jobs.keys().cloned().collect()
    }

    /// Every operation received, in order (`CreateTrainingJob`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.state.jobs.lock().unwrap().calls.clone()
    }

    /// Waits until `pred` holds of the job named `name`, or `within` passes.
    pub async fn wait_for(&self, name: &str, within: Duration, pred: impl Fn(&FakeJob) -> bool) -> Option<FakeJob> {
        self.state.changed.wait_until(within, || self.job(name).filter(|j| pred(j))).await
    }

    /// Waits until at least `n` jobs exist; all of them, in id order.
    pub async fn wait_for_jobs(&self, n: usize, within: Duration) -> Option<Vec<String>> {
        self.state.changed.wait_until(within, || Some(self.job_names()).filter(|ids| ids.len() >= n)).await
    }

    /// Moves the job to `status` (`InProgress`, `Completed`, `Failed`,
    /// `Stopping`, `Stopped`) with `secondary` (`Training`, `Interrupted`...).
    pub fn drive(&self, name: &str, status: &str, secondary: &str, failure_reason: Option<&str>) -> Result<(), String> {
        self.state.set(name, status, secondary, failure_reason)
    }

    /// Writes `lines` to the job's stream of instance `host` (`algo-1`) in CloudWatch Logs.
    pub async fn emit(&self, name: &str, host: &str, lines: &[&str]) -> Result<(), String> {
        self.state.emit(name, host, lines.iter().map(|s| s.to_string()).collect()).await
    }
}

impl Shared {
    fn set(&self, name: &str, status: &str, secondary: &str, reason: Option<&str>) -> Result<(), String> {
        const STATUSES: [&str; 5] = ["InProgress", "Completed", "Failed", "Stopping", "Stopped"];
        if !STATUSES.contains(&status) {
            return Err(format!("status must be one of {}", STATUSES.join(", ")));
        }
        {
            let mut jobs = self.jobs.lock().unwrap();
            let job = jobs.jobs.get_mut(name).ok_or_else(|| format!("no training job {name}"))?;
            job.status = status.into();
            job.secondary = secondary.into();
            job.failure_reason = reason.map(str::to_string);
        }
        self.changed.bump();
        Ok(())
    }

    async fn emit(&self, name: &str, host: &str, lines: Vec<String>) -> Result<(), String> {
        let endpoint = self.opts.logs_endpoint.clone().ok_or("the fake was started without a logs endpoint")?;
        let (stream, new_stream) = {
            let mut jobs = self.jobs.lock().unwrap();
            let job = jobs.jobs.get_mut(name).ok_or_else(|| format!("no training job {name}"))?;
            let epoch = job.created.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            let new = !job.streams.contains_key(host);
            let stream =
                job.streams.entry(host.to_string()).or_insert_with(|| format!("{name}/{host}-{epoch}")).clone();
            (stream, new)
        };
        if new_stream {
            self.logs(&endpoint, "CreateLogGroup", json!({"logGroupName": LOG_GROUP})).await?;
            self.logs(&endpoint, "CreateLogStream", json!({"logGroupName": LOG_GROUP, "logStreamName": stream}))
                .await?;
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let events: Vec<Value> = lines.iter().map(|l| json!({"timestamp": now, "message": l})).collect();
        self.logs(
            &endpoint,
            "PutLogEvents",
            json!({"logGroupName": LOG_GROUP, "logStreamName": stream, "logEvents": events}),
        )
        .await
    }

    /// A CloudWatch Logs call; "already exists" is fine. moto does not check
    /// signatures, but reads the region and service from the credential scope.
    async fn logs(&self, endpoint: &str, op: &str, body: Value) -> Result<(), String> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{}/logs/aws4_request, SignedHeaders=host, Signature=0",
            self.opts.access_key, self.opts.region
        );
        let resp = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Logs_20140328.{op}"))
            .header("authorization", auth)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach the logs endpoint {endpoint}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() || text.contains("ResourceAlreadyExistsException") {
            Ok(())
        } else {
            Err(format!("logs {op}: {status}: {text}"))
        }
    }
}

/// A JSON 1.1 error as AWS sends it.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", kind)],
        json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], v.to_string()).into_response()
}

async fn api(
    State(st): State<Arc<Shared>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != axum::http::Method::POST {
        return aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", "only POST is served");
    }
    if let Err((kind, message)) = verify_signature(&st.opts, &headers, uri.path(), &body) {
        let status =
            if kind == "UnrecognizedClientException" { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
        return aws_error(status, kind, &message);
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(op) = target.strip_prefix("SageMaker.") else {
        return aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", "");
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return aws_error(StatusCode::BAD_REQUEST, "SerializationException", "the body is not JSON");
    };
    st.jobs.lock().unwrap().calls.push(op.to_string());
    let out = match op {
        "CreateTrainingJob" => create(&st, req),
        "DescribeTrainingJob" => describe(&st, &req),
        "StopTrainingJob" => stop(&st, &req),
        "Search" => search(&st, &req),
        _ => return aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", ""),
    };
    st.changed.bump();
    match out {
        Ok(v) => ok(v),
        Err((kind, message)) => aws_error(StatusCode::BAD_REQUEST, kind, &message),
    }
}

type OpResult = Result<Value, (&'static str, String)>;

fn validation(message: impl Into<String>) -> (&'static str, String) {
    ("ValidationException", message.into())
}

fn create(st: &Arc<Shared>, req: Value) -> OpResult {
    let name = req["TrainingJobName"].as_str().unwrap_or("");
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-');
    if !valid_name {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}"
        )));
    }
    let role = req["RoleArn"].as_str().unwrap_or("");
    if !(role.starts_with("arn:aws") && role.contains(":iam::") && role.contains(":role/")) {
        return Err(validation(format!(
            "1 validation error detected: Value '{role}' at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern: ^arn:aws[a-z\\-]*:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+$"
        )));
    }
    for (field, path) in [
        ("algorithmSpecification.trainingImage", &req["AlgorithmSpecification"]["TrainingImage"]),
        ("outputDataConfig.s3OutputPath", &req["OutputDataConfig"]["S3OutputPath"]),
        ("resourceConfig.instanceType", &req["ResourceConfig"]["InstanceType"]),
        ("stoppingCondition", &req["StoppingCondition"]),
    ] {
        if path.is_null() {
            return Err(validation(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            )));
        }
    }
    if let Some(env) = req["Environment"].as_object() {
        if env.len() > 100 {
            return Err(validation(
                "1 validation error detected: Value at 'environment' failed to satisfy constraint: Member must have length less than or equal to 100",
            ));
        }
        if let Some((k, _)) = env.iter().find(|(k, v)| k.len() > 512 || v.as_str().is_none_or(|v| v.len() > 512)) {
            return Err(validation(format!(
                "1 validation error detected: Value at 'environment' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 512] ({k})"
            )));
        }
    }
    let arn = format!("arn:aws:sagemaker:{}:{ACCOUNT}:training-job/{}", st.opts.region, name.to_ascii_lowercase());
    {
        let mut jobs = st.jobs.lock().unwrap();
        if jobs.jobs.contains_key(name) {
            return Err((
                "ResourceInUse",
                format!(
                    "Training job names must be unique within an AWS account and region, and a training job with this name already exists ({arn})"
                ),
            ));
        }
        let job = FakeJob {
            request: req.clone(),
            status: "InProgress".into(),
            secondary: "Starting".into(),
            failure_reason: None,
            stop_requested: None,
            created: SystemTime::now(),
            streams: BTreeMap::new(),
        };
        jobs.jobs.insert(name.to_string(), job);
    }
    if let Some(d) = st.opts.auto_complete {
        tokio::spawn(auto_run(st.clone(), name.to_string(), d));
    }
    Ok(json!({"TrainingJobArn": arn}))
}

/// `--auto`: trains at once, writes a line a second, completes after `d` (unless stopped).
async fn auto_run(st: Arc<Shared>, name: String, d: Duration) {
    let _ = st.set(&name, "InProgress", "Training", None);
    let start = Instant::now();
    let mut step = 0;
    while start.elapsed() < d {
        let still = st.jobs.lock().unwrap().jobs.get(&name).is_some_and(|j| j.status == "InProgress");
        if !still {
            return;
        }
        step += 1;
        if let Err(e) = st.emit(&name, "algo-1", vec![format!("fake training step {step}")]).await {
            eprintln!("sagemaker-fake: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = st.set(&name, "Completed", "Completed", None);
}

fn describe_job(st: &Shared, name: &str, job: &FakeJob) -> Value {
    let r = &job.request;
    let created = job.created.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let mut d = json!({
        "TrainingJobName": name,
        "TrainingJobArn": format!("arn:aws:sagemaker:{}:{ACCOUNT}:training-job/{}", st.opts.region, name.to_ascii_lowercase()),
        "TrainingJobStatus": job.status,
        "SecondaryStatus": job.secondary,
        "AlgorithmSpecification": r["AlgorithmSpecification"],
        "RoleArn": r["RoleArn"],
        "OutputDataConfig": r["OutputDataConfig"],
        "ResourceConfig": r["ResourceConfig"],
        "StoppingCondition": r["StoppingCondition"],
        "EnableManagedSpotTraining": r["EnableManagedSpotTraining"].as_bool().unwrap_or(false),
        "CreationTime": created,
    });
    if let Some(e) = r.get("Environment") {
        d["Environment"] = e.clone();
    }
    if let Some(reason) = &job.failure_reason {
        d["FailureReason"] = json!(reason);
    }
    d
}

fn not_found() -> (&'static str, String) {
    validation("Requested resource not found.")
}

fn describe(st: &Shared, req: &Value) -> OpResult {
    let name = req["TrainingJobName"].as_str().unwrap_or("");
    let jobs = st.jobs.lock().unwrap();
    let job = jobs.jobs.get(name).ok_or_else(not_found)?;
    Ok(describe_job(st, name, job))
}

fn stop(st: &Arc<Shared>, req: &Value) -> OpResult {
    let name = req["TrainingJobName"].as_str().unwrap_or("").to_string();
    {
        let mut jobs = st.jobs.lock().unwrap();
        let job = jobs.jobs.get_mut(&name).ok_or_else(not_found)?;
        job.stop_requested.get_or_insert_with(Instant::now);
        if job.status != "InProgress" {
            return Err(validation(format!(
                "The request was rejected because the training job is in status {}.",
                job.status
            )));
        }
        job.status = "Stopping".into();
        job.secondary = "Stopping".into();
    }
    let (st, delay) = (st.clone(), st.opts.stop_delay);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = st.set(&name, "Stopped", "Stopped", None);
    });
    Ok(json!({}))
}

fn search(st: &Shared, req: &Value) -> OpResult {
    if req["Resource"] != "TrainingJob" {
        return Err(validation("this fake searches TrainingJob only"));
    }
    let mut filters = Vec::new();
    for f in req["SearchExpression"]["Filters"].as_array().into_iter().flatten() {
        let (Some(name), Some("Equals"), Some(value)) =
            (f["Name"].as_str(), f["Operator"].as_str(), f["Value"].as_str())
        else {
            return Err(validation("this fake supports only Tags.<key> Equals <value> filters"));
        };
        let Some(key) = name.strip_prefix("Tags.") else {
            return Err(validation("this fake supports only Tags.<key> Equals <value> filters"));
        };
        filters.push((key.to_string(), value.to_string()));
    }
    let max = req["MaxResults"].as_u64().unwrap_or(10).clamp(1, 100) as usize;
    let offset: usize = req["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let jobs = st.jobs.lock().unwrap();
    let matching: Vec<Value> = jobs
        .jobs
        .iter()
        .filter(|(_, j)| {
            let tags = j.request["Tags"].as_array().cloned().unwrap_or_default();
            filters.iter().all(|(k, v)| tags.iter().any(|t| t["Key"] == k.as_str() && t["Value"] == v.as_str()))
        })
        .map(|(name, j)| {
            let mut d = describe_job(st, name, j);
            d["Tags"] = j.request["Tags"].clone();
            json!({"TrainingJob": d})
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(max).cloned().collect();
    let mut out = json!({"Results": page});
    if offset + max < matching.len() {
        out["NextToken"] = json!((offset + max).to_string());
    }
    Ok(out)
}

/// SigV4 as SageMaker checks it: the access key known, the date within 5
/// minutes, and the signature over the signed headers and the body equal
/// to the one computed with the secret key.
fn verify_signature(
    opts: &SageMakerFakeOptions,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = h("authorization");
    let missing = || ("MissingAuthenticationTokenException", "Missing Authentication Token".to_string());
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(missing)?;
    let field = |name: &str| rest.split(", ").find_map(|p| p.trim().strip_prefix(name)).map(str::to_string);
    let (Some(credential), Some(signed), Some(signature)) =
        (field("Credential="), field("SignedHeaders="), field("Signature="))
    else {
        return Err((
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature".into(),
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(("IncompleteSignatureException", format!("bad credential scope {credential}")));
    };
    if *key != opts.access_key {
        return Err(("UnrecognizedClientException", "The security token included in the request is invalid.".into()));
    }
    if *service != "sagemaker" || *region != opts.region {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region and service 'sagemaker' in {}", opts.region),
        ));
    }
    let time = parse_amz_date(h("x-amz-date"))
        .ok_or_else(|| ("IncompleteSignatureException", "no valid X-Amz-Date".to_string()))?;
    let skew = SystemTime::now().duration_since(time).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > Duration::from_secs(300) {
        return Err((
            "InvalidSignatureException",
            "Signature expired: the request time is more than 5 minutes from now".into(),
        ));
    }
    let names: Vec<&str> = signed.split(';').filter(|n| *n != "x-amz-date").collect();
    let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, h(n))).collect();
    let creds = Credentials::new(&opts.access_key, &opts.secret_key, None, None, "fake");
    let identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ("InternalFailure", e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("http://{}{path}", h("host")),
        values.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| ("InvalidSignatureException", e.to_string()))?;
    let expected =
        sign(signable, &params).map_err(|e| ("InvalidSignatureException", e.to_string()))?.signature().to_string();
    if expected != signature {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
        ));
    }
    Ok(())
}

/// `20261206T151600Z`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i32>().ok();
    let date = jiff::civil::date(n(0..4)? as i16, n(4..6)? as i8, n(6..8)? as i8);
    let dt = date.at(n(9..11)? as i8, n(11..13)? as i8, n(13..15)? as i8, 0);
    let ts = jiff::tz::Offset::UTC.to_timestamp(dt).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(ts.as_second().try_into().ok()?))
}

async fn admin_list(State(st): State<Arc<Shared>>) -> Response {
    let jobs = st.jobs.lock().unwrap();
    let list: Vec<Value> = jobs.jobs.iter().map(|(n, j)| describe_job(&st, n, j)).collect();
    axum::Json(json!({"jobs": list, "calls": jobs.calls})).into_response()
}

async fn admin_state(
    State(st): State<Arc<Shared>>,
    Path(name): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    let status = b["status"].as_str().unwrap_or("");
    let secondary = b["secondary"].as_str().unwrap_or(status);
    match st.set(&name, status, secondary, b["failure_reason"].as_str()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn admin_logs(
    State(st): State<Arc<Shared>>,
    Path(name): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    let host = b["host"].as_str().unwrap_or("algo-1").to_string();
    let lines: Vec<String> =
        b["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).map(str::to_string).collect();
    match st.emit(&name, &host, lines).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20261206T151600Z").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_796_570_160);
        assert_eq!(parse_amz_date("2026-12-06"), None);
    }
}
