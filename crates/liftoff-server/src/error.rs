use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liftoff_core::api::ErrorBody;
use liftoff_store::StoreError;

/// An error as the API returns it: status plus `{code, message, field?}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message).field(field)
    }

    /// The request is what the OpenAPI document admits, but it fails a rule
    /// no schema can state (see `liftoff_core::rules`).
    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message).field(field)
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message).field(field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            e @ StoreError::NotPending { .. } => Self::new(StatusCode::CONFLICT, "not_pending", e.to_string()),
            e @ StoreError::StaleFence { .. } => {
                Self::new(StatusCode::CONFLICT, "stale_fence", e.to_string()).field("fence")
            }
            StoreError::Transition(t) => Self::new(StatusCode::CONFLICT, "invalid_transition", t.to_string()),
            StoreError::Invalid { field, message } => Self::bad_request(field, message),
            other => {
                // Internal details go to the log, not to the caller.
                tracing::error!(error = %other, "internal store error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_string(), message: self.message, field: self.field };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
