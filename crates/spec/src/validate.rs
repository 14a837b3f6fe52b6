//! Validation: a structural pass against the fleet's JSON schema, then the semantic rules.
//! (Being filled in; the signatures are stable.)

use std::sync::OnceLock;

use serde_json::Value;

use crate::diag::{Diagnostic, Report};
use crate::model::Fleet;
use crate::source::SourceMap;

/// A `MAJOR.MINOR.PATCH` version, with or without a leading `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parse `v1.35.4` or `1.19.5`; pre-release suffixes such as `-rc.1` are accepted and dropped.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Self { major, minor, patch })
    }
}

/// The version matrix this release supports.
pub struct SupportedVersions;

/// The fleet file's JSON schema, derived once from the types.
pub(crate) fn fleet_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::to_value(schemars::schema_for!(Fleet)).unwrap_or(Value::Null))
}

pub(crate) fn structural(tree: &Value, _map: &SourceMap) -> Result<Fleet, Report> {
    serde_json::from_value(tree.clone()).map_err(|e| {
        let mut r = Report::default();
        r.push(Diagnostic::error("", e.to_string()));
        r
    })
}

pub(crate) fn semantic(_fleet: &Fleet) -> Report {
    Report::default()
}
