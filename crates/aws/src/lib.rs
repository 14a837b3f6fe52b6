//! `meshfleet aws setup`: converge an AWS account to the fleet's prerequisites
//! (`prerequisites/aws.yaml`, computed by `meshfleet-render`).
//!
//! Order: the caller's identity (credentials) → the fleet's regions (enabled for the account) →
//! the Talos AMI of every region → the EC2 key pair of every region, when the fleet names one →
//! CAPA's IAM as one CloudFormation stack. Every step reads first and writes only the
//! difference, so a second run reports only `unchanged` and an interrupted run finishes when
//! re-run (a stack still in progress is waited for). Only the IAM stack is written, and last:
//! AMIs and key pairs are checked, never created, so a fleet that cannot boot changes nothing.
//!
//! Why CloudFormation rather than direct IAM calls: the stack is what `clusterawsadm bootstrap
//! iam create-cloudformation-stack` creates (same name, same role/profile/policy names), so an
//! account bootstrapped either way converges instead of colliding on `EntityAlreadyExists`; the
//! ten IAM resources change atomically (a failed update rolls back, never leaving a role without
//! its policy); the whole set is removed with one `delete-stack`; and one crate
//! (`aws-sdk-cloudformation`) replaces IAM's five-version policy bookkeeping.
//!
//! Layers: [`template`] and [`desired`] are pure (the stack body and the decisions,
//! golden-tested); [`api::AwsApi`] is the seam; [`real::SdkApi`] talks to AWS through the
//! official SDK (or to a stand-in at `--endpoint`); [`fake::FakeAws`] is the in-memory double.

#![warn(missing_docs)]
// Errors carry the API error and the fix; they are built once per failed run.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod desired;
pub mod error;
mod exec;
pub mod fake;
pub mod real;
pub mod template;

use std::time::Duration;

pub use api::{AwsApi, CallerIdentity, Image, RegionInfo, StackInfo, StackRequest};
pub use error::{ApiError, SetupError};
pub use exec::run;
pub use meshfleet_render::AwsPrerequisites;

/// How `setup` runs.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// AWS API endpoint override (e.g. `http://127.0.0.1:5000` for moto or the simulator), used
    /// for every service and region. `None`: AWS's endpoints.
    pub endpoint: Option<String>,
    /// Read only; report what would change.
    pub dry_run: bool,
    /// The region of the IAM stack (the caller's configured region, e.g. `AWS_REGION`).
    /// `None`: the fleet's first AWS region. An account has one CAPA IAM stack: use the region
    /// it already lives in.
    pub stack_region: Option<String>,
    /// Retries of transient failures, and how long to wait for the stack.
    pub retry: RetryPolicy,
}

/// Retries of transient API failures (throttling, 5xx, no response) and stack polling.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// First backoff; doubles per attempt (with jitter).
    pub base: Duration,
    /// Longest single backoff.
    pub max: Duration,
    /// Interval between reads of a stack that is in progress.
    pub poll: Duration,
    /// Longest wait for a stack to leave an `*_IN_PROGRESS` state.
    pub stack_timeout: Duration,
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
            poll: Duration::from_secs(5),
            // IAM stacks take a minute or two; CloudFormation's own default has no limit.
            stack_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// The step report, shared with the other setups (`meshfleet-steps`).
pub use meshfleet_steps::{Action, Report, Status, StepRow};

pub use meshfleet_steps::StepEvent;

/// A run that stopped: the steps done so far (the last one failed) and why.
pub type Failure = meshfleet_steps::Failure<SetupError>;

/// How CAPA gets its credentials: said after a run, never printing a secret.
/// (kubernetes-sigs/cluster-api-provider-aws:`docs/book/src/topics/full-multitenancy-implementation.md`@v2.11.1
/// exports `AWS_B64ENCODED_CREDENTIALS` from `clusterawsadm bootstrap credentials
/// encode-as-profile` before `clusterctl init --infrastructure aws`.)
pub const CAPA_CREDENTIALS_HINT: &str = "CAPA reads its AWS credentials from the Secret `clusterctl init` makes of AWS_B64ENCODED_CREDENTIALS: export AWS_B64ENCODED_CREDENTIALS=\"$(clusterawsadm bootstrap credentials encode-as-profile)\" then run `clusterctl init --infrastructure aws` (the credentials of a principal with the permissions of the `controllers.cluster-api-provider-aws.sigs.k8s.io` policy; the command prints them encoded, so keep its output out of logs)";

/// Converge the account against AWS (or `opts.endpoint`): builds the SDK clients from the
/// default credential chain, then [`run`]s the steps.
pub async fn setup(
    prereq: &AwsPrerequisites,
    opts: &SetupOptions,
    progress: impl FnMut(&StepEvent<'_>),
) -> Result<Report, Failure> {
    let fail = |error| Failure {
        report: Report::default(),
        error,
    };
    exec::check_inputs(prereq, opts).map_err(fail)?;
    let api = real::SdkApi::new(
        opts.endpoint.as_deref(),
        desired::home_region(prereq, opts.stack_region.as_deref()),
    )
    .await
    .map_err(fail)?;
    run(&api, prereq, opts, progress).await
}
