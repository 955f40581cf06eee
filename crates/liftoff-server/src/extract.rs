use crate::error::ApiError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// `Json<T>` whose rejections are API errors: 413 when the body is over the
/// bound, 415 when it is not JSON, 400 naming the offending field otherwise.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "too_large", "request body is larger than the server accepts");
    }
    let text = r.body_text();
    // serde_path_to_error's message reads "<path>: <what>"; keep the path as the field.
    let detail = text.rsplit_once("target type: ").map(|(_, d)| d).unwrap_or(&text).to_string();
    let field = detail.split_once(": ").map(|(p, _)| p.to_string()).filter(|p| !p.contains(' '));
    let mut err = ApiError::new(
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE { status } else { StatusCode::BAD_REQUEST },
        "invalid_json",
        format!("malformed request body: {detail}"),
    );
    err.field = field;
    err
}

/// Maps a raw-body rejection (used for blob uploads).
pub fn bytes_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "upload is larger than the server accepts")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", r.body_text())
    }
}

/// A query parameter's value, or its default when absent; out of
/// `min..=max` is refused naming the parameter (the OpenAPI document gives
/// the same bounds), rather than quietly clamped.
pub fn bounded(field: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        let range = if max == i64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") };
        return Err(ApiError::bad_request(field, format!("{field} must be {range}, got {v}")));
    }
    Ok(v)
}

/// Makes every error of `/api/v1` the documented `{code, message}` JSON:
/// axum's own refusals (no such route, wrong method, a query or path that
/// does not parse) are plain text; their status and headers are kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejection texts are short; anything longer is cut.
    let text = axum::body::to_bytes(body, 16 * 1024).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let message = match text {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "error",
    };
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut rebuilt = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        rebuilt.headers_mut().insert(name.clone(), value.clone());
    }
    rebuilt
}
