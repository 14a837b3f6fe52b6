//! Errors: what a Google API said ([`ApiError`]) and what `setup` tells the operator
//! ([`SetupError`], each with the fix).

use std::path::PathBuf;

use serde_json::Value;

/// One failed Google API call, normalised from the SDK's error or Google's error JSON
/// (`{"error":{"code","message","status","errors":[{"reason"}]}}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiError {
    /// HTTP status, when the call got a response.
    pub http: Option<u16>,
    /// Canonical status name (`ALREADY_EXISTS`, `ABORTED`, …), when known.
    pub status: String,
    /// First `reason` of the error details (`SERVICE_DISABLED`, `conflict`, …), when any.
    pub reason: String,
    /// Google's message.
    pub message: String,
    /// The error's structured details as text (violations, error infos), for recognising
    /// cases such as an org-policy constraint that only the details name.
    pub details: String,
}

impl ApiError {
    /// An error with an HTTP status and message.
    pub fn new(http: u16, status: &str, message: impl Into<String>) -> Self {
        Self {
            http: Some(http),
            status: status.to_owned(),
            reason: String::new(),
            message: message.into(),
            details: String::new(),
        }
    }

    /// The same error with a reason.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_owned();
        self
    }

    /// A failure without an HTTP response (connection refused, timeout, bad client setup).
    pub fn transport(message: impl Into<String>) -> Self {
        Self {
            http: None,
            status: "UNAVAILABLE".to_owned(),
            reason: String::new(),
            message: message.into(),
            details: String::new(),
        }
    }

    /// Parse Google's error JSON; `None` when the body is not one.
    pub fn from_google_json(http: u16, body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let e = v.get("error")?;
        let reason = e["errors"][0]["reason"]
            .as_str()
            .or_else(|| {
                e["details"]
                    .as_array()?
                    .iter()
                    .find_map(|d| d["reason"].as_str())
            })
            .unwrap_or_default();
        Some(Self {
            http: Some(http),
            status: e["status"].as_str().unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
            details: if e["details"].is_null() {
                String::new()
            } else {
                e["details"].to_string()
            },
        })
    }

    fn describe(&self) -> String {
        let mut s = match self.http {
            Some(h) => format!("HTTP {h}"),
            None => "no response".to_owned(),
        };
        if !self.status.is_empty() {
            s.push(' ');
            s.push_str(&self.status);
        }
        if !self.reason.is_empty() && self.reason != self.status {
            s.push_str(&format!(" ({})", self.reason));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.http == Some(404) || (self.http.is_none() && self.status == "NOT_FOUND")
    }

    /// 409 that means "already exists" (not an etag conflict).
    pub fn is_already_exists(&self) -> bool {
        (self.http == Some(409) && self.status != "ABORTED") || self.status == "ALREADY_EXISTS"
    }

    /// 409 ABORTED (IAM policy etag mismatch): re-read and retry.
    pub fn is_aborted(&self) -> bool {
        self.status == "ABORTED" || (self.http == Some(409) && self.reason == "aborted")
    }

    /// 412 (a precondition such as `ifGenerationMatch` failed).
    pub fn is_precondition_failed(&self) -> bool {
        self.http == Some(412)
    }

    /// Worth retrying unchanged: 408, 429, 5xx, or no response at all.
    pub fn is_retryable(&self) -> bool {
        match self.http {
            Some(h) => h == 408 || h == 429 || (500..600).contains(&h),
            None => matches!(
                self.status.as_str(),
                "UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "INTERNAL" | "DEADLINE_EXCEEDED"
            ),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.status, self.reason, self.message, self.details
        )
        .to_ascii_lowercase()
    }

    fn mentions(&self, needle: &str) -> bool {
        self.text().contains(&needle.to_ascii_lowercase())
    }

    /// Billing not enabled on the project (enabling compute, or any compute call).
    pub fn is_billing_disabled(&self) -> bool {
        matches!(self.http, Some(400 | 403 | 412) | None)
            && (self.reason.eq_ignore_ascii_case("BILLING_DISABLED") || self.mentions("billing"))
    }

    /// The API itself is disabled on the project.
    pub fn is_service_disabled(&self) -> bool {
        self.reason.eq_ignore_ascii_case("SERVICE_DISABLED")
            || self.reason.eq_ignore_ascii_case("accessNotConfigured")
            || (self.mentions("has not been used in project") && self.mentions("disabled"))
    }

    /// The org policy that forbids service-account keys.
    pub fn is_key_creation_blocked(&self) -> bool {
        self.mentions("disableServiceAccountKeyCreation")
    }

    /// A fresh service account not yet visible to IAM policies (eventual consistency).
    pub fn is_member_not_found(&self) -> bool {
        self.http == Some(400) && self.mentions("does not exist")
    }

    /// 403 PERMISSION_DENIED (or 401).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self.http, Some(401 | 403)) || self.status == "PERMISSION_DENIED"
    }
}

