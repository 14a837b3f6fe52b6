//! The GCP half of [`NetApi`] through the official `google-cloud-compute-v1` crate: HA VPN
//! gateways, Cloud Routers (and their interfaces and BGP peers), external VPN gateways and VPN
//! tunnels, found by name in the fleet's project, compared on the fields Compute reports back.
//! Bodies cross as Compute's REST JSON and become the SDK's models through serde (the models
//! (de)serialise to that shape), as `meshfleet-gcp` does; every write waits on its operation.
//!
//! **Pre-shared keys.** A tunnel's `sharedSecret` is input only: Compute answers with
//! `sharedSecretHash`, documented only as "Hash of the shared secret", with no algorithm
//! (`VpnTunnel` in the Compute v1 REST reference,
//! cloud.google.com/compute/docs/reference/rest/v1/vpnTunnels; the SDK's
//! `google-cloud-compute-v1` `model::VpnTunnel::shared_secret_hash` says the same), so it
//! cannot be compared with a key. Instead the tunnel carries a label
//! [`PSK_LABEL`] with a fingerprint of the key it was created with (SHA-256 over the tunnel's
//! name and the key, truncated; the key is 40 random characters, so the fingerprint reveals
//! nothing useful). A read reports `sharedSecret` as the requested key when the fingerprints
//! agree and as a placeholder when they do not (or the label is missing), so the executor
//! sees the field differ. Tunnels cannot be patched (Compute's `vpnTunnels` has only
//! `insert`, `delete` and `setLabels`), so an update deletes the tunnel and inserts it again
//! under the same name; the Cloud Router's interface names the tunnel by URL and keeps
//! pointing at it.

use std::time::Duration;

use google_cloud_auth::credentials::Credentials;
use google_cloud_compute_v1::client::{ExternalVpnGateways, Routers, VpnGateways, VpnTunnels};
use google_cloud_compute_v1::model as m;
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_lro::Poller;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::desired::{Cloud, Step};
use crate::exec::{ApiError, CapaVpc, NetApi};

/// The label a tunnel carries with its pre-shared key's fingerprint.
pub const PSK_LABEL: &str = "meshfleet-psk";

/// What a read reports as `sharedSecret` when the tunnel was made with another key.
const OTHER_KEY: &str = "(another pre-shared key)";

/// The fingerprint of `psk` for tunnel `name`: 32 hex digits (a valid label value).
pub fn psk_fingerprint(name: &str, psk: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"meshfleet-psk\0");
    ctx.update(name.as_bytes());
    ctx.update(b"\0");
    ctx.update(psk.as_bytes());
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compute through the SDK, for one project.
#[derive(Debug)]
pub struct Compute {
    project: String,
    vpn_gateways: VpnGateways,
    external: ExternalVpnGateways,
    tunnels: VpnTunnels,
    routers: Routers,
}

fn client_err(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Refused(format!(
        "cannot set up the Compute {what} client: {e}\n  hint: without an endpoint, meshfleet uses Application Default Credentials: run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
    ))
}

/// Operations are polled quickly against a stand-in (the simulator finishes them in
/// milliseconds), at Google's pace otherwise.
fn polling(endpoint: Option<&str>) -> Result<ExponentialBackoff, ApiError> {
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
            // The executor retries transient failures itself; the SDK's loop only smooths
            // blips.
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

/// An SDK error as the executor's: 429, 5xx and no answer at all are worth retrying.
fn api_err(what: &str, e: google_cloud_gax::error::Error) -> ApiError {
    let code = e.http_status_code();
    let msg = match e.http_payload() {
        Some(p) => format!("{what}: {}", String::from_utf8_lossy(p)),
        None => format!("{what}: {e}"),
    };
    let transient = match code {
        Some(c) => c == 429 || c >= 500,
        None => e.status().is_none() && !e.is_authentication(),
    };
    if transient {
        ApiError::Transient(msg)
    } else {
        ApiError::Refused(msg)
    }
}

fn is_not_found(e: &google_cloud_gax::error::Error) -> bool {
    e.http_status_code() == Some(404)
        || e.status()
            .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound)
}

