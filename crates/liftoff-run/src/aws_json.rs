//! AWS's JSON 1.1 protocol (SageMaker, CloudWatch Logs): a POST of a JSON
//! body to the service's endpoint, the operation in `X-Amz-Target`, signed
//! with SigV4 (aws-sigv4) with the `aws` environment's credentials, over
//! reqwest. A few calls do not need an SDK client per service.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use liftoff_cloud::AwsEnv;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Largest answer read (a page of log events is at most 1 MB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One AWS service spoken to in JSON 1.1.
#[derive(Debug, Clone)]
pub struct JsonService {
    /// The signing name: `sagemaker`, `logs`.
    pub signing_name: &'static str,
    /// `SageMaker`, `Logs_20140328`: the `X-Amz-Target` prefix.
    pub target_prefix: &'static str,
    /// `https://api.sagemaker.<region>.amazonaws.com`, or an override.
    pub endpoint: String,
}

impl JsonService {
    /// The endpoint: `AWS_ENDPOINT_URL_<SERVICE>` (as the SDKs read it),
    /// else the environment's endpoint override, else the regional one.
    pub fn resolve(
        env: &AwsEnv,
        signing_name: &'static str,
        target_prefix: &'static str,
        env_var: &str,
        host: &str,
    ) -> Self {
        let endpoint = std::env::var(env_var)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| env.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://{}", host.replace("{region}", env.region())));
        Self { signing_name, target_prefix, endpoint: endpoint.trim_end_matches('/').to_string() }
    }
}

/// An AWS answer other than 200: the JSON 1.1 error's type and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub status: u16,
    /// `ValidationException`, `ResourceNotFound`..., or `transport` / `credentials`.
    pub code: String,
    pub message: String,
}

impl AwsError {
    fn local(code: &str, message: String) -> Self {
        Self { status: 0, code: code.into(), message }
    }
}

/// Signs and sends JSON 1.1 calls with the environment's credentials.
#[derive(Clone)]
pub struct AwsJson {
    env: AwsEnv,
    http: reqwest::Client,
}

impl AwsJson {
    pub fn new(env: AwsEnv) -> Self {
        Self { env, http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build().unwrap_or_default() }
    }

    pub fn env(&self) -> &AwsEnv {
        &self.env
    }

    /// `service.op(body)`: the answer's JSON, or the service's error.
    pub async fn call(&self, service: &JsonService, op: &str, body: &Value) -> Result<Value, AwsError> {
        let (creds, _) = self.env.credentials().await.map_err(|e| AwsError::local("credentials", e.to_string()))?;
        let body = serde_json::to_vec(body).map_err(|e| AwsError::local("request", e.to_string()))?;
        let url = format!("{}/", service.endpoint);
        let host = url_host(&url).ok_or_else(|| AwsError::local("endpoint", format!("'{url}' has no host")))?;
        let target = format!("{}.{op}", service.target_prefix);
        let headers =
            signed_headers(&creds, self.env.region(), service.signing_name, &host, &target, &body, SystemTime::now())
                .map_err(|e| AwsError::local("signing", e))?;
        let mut req = self.http.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| {
            AwsError::local("transport", format!("cannot reach {}: {}", service.endpoint, e.without_url()))
        })?;
        let status = resp.status().as_u16();
        let header_type = resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = crate::remote_job::read_bounded(resp, MAX_ANSWER)
            .await
            .map_err(|e| AwsError::local("transport", format!("{} {op}: {e}", service.signing_name)))?;
        let json: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status == 200 {
            return Ok(json);
        }
        // `__type` is `ValidationException` or `com.amazonaws.sagemaker#ResourceNotFound`
        let code =
            json["__type"].as_str().map(str::to_string).or(header_type).unwrap_or_else(|| format!("HTTP {status}"));
        let code = code.rsplit('#').next().unwrap_or(&code).split(':').next().unwrap_or("").to_string();
        let message = json["message"].as_str().or(json["Message"].as_str()).unwrap_or("").to_string();
        Err(AwsError { status, code, message })
    }
}

/// The headers of a signed JSON 1.1 POST to `/` (`host`, `content-type`,
/// `x-amz-target`, `x-amz-date`, a session token if any, `authorization`).
pub fn signed_headers(
    creds: &Credentials,
    region: &str,
    signing_name: &str,
    host: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.to_string()),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
        ("x-amz-target".into(), target.to_string()),
    ];
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("https://{host}/"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    let (added, _) = instructions.into_parts();
    headers.extend(added.into_iter().map(|h| (h.name().to_string(), h.value().to_string())));
    Ok(headers)
}

/// `host[:port]` of a URL.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?']).next()?;
    (!host.is_empty()).then(|| host.to_string())
}
