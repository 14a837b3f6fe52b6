//! The fleet file: types, parsing and validation.
//!
//! This crate is the bottom of meshfleet's pure core: it reads text and returns data or a
//! [`Report`] of every problem, each located by line, column and field path. It never touches
//! the file system, the network or the clock, so every rule is testable from a string.

mod diag;
mod model;
mod releases;
pub mod rollout;
mod source;
mod validate;

pub use diag::{Diagnostic, Position, Report, Severity};
pub use model::*;
pub use releases::{KnownRelease, Release, SupportedVersions, known_kubernetes, known_talos};
pub use rollout::{LabelSelector, LabelSelectorRequirement, Rollout, SelectorOperator};
pub use source::SourceMap;
pub use validate::parse_cidr;

/// A fleet file that parsed and passed validation, with the map back to its source.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed fleet, defaults filled in.
    pub fleet: Fleet,
    /// Field path → position, to locate later diagnostics (e.g. from the planner).
    pub map: SourceMap,
    /// Warnings found while validating (no errors: those make [`parse`] fail).
    pub warnings: Vec<Diagnostic>,
}

/// Parse and validate a fleet file's text. On failure the [`Report`] holds every error found,
/// each with a position where one is known.
pub fn parse(text: &str) -> Result<Loaded, Report> {
    let (tree, map) = source::parse_tree(text)?;
    let fleet = validate::structural(&tree, &map)?;
    let mut report = validate::semantic(&fleet);
    for d in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
        map.locate(d);
    }
    report.sort();
    if report.is_ok() {
        Ok(Loaded {
            fleet,
            map,
            warnings: report.warnings,
        })
    } else {
        Err(report)
    }
}

/// The JSON schema of the fleet file (for editors and for the structural validation pass).
pub fn json_schema() -> serde_json::Value {
    validate::fleet_schema().clone()
}
