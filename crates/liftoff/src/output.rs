//! Printing results: an aligned text table for people, or pretty JSON for scripts.

use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The `--format` option shared by list and show commands.
#[derive(Debug, Clone, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Rows of cells printed with each column padded to its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn with_header<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self { header: Some(header.into_iter().map(Into::into).collect()), rows: Vec::new() }
    }

    /// A two-column `key  value` listing, for show commands.
    pub fn key_values() -> Self {
        Self::default()
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn render(&self) -> String {
        let all: Vec<&Vec<String>> = self.header.iter().chain(self.rows.iter()).collect();
        let ncols = all.iter().map(|r| r.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..ncols)
            .map(|c| all.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in all {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `value` as pretty JSON, or the table `text` builds from it.
pub fn emit<T: Serialize>(format: Format, value: &T, text: impl FnOnce(&T) -> Table) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(value),
        Format::Text => print(&text(value).render()),
    }
}

/// Pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    print(&s)
}

fn print(rendered: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// `-` for a missing value.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// At most `max` characters, with an ellipsis when cut; newlines flattened.
pub fn truncate(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
pub fn time_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => format!("{ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::with_header(["A", "LONGER"]);
        t.row(["xyz", "1"]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn formats_times_and_truncates() {
        assert_eq!(time_ms(0), "1970-01-01 00:00:00Z");
        assert_eq!(time_ms(1_709_210_096_000), "2024-02-29 12:34:56Z");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("a\nb", 10), "a b");
    }
}
