//! Content-addressed image tags: the tag is a hash of everything that
//! determines the image (the context's files and Dockerfile, the base
//! images' digests, build args, platform), so unchanged content is found in
//! the registry and never rebuilt, and changed content (even under the same
//! job version or alias) always gets a new tag. The reference hashed the
//! job's name and version instead, and reused stale images when an alias moved.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Hex characters of the hash kept in the tag: 96 bits.
const TAG_HEX: usize = 24;

/// What goes into a tag.
pub struct TagInputs<'a> {
    /// The context's digest (files, modes, Dockerfile).
    pub context_digest: &'a str,
    /// Each base image and its digest.
    pub base_digests: &'a [(String, String)],
    pub build_args: &'a BTreeMap<String, String>,
    pub platform: Option<&'a str>,
}

/// `lf-<24 hex>`: a valid docker tag.
pub fn content_tag(inputs: &TagInputs<'_>) -> String {
    let mut h = Sha256::new();
    // length-prefixed fields: no two input sets hash the same bytes
    let mut field = |label: &str, value: &str| {
        h.update(label.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value.as_bytes());
    };
    field("context", inputs.context_digest);
    for (image, digest) in inputs.base_digests {
        field("base", image);
        field("digest", digest);
    }
    for (k, v) in inputs.build_args {
        field("arg", k);
        field("value", v);
    }
    field("platform", inputs.platform.unwrap_or(""));
    format!("lf-{}", &hex::encode(h.finalize())[..TAG_HEX])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(ctx: &str, base: &[(&str, &str)], args: &[(&str, &str)], platform: Option<&str>) -> String {
        let base: Vec<(String, String)> = base.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let args: BTreeMap<String, String> = args.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        content_tag(&TagInputs { context_digest: ctx, base_digests: &base, build_args: &args, platform })
    }

    #[test]
    fn every_input_changes_the_tag_and_nothing_else_does() {
        let t = tag("sha256:aa", &[("python:3.11", "sha256:01")], &[("A", "1")], None);
        assert!(t.starts_with("lf-") && t.len() == 27, "{t}");
        assert_eq!(t, tag("sha256:aa", &[("python:3.11", "sha256:01")], &[("A", "1")], None), "stable");
        for other in [
            tag("sha256:ab", &[("python:3.11", "sha256:01")], &[("A", "1")], None),
            tag("sha256:aa", &[("python:3.11", "sha256:02")], &[("A", "1")], None),
            tag("sha256:aa", &[("python:3.12", "sha256:01")], &[("A", "1")], None),
            tag("sha256:aa", &[("python:3.11", "sha256:01")], &[("A", "2")], None),
            tag("sha256:aa", &[("python:3.11", "sha256:01")], &[("B", "1")], None),
            tag("sha256:aa", &[("python:3.11", "sha256:01")], &[("A", "1")], Some("linux/arm64")),
            tag("sha256:aa", &[], &[("A", "1")], None),
        ] {
            assert_ne!(t, other);
        }
        // field boundaries are kept: ("A", "1B") is not ("A1", "B")
        assert_ne!(tag("c", &[], &[("A", "1B")], None), tag("c", &[], &[("A1", "B")], None));
    }
}
