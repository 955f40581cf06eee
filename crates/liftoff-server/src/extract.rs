use crate::error::ApiError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// `Json<T>` whose rejections are API errors: 413 when the body is over the
/// bound, 400 naming the offending field otherwise.
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
