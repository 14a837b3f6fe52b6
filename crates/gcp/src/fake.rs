//! An in-memory Google Cloud for tests: the resources `setup` touches, Google's status codes
//! (404, 409, 412, 409 ABORTED on a stale etag), operations that go PENDING → DONE, and
//! scripted failures per call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::api::{ComputeRef, CreatedKey, GcpApi};
use crate::error::ApiError;

/// A scripted failure of the next call to one method.
#[derive(Debug, Clone)]
struct Fault {
    method: &'static str,
    error: ApiError,
    /// Apply the call's effect, then fail (a lost response).
    after_effect: bool,
}

/// Everything the fake holds.
#[derive(Debug, Default)]
pub struct State {
    /// Enabled services.
    pub enabled: BTreeSet<String>,
    /// Service accounts by email.
    pub service_accounts: BTreeMap<String, Value>,
    /// The project IAM policy.
    pub policy: Value,
    /// Keys (resource names) per service-account email.
    pub keys: BTreeMap<String, Vec<String>>,
    /// Buckets by name.
    pub buckets: BTreeMap<String, Value>,
    /// Objects by (bucket, name).
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// Compute resources by path (`global/networks/n`, …).
    pub compute: BTreeMap<String, Value>,
    /// Every call made, by method name, in order.
    pub calls: Vec<&'static str>,
    /// Operations polled to completion.
    pub ops_polled: usize,
    request_ids: BTreeSet<String>,
    faults: VecDeque<Fault>,
    /// Fail the write after this many successful writes (an interruption).
    fail_after_writes: Option<usize>,
    writes: usize,
    etag: u64,
    /// Buckets that exist but belong to another project (GET → 403).
    pub foreign_buckets: BTreeSet<String>,
    /// Enabling `compute` fails with "billing not enabled".
    pub billing_disabled: bool,
    /// Key creation is blocked by the organisation policy.
    pub keys_blocked: bool,
    /// How many `setIamPolicy` calls after an account's creation fail with 400 "does not exist".
    pub sa_invisible_for: u32,
    /// How many `setIamPolicy` calls see a concurrent writer (409 ABORTED; the other writer's
    /// binding lands).
    pub concurrent_policy_writes: u32,
    /// A Compute operation that finishes with this error for this resource path.
    pub op_errors: BTreeMap<String, ApiError>,
    /// How long a Compute insert's operation runs (zero: done at once).
    pub insert_latency: std::time::Duration,
    /// The most Compute inserts seen running at the same time.
    pub max_inserts_in_flight: usize,
    inserts_in_flight: usize,
}

/// The fake. Cheap to build; inspect or script it through [`FakeGcp::state`].
#[derive(Debug, Default)]
pub struct FakeGcp {
    state: Mutex<State>,
}

const WRITES: [&str; 9] = [
    "enable_services",
    "create_service_account",
    "set_iam_policy",
    "create_key",
    "insert_bucket",
    "patch_bucket",
    "upload_object",
    "compute_insert",
    "compute_patch",
];

impl FakeGcp {
    /// An empty project.
    pub fn new() -> Self {
        let fake = Self::default();
        fake.state().policy = json!({
            "version": 1,
            "etag": "BwY0",
            "bindings": [{ "role": "roles/owner", "members": ["user:admin@example.com"] }],
        });
        fake
    }

    /// Lock the state (to script faults or inspect the result).
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the data is still what we want to inspect.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fail the next call to `method` with `error`.
    pub fn fail_next(&self, method: &'static str, error: ApiError) {
        self.state().faults.push_back(Fault {
            method,
            error,
            after_effect: false,
        });
    }

    /// Apply the next call to `method`, then fail it with `error` (the response was lost).
    pub fn fail_next_after_effect(&self, method: &'static str, error: ApiError) {
        self.state().faults.push_back(Fault {
            method,
            error,
            after_effect: true,
        });
    }

    /// Let `n` writes succeed, then fail every further write with a non-retryable error (a
    /// process interrupted at that point).
    pub fn interrupt_after_writes(&self, n: usize) {
        let mut s = self.state();
        s.fail_after_writes = Some(n);
        s.writes = 0;
    }

