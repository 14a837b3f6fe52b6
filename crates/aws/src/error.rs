//! Errors: what an AWS API said ([`ApiError`]) and what `setup` tells the operator
//! ([`SetupError`], each with the fix).

/// How a call failed before (or without) a service answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The service answered with an error code.
    Service,
    /// No credentials could be loaded (or the provider failed).
    Credentials,
    /// No response: connection refused, DNS, TLS.
    Transport,
    /// The call timed out.
    Timeout,
    /// The client could not build the request.
    Client,
}

/// One failed AWS API call, normalised from the SDK's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiError {
    /// The IAM action of the call, e.g. `ec2:DescribeImages` (what a policy must allow).
    pub action: &'static str,
    /// Region the call went to, when regional.
    pub region: String,
    /// How it failed.
    pub failed: Failed,
    /// HTTP status, when the call got a response.
    pub http: Option<u16>,
    /// AWS error code (`ValidationError`, `UnauthorizedOperation`, `ExpiredToken`, …).
    pub code: String,
    /// AWS's message (or the transport's).
    pub message: String,
}

impl ApiError {
    /// A service error.
    pub fn service(
        action: &'static str,
        http: u16,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            action,
            region: String::new(),
            failed: Failed::Service,
            http: Some(http),
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A failure without a service answer.
    pub fn other(action: &'static str, failed: Failed, message: impl Into<String>) -> Self {
        Self {
            action,
            region: String::new(),
            failed,
            http: None,
            code: String::new(),
            message: message.into(),
        }
    }

    /// The same error, saying which region.
    pub fn in_region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        self
    }

    fn describe(&self) -> String {
        let mut s = self.action.to_string();
        if !self.region.is_empty() {
            s.push_str(&format!(" in {}", self.region));
        }
        match self.failed {
            Failed::Service => {
                if let Some(h) = self.http {
                    s.push_str(&format!(": HTTP {h}"));
                }
                if !self.code.is_empty() {
                    s.push_str(&format!(" {}", self.code));
                }
            }
            Failed::Credentials => s.push_str(": no usable credentials"),
            Failed::Transport => s.push_str(": no response"),
            Failed::Timeout => s.push_str(": timed out"),
            Failed::Client => s.push_str(": request not built"),
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// CloudFormation's answer to an update that changes nothing.
    pub fn is_no_updates(&self) -> bool {
        self.code == "ValidationError" && self.message.contains("No updates are to be performed")
    }

    /// CloudFormation's `ValidationError` for a stack that does not exist.
    pub fn is_stack_missing(&self) -> bool {
        self.code == "ValidationError" && self.message.contains("does not exist")
    }

    /// Expired, invalid or missing credentials.
    pub fn is_credentials(&self) -> bool {
        self.failed == Failed::Credentials
            || matches!(
                self.code.as_str(),
                "ExpiredToken"
                    | "ExpiredTokenException"
                    | "RequestExpired"
                    | "InvalidClientTokenId"
                    | "UnrecognizedClientException"
                    | "SignatureDoesNotMatch"
                    | "AuthFailure"
                    | "InvalidAccessKeyId"
                    | "MissingAuthenticationToken"
            )
    }

    /// Expired (rather than absent or wrong) credentials.
    pub fn is_expired(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ExpiredToken" | "ExpiredTokenException" | "RequestExpired"
        ) || self.message.to_ascii_lowercase().contains("expired")
    }

    /// The principal lacks a permission.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code.as_str(),
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation"
        )
    }

    /// The region is not enabled for the account (or unknown to the service).
    pub fn is_region_unavailable(&self) -> bool {
        matches!(self.code.as_str(), "OptInRequired" | "InvalidRegion")
    }

    /// Worth retrying unchanged: throttling, 5xx, or no response at all.
    pub fn is_retryable(&self) -> bool {
        matches!(self.failed, Failed::Transport | Failed::Timeout)
            || self.http.is_some_and(|h| h >= 500 || h == 429)
            || matches!(
                self.code.as_str(),
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "RequestThrottled"
                    | "TooManyRequestsException"
                    | "ServiceUnavailable"
                    | "InternalFailure"
                    | "InternalError"
            )
    }
}

