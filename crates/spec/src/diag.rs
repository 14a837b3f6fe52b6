//! Located diagnostics: what is wrong, where (file:line:column and field path), the value, a hint.
//!
//! Every layer of the core (parsing, validation, planning) reports problems as [`Diagnostic`]s
//! that name a field path; [`crate::SourceMap`] turns the path into a line and column, so a
//! planner error points into the fleet file exactly like a syntax error does.

use std::fmt::{self, Write as _};

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The fleet works but something deserves attention.
    Warning,
    /// The fleet cannot be planned or applied.
    Error,
}

/// A 1-based position in the fleet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
}

/// One problem found in a fleet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Field path such as `spec.clusters[2].zones[1]`; empty for the whole document.
    pub path: String,
    /// What is wrong, with values in backticks and no trailing period.
    pub message: String,
    /// The offending value as written, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where in the file; filled by [`crate::SourceMap::locate`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            value: None,
            hint: None,
            position: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, message)
        }
    }

    /// Attach the offending value.
    #[must_use]
    pub fn with_value(mut self, value: impl fmt::Display) -> Self {
        self.value = Some(value.to_string());
        self
    }

    /// Attach a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attach a position directly (for problems found before a field path exists).
    #[must_use]
    pub fn at(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render for a terminal: a headline, the location, the source line with a caret, the field
    /// path, the value and the hint. `source` is the file's text; `colour` adds ANSI styles.
    pub fn render(&self, file: &str, source: &str, colour: bool) -> String {
        let style = |code: &str, text: &str| {
            if colour {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_owned()
            }
        };
        let (label, code) = match self.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", style(code, label), style("1", &self.message));
        let width = self.position.map_or(1, |p| p.line.to_string().len());
        let arrow = " ".repeat(width + 1);
        let indent = " ".repeat(width + 2);
        match self.position {
            Some(p) => {
                let _ = writeln!(out, "{arrow}--> {file}:{}:{}", p.line, p.column);
                if let Some(text) = source.lines().nth(p.line.saturating_sub(1) as usize) {
                    let caret_at: String = text
                        .chars()
                        .take(p.column.saturating_sub(1) as usize)
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let carets = "^".repeat(underline_width(text, p.column));
                    let _ = writeln!(out, "{}|", &indent);
                    let _ = writeln!(out, " {} | {text}", p.line);
                    let _ = writeln!(out, "{}| {caret_at}{}", &indent, style(code, &carets));
                }
            }
            None => {
                let _ = writeln!(out, "{arrow}--> {file}");
            }
        }
        if !self.path.is_empty() {
            let _ = writeln!(out, "{}= field: {}", &indent, self.path);
        }
        if let Some(v) = &self.value {
            let _ = writeln!(out, "{}= value: `{v}`", &indent);
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "{}= {}: {h}", &indent, style("1;36", "hint"));
        }
        out
    }
}

/// Underline the token that starts at `column`: up to the next `:`, `,` or `}` that is not inside
/// it, or the end of the line, so the caret covers the key or scalar and not the whole line.
fn underline_width(line: &str, column: u32) -> usize {
    let rest: String = line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let token: String = rest
        .chars()
        .take_while(|c| !matches!(c, ':' | ',' | '}' | ']' | '#'))
        .collect();
    token.trim_end().chars().count().max(1)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.position {
            write!(f, "{}:{}: ", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass; errors and warnings kept apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Problems that stop the fleet from being planned.
    pub errors: Vec<Diagnostic>,
    /// Problems worth attention that do not stop anything.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    /// Add a diagnostic to the right list.
    pub fn push(&mut self, d: Diagnostic) {
        match d.severity {
            Severity::Error => self.errors.push(d),
            Severity::Warning => self.warnings.push(d),
        }
    }

    /// Add many.
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d);
        }
    }

    /// True when there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Sort both lists by position, then path, so output is stable and reads top to bottom.
    pub fn sort(&mut self) {
        let key = |d: &Diagnostic| (d.position, d.path.clone(), d.message.clone());
        self.errors.sort_by_key(key);
        self.warnings.sort_by_key(key);
    }
}

impl std::error::Error for Report {}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} error(s), {} warning(s)",
            self.errors.len(),
            self.warnings.len()
        )
    }
}
