//! The planner: fleet + lock → plan. Pure and deterministic.

mod lock;
mod model;

pub use lock::{Lock, LockedCluster};
pub use model::*;

use meshfleet_spec::{Diagnostic, Fleet, Report};

/// Plan a validated fleet against the lock it was last planned with (if any).
pub fn plan(_fleet: &Fleet, _lock: Option<&Lock>) -> Result<Plan, Report> {
    let mut r = Report::default();
    r.push(Diagnostic::error("", "the planner is not available yet"));
    Err(r)
}