/// Why `setup` stopped, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The fleet's prerequisites or the options cannot be used (exit 2).
    #[error("{message}")]
    Invalid {
        /// What, where, why and the hint.
        message: String,
    },
    /// No credentials, or expired/invalid ones.
    #[error("AWS credentials {what} ({error})\n  hint: {hint}")]
    Credentials {
        /// `are missing`, `have expired` or `were rejected`.
        what: &'static str,
        /// The call that showed it.
        error: ApiError,
        /// How to get working ones.
        hint: &'static str,
    },
    /// The caller may not perform an action.
    #[error(
        "permission `{action}` is missing for the caller ({error})\n  hint: allow `{action}` to the principal running `meshfleet aws setup` (an administrator can attach a policy granting it), then re-run"
    )]
    Permission {
        /// The IAM action.
        action: String,
        /// The call.
        error: ApiError,
    },
    /// A fleet region the account cannot use.
    #[error("region `{region}` {why}\n  hint: {hint}")]
    Region {
        /// The region.
        region: String,
        /// Why.
        why: String,
        /// The fix.
        hint: String,
    },
    /// No Talos AMI of the fleet's version in a region.
    #[error(
        "no Talos AMI `{name}` (owner {owner}) in {region}: Talos {version} has no public {arch} AMI there\n  hint: check `spec.versions.talos` is a released Talos version; for a release without a public AMI in this region, import the image yourself (download `aws-{arch}.raw.xz` from the Talos release or Image Factory, upload it to S3, `aws ec2 import-snapshot`, then `aws ec2 register-image` named `{name}`) and point the fleet at your account's image"
    )]
    AmiMissing {
        /// Region.
        region: String,
        /// Talos version.
        version: String,
        /// Exact AMI name looked for.
        name: String,
        /// Owner looked in.
        owner: String,
        /// Talos architecture (`amd64`).
        arch: String,
    },
    /// The AMI exists but cannot be used yet (or ever).
    #[error("Talos AMI `{name}` ({id}) in {region} is `{state}`, not `available`\n  hint: {hint}")]
    AmiUnusable {
        /// Region.
        region: String,
        /// Name.
        name: String,
        /// `ami-…`.
        id: String,
        /// Its state.
        state: String,
        /// What to do.
        hint: &'static str,
    },
    /// The named key pair does not exist in a region.
    #[error(
        "EC2 key pair `{name}` (spec.providers.aws.sshKeyName) does not exist in {region}: CAPA passes it to RunInstances, which fails without it\n  hint: import it there (`aws ec2 import-key-pair --region {region} --key-name {name} --public-key-material fileb://KEY.pub`) or remove `sshKeyName` (Talos does not use SSH); meshfleet never creates key pairs"
    )]
    KeyPairMissing {
        /// Key-pair name.
        name: String,
        /// Region.
        region: String,
    },
    /// The IAM stack failed (creation rolled back, update rolled back, or stuck).
    #[error("CloudFormation stack `{stack}` in {region} is {status}: {reason}\n  hint: {hint}")]
    StackFailed {
        /// Stack name.
        stack: String,
        /// Region.
        region: String,
        /// Final status.
        status: String,
        /// CloudFormation's reasons.
        reason: String,
        /// The fix.
        hint: String,
    },
    /// Any other API failure, with the step it stopped.
    #[error("{kind} `{name}`: {error}\n  hint: {hint}")]
    Api {
        /// Step kind.
        kind: &'static str,
        /// Resource.
        name: String,
        /// The call.
        error: ApiError,
        /// What to try.
        hint: &'static str,
    },
}

impl SetupError {
    /// True for input problems (exit status 2).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }
}

const CREDENTIALS_HINT: &str = "meshfleet uses the default AWS credential chain: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE for a profile in ~/.aws/config (run `aws sso login --profile NAME` for an SSO profile)";
const EXPIRED_HINT: &str = "refresh them: `aws sso login` for an SSO profile, a new `aws sts get-session-token`/assume-role session for temporary keys, then re-run";

/// Turn an API error of a step into what the operator reads.
pub fn classify(kind: &'static str, name: &str, e: ApiError) -> SetupError {
    if e.is_credentials() {
        let (what, hint) = if e.failed == Failed::Credentials {
            ("are missing", CREDENTIALS_HINT)
        } else if e.is_expired() {
            ("have expired", EXPIRED_HINT)
        } else {
            ("were rejected", CREDENTIALS_HINT)
        };
        return SetupError::Credentials {
            what,
            error: e,
            hint,
        };
    }
    if e.is_access_denied() {
        return SetupError::Permission {
            action: denied_action(&e.message).unwrap_or(e.action).to_owned(),
            error: e,
        };
    }
    if e.is_region_unavailable() {
        return SetupError::Region {
            region: e.region.clone(),
            why: format!("cannot be used by this account ({e})"),
            hint: region_hint(&e.region),
        };
    }
    let hint = match e.failed {
        Failed::Transport | Failed::Timeout => {
            "check the network (or the --endpoint URL) and re-run: setup resumes where it stopped"
        }
        _ => "fix the cause named above and re-run: setup resumes where it stopped",
    };
    SetupError::Api {
        kind,
        name: name.to_owned(),
        error: e,
        hint,
    }
}

/// The hint for a region that is not enabled.
pub fn region_hint(region: &str) -> String {
    format!(
        "enable it for the account (`aws account enable-region --region-name {region}`, then wait until `aws account get-region-opt-status` says ENABLED) or move the cluster to an enabled region"
    )
}

/// The action an `AccessDenied` message names (`... is not authorized to perform: iam:CreateRole
/// on resource ...`), when it names one.
pub fn denied_action(message: &str) -> Option<&str> {
    let rest = message.split("perform: ").nth(1)?;
    let action = rest.split_whitespace().next()?;
    let action = action.trim_end_matches([',', '.', ';']);
    action.contains(':').then_some(action)
}

impl meshfleet_steps::Transient for ApiError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}