    /// Remove every scripted failure.
    pub fn clear_faults(&self) {
        let mut s = self.state();
        s.faults.clear();
        s.fail_after_writes = None;
    }

    /// Start a call: log it, and return a scripted failure if one is due. `Ok(true)` means
    /// "do it, then fail with the queued after-effect error".
    fn enter(&self, method: &'static str) -> Result<Option<ApiError>, ApiError> {
        let mut s = self.state();
        s.calls.push(method);
        if WRITES.contains(&method) {
            if let Some(n) = s.fail_after_writes
                && s.writes >= n
            {
                return Err(ApiError::new(400, "CANCELLED", "interrupted (test)"));
            }
            s.writes += 1;
        }
        let due = s.faults.iter().position(|f| f.method == method);
        if let Some(f) = due.and_then(|i| s.faults.remove(i)) {
            if f.after_effect {
                return Ok(Some(f.error));
            }
            return Err(f.error);
        }
        Ok(None)
    }

    fn finish<T>(after: Option<ApiError>, v: T) -> Result<T, ApiError> {
        match after {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "NOT_FOUND", format!("{what} was not found"))
    }

    fn exists(what: &str) -> ApiError {
        ApiError::new(409, "ALREADY_EXISTS", format!("{what} already exists"))
            .with_reason("alreadyExists")
    }
}

fn sa_name(project: &str, email: &str) -> String {
    format!("projects/{project}/serviceAccounts/{email}")
}

impl GcpApi for FakeGcp {
    async fn services_state(
        &self,
        _project: &str,
        services: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let after = self.enter("services_state")?;
        let s = self.state();
        let v = services
            .iter()
            .map(|n| {
                if s.enabled.contains(n) {
                    "ENABLED"
                } else {
                    "DISABLED"
                }
                .to_owned()
            })
            .collect();
        Self::finish(after, v)
    }

