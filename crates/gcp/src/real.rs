//! [`GcpApi`] over the official `google-cloud-*` crates.
//!
//! Bodies cross the seam as JSON in Google's REST shape and are turned into the SDK's models
//! with serde (the models (de)serialise to exactly that shape), so the pure layer never
//! depends on SDK types.
//!
//! Two calls bypass the SDK: Storage `buckets.get/insert/patch` and `objects.get`. In the SDK
//! those live in `StorageControl`, which speaks gRPC (`google.storage.v2`); the simulator and
//! the GCS emulators serve only the JSON API. They are one JSON request each, sent with
//! reqwest and the same credentials' headers. Object *uploads* do use the SDK's `Storage`
//! client (resumable, `ifGenerationMatch=0`).

use std::path::Path;
use std::time::Duration;

use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_api_serviceusage_v1::model::State;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_compute_v1::client::{Firewalls, Images, Networks, Routers, Subnetworks};
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_lro::Poller;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_storage::client::Storage;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{ComputeRef, CreatedKey, GcpApi};
use crate::error::{ApiError, SetupError};

const STORAGE_URL: &str = "https://storage.googleapis.com";

/// Use rustls' ring provider (already in the workspace) instead of pulling aws-lc-rs; the SDK
/// clients are built with `rustls-no-provider` and take the process default.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SDK-backed API.
#[derive(Debug)]
pub struct SdkApi {
    creds: Credentials,
    storage_url: String,
    http: reqwest::Client,
    services: ServiceUsage,
    iam: Iam,
    projects: Projects,
    storage: Storage,
    networks: Networks,
    subnetworks: Subnetworks,
    routers: Routers,
    firewalls: Firewalls,
    images: Images,
    resumable_threshold: usize,
}

fn client_err(what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError::Client {
        message: format!(
            "cannot set up the {what} client: {e}\n  hint: without --endpoint, setup uses Application Default Credentials: run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ),
    }
}

/// How often long-running operations are polled. Google's take seconds to minutes; a stand-in
/// at `--endpoint` (the simulator) finishes them in milliseconds, and tests should not wait
/// the SDK's default first second per operation.
fn polling(endpoint: Option<&str>) -> Result<ExponentialBackoff, SetupError> {
    let (initial, max) = match endpoint {
        Some(_) => (Duration::from_millis(20), Duration::from_millis(500)),
        None => (Duration::from_millis(500), Duration::from_secs(10)),
    };
    ExponentialBackoffBuilder::new()
        .with_initial_delay(initial)
        .with_maximum_delay(max)
        .with_scaling(2.0)
        .build()
        .map_err(|e| client_err("operation polling", e))
}

macro_rules! build {
    ($ty:ty, $what:expr, $endpoint:expr, $creds:expr) => {{
        let mut b = <$ty>::builder()
            .with_credentials($creds.clone())
            .with_polling_backoff_policy(polling($endpoint)?)
            // The executor retries transient failures itself; the SDK's own loop only smooths
            // blips, bounded so an unreachable endpoint fails in seconds, not minutes.
            .with_retry_policy(
                Aip194Strict
                    .with_attempt_limit(3)
                    .with_time_limit(Duration::from_secs(30)),
            );
        if let Some(e) = $endpoint {
            b = b.with_endpoint(e);
        }
        b.build().await.map_err(|e| client_err($what, e))?
    }};
}

impl SdkApi {
    /// Clients for Google (`None`: ADC) or for a stand-in at `endpoint` (anonymous).
    pub async fn new(endpoint: Option<&str>) -> Result<Self, SetupError> {
        install_crypto_provider();
        let endpoint = endpoint.map(|e| e.trim_end_matches('/').to_owned());
        let creds = match &endpoint {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| client_err("Google credentials", e))?,
        };
        let ep = endpoint.as_deref();
        Ok(Self {
            services: build!(ServiceUsage, "Service Usage", ep, creds),
            iam: build!(Iam, "IAM", ep, creds),
            projects: build!(Projects, "Resource Manager", ep, creds),
            storage: {
                let mut b = Storage::builder().with_credentials(creds.clone());
                if let Some(e) = ep {
                    b = b.with_endpoint(e);
                }
                b.build()
                    .await
                    .map_err(|e| client_err("Cloud Storage", e))?
            },
            networks: build!(Networks, "Compute networks", ep, creds),
            subnetworks: build!(Subnetworks, "Compute subnetworks", ep, creds),
            routers: build!(Routers, "Compute routers", ep, creds),
            firewalls: build!(Firewalls, "Compute firewalls", ep, creds),
            images: build!(Images, "Compute images", ep, creds),
            storage_url: endpoint.clone().unwrap_or_else(|| STORAGE_URL.to_owned()),
            http: reqwest::Client::builder()
                .build()
                .map_err(|e| client_err("HTTP", e))?,
            creds,
            resumable_threshold: 0,
        })
    }

    /// Uploads at least this large are resumable (default 0: every upload, as Talos images are
    /// hundreds of MB). Emulators that derive the session URL from the `Host` header, which the
    /// SDK sends without the port, need single-shot uploads.
    pub fn with_resumable_threshold(mut self, bytes: usize) -> Self {
        self.resumable_threshold = bytes;
        self
    }

    /// One Storage JSON call; `Ok(None)` on 404.
    async fn storage_json(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, ApiError> {
        let headers = match self.creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => return Err(ApiError::transport(format!("credentials: {e}"))),
        };
        let url = format!("{}/storage/v1/{path}", self.storage_url);
        let mut req = self.http.request(method, url).headers(headers).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::transport(e.to_string()))?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(
                ApiError::from_google_json(status, &bytes).unwrap_or_else(|| {
                    ApiError::new(status, "", String::from_utf8_lossy(&bytes).into_owned())
                }),
            );
        }
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

