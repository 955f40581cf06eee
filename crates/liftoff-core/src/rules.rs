//! The request rules a JSON Schema can state, written once: the server
//! checks values with these patterns and bounds, and the OpenAPI document
//! it serves gives the same ones (`schema_with` the functions below), so
//! the two cannot drift.
//!
//! The split the API keeps: a request that breaks a rule stated here is
//! refused with **400**; a request the document admits but that fails a
//! rule no schema can state (the resource type's option syntax, the queue's
//! template variables, a git remote's form) is refused with **422**, its
//! message naming the field.

use regex_automata::meta::Regex;
use std::sync::OnceLock;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

/// One pattern, as the document writes it and as the server checks it
/// (compiled once, on first use).
pub struct Rule {
    pub pattern: &'static str,
    compiled: OnceLock<Regex>,
}

impl Rule {
    const fn new(pattern: &'static str) -> Self {
        Self { pattern, compiled: OnceLock::new() }
    }

    pub fn is_match(&self, value: &str) -> bool {
        // The patterns are this module's statics, each compiled by its tests.
        self.compiled.get_or_init(|| Regex::new(self.pattern).expect("a valid rules pattern")).is_match(value)
    }
}

/// A name (entity, queue, project, job, alias, run id): 1–64 of
/// `[A-Za-z0-9._-]`, not starting with `.` or `-` (`queue::validate_name`).
pub static NAME: Rule = Rule::new("^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$");
/// A job reference `[[entity/]project/]name[:alias]`, each part a [`NAME`].
pub static JOB_REF: Rule = Rule::new(
    "^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,63}/){0,2}[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,63})?$",
);
/// `sha256:` and 64 lowercase hex digits.
pub static SHA256_DIGEST: Rule = Rule::new("^sha256:[0-9a-f]{64}$");
/// A build key or image reference: visible ASCII (OCI references are ASCII).
pub static IMAGE_REF: Rule = Rule::new("^[!-~]+$");
/// A run stream's event id, `<transitions>.<log>`: what `Last-Event-ID`
/// may be (`RunStreamPosition`'s parser takes exactly these).
pub static RUN_EVENT_ID: Rule = Rule::new("^[0-9]{1,18}\\.[0-9]{1,18}$");
/// A queue stream's event id (`history::queue_event_number` takes exactly
/// these).
pub static QUEUE_EVENT_ID: Rule = Rule::new("^[0-9]{1,18}$");
/// A template variable's name.
pub static VARIABLE_NAME: Rule = Rule::new("^[A-Za-z0-9_]+$");
/// An agent's version: no control characters.
pub static VERSION: Rule = Rule::new("^[^\\x00-\\x1f\\x7f-\\x9f]*$");

/// Every pattern here, for the test that the document states no other.
pub static ALL: [&Rule; 9] =
    [&NAME, &JOB_REF, &SHA256_DIGEST, &IMAGE_REF, &RUN_EVENT_ID, &QUEUE_EVENT_ID, &VARIABLE_NAME, &VERSION, &LABEL];

/// Integers as JSON Schema counts them: `3.0` is the integer 3 (the
/// document says `integer`, and a client or tester may send either form);
/// serde alone would refuse it. For request fields, with `deserialize_with`.
pub mod int {
    use serde::{Deserialize, Deserializer, de::Error};

    fn integral<'de, D: Deserializer<'de>>(n: serde_json::Number) -> Result<i128, D::Error> {
        if let Some(i) = n.as_i64() {
            return Ok(i.into());
        }
        if let Some(u) = n.as_u64() {
            return Ok(u.into());
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => Ok(f as i128),
            _ => Err(D::Error::custom(format!("invalid type: {n}, expected an integer"))),
        }
    }

    fn number<'de, D: Deserializer<'de>, T: TryFrom<i128>>(n: serde_json::Number) -> Result<T, D::Error> {
        let i = integral::<D>(n)?;
        T::try_from(i).map_err(|_| D::Error::custom(format!("{i} is out of range")))
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        number::<D, i64>(serde_json::Number::deserialize(d)?)
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        number::<D, u64>(serde_json::Number::deserialize(d)?)
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(number::<D, i64>).transpose()
    }

    pub fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(number::<D, i32>).transpose()
    }
}

