//! `meshfleet gcp setup`: converge a GCP project to the fleet's prerequisites
//! (`prerequisites/gcp.yaml`, computed by `meshfleet-render`).
//!
//! Order: APIs → CAPG's service account → its IAM roles → its key → the image bucket → the
//! Talos raw disk → the Compute image → network → subnetworks → routers with Cloud NAT →
//! firewall rules. Every step reads first and writes only the difference, so a second run
//! reports only `unchanged` and an interrupted run finishes when re-run.
//!
//! Layers: [`desired`] is pure (bodies and decisions, golden-tested); [`api::GcpApi`] is the
//! seam; [`real::SdkApi`] talks to Google through the official `google-cloud-*` crates (or to
//! any stand-in at `--endpoint`); [`fake::FakeGcp`] is the in-memory double for tests.

#![warn(missing_docs)]
// Errors carry the API error and the fix; they are built once per failed run, so their size
// does not matter and boxing would only make matching on them clumsier.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod desired;
pub mod error;
mod exec;
pub mod fake;
pub mod real;

use std::path::PathBuf;
use std::time::Duration;

pub use api::{ComputeRef, CreatedKey, GcpApi};
pub use error::{ApiError, SetupError};
pub use exec::run;
pub use meshfleet_render::GcpPrerequisites;

/// How `setup` runs.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Google API base URL override (plain HTTP, anonymous credentials), e.g. the simulator's.
    /// `None`: Google's endpoints with Application Default Credentials.
    pub endpoint: Option<String>,
    /// Read only; report what would change.
    pub dry_run: bool,
    /// The Talos raw disk to upload: a file path or an http(s) URL. `None`: the Image Factory
    /// URL from the prerequisites.
    pub image_source: Option<String>,
    /// Where CAPG's service-account key is kept (0700 dir, 0600 file), normally
    /// `<fleet dir>/.meshfleet/gcp`.
    pub key_dir: PathBuf,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

/// Retries of transient API failures (429, 5xx, no response) and of the short windows where
/// Google is eventually consistent.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// First backoff; doubles per attempt (with jitter).
    pub base: Duration,
    /// Longest single backoff.
    pub max: Duration,
    /// How long a new service account may stay invisible to `setIamPolicy`.
    pub propagation: Duration,
}

impl RetryPolicy {
    /// The shared retry loop with this policy's attempts and waits.
    pub fn backoff(&self) -> meshfleet_steps::Backoff {
        meshfleet_steps::Backoff {
            attempts: self.attempts,
            base: self.base,
            max: self.max,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            max: Duration::from_secs(10),
            propagation: Duration::from_secs(90),
        }
    }
}

/// The step report, shared with the other setups (`meshfleet-steps`).
pub use meshfleet_steps::{Action, Report, Status, StepRow};

pub use meshfleet_steps::StepEvent;

/// A run that stopped: the steps done so far (the last one failed) and why.
pub type Failure = meshfleet_steps::Failure<SetupError>;

/// Converge the project against Google (or `opts.endpoint`): builds the SDK clients, then
/// [`run`]s the steps.
pub async fn setup(
    prereq: &GcpPrerequisites,
    opts: &SetupOptions,
    progress: impl FnMut(&StepEvent<'_>),
) -> Result<Report, Failure> {
    let fail = |error| Failure {
        report: Report::default(),
        error,
    };
    exec::check_inputs(prereq, opts).map_err(fail)?;
    let api = real::SdkApi::new(opts.endpoint.as_deref())
        .await
        .map_err(fail)?;
    run(&api, prereq, opts, progress).await
}