/// Why `setup` stopped. Every variant says what, where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The input cannot be used (exit 2 in the CLI).
    #[error("{message}")]
    Invalid {
        /// What is wrong, with a hint.
        message: String,
    },
    /// An API client could not be set up (credentials, TLS).
    #[error("{message}")]
    Client {
        /// What failed, with a hint.
        message: String,
    },
    /// No usable Google credentials.
    #[error(
        "{kind} `{name}`: no usable Google credentials ({source})\n  hint: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a key file; for the simulator pass --endpoint"
    )]
    Unauthenticated {
        /// Step kind.
        kind: &'static str,
        /// Step name.
        name: String,
        /// The API's error.
        source: ApiError,
    },
    /// The caller lacks a permission.
    #[error(
        "{kind} `{name}`: permission denied ({source})\n  hint: grant {role} to the identity running setup (or run as a project Owner)"
    )]
    PermissionDenied {
        /// Step kind.
        kind: &'static str,
        /// Step name.
        name: String,
        /// The role that carries the missing permission.
        role: &'static str,
        /// The API's error.
        source: ApiError,
    },
    /// Billing is not enabled on the project.
    #[error(
        "{kind} `{name}`: billing is not enabled on project `{project}` ({source})\n  hint: link a billing account: gcloud billing projects link {project} --billing-account=XXXXXX-XXXXXX-XXXXXX, then re-run"
    )]
    BillingDisabled {
        /// Step kind.
        kind: &'static str,
        /// Step name.
        name: String,
        /// Project id.
        project: String,
        /// The API's error.
        source: ApiError,
    },
    /// An API the step needs is disabled.
    #[error(
        "{kind} `{name}`: an API is disabled on project `{project}` ({source})\n  hint: gcloud services enable compute.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com storage.googleapis.com serviceusage.googleapis.com --project {project} (setup enables them first when it may)"
    )]
    ServiceDisabled {
        /// Step kind.
        kind: &'static str,
        /// Step name.
        name: String,
        /// Project id.
        project: String,
        /// The API's error.
        source: ApiError,
    },
    /// The bucket name belongs to someone else (GET returned 403).
    #[error(
        "bucket `{bucket}` exists but belongs to someone else (or this identity cannot read it): {source}\n  hint: bucket names are global; pick another `spec.providers.gcp.imageBucket`, e.g. `{project}-meshfleet-talos`"
    )]
    BucketTaken {
        /// Bucket name.
        bucket: String,
        /// Project id (for the suggestion).
        project: String,
        /// The API's error.
        source: ApiError,
    },
    /// An organisation policy forbids service-account keys.
    #[error(
        "cannot create a key for `{email}`: the organisation policy `iam.disableServiceAccountKeyCreation` forbids service-account keys ({source})\n  hint: ask an organisation admin for an exception for project `{project}` (gcloud resource-manager org-policies disable-enforce iam.disableServiceAccountKeyCreation --project {project}), or run CAPG keyless with Workload Identity (GKE) or Workload Identity Federation"
    )]
    KeyCreationBlocked {
        /// Service-account email.
        email: String,
        /// Project id.
        project: String,
        /// The API's error.
        source: ApiError,
    },
    /// A resource exists with a field meshfleet cannot change in place.
    #[error(
        "{kind} `{name}` exists with {field} `{have}`, but the plan wants `{want}`; this cannot be changed in place\n  hint: {hint}"
    )]
    Immutable {
        /// Step kind.
        kind: &'static str,
        /// Resource name.
        name: String,
        /// Field.
        field: &'static str,
        /// Observed value.
        have: String,
        /// Desired value.
        want: String,
        /// How to resolve it.
        hint: &'static str,
    },
    /// Any other API failure, after retries.
    #[error("{kind} `{name}`: {source}")]
    Api {
        /// Step kind.
        kind: &'static str,
        /// Step name.
        name: String,
        /// The API's error.
        source: ApiError,
    },
    /// A local file could not be read or written.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The image could not be downloaded from its source URL.
    #[error(
        "cannot download the Talos image from `{url}`: {message}\n  hint: check the URL, or download it yourself and pass `--image-source PATH`"
    )]
    Download {
        /// Source URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl SetupError {
    /// True when the operator's input is at fault (the CLI exits 2).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }
}

/// Turn an API error into the operator-facing error for a step, recognising the cases that
/// have a precise fix.
pub(crate) fn classify(kind: &'static str, name: &str, project: &str, e: ApiError) -> SetupError {
    if e.status == "UNAUTHENTICATED" && e.http.is_none_or(|h| h == 401) {
        return SetupError::Unauthenticated {
            kind,
            name: name.to_owned(),
            source: e,
        };
    }
    if e.is_key_creation_blocked() {
        return SetupError::KeyCreationBlocked {
            email: name.to_owned(),
            project: project.to_owned(),
            source: e,
        };
    }
    if e.is_billing_disabled() {
        return SetupError::BillingDisabled {
            kind,
            name: name.to_owned(),
            project: project.to_owned(),
            source: e,
        };
    }
    if e.is_service_disabled() {
        return SetupError::ServiceDisabled {
            kind,
            name: name.to_owned(),
            project: project.to_owned(),
            source: e,
        };
    }
    if e.is_permission_denied() {
        return SetupError::PermissionDenied {
            kind,
            name: name.to_owned(),
            role: role_for(kind),
            source: e,
        };
    }
    SetupError::Api {
        kind,
        name: name.to_owned(),
        source: e,
    }
}

/// The predefined role that carries what a step needs.
fn role_for(kind: &str) -> &'static str {
    match kind {
        "api" => "roles/serviceusage.serviceUsageAdmin",
        "service-account" => "roles/iam.serviceAccountAdmin",
        "iam-role" => "roles/resourcemanager.projectIamAdmin",
        "key" => "roles/iam.serviceAccountKeyAdmin",
        "bucket" | "image-object" => "roles/storage.admin",
        "image" => "roles/compute.storageAdmin",
        "firewall" => "roles/compute.securityAdmin",
        _ => "roles/compute.networkAdmin",
    }
}

impl meshfleet_steps::Transient for ApiError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}