/// `schema`, or `null` (for an `Option` field: serde reads `null` as absent).
fn or_null(schema: Schema) -> Schema {
    OneOfBuilder::new()
        .item(utoipa::openapi::RefOr::T(schema))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

pub fn optional_label_schema() -> Schema {
    or_null(label_schema())
}

pub fn optional_name_schema() -> Schema {
    or_null(name_schema())
}

pub fn optional_image_schema() -> Schema {
    or_null(image_schema())
}

pub fn optional_command_schema() -> Schema {
    or_null(command_schema())
}

fn string(pattern: Option<&str>, max_length: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(pattern).max_length(max_length)
}

/// A key's or saved filter's name: 1 to 64 characters, none a control
/// character (`api::check_label`; only spaces is refused with 422).
pub static LABEL: Rule = Rule::new("^[^\\x00-\\x1f\\x7f-\\x9f]+$");

pub fn label_schema() -> Schema {
    string(Some(LABEL.pattern), Some(crate::api::MAX_LABEL_CHARS)).min_length(Some(1)).into()
}

/// An agent's version: up to 64 characters, none a control character.
pub fn version_schema() -> Schema {
    string(Some(VERSION.pattern), Some(64)).into()
}

pub fn name_schema() -> Schema {
    string(Some(NAME.pattern), None).into()
}

pub fn names_schema() -> Schema {
    ArrayBuilder::new().items(string(Some(NAME.pattern), None)).into()
}

/// At least one name.
pub fn some_names_schema() -> Schema {
    ArrayBuilder::new().items(string(Some(NAME.pattern), None)).min_items(Some(1)).into()
}

pub fn job_ref_schema() -> Schema {
    string(Some(JOB_REF.pattern), None).into()
}

pub fn digest_schema() -> Schema {
    string(Some(SHA256_DIGEST.pattern), None).into()
}

pub fn build_key_schema() -> Schema {
    string(Some(IMAGE_REF.pattern), Some(crate::api::MAX_BUILD_KEY)).into()
}

pub fn image_schema() -> Schema {
    string(Some(IMAGE_REF.pattern), Some(crate::api::MAX_IMAGE_REF)).into()
}

/// Any JSON object.
pub fn object_schema() -> Schema {
    ObjectBuilder::new().schema_type(Type::Object).into()
}

/// `max_jobs`: -1 (unlimited) or at least 1.
pub fn max_jobs_schema() -> Schema {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(-1)).maximum(Some(-1)))
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(i32::MAX)))
        .description(Some("-1 for unlimited, else at least 1"))
        .into()
}

/// A non-empty list of command-line words, each within Linux's bound.
pub fn command_schema() -> Schema {
    ArrayBuilder::new().items(string(None, Some(crate::api::MAX_LAUNCH_ARG_BYTES))).min_items(Some(1)).into()
}

pub fn args_schema() -> Schema {
    ArrayBuilder::new().items(string(None, Some(crate::api::MAX_LAUNCH_ARG_BYTES))).into()
}

/// A warning: 1 to 4096 characters.
pub fn warning_schema() -> Schema {
    string(None, Some(crate::api::MAX_WARNING_CHARS)).min_length(Some(1)).into()
}

