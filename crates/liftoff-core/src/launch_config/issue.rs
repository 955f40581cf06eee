//! One problem found in the config: where it is, the value, and what is wrong.

use serde::Serialize;
use std::fmt;

/// Longest value shown in a message; longer ones are cut with an ellipsis.
const MAX_SHOWN_VALUE: usize = 120;

/// An error or a warning about one field. `path` is the field's dotted path
/// (`builder.destination`, `queues[1]`), the name of an environment variable
/// or a flag (`LIFTOFF_ENTITY`, `--max-jobs`), or empty for the file as a whole.
/// Values under keys named like secrets are shown as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    pub path: String,
    pub value: Option<String>,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl ConfigIssue {
    /// An issue without a position; the value is redacted when the path names a secret.
    pub fn new(path: impl Into<String>, value: Option<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let value = value.map(|v| if is_secret_path(&path) { "<redacted>".to_string() } else { shorten(&v) });
        Self { path, value, message: message.into(), line: None, column: None }
    }

    /// The same issue at a 1-based line and column of the file.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("line {l}, column {c}"),
            (Some(l), None) => format!("line {l}"),
            _ => String::new(),
        };
        match (self.path.is_empty(), place.is_empty()) {
            (false, false) => write!(f, "{} ({place}): ", self.path)?,
            (false, true) => write!(f, "{}: ", self.path)?,
            (true, false) => write!(f, "{place}: ")?,
            (true, true) => {}
        }
        f.write_str(&self.message)?;
        if let Some(v) = &self.value {
            write!(f, " (value: {v})")?;
        }
        Ok(())
    }
}

/// True when a segment of `path` is named like a credential (`password`,
/// `token`, `secret`, `api_key`...), except the builder's `secret-name` and
/// `secret-key`, which name a Kubernetes secret rather than hold one.
pub(crate) fn is_secret_path(path: &str) -> bool {
    path.split('.').map(|seg| seg.split('[').next().unwrap_or(seg).to_ascii_lowercase()).any(|seg| {
        seg != "secret-name"
            && seg != "secret-key"
            && ["password", "passwd", "token", "secret", "api_key", "api-key", "apikey", "credential"]
                .iter()
                .any(|w| seg.contains(w))
    })
}

fn shorten(v: &str) -> String {
    let flat: String = v.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= MAX_SHOWN_VALUE {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_SHOWN_VALUE - 1).collect();
        cut.push('…');
        cut
    }
}
