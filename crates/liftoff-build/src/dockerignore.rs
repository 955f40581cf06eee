//! `.dockerignore` with Docker's own semantics (moby's `ignorefile` reader and
//! `patternmatcher`), not gitignore's: patterns are relative to the context
//! root (`*.pyc` matches only at the root, `**/*.pyc` everywhere), `*` and `?`
//! stop at `/`, `**` spans directories, a pattern that matches a directory
//! matches everything under it, and the last matching line wins, so a later
//! `!pattern` takes a path back.
//!
//! No Rust crate implements this matcher (those found only classify lines, or
//! live inside an application), and `globset` speaks another dialect (`[!a]`
//! negates there but is a class of `!` and `a` for Docker, `{a,b}` alternates
//! there but is literal for Docker, `**` is only special as a whole path
//! component there). So this file translates each pattern to a regular
//! expression exactly as moby's `Pattern.compile` does, including its exact,
//! prefix and suffix shortcuts (which differ from the regular expression for
//! a pattern such as `**foo`), and matches with `regex-automata`.

use regex_automata::meta::Regex;

/// A `.dockerignore` line Docker would refuse.
#[derive(Debug, thiserror::Error)]
pub enum DockerIgnoreError {
    /// `!` with nothing after it.
    #[error(".dockerignore line {line}: illegal exclusion pattern \"!\"")]
    BareExclusion { line: usize },
    /// An unterminated `[`, an unknown escape, a backwards range.
    #[error(".dockerignore line {line}: syntax error in pattern '{pattern}': {reason}")]
    BadPattern { line: usize, pattern: String, reason: String },
}

/// The parsed rules of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    exception: bool,
    /// The cleaned pattern, without its `!`.
    pattern: String,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// A trailing `**` after literal characters: the literal part is a prefix.
    Prefix(String),
    /// A leading `**` followed by literal characters.
    Suffix(String),
    Regex(Regex),
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file as `docker build` reads it.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            // As in moby: a comment is a line whose very first character is
            // `#`, before any trimming.
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(DockerIgnoreError::BareExclusion { line });
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let kind = compile(&cleaned).map_err(|reason| DockerIgnoreError::BadPattern {
                line,
                pattern: pattern.to_string(),
                reason,
            })?;
            rules.push(Rule { exception, pattern: cleaned, kind });
        }
        Ok(Self { rules })
    }

    /// Whether `path` (relative to the context root, `/`-separated, no
    /// leading `./`) is left out of the context: moby's
    /// `MatchesOrParentMatches`.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        if path == "." {
            return false;
        }
        let parents: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // An exclusion cannot change an excluded path, an exception
            // cannot change an included one.
            if rule.exception != excluded {
                continue;
            }
            let matched = rule.matches(&path) || parents.iter().any(|&end| rule.matches(&path[..end]));
            if matched {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether any rule starts with `!`: then an excluded directory must
    /// still be walked, since a path under it may be taken back.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rule {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.pattern,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }
}

/// moby's `Pattern.compile`, for `/` as the separator.
fn compile(pattern: &str) -> Result<MatchKind, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    detected = Detected::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                detected = Detected::Regex;
            }
            _ => re.push(ch),
        }
        first = false;
    }
    // A class left open is refused by Go's filepath.Match before any
    // regular expression is built; the compile below catches the rest.
    let kind = match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => MatchKind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Detected::Suffix => MatchKind::Suffix(pattern[2..].to_string()),
        Detected::Regex => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    };
    Ok(kind)
}