/// A log chunk's text.
pub fn log_data_schema() -> Schema {
    string(None, Some(crate::api::MAX_LOG_CHUNK_CHARS)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for rule in ALL {
            rule.is_match("");
        }
    }

    /// The name pattern and `validate_name` agree, on the edges of the rule.
    #[test]
    fn name_pattern_is_validate_name() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for s in [
            "a", "A9", "_x", "9", "a.b", "a-b", "a_b", &long, &too_long, "", ".a", "-a", "a b", "a/b", "é", "a\n",
            "a:b", "a..b", "\na",
        ] {
            let server = crate::queue::validate_name("name", s).is_ok();
            assert_eq!(NAME.is_match(s), server, "{s:?}: pattern and validate_name disagree");
        }
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[serde(deserialize_with = "int::i64")]
            a: i64,
            #[serde(default, deserialize_with = "int::opt_i32")]
            b: Option<i32>,
        }
        let t: T = serde_json::from_str(r#"{"a": 3.0, "b": -2}"#).unwrap();
        assert_eq!((t.a, t.b), (3, Some(-2)));
        assert!(serde_json::from_str::<T>(r#"{"a": 3.5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a": 1, "b": 3e10}"#).unwrap_err().to_string().contains("out of range"));
        assert!(serde_json::from_str::<T>(r#"{"a": "1"}"#).is_err());
    }

    #[test]
    fn label_pattern_is_check_label_but_for_spaces() {
        let long = "é".repeat(64);
        for s in ["admin", "ci bot <x>", &long, "a\tb", "a\u{85}b", "a\u{7f}", "\n"] {
            assert_eq!(LABEL.is_match(s), crate::api::check_label(s).is_ok(), "{s:?}");
        }
        assert!(
            LABEL.is_match("   ") && crate::api::check_label("   ").is_err(),
            "only spaces: 422, not in the pattern"
        );
    }

    #[test]
    fn job_ref_pattern_is_job_ref_parse() {
        for s in ["n", "p/n", "e/p/n", "n:v3", "e/p/n:latest", "a/b/c/d", "n:", ":a", "p//n", "p/.n", "n:a:b", "é", ""]
        {
            assert_eq!(JOB_REF.is_match(s), crate::job::JobRef::parse(s).is_ok(), "{s:?}");
        }
    }

    /// Odd strings a `Last-Event-ID` might hold, for the two tests below.
    const ODD_EVENT_IDS: [&str; 20] = [
        "", " ", "null", "-1", "+1", " 1", "1 ", "1\n", "\n1", "1\u{0}", "0x1", "1e3", "1_0", "\u{ff11}", "\u{663}",
        "1/2", ".", "..", "1..2", "a",
    ];

    /// The `Last-Event-ID` pattern the document states for a run stream
    /// and the parser the server reads it with agree: an id the document
    /// admits is never refused, one it does not is.
    #[test]
    fn run_event_id_pattern_is_the_position_parser() {
        use crate::history::RunStreamPosition;
        let max = "9".repeat(18);
        let over = "1".repeat(19);
        let accepted = ["0.0", "3.17", "007.010", &format!("{max}.{max}"), &format!("0.{max}"), "1.0", "0.1"];
        let refused = [
            "3",
            "3.",
            ".4",
            "a.b",
            "-1.0",
            "1.-0",
            "+1.0",
            "1.+0",
            " 1.2",
            "1.2 ",
            "1.2\n",
            "1 .2",
            "1. 2",
            "1.2.3",
            "1,2",
            "1:2",
            &format!("{over}.0"),
            &format!("0.{over}"),
            "\u{ff11}.\u{ff12}",
            "\u{663}.1",
            "0x1.0",
            "1e2.0",
        ];
        for s in accepted {
            assert!(RUN_EVENT_ID.is_match(s), "{s:?} is outside the pattern");
            assert!(s.parse::<RunStreamPosition>().is_ok(), "{s:?} is refused");
        }
        for s in refused.iter().copied().chain(ODD_EVENT_IDS).chain(["0", "12345"]) {
            assert_eq!(RUN_EVENT_ID.is_match(s), s.parse::<RunStreamPosition>().is_ok(), "{s:?}");
            assert!(!RUN_EVENT_ID.is_match(s), "{s:?} is inside the pattern");
        }
        // and what the server writes as ids, it reads back
        let p = RunStreamPosition { transitions: 999_999_999_999_999_999, log: 0 };
        assert!(RUN_EVENT_ID.is_match(&p.to_string()));
        assert_eq!(p.to_string().parse::<RunStreamPosition>(), Ok(p));
    }

    /// The same for a queue stream's ids.
    #[test]
    fn queue_event_id_pattern_is_the_queue_number_parser() {
        use crate::history::queue_event_number;
        let max = "9".repeat(18);
        let over = "1".repeat(19);
        for s in ["0", "5", "007", "123456789", max.as_str()] {
            assert!(QUEUE_EVENT_ID.is_match(s), "{s:?} is outside the pattern");
            assert_eq!(queue_event_number(s), Ok(s.parse::<i64>().unwrap()), "{s:?}");
        }
        for s in ODD_EVENT_IDS.iter().copied().chain([over.as_str(), "0.0", "3.17", "9223372036854775807"]) {
            assert_eq!(QUEUE_EVENT_ID.is_match(s), queue_event_number(s).is_ok(), "{s:?}");
            assert!(!QUEUE_EVENT_ID.is_match(s), "{s:?} is inside the pattern");
        }
    }

    #[test]
    fn digest_pattern_is_is_sha256_digest() {
        let good = format!("sha256:{}", "a".repeat(64));
        for s in [good.as_str(), "sha256:", &good.to_uppercase(), &format!("{good}0"), &good[..70]] {
            assert_eq!(SHA256_DIGEST.is_match(s), crate::job::is_sha256_digest(s), "{s:?}");
        }
    }
}
