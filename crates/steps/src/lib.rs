//! The step report of `gcp setup`, `aws setup` and `net setup`.
//!
//! Every setup converges a list of cloud resources one after another and reports each as a row:
//! its kind, its name, what was (or would be) done and how it ended. The three setups share this
//! one definition so the CLI prints them with one table and one JSON shape
//! (`{"steps":[{"kind","name","action","status","detail"}]}`), and a user reads every setup's
//! output the same way.

use std::time::Duration;

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

/// Progress of a run, for a caller that prints as it goes.
#[derive(Debug, Clone, Copy)]
pub enum StepEvent<'a> {
    /// A step begins (reads, then possibly writes).
    Started {
        /// Step kind.
        kind: &'static str,
        /// Resource name.
        name: &'a str,
    },
    /// A write was sent and the step now waits for the cloud to finish it.
    Waiting {
        /// Step kind.
        kind: &'static str,
        /// Resource name.
        name: &'a str,
        /// What it waits for, as said to a person (`CloudFormation`, `the operation`).
        on: &'static str,
    },
    /// A step ended.
    Finished(&'a StepRow),
}

/// A run that stopped: the steps done so far (the failed one last) and why.
#[derive(Debug)]
pub struct Failure<E> {
    /// Steps done before the failure, the failed step last.
    pub report: Report,
    /// Why it stopped.
    pub error: E,
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// An API error that may be worth another attempt (throttling, a 5xx, no response).
pub trait Transient: std::fmt::Display {
    /// True when the same call may succeed if sent again.
    fn is_transient(&self) -> bool;
}

/// How a setup retries one call: `attempts` in all (the first included), waiting `base`, then
/// twice as long each time up to `max`, with up to +50 % jitter so that concurrent runs do not
/// retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// First wait.
    pub base: Duration,
    /// Longest single wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn wait(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        capped + capped.mul_f64(fastrand::f64() * 0.5)
    }

    /// Call `f` until it succeeds, fails with an error that is not transient, or runs out of
    /// attempts. The calls themselves stay single-shot, so a seam's fake never retries.
    pub async fn retry<T, E: Transient>(
        &self,
        mut f: impl AsyncFnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::debug!(attempt, error = %e, "retrying");
                    tokio::time::sleep(self.wait(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
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

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
        }
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    const QUICK: Backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_attempts() {
        let mut calls = 0;
        let r: Result<(), E> = QUICK
            .retry(async || {
                calls += 1;
                Err(E(true))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_a_success_ends_the_loop() {
        let mut calls = 0;
        let r: Result<(), E> = QUICK
            .retry(async || {
                calls += 1;
                Err(E(false))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r: Result<u8, E> = QUICK
            .retry(async || {
                calls += 1;
                if calls < 2 { Err(E(true)) } else { Ok(7) }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 2);
    }

    #[test]
    fn waits_double_up_to_the_cap_with_at_most_half_again_of_jitter() {
        let b = Backoff {
            attempts: 9,
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        for (attempt, floor) in [(1, 100), (2, 200), (3, 350), (8, 350)] {
            let w = b.wait(attempt).as_millis();
            assert!(
                w >= floor && w <= floor * 3 / 2,
                "attempt {attempt}: {w} ms"
            );
        }
    }
}