/// Go's `path.Clean`: the shortest equivalent path (`a//b/./c/..` is `a/b`,
/// `/../a` is `/a`, the empty path is `.`).
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn clean_is_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../a/../../b", "../../b"),
            ("foo/", "foo"),
            ("./foo", "foo"),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    /// The example of Docker's build documentation ("Dockerignore files").
    #[test]
    fn docker_documentation_example() {
        let di = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(di.excludes("somedir/temporary.txt"));
        assert!(di.excludes("somedir/temp"));
        assert!(di.excludes("somedir/subdir/temporary.txt"));
        assert!(di.excludes("tempa"));
        assert!(di.excludes("tempb"));
        assert!(!di.excludes("temporary.txt"), "*/temp* needs one directory level");
        assert!(!di.excludes("a/b/c/temp"), "*/*/temp* is exactly two levels");
        assert!(!di.excludes("# comment"));
    }

    #[test]
    fn star_star_matches_any_number_of_directories() {
        let di = ignore("**/*.go\n");
        assert!(di.excludes("main.go"), "**/ also matches no directory");
        assert!(di.excludes("a/b/c/main.go"));
        assert!(!di.excludes("main.go.txt"));
        let di = ignore("*.md\n");
        assert!(di.excludes("README.md"));
        assert!(!di.excludes("docs/guide.md"), "without **, patterns are anchored at the root");
        let di = ignore("foo/**\n");
        assert!(di.excludes("foo/bar/baz"));
        assert!(!di.excludes("foo"), "foo/** is what is under foo");
        let di = ignore("a/**/b\n");
        assert!(di.excludes("a/b"));
        assert!(di.excludes("a/x/y/b"));
        assert!(di.excludes("a/x/b/file"), "a matched directory takes its contents");
    }

    /// Docker's documented exception examples: `*.md` / `!README*.md`, and
    /// the order that decides.
    #[test]
    fn exceptions_and_order() {
        let di = ignore("*.md\n!README*.md\n");
        assert!(di.excludes("CHANGES.md"));
        assert!(!di.excludes("README-secret.md"));
        assert!(!di.excludes("README.md"));
        let di = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(di.excludes("README-secret.md"));
        assert!(!di.excludes("README.md"));
        let di = ignore("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!di.excludes("README-secret.md"), "the last matching line wins");
        assert!(di.has_exceptions());
    }

    #[test]
    fn directories_take_their_contents_and_exceptions_reach_inside() {
        let di = ignore("node_modules\n");
        assert!(di.excludes("node_modules"));
        assert!(di.excludes("node_modules/a/b.js"));
        assert!(!di.excludes("src/node_modules"), "anchored at the root");
        let di = ignore("data\n!data/keep.txt\n");
        assert!(di.excludes("data/big.bin"));
        assert!(!di.excludes("data/keep.txt"));
    }

    #[test]
    fn leading_slash_dot_and_trailing_slash_are_cleaned_away() {
        for pattern in ["/secret", "./secret", "secret/", "  secret  "] {
            let di = ignore(pattern);
            assert!(di.excludes("secret"), "{pattern:?}");
            assert!(di.excludes("secret/key"), "{pattern:?}");
            assert!(!di.excludes("other"), "{pattern:?}");
        }
    }

    #[test]
    fn go_dialect_not_gitignore_or_globset() {
        // `[!a]` is a class of '!' and 'a' for Go's regexp; `[^a]` negates.
        let di = ignore("[!a].txt\n");
        assert!(di.excludes("a.txt"));
        assert!(di.excludes("!.txt"));
        assert!(!di.excludes("b.txt"));
        let di = ignore("[^a].txt\n");
        assert!(di.excludes("b.txt"));
        assert!(!di.excludes("a.txt"));
        // braces are literal
        let di = ignore("{a,b}.txt\n");
        assert!(di.excludes("{a,b}.txt"));
        assert!(!di.excludes("a.txt"));
        // `.` is literal, `?` one character but not `/`
        let di = ignore("a.?\n");
        assert!(di.excludes("a.b"));
        assert!(!di.excludes("axb"));
        assert!(!di.excludes("a./"));
        // a backslash escapes
        let di = ignore("\\*.txt\n");
        assert!(di.excludes("*.txt"));
        assert!(!di.excludes("a.txt"));
    }

    /// moby's shortcuts: a leading `**` followed by literals is a suffix
    /// test, which (unlike the regular expression) matches inside a name.
    #[test]
    fn moby_suffix_shortcut() {
        let di = ignore("**foo\n");
        assert!(di.excludes("barfoo"));
        assert!(di.excludes("x/yfoo"));
        let di = ignore("**\n");
        assert!(di.excludes("anything/at/all"));
        let di = ignore("foo**\n");
        assert!(di.excludes("foobar"));
        assert!(di.excludes("foo/bar"));
    }

    #[test]
    fn comments_only_at_the_first_character_and_bom() {
        let di = ignore("\u{feff}# c\n #notacomment\n");
        assert!(di.excludes("#notacomment"));
        assert!(!di.excludes("# c"));
    }

    #[test]
    fn refused_lines_name_the_line() {
        let err = DockerIgnore::parse("a\n!\n").unwrap_err().to_string();
        assert_eq!(err, ".dockerignore line 2: illegal exclusion pattern \"!\"");
        let err = DockerIgnore::parse("ok\n[abc\n").unwrap_err().to_string();
        assert!(err.starts_with(".dockerignore line 2: syntax error in pattern '[abc'"), "{err}");
        let err = DockerIgnore::parse("[z-a]\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn empty_file_excludes_nothing() {
        let di = ignore("\n\n# only comments\n");
        assert!(di.is_empty());
        assert!(!di.excludes("anything"));
        assert!(!ignore("*").excludes("."), "the context root itself is never excluded");
    }
}
