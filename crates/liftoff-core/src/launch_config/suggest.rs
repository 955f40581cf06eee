//! "Did you mean" for misspelt keys and values. The distance is strsim's
//! optimal string alignment, so a swapped pair (`buidler`) counts as one edit.

/// The closest of `candidates` to `given`, if close enough to be a likely typo:
/// the same once `_`/`-` and case are ignored, or within two edits (three for
/// long words).
pub(crate) fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let given_n = norm(given);
    let limit = if given.chars().count() >= 12 { 3 } else { 2 };
    candidates
        .into_iter()
        .map(|c| {
            let d = if norm(c) == given_n { 0 } else { strsim::osa_distance(&given_n, &norm(c)) };
            (d, c)
        })
        .filter(|(d, c)| *d <= limit && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
