//! How results reach stdout: aligned tables and key/value listings for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;

use crate::error::Failure;

/// A table with a header row; columns are as wide as their widest cell.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| cell(c)).collect());
    }

    pub(crate) fn print(&self, out: &mut dyn Write) -> Result<(), Failure> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (n, (text, width)) in row.iter().zip(&widths).enumerate() {
                if n + 1 == row.len() {
                    line.push_str(text);
                } else {
                    let pad = width - text.chars().count();
                    line.push_str(text);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Prints `name  value` lines, names aligned.
pub(crate) fn print_fields(
    out: &mut dyn Write,
    fields: &[(String, String)],
) -> Result<(), Failure> {
    let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, value) in fields {
        writeln!(out, "{name:width$}  {}", cell(value))?;
    }
    Ok(())
}

/// Pretty JSON and a newline.
pub(crate) fn print_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::failed(format_args!("cannot write JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// A cell as one line without control characters: a receiver's answer or a stored name must
/// neither break the table nor send escape sequences to the operator's terminal.
pub(crate) fn cell(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// At most `max` characters, with `...` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max.saturating_sub(3)).collect();
        format!("{kept}...")
    }
}

/// `1 delivery`, `2 deliveries`.
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A Unix-milliseconds time for people.
pub(crate) fn time(ms: u64) -> String {
    callout::core::rfc3339(ms, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align_and_cells_stay_on_one_line() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["1".into(), "short".into()]);
        table.row(vec!["200".into(), "two\nlines\x1b[31m".into()]);
        let mut out = Vec::new();
        table.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID   NAME\n1    short\n200  two lines?[31m\n"
        );
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1u32, "delivery", "deliveries"), "1 delivery");
        assert_eq!(count(0u32, "delivery", "deliveries"), "0 deliveries");
    }

    #[test]
    fn shorten_cuts_with_an_ellipsis() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abcdefg", 6), "abc...");
    }
}
