//! Reading typed values out of the node tree, collecting every problem.

use super::issue::ConfigIssue;
use super::keys::{Key, Shape};
use super::suggest::closest;
use super::yaml::{Core, Entry, Node, Value};
use std::collections::HashMap;

/// Errors and warnings found so far, and where each field of the file starts
/// (by path) so that checks across blocks can point at the right line.
#[derive(Debug, Default)]
pub(crate) struct Issues {
    pub errors: Vec<ConfigIssue>,
    pub warnings: Vec<ConfigIssue>,
    spots: HashMap<String, (usize, usize)>,
}

impl Issues {
    fn located(&self, path: &str, value: Option<String>, message: String) -> ConfigIssue {
        let issue = ConfigIssue::new(path, value, message);
        match self.spots.get(path) {
            Some(&(line, column)) => issue.at(line, column),
            None => issue,
        }
    }

    /// An error at `path`, placed at the field's position when the file has it.
    pub fn error(&mut self, path: &str, value: Option<&str>, message: impl Into<String>) {
        let issue = self.located(path, value.map(str::to_string), message.into());
        self.errors.push(issue);
    }

    /// A warning, placed like [`Issues::error`].
    pub fn warn(&mut self, path: &str, value: Option<&str>, message: impl Into<String>) {
        let issue = self.located(path, value.map(str::to_string), message.into());
        self.warnings.push(issue);
    }

    /// An error about `node`, showing its value.
    pub fn error_at(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        let issue = ConfigIssue::new(path, Some(node.render()), message).at(node.line, node.column);
        self.errors.push(issue);
    }

    /// A required key is missing from the block at `node`; `path` names the key.
    pub fn missing(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        self.errors.push(ConfigIssue::new(path, None, message).at(node.line, node.column));
    }

    /// An error made elsewhere (the YAML reader's, or one with its own position).
    pub fn push(&mut self, issue: ConfigIssue) {
        self.errors.push(issue);
    }

    /// Whether the file gives a (non-null) value at `path`, valid or not.
    pub fn has_spot(&self, path: &str) -> bool {
        self.spots.contains_key(path)
    }

    fn remember(&mut self, path: &str, node: &Node) {
        self.spots.insert(path.to_string(), (node.line, node.column));
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// True for an absent value: an empty value or `null` counts as a key left out.
pub(crate) fn is_null(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar(s) if s.core() == Core::Null)
}

/// The entries of a mapping, or an error when `node` is something else.
pub(crate) fn mapping<'a>(is: &mut Issues, path: &str, node: &'a Node) -> Option<&'a [Entry]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        _ => {
            is.error_at(path, node, "expected a mapping of keys to values");
            None
        }
    }
}

/// The entries of a block whose keys come from `keys`: unknown keys are errors
/// with a suggestion; keys another block type uses are errors, or, when
/// `unused_is_warning`, warnings (and still returned, so their values are
/// checked all the same); null values are dropped. `ty` is the block's type, when known.
pub(crate) fn known_entries<'a>(
    is: &mut Issues,
    path: &str,
    entries: &'a [Entry],
    keys: &'static [Key],
    ty: Option<&str>,
    unused_is_warning: bool,
) -> Vec<(&'static Key, &'a Entry)> {
    let mut out = Vec::new();
    for e in entries {
        let p = join(path, &e.key);
        if !is_null(&e.value) {
            is.remember(&p, &e.value);
        }
        let Some(k) = keys.iter().find(|k| k.name == e.key) else {
            let hint = match closest(&e.key, keys.iter().map(|k| k.name)) {
                Some(s) => format!("unknown key, did you mean '{s}'?"),
                None => {
                    format!("unknown key; known keys: {}", keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))
                }
            };
            let value = (!is_null(&e.value)).then(|| e.value.render());
            is.push(ConfigIssue::new(&p, value, hint).at(e.key_line, e.key_column));
            continue;
        };
        if is_null(&e.value) {
            continue;
        }
        if !k.is_used_by(ty) {
            let ty = ty.unwrap_or_default();
            let users = k.used_by.join(" or ");
            let msg = format!("not used by type '{ty}' (only by {users})");
            if unused_is_warning {
                is.warnings.push(
                    ConfigIssue::new(&p, Some(e.value.render()), format!("ignored: {msg}"))
                        .at(e.value.line, e.value.column),
                );
            } else {
                is.error_at(&p, &e.value, msg);
                continue;
            }
        }
        out.push((k, e));
    }
    out
}