fn is_conflict(e: &google_cloud_gax::error::Error) -> bool {
    e.http_status_code() == Some(409)
        || e.status()
            .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
}

/// `Ok(None)` for a 404.
fn found<T>(
    what: &str,
    r: Result<T, google_cloud_gax::error::Error>,
) -> Result<Option<T>, ApiError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_err(what, e)),
    }
}

/// A finished operation's own error (`until_done` returns a DONE operation as `Ok` even when
/// it failed).
fn op_done(what: &str, op: m::Operation) -> Result<(), ApiError> {
    let v = to_json(&op);
    let errors = v["error"]["errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let msg = errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError::Refused(format!(
        "{what}: operation failed: {msg}"
    )))
}

fn model<T: DeserializeOwned>(what: &str, v: &Value) -> Result<T, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::Refused(format!("{what}: request body: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn name_of(step: &Step, body: &Value) -> Result<String, ApiError> {
    body.get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Refused(format!("step `{}` has no `name`", step.id)))
}

/// Keep only the request keys `fields` of `body` (a patch of what differs).
fn only(body: &Value, fields: &[String]) -> Value {
    let mut out = serde_json::Map::new();
    for f in fields {
        if let Some(v) = body.get(f) {
            out.insert(f.clone(), v.clone());
        }
    }
    if let Some(n) = body.get("name") {
        out.insert("name".into(), n.clone());
    }
    Value::Object(out)
}

fn immutable(step: &Step, fields: &[String]) -> ApiError {
    ApiError::Refused(format!(
        "`{}` differs in {}, which Compute cannot change on an existing resource\n  hint: delete it (and the VPN tunnels that use it) in the project and re-run `meshfleet net setup`",
        step.id,
        fields.join(", ")
    ))
}

impl Compute {
    /// Clients for Google (`endpoint` `None`: Application Default Credentials) or for a
    /// stand-in at `endpoint` (anonymous), for the resources of `project`.
    pub async fn new(project: &str, endpoint: Option<&str>) -> Result<Self, ApiError> {
        // Ring, as `meshfleet-gcp`: the SDK clients are built without a TLS provider of their
        // own. An error means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = endpoint.map(|e| e.trim_end_matches('/').to_owned());
        let creds: Credentials = match &endpoint {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| client_err("credentials", e))?,
        };
        let ep = endpoint.as_deref();
        Ok(Self {
            project: project.to_owned(),
            vpn_gateways: build!(VpnGateways, "VPN gateways", ep, creds),
            external: build!(ExternalVpnGateways, "external VPN gateways", ep, creds),
            tunnels: build!(VpnTunnels, "VPN tunnels", ep, creds),
            routers: build!(Routers, "routers", ep, creds),
        })
    }

    async fn get_router(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let r = self
            .routers
            .get()
            .set_project(&self.project)
            .set_region(region)
            .set_router(name)
            .send()
            .await;
        Ok(found("routers.get", r)?.map(|x| to_json(&x)))
    }

    async fn get_tunnel(
        &self,
        region: &str,
        name: &str,
        body: &Value,
    ) -> Result<Option<Value>, ApiError> {
        let r = self
            .tunnels
            .get()
            .set_project(&self.project)
            .set_region(region)
            .set_vpn_tunnel(name)
            .send()
            .await;
        let Some(mut t) = found("vpnTunnels.get", r)?.map(|x| to_json(&x)) else {
            return Ok(None);
        };
        let want = body.get("sharedSecret").and_then(Value::as_str);
        let have = t
            .pointer(&format!("/labels/{PSK_LABEL}"))
            .and_then(Value::as_str);
        let same = match (want, have) {
            (Some(k), Some(h)) => psk_fingerprint(name, k) == h,
            _ => false,
        };
        t["sharedSecret"] = json!(if same {
            want.unwrap_or_default()
        } else {
            OTHER_KEY
        });
        Ok(Some(t))
    }

    async fn insert_tunnel(&self, region: &str, name: &str, body: &Value) -> Result<(), ApiError> {
        let mut b = body.clone();
        if let Some(k) = body.get("sharedSecret").and_then(Value::as_str) {
            b["labels"] = json!({PSK_LABEL: psk_fingerprint(name, k)});
        }
        let op = self
            .tunnels
            .insert()
            .set_project(&self.project)
            .set_region(region)
            .set_request_id(uuid::Uuid::new_v4().to_string())
            .set_body(model::<m::VpnTunnel>("vpnTunnels.insert", &b)?)
            .poller()
            .until_done()
            .await;
        match op {
            // A retried insert whose first answer was lost: the read that follows finds it.
            Err(e) if is_conflict(&e) => Ok(()),
            r => op_done(
                "vpnTunnels.insert",
                r.map_err(|e| api_err("vpnTunnels.insert", e))?,
            ),
        }
    }

    async fn patch_router(&self, region: &str, name: &str, body: &Value) -> Result<(), ApiError> {
        let op = self
            .routers
            .patch()
            .set_project(&self.project)
            .set_region(region)
            .set_router(name)
            .set_request_id(uuid::Uuid::new_v4().to_string())
            .set_body(model::<m::Router>("routers.patch", body)?)
            .poller()
            .until_done()
            .await
            .map_err(|e| api_err("routers.patch", e))?;
        op_done("routers.patch", op)
    }

    /// After a write, what a read reports; absent means not visible yet (retried).
    async fn reread(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        self.read(step, body).await?.ok_or_else(|| {
            ApiError::Transient(format!("`{}` is not visible yet after the write", step.id))
        })
    }
}

