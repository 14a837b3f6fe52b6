//! The context built once in `main` and passed down: colour choices and stderr helpers.

use std::io::{IsTerminal, Write};

use crate::cli::GlobalArgs;

/// How a command ended, when it did not fail with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success: exit 0.
    Ok,
    /// The command ran and found a failure it already reported: exit 1.
    Failed,
    /// The input was invalid and the problems were already reported: exit 2.
    Invalid,
}

/// An error caused by the user's input or usage; `main` maps it to exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// What is wrong, with a hint.
    pub message: String,
}

impl Invalid {
    /// Wrap a message as an invalid-input error for `anyhow`. It returns the wrapped error, not
    /// `Self`, because every caller wants something it can `?` straight away.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            message: message.into(),
        })
    }
}

/// Per-run context.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// ANSI colour on stderr.
    pub colour_err: bool,
    /// ANSI colour on stdout (tables only; JSON and YAML never carry colour).
    pub colour_out: bool,
    /// Suppress progress and warnings on stderr.
    pub quiet: bool,
}

impl Ctx {
    /// Decide colour once: off when NO_COLOR is set (to anything), when `--color never`, or when
    /// the stream is not a terminal (unless `--color always`).
    pub fn new(global: &GlobalArgs) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let decide = |tty: bool| match global.color.as_str() {
            "always" => true,
            "never" => false,
            _ => tty && !no_color,
        };
        Self {
            colour_err: decide(std::io::stderr().is_terminal()),
            colour_out: decide(std::io::stdout().is_terminal()),
            quiet: global.quiet,
        }
    }

    /// Print an error line to stderr.
    pub fn error(&self, message: &str) {
        let label = if self.colour_err {
            "\x1b[1;31merror\x1b[0m"
        } else {
            "error"
        };
        let _ = writeln!(std::io::stderr(), "{label}: {message}");
    }

    /// Print a warning line to stderr (unless quiet).
    pub fn warn(&self, message: &str) {
        if self.quiet {
            return;
        }
        let label = if self.colour_err {
            "\x1b[1;33mwarning\x1b[0m"
        } else {
            "warning"
        };
        let _ = writeln!(std::io::stderr(), "{label}: {message}");
    }

    /// Print a progress/info line to stderr (unless quiet).
    pub fn info(&self, message: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "{message}");
        }
    }
}
