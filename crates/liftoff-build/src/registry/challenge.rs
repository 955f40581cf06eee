//! `Www-Authenticate` challenges (RFC 9110 §11.6.1), as registries send
//! them: `Basic realm="x"` or `Bearer realm="https://auth/token",service="s",scope="repository:r:pull"`.

/// One challenge: its scheme (lower-cased) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The parameter `name` (case-insensitive), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Every challenge in one header value, in order. A header may hold
/// several (`Basic realm="a", Bearer realm="b"`): a word not followed by `=`
/// starts a new one. Malformed parts are skipped, never an error: the
/// caller reports "no usable challenge" with the header it got.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    while i < b.len() {
        skip(&mut i, b" \t,");
        let start = i;
        while i < b.len() && !b" \t,=".contains(&b[i]) {
            i += 1;
        }
        if start == i {
            // a stray '=': skip it
            i += 1;
            continue;
        }
        let word = &header[start..i];
        let mut j = i;
        skip(&mut j, b" \t");
        if j < b.len() && b[j] == b'=' {
            j += 1;
            skip(&mut j, b" \t");
            let value = if j < b.len() && b[j] == b'"' {
                j += 1;
                let mut v = String::new();
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    // the header is &str, so whole characters are copied
                    let ch = header[j..].chars().next().unwrap_or_default();
                    v.push(ch);
                    j += ch.len_utf8();
                }
                j += 1;
                v
            } else {
                let s = j;
                while j < b.len() && !b" \t,".contains(&b[j]) {
                    j += 1;
                }
                header[s..j].to_string()
            };
            i = j;
            if let Some(c) = out.last_mut() {
                c.params.push((word.to_ascii_lowercase(), value));
            }
        } else {
            out.push(Challenge { scheme: word.to_ascii_lowercase(), params: Vec::new() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges_are_parsed() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("Service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:samalba/my-app:pull,push"), "commas inside quotes");

        let c = parse_challenges(r#"Basic realm="basic-realm""#);
        assert_eq!(c, vec![Challenge { scheme: "basic".into(), params: vec![("realm".into(), "basic-realm".into())] }]);

        // several challenges, unquoted values, spaces around '=', escapes
        let c = parse_challenges(
            r#"Basic realm=reg , BEARER realm = "http://127.0.0.1:1/t\"x", error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].scheme.as_str(), c[0].param("realm")), ("basic", Some("reg")));
        assert_eq!((c[1].scheme.as_str(), c[1].param("realm")), ("bearer", Some("http://127.0.0.1:1/t\"x")));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));

        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Bearer").len(), 1);
        // junk does not panic and yields nothing usable
        assert!(parse_challenges("=\"\",=").iter().all(|c| c.param("realm").is_none()));
        assert_eq!(parse_challenges(r#"Bearer realm="unterminated"#)[0].param("realm"), Some("unterminated"));
        assert_eq!(parse_challenges("Bearer realm=\"ü\"")[0].param("realm"), Some("ü"));
    }
}
