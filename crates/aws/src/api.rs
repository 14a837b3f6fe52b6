//! The AWS API operations `setup` needs, as a trait at the point of use: the SDK-backed client
//! ([`crate::real::SdkApi`]) and the in-memory fake ([`crate::fake::FakeAws`]) both implement
//! it, so the executor is tested in milliseconds and run for real unchanged.

use serde::Serialize;

use crate::error::ApiError;

/// Who the credentials belong to (STS `GetCallerIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// 12-digit account id.
    pub account: String,
    /// The principal's ARN.
    pub arn: String,
}

/// A region as EC2 `DescribeRegions` (all regions) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region name.
    pub name: String,
    /// `opt-in-not-required`, `opted-in` or `not-opted-in` (empty when not reported).
    pub opt_in_status: String,
}

/// A stack as `DescribeStacks` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackInfo {
    /// `CREATE_COMPLETE`, `UPDATE_IN_PROGRESS`, `ROLLBACK_COMPLETE`, ….
    pub status: String,
    /// Why it is in that status, when CloudFormation says.
    pub reason: String,
}

/// A `CreateStack`/`UpdateStack` request (the golden-tested body of the write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackRequest {
    /// Stack name.
    pub stack_name: String,
    /// The template (JSON).
    pub template_body: String,
    /// `CAPABILITY_NAMED_IAM`: the template names its IAM resources.
    pub capabilities: Vec<&'static str>,
    /// Stack tags.
    pub tags: Vec<StackTag>,
}

/// A stack tag, `{"Key": ..., "Value": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackTag {
    /// Key.
    pub key: &'static str,
    /// Value.
    pub value: &'static str,
}

/// An AMI as `DescribeImages` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `ami-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// `x86_64`, `arm64`, ….
    pub architecture: String,
    /// `available`, `pending`, `failed`, ….
    pub state: String,
    /// Owning account.
    pub owner: String,
}

/// Everything `setup` calls. Every method is one API call, single-shot (the executor retries).
#[allow(async_fn_in_trait)]
pub trait AwsApi {
    /// STS `GetCallerIdentity`.
    async fn caller_identity(&self) -> Result<CallerIdentity, ApiError>;
    /// EC2 `DescribeRegions` with `AllRegions=true`, in the home region.
    async fn describe_regions(&self) -> Result<Vec<RegionInfo>, ApiError>;
    /// CloudFormation `DescribeStacks` of one stack; `None` when it does not exist (or is
    /// deleted).
    async fn describe_stack(&self, region: &str, name: &str)
    -> Result<Option<StackInfo>, ApiError>;
    /// CloudFormation `GetTemplate` (the current template body).
    async fn get_template(&self, region: &str, name: &str) -> Result<String, ApiError>;
    /// CloudFormation `CreateStack` (returns when accepted, not when complete).
    async fn create_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError>;
    /// CloudFormation `UpdateStack`; the "No updates are to be performed" `ValidationError`
    /// comes back as an error ([`ApiError::is_no_updates`]).
    async fn update_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError>;
    /// CloudFormation `DeleteStack`.
    async fn delete_stack(&self, region: &str, name: &str) -> Result<(), ApiError>;
    /// CloudFormation `DescribeStackEvents`: the reasons of the `*_FAILED` events, newest first.
    async fn stack_failures(&self, region: &str, name: &str) -> Result<Vec<String>, ApiError>;
    /// EC2 `DescribeImages` by owner and exact name.
    async fn find_images(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<Image>, ApiError>;
    /// EC2 `DescribeKeyPairs` of one name: `false` on `InvalidKeyPair.NotFound`.
    async fn key_pair_exists(&self, region: &str, name: &str) -> Result<bool, ApiError>;
}
