//! What every page shares: the frame around it (`Chrome`), errors as pages,
//! form bodies, and how times and durations read.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::borrow::Cow;

/// The frame of every page: who is signed in, the sign-out form's CSRF
/// token, which navigation entry is current.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub entity: String,
    pub csrf: String,
    pub nav: &'static str,
    pub signed_in: bool,
}

impl Chrome {
    pub fn signed_out() -> Self {
        Self { entity: String::new(), csrf: String::new(), nav: "", signed_in: false }
    }

    /// The path prefix of the static files of this build.
    pub fn assets(&self) -> String {
        format!("/assets/{}", super::assets::VERSION)
    }
}

/// Renders a template (askama escapes every value in `.html` templates).
pub fn render<T: Template>(page: T) -> Result<Response, UiError> {
    let html = page.render().map_err(|e| UiError::Internal(format!("template: {e}")))?;
    Ok(Html(html).into_response())
}

/// What a page answers instead of itself.
#[derive(Debug)]
pub enum UiError {
    /// No valid session: to the sign-in page, then back to this path.
    SignIn(String),
    NotFound(String),
    /// A form or query value the page refuses (or a live stream's
    /// `Last-Event-ID`); the message names the field.
    BadRequest(String),
    Forbidden(String),
    /// The server serves as many event streams as it may (503).
    Unavailable(String),
    Internal(String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            Self::SignIn(back) => {
                let mut to = String::from("/signin?next=");
                to.extend(form_urlencoded::byte_serialize(back.as_bytes()));
                return Redirect::to(&to).into_response();
            }
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.as_str()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m.as_str()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m.as_str()),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Busy", m.as_str()),
            Self::Internal(m) => {
                tracing::error!(error = %m, "web UI error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "internal error; see the server log")
            }
        };
        let page = ErrorPage { chrome: Chrome::signed_out(), title, message };
        let body = page.render().unwrap_or_else(|_| message.to_string());
        (status, Html(body)).into_response()
    }
}

impl From<liftoff_store::StoreError> for UiError {
    fn from(e: liftoff_store::StoreError) -> Self {
        match e {
            liftoff_store::StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// An `application/x-www-form-urlencoded` body; keys may repeat (the
/// selected items of a bulk stop).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body).map(|(k, v): (Cow<str>, Cow<str>)| (k.into_owned(), v.into_owned())).collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// `2026-11-29 23:41:07` (UTC) for a time in ms since the epoch.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2h 05m`, `3m 12s`, `4s` for a span in ms.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_and_spans() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_995_667_000), "2026-11-29 23:41:07");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(span(4_200), "4s");
        assert_eq!(span(192_000), "3m 12s");
        assert_eq!(span(7_500_000), "2h 05m");
        assert_eq!(span(-5), "0s");
    }

    #[test]
    fn form_keeps_repeated_keys() {
        let f = Form::parse(b"csrf=t&item=a&item=b%2Fc&x=%3Cscript%3E");
        assert_eq!(f.get("csrf"), Some("t"));
        assert_eq!(f.all("item"), ["a", "b/c"]);
        assert_eq!(f.get("x"), Some("<script>"));
    }
}
