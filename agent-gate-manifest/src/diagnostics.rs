//! Diagnostics: errors and warnings about a manifest file, each with its file,
//! byte span, 1-based line and column, message and optional help.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The manifest cannot be used.
    Error,
    /// The manifest loads, but something is probably not what the author meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Where something is defined: a file and a byte span in it, with the
/// 1-based line and column of the span's start.
///
/// `line == 0` (and `column == 0`, `span == 0..0`) means "the file as a whole",
/// used when a file cannot be read at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file, as it was given to the loader.
    pub file: PathBuf,
    /// Byte range in the file's text.
    pub span: Range<usize>,
    /// 1-based line of `span.start` (0 = whole file).
    pub line: usize,
    /// 1-based column (in characters) of `span.start` (0 = whole file).
    pub column: usize,
}

impl Location {
    /// The location of `span` in `source`, the text of `file`.
    pub fn new(file: &Path, source: &str, span: Range<usize>) -> Self {
        Self::indexed(file, source, &LineIndex::new(source), span)
    }

    /// [`Location::new`] with the line index of `source` built once by the caller.
    pub(crate) fn indexed(
        file: &Path,
        source: &str,
        lines: &LineIndex,
        span: Range<usize>,
    ) -> Self {
        let (line, column) = lines.line_column(source, span.start);
        Location {
            file: file.to_path_buf(),
            span,
            line,
            column,
        }
    }

    /// A location meaning the file as a whole.
    pub fn whole_file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            span: 0..0,
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `source`.
/// Offsets past the end or inside a character are clamped to a valid position.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(source).line_column(source, offset)
}

/// The byte offsets where the lines of one text start, so that many positions in it are found
/// by binary search instead of rescanning the text for each (which made loading a manifest
/// quadratic in its size).
#[derive(Clone, Debug)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes `source`.
    pub(crate) fn new(source: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// [`line_column`] of `offset` in `source`, the text this index was built from.
    pub(crate) fn line_column(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line start at or before `offset`; `starts[0] == 0`, so there is one.
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let line_start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = source
            .get(line_start..offset)
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        (line, column)
    }
}

/// One problem found in a manifest file.
///
/// Displays as `tools.toml:12:9: error: message` followed by `  help: ...`
/// on the next line when there is help.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in.
    pub file: PathBuf,
    /// Byte span of the offending key or value (`0..0` for the whole file).
    pub span: Range<usize>,
    /// 1-based line of the span's start (0 = the whole file).
    pub line: usize,
    /// 1-based column of the span's start (0 = the whole file).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, location, message)
    }

    /// A warning at `location`.
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, location, message)
    }

    fn new(severity: Severity, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: location.file,
            span: location.span,
            line: location.line,
            column: location.column,
            message: message.into(),
            help: None,
        }
    }

    /// Adds help text saying how to fix the problem.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The location of the problem.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            span: self.span.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.location(),
            self.severity,
            self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// A manifest could not be loaded: every error found, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ManifestError {
    /// The errors (never empty), in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    if diagnostics.len() > 1 {
        out.push_str(&format!(
            "\n{} errors in the tool manifest",
            diagnostics.len()
        ));
    }
    out
}

impl ManifestError {
    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.diagnostics.iter()
    }
}

impl<'a> IntoIterator for &'a ManifestError {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.diagnostics.iter()
    }
}

/// Suggests the candidate closest to `name`, if one is close enough to be a
/// likely typo ("did you mean").
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // after the two-byte é: column counts characters
        assert_eq!(line_column(src, 9), (2, 3));
        assert_eq!(line_column(src, 1000), (3, 1));
        // inside a multi-byte char clamps back
        assert_eq!(line_column(src, 8), (2, 2));
        // The index agrees with a plain count at every offset, multi-byte characters included.
        let text = "a\n\néé x\n\tz\n";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            let mut at = offset.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(
                index.line_column(text, offset),
                (line, column),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn display_has_location_and_help() {
        let d = Diagnostic::error(
            Location::new(Path::new("tools.toml"), "x\n  y", 4..5),
            "bad",
        )
        .with_help("fix it");
        assert_eq!(d.to_string(), "tools.toml:2:3: error: bad\n  help: fix it");
        let w = Diagnostic::warning(Location::whole_file(Path::new("t.toml")), "empty");
        assert_eq!(w.to_string(), "t.toml: warning: empty");
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            did_you_mean("descripton", ["description", "service"]),
            Some("description")
        );
        assert_eq!(did_you_mean("zzz", ["description", "service"]), None);
    }
}