/// A finished Compute operation's outcome. `until_done` returns a DONE operation as `Ok` even
/// when the operation failed (its `error` field set), so the error is read here.
fn op_result(op: google_cloud_compute_v1::model::Operation) -> Result<(), ApiError> {
    let v = to_json(&op);
    let errors = v["error"]["errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let code = errors[0]["code"].as_str().unwrap_or_default();
    let http = v["httpErrorStatusCode"]
        .as_u64()
        .and_then(|h| u16::try_from(h).ok())
        .unwrap_or(400);
    let status = match (http, code) {
        (409, _) | (_, "RESOURCE_ALREADY_EXISTS") => "ALREADY_EXISTS",
        (404, _) => "NOT_FOUND",
        (403, _) => "PERMISSION_DENIED",
        _ => "FAILED_PRECONDITION",
    };
    let message = errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError {
        http: Some(http),
        status: status.to_owned(),
        reason: code.to_owned(),
        message: format!(
            "operation {} failed: {message}",
            op.name.unwrap_or_default()
        ),
        details: v["error"].to_string(),
    })
}

/// Turn an SDK error into an [`ApiError`], preferring Google's error JSON when there is one.
fn api_err(e: google_cloud_gax::error::Error) -> ApiError {
    if e.is_authentication() {
        // Not retryable: without credentials every further attempt fails the same way.
        return ApiError {
            http: None,
            status: "UNAUTHENTICATED".to_owned(),
            reason: String::new(),
            message: e.to_string(),
            details: String::new(),
        };
    }
    if let (Some(code), Some(payload)) = (e.http_status_code(), e.http_payload())
        && let Some(a) = ApiError::from_google_json(code, payload)
    {
        return a;
    }
    if let Some(st) = e.status() {
        use google_cloud_gax::error::rpc::Code;
        let http = e.http_status_code().or(match st.code {
            Code::NotFound => Some(404),
            Code::AlreadyExists | Code::Aborted => Some(409),
            Code::PermissionDenied => Some(403),
            Code::Unauthenticated => Some(401),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Some(400),
            Code::ResourceExhausted => Some(429),
            Code::Unavailable => Some(503),
            Code::Internal | Code::Unknown | Code::DataLoss => Some(500),
            Code::DeadlineExceeded => Some(504),
            _ => None,
        });
        return ApiError {
            http,
            status: st.code.name().to_owned(),
            reason: String::new(),
            message: st.message.clone(),
            details: format!("{:?}", st.details),
        };
    }
    match e.http_status_code() {
        Some(code) => ApiError::new(
            code,
            "",
            e.http_payload()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| e.to_string()),
        ),
        None => ApiError::transport(e.to_string()),
    }
}

fn model<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::new(400, "INVALID_ARGUMENT", format!("request body: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `Ok(None)` for a 404, the value otherwise.
fn found<T>(r: Result<T, google_cloud_gax::error::Error>) -> Result<Option<T>, ApiError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let e = api_err(e);
            if e.is_not_found() { Ok(None) } else { Err(e) }
        }
    }
}

fn sa_name(project: &str, email: &str) -> String {
    format!("projects/{project}/serviceAccounts/{email}")
}