    async fn enable_services(&self, project: &str, services: &[String]) -> Result<(), ApiError> {
        let after = self.enter("enable_services")?;
        let mut s = self.state();
        if s.billing_disabled && services.iter().any(|n| n == "compute.googleapis.com") {
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                format!("Billing must be enabled for activation of service(s) 'compute.googleapis.com' in project '{project}' to proceed."),
            )
            .with_reason("UREQ_PROJECT_BILLING_NOT_FOUND"));
        }
        s.enabled.extend(services.iter().cloned());
        s.ops_polled += 1;
        Self::finish(after, ())
    }

    async fn get_service_account(
        &self,
        _project: &str,
        email: &str,
    ) -> Result<Option<Value>, ApiError> {
        let after = self.enter("get_service_account")?;
        let v = self.state().service_accounts.get(email).cloned();
        Self::finish(after, v)
    }

    async fn create_service_account(
        &self,
        project: &str,
        account_id: &str,
        display_name: &str,
    ) -> Result<Value, ApiError> {
        let after = self.enter("create_service_account")?;
        let mut s = self.state();
        let email = format!("{account_id}@{project}.iam.gserviceaccount.com");
        if s.service_accounts.contains_key(&email) {
            return Err(Self::exists(&email));
        }
        let v = json!({ "name": sa_name(project, &email), "email": email, "displayName": display_name });
        s.service_accounts.insert(email, v.clone());
        Self::finish(after, v)
    }

    async fn get_iam_policy(&self, _project: &str) -> Result<Value, ApiError> {
        let after = self.enter("get_iam_policy")?;
        let v = self.state().policy.clone();
        Self::finish(after, v)
    }

    async fn set_iam_policy(&self, _project: &str, policy: &Value) -> Result<Value, ApiError> {
        let after = self.enter("set_iam_policy")?;
        let mut s = self.state();
        if s.concurrent_policy_writes > 0 {
            s.concurrent_policy_writes -= 1;
            let mut cur = s.policy.clone();
            if let Some(b) = cur["bindings"].as_array_mut() {
                b.push(json!({ "role": "roles/viewer", "members": [format!("user:other{}@example.com", s.etag)] }));
            }
            s.etag += 1;
            cur["etag"] = json!(format!("etag-{}", s.etag));
            s.policy = cur;
            return Err(ApiError::new(
                409,
                "ABORTED",
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
        if policy["etag"] != s.policy["etag"] {
            return Err(ApiError::new(409, "ABORTED", "etag mismatch"));
        }
        let members: Vec<String> = policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        for m in members {
            if let Some(email) = m.strip_prefix("serviceAccount:") {
                let known = s.service_accounts.contains_key(email);
                if !known || s.sa_invisible_for > 0 {
                    if known {
                        s.sa_invisible_for -= 1;
                    }
                    return Err(ApiError::new(
                        400,
                        "INVALID_ARGUMENT",
                        format!("Service account {email} does not exist."),
                    ));
                }
            }
        }
        s.etag += 1;
        let mut new = policy.clone();
        new["etag"] = json!(format!("etag-{}", s.etag));
        s.policy = new.clone();
        Self::finish(after, new)
    }

    async fn list_keys(&self, project: &str, email: &str) -> Result<Vec<String>, ApiError> {
        let after = self.enter("list_keys")?;
        let s = self.state();
        if !s.service_accounts.contains_key(email) {
            return Err(Self::not_found(&sa_name(project, email)));
        }
        let v = s.keys.get(email).cloned().unwrap_or_default();
        Self::finish(after, v)
    }

    async fn create_key(&self, project: &str, email: &str) -> Result<CreatedKey, ApiError> {
        let after = self.enter("create_key")?;
        let mut s = self.state();
        if s.keys_blocked {
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                "Key creation is not allowed on this service account.",
            )
            .with_reason("constraints/iam.disableServiceAccountKeyCreation"));
        }
        if !s.service_accounts.contains_key(email) {
            return Err(Self::not_found(&sa_name(project, email)));
        }
        let keys = s.keys.entry(email.to_owned()).or_default();
        if keys.len() >= 10 {
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                "Precondition check failed: 10 keys",
            ));
        }
        let id = format!("{:040x}", keys.len() + 1);
        let name = format!("{}/keys/{id}", sa_name(project, email));
        keys.push(name.clone());
        let data = serde_json::to_vec(&json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": id,
            "private_key": "-----BEGIN PRIVATE KEY-----\nFAKE\n-----END PRIVATE KEY-----\n",
            "client_email": email,
        }))
        .unwrap_or_default();
        Self::finish(
            after,
            CreatedKey {
                name,
                private_key_data: data,
            },
        )
    }

    async fn get_bucket(&self, bucket: &str) -> Result<Option<Value>, ApiError> {
        let after = self.enter("get_bucket")?;
        let s = self.state();
        if s.foreign_buckets.contains(bucket) {
            return Err(ApiError::new(403, "PERMISSION_DENIED", format!("caller does not have storage.buckets.get access to the Google Cloud Storage bucket {bucket}")).with_reason("forbidden"));
        }
        let v = s.buckets.get(bucket).cloned();
        Self::finish(after, v)
    }

    async fn insert_bucket(&self, _project: &str, body: &Value) -> Result<Value, ApiError> {
        let after = self.enter("insert_bucket")?;
        let mut s = self.state();
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        if s.buckets.contains_key(&name) || s.foreign_buckets.contains(&name) {
            return Err(ApiError::new(409, "", "Your previous request to create the named bucket succeeded and you already own it.").with_reason("conflict"));
        }
        s.buckets.insert(name, body.clone());
        Self::finish(after, body.clone())
    }

    async fn patch_bucket(&self, bucket: &str, body: &Value) -> Result<Value, ApiError> {
        let after = self.enter("patch_bucket")?;
        let mut s = self.state();
        let Some(b) = s.buckets.get_mut(bucket) else {
            return Err(Self::not_found(bucket));
        };
        b["iamConfiguration"] = body["iamConfiguration"].clone();
        let v = b.clone();
        Self::finish(after, v)
    }

    async fn get_object(&self, bucket: &str, object: &str) -> Result<Option<Value>, ApiError> {
        let after = self.enter("get_object")?;
        let s = self.state();
        if !s.buckets.contains_key(bucket) {
            return Err(Self::not_found(bucket));
        }
        let v = s
            .objects
            .get(&(bucket.to_owned(), object.to_owned()))
            .map(|d| json!({ "name": object, "bucket": bucket, "size": d.len().to_string() }));
        Self::finish(after, v)
    }

    async fn upload_object(
        &self,
        bucket: &str,
        object: &str,
        file: &Path,
    ) -> Result<bool, ApiError> {
        let after = self.enter("upload_object")?;
        let data = std::fs::read(file).map_err(|e| ApiError::transport(e.to_string()))?;
        let mut s = self.state();
        if !s.buckets.contains_key(bucket) {
            return Err(Self::not_found(bucket));
        }
        let key = (bucket.to_owned(), object.to_owned());
        if s.objects.contains_key(&key) {
            return Err(ApiError::new(
                412,
                "FAILED_PRECONDITION",
                "At least one of the pre-conditions you specified did not hold.",
            ));
        }
        s.objects.insert(key, data);
        Self::finish(after, true)
    }

    async fn compute_get(&self, _project: &str, r: &ComputeRef) -> Result<Option<Value>, ApiError> {
        let after = self.enter("compute_get")?;
        let v = self.state().compute.get(&r.path()).cloned();
        Self::finish(after, v)
    }

    async fn compute_insert(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError> {
        let after = self.enter("compute_insert")?;
        if let Some(latency) = self.insert_now(project, r, body, request_id)? {
            tokio::time::sleep(latency).await;
            self.state().inserts_in_flight -= 1;
        }
        Self::finish(after, ())
    }

    async fn compute_patch(
        &self,
        _project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError> {
        let after = self.enter("compute_patch")?;
        let mut s = self.state();
        let path = r.path();
        let Some(cur) = s.compute.get_mut(&path) else {
            return Err(Self::not_found(&path));
        };
        if let (Some(c), Some(b)) = (cur.as_object_mut(), body.as_object()) {
            for (k, v) in b {
                c.insert(k.clone(), v.clone());
            }
        }
        s.request_ids.insert(request_id.to_owned());
        s.ops_polled += 1;
        Self::finish(after, ())
    }
}

impl FakeGcp {
    /// The synchronous part of a Compute insert; `Some(latency)` when its operation still
    /// runs (counted in flight until the caller has waited it out).
    fn insert_now(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<Option<std::time::Duration>, ApiError> {
        let mut s = self.state();
        if s.request_ids.contains(request_id) {
            // Compute answers a repeated request id with the first request's operation.
            return Ok(None);
        }
        let path = r.path();
        if s.compute.contains_key(&path) {
            return Err(Self::exists(&format!("projects/{project}/{path}")));
        }
        if let ComputeRef::Image(_) = r {
            let src = body["rawDisk"]["source"].as_str().unwrap_or_default();
            let rest = src
                .strip_prefix("https://storage.googleapis.com/")
                .unwrap_or_default();
            let (b, o) = rest.split_once('/').unwrap_or_default();
            if !s.objects.contains_key(&(b.to_owned(), o.to_owned())) {
                return Err(ApiError::new(
                    400,
                    "INVALID_ARGUMENT",
                    format!("The resource '{src}' of type 'raw disk source' was not found"),
                ));
            }
        }
        if let Some(e) = s.op_errors.get(&path).cloned() {
            s.ops_polled += 1;
            return Err(e);
        }
        s.request_ids.insert(request_id.to_owned());
        let mut v = body.clone();
        v["selfLink"] = json!(format!(
            "https://www.googleapis.com/compute/v1/projects/{project}/{path}"
        ));
        // The operation goes PENDING → RUNNING → DONE; the executor's call returns at DONE.
        s.ops_polled += 1;
        s.compute.insert(path, v);
        if s.insert_latency.is_zero() {
            return Ok(None);
        }
        s.inserts_in_flight += 1;
        s.max_inserts_in_flight = s.max_inserts_in_flight.max(s.inserts_in_flight);
        Ok(Some(s.insert_latency))
    }
}
