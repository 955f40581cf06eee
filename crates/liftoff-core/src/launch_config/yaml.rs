//! The file as a tree of positioned YAML nodes, read with granit-parser's event
//! stream rather than serde so that every node keeps its line and column, every
//! duplicate key is found (at any depth) and reading goes on after a bad value.
//! Bounded: the caller caps the size, nesting is capped here, and aliases are
//! refused, so an alias bomb has nothing to expand.

use super::issue::ConfigIssue;
use super::reader::join;
use granit_parser::{Event, Options, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Deepest nesting of mappings and sequences accepted (a Kubernetes Job
/// manifest in `kaniko-config` needs about a dozen levels).
pub(crate) const MAX_NESTING: usize = 64;

/// A value with the position where it starts (line and column, both 1-based).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair; the key is always a scalar (others are refused).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub key_column: usize,
    pub value: Node,
}

/// A scalar as written; `plain` is false when it was quoted, a block scalar or
/// tagged `!!str`, which makes it a string whatever it reads like.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    pub plain: bool,
}

/// What a plain scalar means under the YAML 1.2 core schema (so `no` and `on`
/// are strings, unlike YAML 1.1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Core {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

impl Scalar {
    /// The scalar's meaning under the core schema ([`Core::Str`] when not plain).
    pub fn core(&self) -> Core {
        if !self.plain {
            return Core::Str;
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Core::Null,
            "true" | "True" | "TRUE" => return Core::Bool(true),
            "false" | "False" | "FALSE" => return Core::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Core::Float(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => return Core::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Core::Float(f64::NAN),
            _ => {}
        }
        if let Some(n) = parse_core_int(t) {
            return Core::Int(n);
        }
        if is_core_float(t)
            && let Ok(f) = t.parse::<f64>()
        {
            return Core::Float(f);
        }
        Core::Str
    }
}

fn parse_core_int(t: &str) -> Option<i64> {
    if let Some(hex) = t.strip_prefix("0x") {
        return (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| i64::from_str_radix(hex, 16).ok())
            .flatten();
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return (!oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            .then(|| i64::from_str_radix(oct, 8).ok())
            .flatten();
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten()
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && frac.is_none_or(digits) && !(int.is_empty() && frac.is_none_or(str::is_empty));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

impl Node {
    /// The value as shown in messages: a scalar's text, or a compact flow form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        // messages cut values long before this; stop early on huge collections
        if out.len() > 200 {
            return;
        }
        match &self.value {
            Value::Scalar(s) => out.push_str(&s.text),
            Value::Seq(items) => {
                out.push('[');
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    n.render_into(out);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&e.key);
                    out.push_str(": ");
                    e.value.render_into(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as JSON, scalars read by the core schema (for `kaniko-config`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Scalar(s) => match s.core() {
                Core::Null => J::Null,
                Core::Bool(b) => J::Bool(b),
                Core::Int(n) => J::from(n),
                Core::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
                Core::Str => J::String(s.text.clone()),
            },
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }
}

enum Frame {
    Seq {
        path: String,
        line: usize,
        column: usize,
        items: Vec<Node>,
    },
    Map {
        path: String,
        line: usize,
        column: usize,
        entries: Vec<Entry>,
        key: Option<PendingKey>,
        seen: HashMap<String, usize>,
    },
}

/// A key waiting for its value; `None` text when the key was not a scalar.
struct PendingKey {
    text: Option<String>,
    line: usize,
    column: usize,
}

fn position(span: &Span) -> (usize, usize) {
    (span.start.line(), span.start.col() + 1)
}

/// Parses one YAML document into a tree. Problems that leave the tree usable
/// (duplicate keys, aliases, tags) are pushed to `issues` and reading goes on;
/// a syntax error ends it and `None` is returned. An empty document is `None`
/// with no issue.
pub(crate) fn parse(text: &str, issues: &mut Vec<ConfigIssue>) -> Option<Node> {
    let mut options = Options::default();
    options.emit_comments = false;
    options.block_nesting_limit = MAX_NESTING;
    options.flow_nesting_limit = MAX_NESTING;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    let mut failed = false;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(e) => e,
            Err(e) => {
                let m = e.marker();
                let mut message = format!("invalid yaml: {}", e.info());
                if message.contains("recursion limit") {
                    message.push_str(&format!(" (at most {MAX_NESTING} levels of nesting)"));
                }
                issues.push(ConfigIssue::new("", None, message).at(m.line(), m.col() + 1));
                failed = true;
                break;
            }
        };
        let (line, column) = position(&span);
        let path = match stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map { path, key: Some(PendingKey { text: Some(k), .. }), .. }) => join(path, k),
            Some(Frame::Map { path, .. }) => path.clone(),
        };
        let node = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    issues.push(
                        ConfigIssue::new("", None, "only one yaml document is allowed (found a second '---')")
                            .at(line, column),
                    );
                    failed = true;
                    break;
                }
                continue;
            }
            Event::Alias(_) => {
                issues.push(
                    ConfigIssue::new(&path, None, "yaml aliases (*name) are not supported; write the value out")
                        .at(line, column),
                );
                Node { value: Value::Scalar(Scalar { text: String::new(), plain: true }), line, column }
            }
            Event::Scalar(text, style, _anchor, tag) => {
                let mut plain = style == ScalarStyle::Plain;
                if let Some(tag) = tag {
                    match tag.core_suffix() {
                        Some("str") => plain = false,
                        Some("null" | "bool" | "int" | "float") => {}
                        _ => issues.push(
                            ConfigIssue::new(
                                &path,
                                Some(text.to_string()),
                                format!("yaml tag '{}' is not supported", tag.original()),
                            )
                            .at(line, column),
                        ),
                    }
                }
                Node { value: Value::Scalar(Scalar { text: text.into_owned(), plain }), line, column }
            }
            Event::SequenceStart(_, _anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", &path, line, column, issues);
                stack.push(Frame::Seq { path, line, column, items: Vec::new() });
                continue;
            }
            Event::MappingStart(_, _anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", &path, line, column, issues);
                stack.push(Frame::Map { path, line, column, entries: Vec::new(), key: None, seen: HashMap::new() });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { line, column, items, .. }) => Node { value: Value::Seq(items), line, column },
                Some(Frame::Map { line, column, entries, .. }) => Node { value: Value::Map(entries), line, column },
                None => continue,
            },
            // stream and document boundaries, comments, anchor metadata
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { path, entries, key, seen, .. }) => match key.take() {
                None => {
                    let text = match node.value {
                        Value::Scalar(s) => Some(s.text),
                        _ => {
                            issues.push(
                                ConfigIssue::new(path.as_str(), None, "keys must be strings, not mappings or lists")
                                    .at(node.line, node.column),
                            );
                            None
                        }
                    };
                    *key = Some(PendingKey { text, line: node.line, column: node.column });
                }
                Some(PendingKey { text: Some(k), line, column }) => {
                    if let Some(first) = seen.get(&k) {
                        issues.push(
                            ConfigIssue::new(
                                join(path, &k),
                                None,
                                format!("duplicate key (first given on line {first})"),
                            )
                            .at(line, column),
                        );
                    } else {
                        seen.insert(k.clone(), line);
                        entries.push(Entry { key: k, key_line: line, key_column: column, value: node });
                    }
                }
                Some(PendingKey { text: None, .. }) => {}
            },
        }
    }
    if failed { None } else { root }
}

fn check_collection_tag(
    tag: Option<&granit_parser::Tag>,
    expected: &str,
    path: &str,
    line: usize,
    column: usize,
    issues: &mut Vec<ConfigIssue>,
) {
    if let Some(tag) = tag
        && tag.core_suffix() != Some(expected)
    {
        issues.push(
            ConfigIssue::new(path, None, format!("yaml tag '{}' is not supported", tag.original())).at(line, column),
        );
    }
}
