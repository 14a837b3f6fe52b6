//! The Google API operations `setup` needs, as a trait at the point of use: the SDK-backed
//! client ([`crate::real::SdkApi`]) and the in-memory fake ([`crate::fake::FakeGcp`]) both
//! implement it, so the executor is tested in milliseconds and run for real unchanged.
//!
//! Resources travel as JSON in Google's REST shape (the SDK models (de)serialise to exactly
//! that), which keeps the pure diff independent of the SDK's Rust types.

use serde_json::Value;

use crate::error::ApiError;

/// A Compute resource meshfleet manages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComputeRef {
    /// `global/networks/{name}`.
    Network(String),
    /// `regions/{region}/subnetworks/{name}`.
    Subnetwork {
        /// Region.
        region: String,
        /// Name.
        name: String,
    },
    /// `regions/{region}/routers/{name}`.
    Router {
        /// Region.
        region: String,
        /// Name.
        name: String,
    },
    /// `global/firewalls/{name}`.
    Firewall(String),
    /// `global/images/{name}`.
    Image(String),
}

impl ComputeRef {
    /// The resource's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Network(n) | Self::Firewall(n) | Self::Image(n) => n,
            Self::Subnetwork { name, .. } | Self::Router { name, .. } => name,
        }
    }

    /// The path below `projects/{project}/`, e.g. `regions/us-east1/routers/r`.
    pub fn path(&self) -> String {
        match self {
            Self::Network(n) => format!("global/networks/{n}"),
            Self::Firewall(n) => format!("global/firewalls/{n}"),
            Self::Image(n) => format!("global/images/{n}"),
            Self::Subnetwork { region, name } => format!("regions/{region}/subnetworks/{name}"),
            Self::Router { region, name } => format!("regions/{region}/routers/{name}"),
        }
    }
}

/// A service-account key as IAM returns it at creation (the only time the private part exists).
pub struct CreatedKey {
    /// `projects/{p}/serviceAccounts/{email}/keys/{id}`.
    pub name: String,
    /// The credentials file (JSON), decoded.
    pub private_key_data: Vec<u8>,
}

impl std::fmt::Debug for CreatedKey {
    // The private key never reaches a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("name", &self.name)
            .field("private_key_data", &"<redacted>")
            .finish()
    }
}

/// Everything `setup` calls. Every method is one logical API call; inserts and enables wait for
/// their long-running operation and fail with the operation's error.
#[allow(async_fn_in_trait)]
pub trait GcpApi {
    /// `services:batchGet`: the state (`ENABLED`/`DISABLED`) of each named service
    /// (`compute.googleapis.com`), in the order asked.
    async fn services_state(
        &self,
        project: &str,
        services: &[String],
    ) -> Result<Vec<String>, ApiError>;
    /// `services:batchEnable`, waiting for the operation.
    async fn enable_services(&self, project: &str, services: &[String]) -> Result<(), ApiError>;
    /// `serviceAccounts.get`; `None` on 404.
    async fn get_service_account(
        &self,
        project: &str,
        email: &str,
    ) -> Result<Option<Value>, ApiError>;
    /// `serviceAccounts.create`.
    async fn create_service_account(
        &self,
        project: &str,
        account_id: &str,
        display_name: &str,
    ) -> Result<Value, ApiError>;
    /// `projects.getIamPolicy` (requested policy version 3).
    async fn get_iam_policy(&self, project: &str) -> Result<Value, ApiError>;
    /// `projects.setIamPolicy`; 409 ABORTED when the etag is stale.
    async fn set_iam_policy(&self, project: &str, policy: &Value) -> Result<Value, ApiError>;
    /// `serviceAccounts.keys.list` (user-managed): the keys' resource names.
    async fn list_keys(&self, project: &str, email: &str) -> Result<Vec<String>, ApiError>;
    /// `serviceAccounts.keys.create` (a Google credentials file).
    async fn create_key(&self, project: &str, email: &str) -> Result<CreatedKey, ApiError>;
    /// Storage `buckets.get`; `None` on 404 (403 means someone else owns the name).
    async fn get_bucket(&self, bucket: &str) -> Result<Option<Value>, ApiError>;
    /// Storage `buckets.insert`.
    async fn insert_bucket(&self, project: &str, body: &Value) -> Result<Value, ApiError>;
    /// Storage `buckets.patch`.
    async fn patch_bucket(&self, bucket: &str, body: &Value) -> Result<Value, ApiError>;
    /// Storage `objects.get` (metadata); `None` on 404.
    async fn get_object(&self, bucket: &str, object: &str) -> Result<Option<Value>, ApiError>;
    /// Upload a file as a new object, only if absent (`ifGenerationMatch=0`): `Ok(false)` when
    /// the object was already there (412).
    async fn upload_object(
        &self,
        bucket: &str,
        object: &str,
        file: &std::path::Path,
    ) -> Result<bool, ApiError>;
    /// Compute `get`; `None` on 404.
    async fn compute_get(&self, project: &str, r: &ComputeRef) -> Result<Option<Value>, ApiError>;
    /// Compute `insert` with a request id, waiting for the operation.
    async fn compute_insert(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError>;
    /// Compute `patch` (networks, firewalls, routers) or `setPrivateIpGoogleAccess`
    /// (subnetworks, body `{"privateIpGoogleAccess": bool}`), waiting for the operation.
    async fn compute_patch(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError>;
}