/// A string: any scalar, read as written.
pub(crate) fn text(is: &mut Issues, path: &str, node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar(s) => Some(s.text.clone()),
        _ => {
            is.error_at(path, node, "expected a string");
            None
        }
    }
}

/// A non-empty string without leading or trailing spaces.
pub(crate) fn word(is: &mut Issues, path: &str, node: &Node) -> Option<String> {
    let s = text(is, path, node)?;
    if s.trim().is_empty() {
        is.error_at(path, node, "must not be empty");
        None
    } else if s.trim() != s {
        is.error_at(path, node, "must not start or end with spaces");
        None
    } else {
        Some(s)
    }
}

/// A list of strings.
pub(crate) fn text_list<'a>(is: &mut Issues, path: &str, node: &'a Node) -> Vec<(String, &'a Node, String)> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let p = format!("{path}[{i}]");
                word(is, &p, n).map(|s| (s, n, p))
            })
            .collect(),
        _ => {
            is.error_at(path, node, "expected a list of strings, e.g. [a, b]; for one item write [a]");
            Vec::new()
        }
    }
}

/// A boolean; besides YAML's `true`/`false`, `yes`/`no`/`on`/`off` in any case,
/// quoted or not, because YAML 1.1 files use them.
pub(crate) fn flag(is: &mut Issues, path: &str, node: &Node) -> Option<bool> {
    let parsed = match &node.value {
        Value::Scalar(s) => parse_flag(&s.text),
        _ => None,
    };
    if parsed.is_none() {
        is.error_at(path, node, "expected a boolean: true, false, yes, no, on or off");
    }
    parsed
}

pub(crate) fn parse_flag(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An integer within `min..=max`; a string holding a decimal integer is cast.
pub(crate) fn integer(is: &mut Issues, path: &str, node: &Node, min: i64, max: i64) -> Option<i64> {
    let parsed = match &node.value {
        Value::Scalar(s) => match s.core() {
            Core::Int(n) => Some(n),
            Core::Str => parse_decimal(&s.text),
            _ => None,
        },
        _ => None,
    };
    match parsed {
        None => {
            is.error_at(path, node, "expected an integer");
            None
        }
        Some(n) => match bounds_message(n, min, max) {
            Some(msg) => {
                is.error_at(path, node, msg);
                None
            }
            None => Some(n),
        },
    }
}

/// A decimal integer, with optional sign and surrounding spaces.
pub(crate) fn parse_decimal(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// Why `n` is out of `min..=max`, if it is.
pub(crate) fn bounds_message(n: i64, min: i64, max: i64) -> Option<String> {
    if n < min {
        Some(if min == -1 {
            "must be -1 (unlimited) or at least 0".to_string()
        } else {
            format!("must be at least {min}")
        })
    } else if n > max {
        Some(format!("must be at most {max}"))
    } else {
        None
    }
}

/// One of `options`, with a suggestion when the value is close to one.
pub(crate) fn choice(is: &mut Issues, path: &str, node: &Node, options: &[&'static str]) -> Option<&'static str> {
    let s = text(is, path, node)?;
    if let Some(o) = options.iter().find(|o| **o == s) {
        return Some(o);
    }
    let msg = match closest(&s, options.iter().copied()) {
        Some(c) => format!("must be one of {}; did you mean '{c}'?", options.join(", ")),
        None => format!("must be one of {}", options.join(", ")),
    };
    is.error_at(path, node, msg);
    None
}

/// Reads a value by its table shape (for the shapes that need no more checks).
pub(crate) fn shaped_integer(is: &mut Issues, path: &str, node: &Node, key: &Key) -> Option<i64> {
    match key.shape {
        Shape::Integer { min, max } => integer(is, path, node, min, max),
        _ => unreachable!("{} is not an integer key", key.name),
    }
}

/// Reads a choice by its table shape.
pub(crate) fn shaped_choice(is: &mut Issues, path: &str, node: &Node, key: &Key) -> Option<&'static str> {
    match key.shape {
        Shape::Choice(options) => choice(is, path, node, options),
        _ => unreachable!("{} is not a choice key", key.name),
    }
}

/// "a" or "an" before `word`, for messages built around a type name.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}