fn not_gcp(step: &Step) -> ApiError {
    ApiError::Refused(format!(
        "`{}` ({}) is not a Compute step",
        step.action, step.id
    ))
}

impl NetApi for Compute {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        if step.cloud != Cloud::Gcp {
            return Err(not_gcp(step));
        }
        let name = name_of(step, body)?;
        let region = step.region.as_str();
        match step.action {
            "vpnGateways.insert" => {
                let r = self
                    .vpn_gateways
                    .get()
                    .set_project(&self.project)
                    .set_region(region)
                    .set_vpn_gateway(&name)
                    .send()
                    .await;
                Ok(found("vpnGateways.get", r)?.map(|x| to_json(&x)))
            }
            "routers.insert" => self.get_router(region, &name).await,
            "routers.patch" => Ok(self.get_router(region, &name).await?.map(|mut r| {
                // Compute leaves empty lists out; the step compares them.
                for f in ["interfaces", "bgpPeers"] {
                    if r.get(f).is_none() {
                        r[f] = json!([]);
                    }
                }
                r
            })),
            "externalVpnGateways.insert" => {
                let r = self
                    .external
                    .get()
                    .set_project(&self.project)
                    .set_external_vpn_gateway(&name)
                    .send()
                    .await;
                Ok(found("externalVpnGateways.get", r)?.map(|x| to_json(&x)))
            }
            "vpnTunnels.insert" => self.get_tunnel(region, &name, body).await,
            _ => Err(not_gcp(step)),
        }
    }

    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        let name = name_of(step, body)?;
        let region = step.region.as_str();
        let rid = uuid::Uuid::new_v4().to_string();
        let what = step.action;
        let op = match step.action {
            "vpnGateways.insert" => {
                self.vpn_gateways
                    .insert()
                    .set_project(&self.project)
                    .set_region(region)
                    .set_request_id(rid)
                    .set_body(model::<m::VpnGateway>(what, body)?)
                    .poller()
                    .until_done()
                    .await
            }
            "routers.insert" => {
                self.routers
                    .insert()
                    .set_project(&self.project)
                    .set_region(region)
                    .set_request_id(rid)
                    .set_body(model::<m::Router>(what, body)?)
                    .poller()
                    .until_done()
                    .await
            }
            "externalVpnGateways.insert" => {
                self.external
                    .insert()
                    .set_project(&self.project)
                    .set_request_id(rid)
                    .set_body(model::<m::ExternalVpnGateway>(what, body)?)
                    .poller()
                    .until_done()
                    .await
            }
            "vpnTunnels.insert" => {
                self.insert_tunnel(region, &name, body).await?;
                return self.reread(step, body).await;
            }
            "routers.patch" => {
                // Read found no router: the `routers.insert` step before this one failed or
                // the router was deleted since.
                return Err(ApiError::Refused(format!(
                    "Cloud Router `{name}` in {region} does not exist, so its interfaces and BGP peers cannot be set"
                )));
            }
            _ => return Err(not_gcp(step)),
        };
        match op {
            Err(e) if is_conflict(&e) => {}
            r => op_done(what, r.map_err(|e| api_err(what, e))?)?,
        }
        self.reread(step, body).await
    }

    async fn update(
        &self,
        step: &Step,
        body: &Value,
        _current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        let name = name_of(step, body)?;
        let region = step.region.as_str();
        match step.action {
            // Compute's `routers.patch` changes `bgp`, `description`, `interfaces` and
            // `bgpPeers`; the network is fixed.
            "routers.insert" | "routers.patch" => {
                if fields.iter().any(|f| f == "network") {
                    return Err(immutable(step, &["network".to_owned()]));
                }
                self.patch_router(region, &name, &only(body, fields))
                    .await?;
            }
            "vpnTunnels.insert" => {
                let op = self
                    .tunnels
                    .delete()
                    .set_project(&self.project)
                    .set_region(region)
                    .set_vpn_tunnel(&name)
                    .set_request_id(uuid::Uuid::new_v4().to_string())
                    .poller()
                    .until_done()
                    .await;
                match op {
                    Err(e) if is_not_found(&e) => {}
                    r => op_done(
                        "vpnTunnels.delete",
                        r.map_err(|e| api_err("vpnTunnels.delete", e))?,
                    )?,
                }
                self.insert_tunnel(region, &name, body).await?;
            }
            _ => return Err(immutable(step, fields)),
        }
        self.reread(step, body).await
    }

    async fn capa_vpc(&self, _region: &str, _cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        Err(ApiError::Refused(
            "CAPA's VPCs are AWS's: ask the EC2 seam".into(),
        ))
    }

    async fn account_id(&self) -> Result<String, ApiError> {
        Err(ApiError::Refused(
            "the AWS account id is AWS's: ask the EC2 seam".into(),
        ))
    }
}

/// Both clouds behind one [`NetApi`]: each step goes to its cloud's seam; CAPA's VPCs and the
/// account id to AWS's.
#[derive(Debug)]
pub struct Clouds<G, A> {
    /// The Compute half.
    pub gcp: G,
    /// The EC2 half.
    pub aws: A,
}

impl<G: NetApi, A: NetApi> NetApi for Clouds<G, A> {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        match step.cloud {
            Cloud::Gcp => self.gcp.read(step, body).await,
            Cloud::Aws => self.aws.read(step, body).await,
        }
    }

    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        match step.cloud {
            Cloud::Gcp => self.gcp.create(step, body).await,
            Cloud::Aws => self.aws.create(step, body).await,
        }
    }

    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        match step.cloud {
            Cloud::Gcp => self.gcp.update(step, body, current, fields).await,
            Cloud::Aws => self.aws.update(step, body, current, fields).await,
        }
    }

    async fn capa_vpc(&self, region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        self.aws.capa_vpc(region, cluster).await
    }

    async fn account_id(&self) -> Result<String, ApiError> {
        self.aws.account_id().await
    }
}
