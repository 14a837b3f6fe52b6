//! The step report of `gcp setup`, `aws setup` and `net setup`.
//!
//! Every setup converges a list of cloud resources one after another and reports each as a row:
//! its kind, its name, what was (or would be) done and how it ended. The three setups share this
//! one definition so the CLI prints them with one table and one JSON shape
//! (`{"steps":[{"kind","name","action","status","detail"}]}`), and a user reads every setup's
//! output the same way.

use serde::Serialize;

/// What a step did (or would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The resource was absent.
    Create,
    /// The resource differed in a field meshfleet owns.
    Update,
    /// Nothing to do (or a check that passed).
    Unchanged,
}

impl Action {
    /// Lower-case name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Unchanged => "unchanged",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Applied (or nothing was needed).
    Done,
    /// Dry run: would be applied.
    Planned,
    /// Failed; the run stopped here.
    Failed,
}

impl Status {
    /// Lower-case name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Planned => "planned",
            Self::Failed => "failed",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRow {
    /// The kind of resource (`network`, `iam-stack`, `vpn-connection`, …; each setup documents
    /// its own kinds).
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// What was (or would be) done.
    pub action: Action,
    /// How it ended.
    pub status: Status,
    /// Extra facts: which fields differed, what a dry run waits for, where a key is kept, or the
    /// error. Never a secret.
    pub detail: String,
}

/// Every step of a run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The steps.
    pub steps: Vec<StepRow>,
}

impl Report {
    /// True when no step created or updated anything.
    pub fn all_unchanged(&self) -> bool {
        self.steps.iter().all(|s| s.action == Action::Unchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: Action) -> StepRow {
        StepRow {
            kind: "network",
            name: "fleet".into(),
            action,
            status: Status::Planned,
            detail: String::new(),
        }
    }

    #[test]
    fn a_row_serialises_in_the_printed_words() {
        let v = serde_json::to_value(row(Action::Create)).unwrap();
        assert_eq!(v["action"], Action::Create.as_str());
        assert_eq!(v["status"], Status::Planned.as_str());
        assert_eq!(v["kind"], "network");
    }

    #[test]
    fn all_unchanged_is_false_once_anything_was_written() {
        let mut r = Report {
            steps: vec![row(Action::Unchanged)],
        };
        assert!(r.all_unchanged());
        r.steps.push(row(Action::Update));
        assert!(!r.all_unchanged());
    }
}