impl GcpApi for SdkApi {
    async fn services_state(
        &self,
        project: &str,
        services: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let names: Vec<String> = services
            .iter()
            .map(|s| format!("projects/{project}/services/{s}"))
            .collect();
        let resp = self
            .services
            .batch_get_services()
            .set_parent(format!("projects/{project}"))
            .set_names(names)
            .send()
            .await
            .map_err(api_err)?;
        // Typed access: the SDK serialises enums as numbers, not as Google's JSON names.
        let got: Vec<(String, bool)> = resp
            .services
            .iter()
            .map(|s| {
                let short = s.name.rsplit('/').next().unwrap_or_default().to_owned();
                (short, s.state == State::Enabled)
            })
            .collect();
        Ok(services
            .iter()
            .map(|s| match got.iter().find(|(n, _)| n == s) {
                Some((_, true)) => "ENABLED".to_owned(),
                Some((_, false)) => "DISABLED".to_owned(),
                None => String::new(),
            })
            .collect())
    }

    async fn enable_services(&self, project: &str, services: &[String]) -> Result<(), ApiError> {
        self.services
            .batch_enable_services()
            .set_parent(format!("projects/{project}"))
            .set_service_ids(services.to_vec())
            .poller()
            .until_done()
            .await
            .map_err(api_err)?;
        Ok(())
    }

    async fn get_service_account(
        &self,
        project: &str,
        email: &str,
    ) -> Result<Option<Value>, ApiError> {
        let r = self
            .iam
            .get_service_account()
            .set_name(sa_name(project, email))
            .send()
            .await;
        Ok(found(r)?.map(|sa| to_json(&sa)))
    }

    async fn create_service_account(
        &self,
        project: &str,
        account_id: &str,
        display_name: &str,
    ) -> Result<Value, ApiError> {
        let sa = self
            .iam
            .create_service_account()
            .set_name(format!("projects/{project}"))
            .set_account_id(account_id)
            .set_service_account(model::<google_cloud_iam_admin_v1::model::ServiceAccount>(
                &json!({ "displayName": display_name }),
            )?)
            .send()
            .await
            .map_err(api_err)?;
        Ok(to_json(&sa))
    }

    async fn get_iam_policy(&self, project: &str) -> Result<Value, ApiError> {
        let p = self
            .projects
            .get_iam_policy()
            .set_resource(format!("projects/{project}"))
            .set_options(model::<google_cloud_iam_v1::model::GetPolicyOptions>(
                &json!({ "requestedPolicyVersion": 3 }),
            )?)
            .send()
            .await
            .map_err(api_err)?;
        Ok(to_json(&p))
    }

    async fn set_iam_policy(&self, project: &str, policy: &Value) -> Result<Value, ApiError> {
        let p = self
            .projects
            .set_iam_policy()
            .set_resource(format!("projects/{project}"))
            .set_policy(model::<google_cloud_iam_v1::model::Policy>(policy)?)
            .send()
            .await
            .map_err(api_err)?;
        Ok(to_json(&p))
    }

    async fn list_keys(&self, project: &str, email: &str) -> Result<Vec<String>, ApiError> {
        use google_cloud_iam_admin_v1::model::list_service_account_keys_request::KeyType;
        let resp = self
            .iam
            .list_service_account_keys()
            .set_name(sa_name(project, email))
            .set_key_types([KeyType::UserManaged])
            .send()
            .await
            .map_err(api_err)?;
        Ok(resp.keys.into_iter().map(|k| k.name).collect())
    }

    async fn create_key(&self, project: &str, email: &str) -> Result<CreatedKey, ApiError> {
        let key = self
            .iam
            .create_service_account_key()
            .set_name(sa_name(project, email))
            .send()
            .await
            .map_err(api_err)?;
        Ok(CreatedKey {
            name: key.name,
            private_key_data: key.private_key_data.to_vec(),
        })
    }

    async fn get_bucket(&self, bucket: &str) -> Result<Option<Value>, ApiError> {
        self.storage_json(reqwest::Method::GET, &format!("b/{bucket}"), &[], None)
            .await
    }

    async fn insert_bucket(&self, project: &str, body: &Value) -> Result<Value, ApiError> {
        let v = self
            .storage_json(
                reqwest::Method::POST,
                "b",
                &[("project", project)],
                Some(body),
            )
            .await?;
        v.ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("project {project}")))
    }

    async fn patch_bucket(&self, bucket: &str, body: &Value) -> Result<Value, ApiError> {
        let v = self
            .storage_json(
                reqwest::Method::PATCH,
                &format!("b/{bucket}"),
                &[],
                Some(body),
            )
            .await?;
        v.ok_or_else(|| ApiError::new(404, "NOT_FOUND", format!("bucket {bucket}")))
    }

    async fn get_object(&self, bucket: &str, object: &str) -> Result<Option<Value>, ApiError> {
        let path = format!("b/{bucket}/o/{}", percent_encode(object));
        self.storage_json(reqwest::Method::GET, &path, &[], None)
            .await
    }

    async fn upload_object(
        &self,
        bucket: &str,
        object: &str,
        file: &Path,
    ) -> Result<bool, ApiError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ApiError::transport(format!("{}: {e}", file.display())))?;
        let r = self
            .storage
            .write_object(format!("projects/_/buckets/{bucket}"), object, f)
            .set_if_generation_match(0)
            // Resumable: the image is hundreds of MB and a broken connection resumes.
            .with_resumable_upload_threshold(self.resumable_threshold)
            .send_unbuffered()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = api_err(e);
                if e.is_precondition_failed() {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn compute_get(&self, project: &str, r: &ComputeRef) -> Result<Option<Value>, ApiError> {
        let v = match r {
            ComputeRef::Network(n) => found(
                self.networks
                    .get()
                    .set_project(project)
                    .set_network(n)
                    .send()
                    .await,
            )?
            .map(|x| to_json(&x)),
            ComputeRef::Subnetwork { region, name } => found(
                self.subnetworks
                    .get()
                    .set_project(project)
                    .set_region(region)
                    .set_subnetwork(name)
                    .send()
                    .await,
            )?
            .map(|x| to_json(&x)),
            ComputeRef::Router { region, name } => found(
                self.routers
                    .get()
                    .set_project(project)
                    .set_region(region)
                    .set_router(name)
                    .send()
                    .await,
            )?
            .map(|x| to_json(&x)),
            ComputeRef::Firewall(n) => found(
                self.firewalls
                    .get()
                    .set_project(project)
                    .set_firewall(n)
                    .send()
                    .await,
            )?
            .map(|x| to_json(&x)),
            ComputeRef::Image(n) => found(
                self.images
                    .get()
                    .set_project(project)
                    .set_image(n)
                    .send()
                    .await,
            )?
            .map(|x| to_json(&x)),
        };
        Ok(v)
    }

    async fn compute_insert(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError> {
        use google_cloud_compute_v1::model as m;
        // `until_done` polls the global/region operation and turns its error into a Status.
        let res = match r {
            ComputeRef::Network(_) => {
                self.networks
                    .insert()
                    .set_project(project)
                    .set_request_id(request_id)
                    .set_body(model::<m::Network>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Subnetwork { region, .. } => {
                self.subnetworks
                    .insert()
                    .set_project(project)
                    .set_region(region)
                    .set_request_id(request_id)
                    .set_body(model::<m::Subnetwork>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Router { region, .. } => {
                self.routers
                    .insert()
                    .set_project(project)
                    .set_region(region)
                    .set_request_id(request_id)
                    .set_body(model::<m::Router>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Firewall(_) => {
                self.firewalls
                    .insert()
                    .set_project(project)
                    .set_request_id(request_id)
                    .set_body(model::<m::Firewall>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Image(_) => {
                self.images
                    .insert()
                    .set_project(project)
                    .set_request_id(request_id)
                    .set_body(model::<m::Image>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
        };
        op_result(res.map_err(api_err)?)
    }

    async fn compute_patch(
        &self,
        project: &str,
        r: &ComputeRef,
        body: &Value,
        request_id: &str,
    ) -> Result<(), ApiError> {
        use google_cloud_compute_v1::model as m;
        let res = match r {
            ComputeRef::Network(n) => {
                self.networks
                    .patch()
                    .set_project(project)
                    .set_network(n)
                    .set_request_id(request_id)
                    .set_body(model::<m::Network>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Subnetwork { region, name } => {
                self.subnetworks
                    .set_private_ip_google_access()
                    .set_project(project)
                    .set_region(region)
                    .set_subnetwork(name)
                    .set_request_id(request_id)
                    .set_body(model::<m::SubnetworksSetPrivateIpGoogleAccessRequest>(
                        body,
                    )?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Router { region, name } => {
                self.routers
                    .patch()
                    .set_project(project)
                    .set_region(region)
                    .set_router(name)
                    .set_request_id(request_id)
                    .set_body(model::<m::Router>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Firewall(n) => {
                self.firewalls
                    .patch()
                    .set_project(project)
                    .set_firewall(n)
                    .set_request_id(request_id)
                    .set_body(model::<m::Firewall>(body)?)
                    .poller()
                    .until_done()
                    .await
            }
            ComputeRef::Image(n) => {
                return Err(ApiError::new(
                    400,
                    "INVALID_ARGUMENT",
                    format!("image {n} is immutable"),
                ));
            }
        };
        op_result(res.map_err(api_err)?)
    }
}

/// Percent-encode an object name for a URL path segment (`/` included, as GCS requires).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
