//! A fake of the Google Cloud REST APIs `meshfleet gcp setup` calls, served over plain HTTP on
//! its own listener in the simulator's process, and the state the simulated CAPG reads.
//!
//! One base URL (written to `<kubeconfig>.endpoints.json` as `{"gcp": "http://127.0.0.1:PORT"}`)
//! serves every service; the official SDK clients append their own paths when pointed at it with
//! `with_endpoint(url)` and anonymous credentials. Unknown query parameters (`$alt`,
//! `$apiVersion`, …) are ignored; enum fields are accepted as names.
//!
//! | service | paths (all under the base URL) |
//! |---|---|
//! | Compute | `/compute/v1/projects/{p}/global/{networks,firewalls,images,externalVpnGateways}[/{n}]`, `/regions/{r}/{subnetworks,routers,vpnGateways,vpnTunnels}[/{n}]` (an HA VPN gateway gets two interface addresses): GET, POST (insert, `requestId`), PATCH, DELETE; POST `…/subnetworks/{n}/setPrivateIpGoogleAccess`; `/global/operations/{op}`, `/regions/{r}/operations/{op}` (GET, POST `/wait`) |
//! | IAM | `/v1/projects/{p}/serviceAccounts` (POST), `/v1/projects/{p}/serviceAccounts/{email}` (GET), `…/keys` (POST, GET), `…/keys/{id}` (GET, DELETE) |
//! | Resource Manager | `/v3/projects/{p}` (GET), POST `/v3/projects/{p}:getIamPolicy`, `:setIamPolicy` (etag checked: stale → 409 `ABORTED`) |
//! | Service Usage | `/v1/projects/{p}/services/{svc}` (GET), POST `…/{svc}:enable`, GET `/v1/projects/{p}/services:batchGet?names=…`, POST `/v1/projects/{p}/services:batchEnable`, GET `/v1/operations/{id}` |
//! | Storage | POST/GET `/storage/v1/b?project=p`, GET/PATCH `/storage/v1/b/{b}`, GET `/storage/v1/b/{b}/o/{o}` (`alt=media` for the bytes), POST `/upload/storage/v1/b/{b}/o?uploadType=resumable|multipart|media&name=…` (PUT to the session URL with `Content-Range`, 308 + `Range` until complete); `ifGenerationMatch` → 412 |
//!
//! Behaviour that makes the order of setup steps matter, as in a real project: any project id
//! exists (billing on) unless configured otherwise; every API starts disabled, and Compute, IAM
//! and Storage calls on a project whose API is not enabled fail with 403 `SERVICE_DISABLED`.
//! Compute inserts, patches and deletes return an `Operation` that turns `DONE` after about
//! 300 ms divided by `--speed`; the change becomes visible when it does. Inserting an existing
//! name gives 409 `alreadyExists`; repeating an insert with the same `requestId` returns the same
//! operation. An image's `rawDisk.source` must name an existing object in the fake's storage, or
//! its operation ends with an error. Enabling APIs is a long-running operation of the same delay.
//! Object bytes are kept in memory up to 8 MiB per object (size and hashes always); with
//! `--state DIR` everything else is saved to `DIR/gcp.json`.
//!
//! Admin endpoints for tests (not part of any Google API):
//! - `POST /_sim/gcp/faults` `{"method":"POST","pathPrefix":"/compute/v1/projects/p/global/firewalls","status":429,"count":1,"message":"optional"}`:
//!   the next `count` requests whose method (empty or absent: any) and path prefix match fail
//!   with `status` in Google's error JSON (503 `UNAVAILABLE`, 429 `RESOURCE_EXHAUSTED`, 409
//!   `ABORTED`/`alreadyExists`, 412 `FAILED_PRECONDITION`/`conditionNotMet`, 403
//!   `PERMISSION_DENIED`, 500 `INTERNAL`, …). `DELETE /_sim/gcp/faults` clears the rules.
//!   The simulator's `--faults P` also fails GCP calls at random (500, 429 or 503).
//! - `POST /_sim/gcp/projects/{p}` `{"billing": false, "keyCreationBlocked": true}`: without
//!   billing, enabling `compute.googleapis.com` fails (400 `FAILED_PRECONDITION`); with key
//!   creation blocked, service-account key creation fails with `FAILED_PRECONDITION` naming the
//!   org policy `constraints/iam.disableServiceAccountKeyCreation`.
//! - `POST /_sim/gcp/foreign-buckets/{name}`: someone else owns that bucket name (GET → 403,
//!   insert → 409).
//! - `GET /_sim/gcp/state`: the whole state as JSON.
//! - `POST /_sim/gcp/seed`: create resources directly, done at once, for tests that are not
//!   about setup:
//!   `{"project":"p","services":["iam.googleapis.com"],"networks":[{"name":"n"}],
//!   "subnetworks":[{"name":"s","region":"europe-west1","network":"n","ipCidrRange":"10.0.0.0/20"}],
//!   "firewalls":[{"name":"f","network":"n","sourceRanges":["203.0.113.10/32"],"allowed":[{"IPProtocol":"tcp","ports":["50000"]}]}],
//!   "routers":[…],"buckets":[{"name":"b","location":"EU"}]}`. Seeding Compute resources also
//!   enables `compute.googleapis.com`; every field but `project` is optional. The same is
//!   available in-process as [`Gcp::seed`].
//!
//! The simulated CAPG reads this state ([`Gcp::network_check`]): a GCPCluster becomes ready
//! only when its network and subnets exist here, and tcp/50000 rules may come from here as well
//! as from the GCPCluster's own firewall rules.

mod compute;
mod server;
mod services;
mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use server::serve;

/// Compute's link prefix for self links and references.
pub const COMPUTE_LINK: &str = "https://www.googleapis.com/compute/v1/";

/// Everything the fake knows, as saved in `gcp.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    /// Projects by id (created implicitly on first use).
    pub projects: BTreeMap<String, Project>,
    /// Buckets by name.
    pub buckets: BTreeMap<String, Bucket>,
    /// Bucket names owned by someone else.
    pub foreign_buckets: BTreeSet<String>,
    /// Source of numeric ids.
    pub next_id: u64,
}

/// One project.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Project {
    /// Whether a billing account is linked.
    pub billing: bool,
    /// Whether the org policy blocks service-account key creation.
    pub key_creation_blocked: bool,
    /// Enabled APIs (`compute.googleapis.com`, …).
    pub services: BTreeSet<String>,
    /// Compute resources by relative path (`global/networks/n`, `regions/r/subnetworks/s`).
    pub compute: BTreeMap<String, Value>,
    /// Compute operations by name.
    pub operations: BTreeMap<String, ComputeOp>,
    /// `requestId` → operation name, so retried inserts return the same operation.
    pub request_ids: BTreeMap<String, String>,
    /// Service accounts by email.
    pub service_accounts: BTreeMap<String, Value>,
    /// Keys (public parts only) by service-account email.
    pub keys: BTreeMap<String, Vec<Value>>,
    /// The project's IAM policy (`bindings`, `etag`, `version`).
    pub policy: Value,
    /// Bumped on every policy write; the etag derives from it.
    pub policy_serial: u64,
    /// Service Usage operations by id (`acf.…`).
    pub service_operations: BTreeMap<String, ServiceOp>,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            billing: true,
            key_creation_blocked: false,
            services: BTreeSet::new(),
            compute: BTreeMap::new(),
            operations: BTreeMap::new(),
            request_ids: BTreeMap::new(),
            service_accounts: BTreeMap::new(),
            keys: BTreeMap::new(),
            policy: Value::Null,
            policy_serial: 0,
            service_operations: BTreeMap::new(),
        }
    }
}

/// A Compute operation and what it does when it completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeOp {
    /// The `compute#operation` resource as served.
    pub op: Value,
    /// Unix milliseconds at which it completes.
    pub done_at: i64,
    /// The resource path it changes and the resource afterwards (`None`: deleted).
    pub target: String,
    /// The resource after the change (absent for deletes).
    pub resource: Option<Value>,
    /// Whether this is an insert (fails if the target exists by then).
    pub insert: bool,
    /// Set when the operation ends in an error: (HTTP status, code, message).
    pub error: Option<(u16, String, String)>,
}

/// A Service Usage enable operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOp {
    /// Unix milliseconds at which it completes.
    pub done_at: i64,
    /// The services it enables.
    pub services: Vec<String>,
    /// `services.enable` (one service) rather than `batchEnable`.
    pub single: bool,
}

/// A bucket and its objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// The owning project id.
    pub project: String,
    /// The `storage#bucket` resource.
    pub meta: Value,
    /// Objects by name.
    #[serde(default)]
    pub objects: BTreeMap<String, Object>,
}

/// One stored object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// The `storage#object` resource.
    pub meta: Value,
    /// The bytes, when small enough to keep (memory only).
    #[serde(skip)]
    pub data: Option<bytes::Bytes>,
}

/// A test-injected failure for matching requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// HTTP method to match (empty: any).
    #[serde(default)]
    pub method: String,
    /// Path prefix to match.
    #[serde(default)]
    pub path_prefix: String,
    /// Status to answer with.
    pub status: u16,
    /// How many requests fail.
    #[serde(default = "one")]
    pub count: u32,
    /// Message (default: a generic one for the status).
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

/// An error to answer with: Google's `{"error": {...}}` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// The canonical status name (`NOT_FOUND`).
    pub status: &'static str,
    /// The legacy `errors[].reason` (`notFound`).
    pub reason: &'static str,
    /// Human message.
    pub message: String,
    /// Extra `details` entries.
    pub details: Vec<Value>,
}

impl ApiError {
    /// An error with the status name and reason usual for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        let (status, reason) = match code {
            400 => ("INVALID_ARGUMENT", "invalid"),
            401 => ("UNAUTHENTICATED", "required"),
            403 => ("PERMISSION_DENIED", "forbidden"),
            404 => ("NOT_FOUND", "notFound"),
            409 => ("ABORTED", "alreadyExists"),
            412 => ("FAILED_PRECONDITION", "conditionNotMet"),
            429 => ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
            500 => ("INTERNAL", "backendError"),
            501 => ("UNIMPLEMENTED", "notImplemented"),
            503 => ("UNAVAILABLE", "backendError"),
            504 => ("DEADLINE_EXCEEDED", "deadlineExceeded"),
            _ => ("UNKNOWN", "unknown"),
        };
        Self {
            code,
            status,
            reason,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Override the status name and reason.
    pub fn with(mut self, status: &'static str, reason: &'static str) -> Self {
        self.status = status;
        self.reason = reason;
        self
    }

    /// 404 with Google's wording for a missing Compute resource.
    pub fn compute_not_found(project: &str, rel: &str) -> Self {
        Self::new(
            404,
            format!("The resource 'projects/{project}/{rel}' was not found"),
        )
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut e = json!({"error": {"code": self.code, "message": self.message, "status": self.status,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}]}});
        if !self.details.is_empty() {
            e["error"]["details"] = Value::Array(self.details.clone());
        }
        e
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// The fake's shared state and settings.
pub struct Gcp {
    state: Mutex<State>,
    faults: Mutex<Vec<FaultRule>>,
    uploads: Mutex<BTreeMap<String, storage::Upload>>,
    path: Option<PathBuf>,
    dirty: AtomicBool,
    speed: f64,
    random_faults: f64,
    url: String,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 time of unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A stable pseudo project number for a project id.
pub fn project_number(project: &str) -> u64 {
    let h = project.bytes().fold(1469598103934665603u64, |a, b| {
        (a ^ b as u64).wrapping_mul(1099511628211)
    });
    100_000_000_000 + h % 900_000_000_000
}

/// Errors loading the saved GCP state.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    /// The file could not be read or parsed.
    #[error("cannot load GCP state `{path}`: {why}; hint: move the file away to start empty")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        why: String,
    },
}

impl Gcp {
    /// Open the fake: load `path` when it exists; `url` is the base URL it is served at.
    pub fn open(
        path: Option<PathBuf>,
        url: String,
        speed: f64,
        random_faults: f64,
    ) -> Result<Self, GcpError> {
        let state = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read(p).map_err(|e| GcpError::Load {
                    path: p.clone(),
                    why: e.to_string(),
                })?;
                serde_json::from_slice(&text).map_err(|e| GcpError::Load {
                    path: p.clone(),
                    why: e.to_string(),
                })?
            }
            _ => State::default(),
        };
        Ok(Self {
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            uploads: Mutex::new(BTreeMap::new()),
            path,
            dirty: AtomicBool::new(false),
            speed: if speed > 0.0 { speed } else { 1.0 },
            random_faults,
            url,
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Delay until an operation completes.
    pub(crate) fn op_delay_ms(&self) -> i64 {
        Duration::from_millis(300).div_f64(self.speed).as_millis() as i64
    }

    /// Run `f` on the state after completing due operations, and mark it to be saved.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.advance(now_ms());
        let out = f(&mut st);
        self.dirty.store(true, Ordering::Relaxed);
        out
    }

    /// Read the state after completing due operations (saved only if one completed).
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.advance(now_ms()) {
            self.dirty.store(true, Ordering::Relaxed);
        }
        f(&st)
    }

    /// The whole state as JSON (object bytes left out).
    pub fn snapshot(&self) -> Value {
        self.read(|s| serde_json::to_value(s).unwrap_or(Value::Null))
    }

    /// Save to `gcp.json` when changed (no-op without `--state`).
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec_pretty(&*st).unwrap_or_default()
        };
        crate::store::write_atomic(p, &bytes).inspect_err(|_| {
            self.dirty.store(true, Ordering::Relaxed);
        })
    }

    /// Add a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
    }

    /// The injected failure for this request, if any (consumes one count of a rule).
    fn take_fault(&self, method: &str, path: &str) -> Option<ApiError> {
        let mut rules = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let i = rules.iter().position(|r| {
            r.count > 0
                && (r.method.is_empty() || r.method.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
        })?;
        let r = &mut rules[i];
        r.count -= 1;
        let err = ApiError::new(
            r.status,
            r.message
                .clone()
                .unwrap_or_else(|| format!("injected fault: HTTP {}", r.status)),
        );
        if r.count == 0 {
            rules.remove(i);
        }
        Some(err)
    }

    /// Seed resources directly (see the module docs for the body); done at once.
    pub fn seed(&self, body: &Value) -> ApiResult<()> {
        let project = body
            .get("project")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::new(400, "seed: `project` is required"))?
            .to_string();
        let list = |k: &str| {
            body.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        self.with_state(|st| {
            let mut made = Vec::new();
            for (coll, regional) in [
                ("networks", false),
                ("subnetworks", true),
                ("routers", true),
                ("firewalls", false),
                ("images", false),
            ] {
                for mut r in list(coll) {
                    let name = r
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let rel = if regional {
                        let region = r.get("region").and_then(Value::as_str).unwrap_or("");
                        let region = region.rsplit('/').next().unwrap_or("").to_string();
                        if region.is_empty() {
                            return Err(ApiError::new(
                                400,
                                format!("seed: {coll} `{name}` needs a `region`"),
                            ));
                        }
                        format!("regions/{region}/{coll}/{name}")
                    } else {
                        format!("global/{coll}/{name}")
                    };
                    compute::prepare(st, &project, &rel, &mut r)?;
                    made.push((rel, r));
                }
            }
            let p = st.projects.entry(project.clone()).or_default();
            if !made.is_empty() {
                p.services.insert("compute.googleapis.com".into());
            }
            for (rel, r) in made {
                p.compute.insert(rel, r);
            }
            for s in list("services") {
                if let Some(s) = s.as_str() {
                    p.services.insert(s.to_string());
                }
            }
            for b in list("buckets") {
                let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                if !name.is_empty() {
                    let meta = storage::bucket_resource(&project, name, &b, now_ms());
                    st.buckets.insert(
                        name.to_string(),
                        Bucket {
                            project: project.clone(),
                            meta,
                            objects: BTreeMap::new(),
                        },
                    );
                }
            }
            Ok(())
        })
    }

    /// What the simulated CAPG sees for a GCPCluster: `Ok(firewall rules of the network, in
    /// the GCPCluster's `firewallRules` shape)` when the network and every subnet
    /// (`(name, region)`; empty region: any) exist, otherwise why not.
    pub fn network_check(
        &self,
        project: &str,
        network: &str,
        subnets: &[(String, String)],
    ) -> Result<Vec<Value>, String> {
        match self.network_missing(project, network, subnets) {
            Some(why) => Err(why),
            None => Ok(self.network_firewalls(project, network)),
        }
    }

    /// Why the network or one of its subnets is missing, if it is. Called for every
    /// GCPCluster on every controller pass, so it looks up by name and copies nothing.
    pub fn network_missing(
        &self,
        project: &str,
        network: &str,
        subnets: &[(String, String)],
    ) -> Option<String> {
        self.read(|st| {
            let hint = "CAPG does not create router/NAT for networks it does not own; run `meshfleet gcp setup`";
            let Some(p) = st
                .projects
                .get(project)
                .filter(|p| p.compute.contains_key(&format!("global/networks/{network}")))
            else {
                return Some(format!(
                    "network `{network}` not found in project `{project}`: {hint}"
                ));
            };
            let net_link = format!("{COMPUTE_LINK}projects/{project}/global/networks/{network}");
            let on_net = |v: &Value| v.get("network").and_then(Value::as_str) == Some(net_link.as_str());
            for (name, region) in subnets {
                let found = if region.is_empty() {
                    p.compute.iter().any(|(rel, v)| {
                        let mut parts = rel.split('/');
                        matches!(
                            (parts.next(), parts.next(), parts.next(), parts.next()),
                            (Some("regions"), Some(_), Some("subnetworks"), Some(n)) if n == name
                        ) && on_net(v)
                    })
                } else {
                    p.compute
                        .get(&format!("regions/{region}/subnetworks/{name}"))
                        .is_some_and(on_net)
                };
                if !found {
                    let where_ = if region.is_empty() {
                        String::new()
                    } else {
                        format!(" in region `{region}`")
                    };
                    return Some(format!(
                        "subnetwork `{name}`{where_} of network `{network}` not found in project `{project}`: {hint}"
                    ));
                }
            }
            None
        })
    }

    /// CAPG's firewall reconcile: insert each rule (compute `Firewall` shape) whose name does
    /// not exist in the project yet; existing rules of the same name are left as they are
    /// (kubernetes-sigs/cluster-api-provider-gcp:`cloud/services/compute/firewalls/reconcile.go`@v1.12.0).
    pub fn capg_insert_firewalls(&self, project: &str, rules: &[Value]) {
        let rel = |r: &Value| {
            format!(
                "global/firewalls/{}",
                r.get("name").and_then(Value::as_str).unwrap_or("")
            )
        };
        let missing = self.read(|st| {
            rules.iter().any(|r| {
                !st.projects
                    .get(project)
                    .is_some_and(|p| p.compute.contains_key(&rel(r)))
            })
        });
        if !missing {
            return;
        }
        self.with_state(|st| {
            for r in rules {
                let path = rel(r);
                if st
                    .projects
                    .get(project)
                    .is_some_and(|p| p.compute.contains_key(&path))
                {
                    continue;
                }
                let mut r = r.clone();
                if compute::prepare(st, project, &path, &mut r).is_ok() {
                    st.projects
                        .entry(project.to_string())
                        .or_default()
                        .compute
                        .insert(path, r);
                }
            }
        });
    }

    /// CAPG's firewall delete: remove the rules of these names, whoever made them
    /// (`firewalls/reconcile.go`@v1.12.0 deletes by the names it would create).
    pub fn capg_delete_firewalls(&self, project: &str, names: &[String]) {
        let present = self.read(|st| {
            st.projects.get(project).is_some_and(|p| {
                names
                    .iter()
                    .any(|n| p.compute.contains_key(&format!("global/firewalls/{n}")))
            })
        });
        if present {
            self.with_state(|st| {
                if let Some(p) = st.projects.get_mut(project) {
                    for n in names {
                        p.compute.remove(&format!("global/firewalls/{n}"));
                    }
                }
            });
        }
    }

    /// The enabled firewall rules of a network, in the GCPCluster's `firewallRules` shape
    /// (empty when the project or network does not exist).
    pub fn network_firewalls(&self, project: &str, network: &str) -> Vec<Value> {
        self.read(|st| {
            let Some(p) = st.projects.get(project) else {
                return Vec::new();
            };
            let net_link = format!("{COMPUTE_LINK}projects/{project}/global/networks/{network}");
            p.compute
                .range::<str, _>((
                    std::ops::Bound::Included("global/firewalls/"),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(rel, _)| rel.starts_with("global/firewalls/"))
                .filter(|(_, v)| {
                    v.get("network").and_then(Value::as_str) == Some(net_link.as_str())
                        && v.get("disabled").and_then(Value::as_bool) != Some(true)
                })
                .map(|(_, v)| {
                    let mut r = v.clone();
                    // The GCPCluster shape spells directions `Ingress`/`Egress`.
                    let dir = if v.get("direction").and_then(Value::as_str) == Some("EGRESS") {
                        "Egress"
                    } else {
                        "Ingress"
                    };
                    r["direction"] = json!(dir);
                    r
                })
                .collect()
        })
    }
}

impl State {
    /// Complete the operations that are due; whether any did.
    pub fn advance(&mut self, now: i64) -> bool {
        let mut changed = false;
        for p in self.projects.values_mut() {
            let due: Vec<String> = p
                .operations
                .iter()
                .filter(|(_, o)| o.done_at <= now && o.op["status"] != "DONE")
                .map(|(k, _)| k.clone())
                .collect();
            for name in due {
                changed = true;
                let Some(mut o) = p.operations.remove(&name) else {
                    continue;
                };
                if o.error.is_none() {
                    if o.insert && p.compute.contains_key(&o.target) {
                        o.error = Some((
                            409,
                            "RESOURCE_ALREADY_EXISTS".into(),
                            format!("The resource '{}' already exists", o.target_path(&o.op)),
                        ));
                    } else {
                        match &o.resource {
                            Some(r) => {
                                p.compute.insert(o.target.clone(), r.clone());
                            }
                            None => {
                                p.compute.remove(&o.target);
                            }
                        }
                    }
                }
                o.op["status"] = json!("DONE");
                o.op["progress"] = json!(100);
                o.op["endTime"] = json!(rfc3339(o.done_at));
                if let Some((code, reason, msg)) = &o.error {
                    o.op["error"] = json!({"errors": [{"code": reason, "message": msg}]});
                    o.op["httpErrorStatusCode"] = json!(code);
                    o.op["httpErrorMessage"] = json!(http_reason(*code));
                }
                p.operations.insert(name, o);
            }
            for o in p.service_operations.values() {
                if o.done_at <= now {
                    for s in &o.services {
                        changed |= p.services.insert(s.clone());
                    }
                }
            }
        }
        changed
    }

    /// A fresh numeric id.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1_000_000_000_000_000_000 + self.next_id * 7919
    }
}

impl ComputeOp {
    fn target_path(&self, op: &Value) -> String {
        op.get("targetLink")
            .and_then(Value::as_str)
            .and_then(|l| l.strip_prefix(COMPUTE_LINK))
            .unwrap_or(&self.target)
            .to_string()
    }
}

/// The reason phrase Compute puts in `httpErrorMessage`.
pub fn http_reason(code: u16) -> &'static str {
    match code {
        400 => "BAD REQUEST",
        403 => "FORBIDDEN",
        404 => "NOT FOUND",
        409 => "CONFLICT",
        412 => "PRECONDITION FAILED",
        429 => "TOO MANY REQUESTS",
        503 => "SERVICE UNAVAILABLE",
        _ => "INTERNAL SERVER ERROR",
    }
}

/// The 403 a call gets when `service` is not enabled in `project`.
pub fn service_disabled(project: &str, service: &str) -> ApiError {
    let title = match service {
        "compute.googleapis.com" => "Compute Engine API",
        "iam.googleapis.com" => "Identity and Access Management (IAM) API",
        "storage.googleapis.com" => "Cloud Storage JSON API",
        "cloudresourcemanager.googleapis.com" => "Cloud Resource Manager API",
        _ => service,
    };
    let url = format!(
        "https://console.developers.google.com/apis/api/{service}/overview?project={project}"
    );
    let mut e = ApiError::new(
        403,
        format!(
            "{title} has not been used in project {project} before or it is disabled. Enable it by visiting {url} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
        ),
    )
    .with("PERMISSION_DENIED", "accessNotConfigured");
    e.details = vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
        "metadata": {"service": service, "consumer": format!("projects/{project}"),
            "activationUrl": url, "serviceTitle": title}})];
    e
}

/// Fail unless `service` is enabled in `project`.
pub fn require_service(st: &mut State, project: &str, service: &str) -> ApiResult<()> {
    if st
        .projects
        .entry(project.to_string())
        .or_default()
        .services
        .contains(service)
    {
        Ok(())
    } else {
        Err(service_disabled(project, service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcp() -> Gcp {
        Gcp::open(None, "http://127.0.0.1:1".into(), 1000.0, 0.0).unwrap()
    }

    #[test]
    fn network_check_names_what_is_missing_and_returns_the_network_rules() {
        let g = gcp();
        let subnets = [("a".to_string(), "europe-west1".to_string())];
        let e = g.network_check("p", "n", &subnets).unwrap_err();
        assert!(
            e.starts_with("network `n` not found in project `p`: CAPG does not create router/NAT"),
            "{e}"
        );
        g.seed(&json!({"project": "p", "networks": [{"name": "n"}, {"name": "other"}],
            "subnetworks": [{"name": "a", "region": "us-east1", "network": "n", "ipCidrRange": "10.0.0.0/20"}],
            "firewalls": [
                {"name": "in", "network": "n", "sourceRanges": ["203.0.113.10/32"], "allowed": [{"IPProtocol": "tcp", "ports": ["50000"]}]},
                {"name": "out", "network": "n", "direction": "EGRESS", "allowed": [{"IPProtocol": "all"}]},
                {"name": "off", "network": "n", "disabled": true, "allowed": [{"IPProtocol": "all"}]},
                {"name": "elsewhere", "network": "other", "allowed": [{"IPProtocol": "all"}]}]}))
            .unwrap();
        let e = g.network_check("p", "n", &subnets).unwrap_err();
        assert!(
            e.contains("subnetwork `a` in region `europe-west1` of network `n`"),
            "{e}"
        );
        let rules = g
            .network_check("p", "n", &[("a".into(), "us-east1".into())])
            .unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["in", "out"]);
        assert_eq!(rules[0]["direction"], "Ingress");
        assert_eq!(rules[1]["direction"], "Egress");
        let st = g.snapshot();
        assert_eq!(
            st["projects"]["p"]["services"],
            json!(["compute.googleapis.com"])
        );
    }

    #[test]
    fn seed_needs_a_project_and_regions() {
        let g = gcp();
        assert_eq!(g.seed(&json!({})).unwrap_err().code, 400);
        let e = g
            .seed(&json!({"project": "p", "subnetworks": [{"name": "s", "network": "n"}]}))
            .unwrap_err();
        assert!(e.message.contains("needs a `region`"), "{}", e.message);
    }

    #[test]
    fn operations_complete_when_due() {
        let mut st = State::default();
        let p = st.projects.entry("p".into()).or_default();
        p.operations.insert(
            "op".into(),
            ComputeOp {
                op: json!({"name": "op", "status": "RUNNING"}),
                done_at: 10,
                target: "global/networks/n".into(),
                resource: Some(json!({"name": "n"})),
                insert: true,
                error: None,
            },
        );
        assert!(!st.advance(5));
        assert!(st.projects["p"].compute.is_empty());
        assert!(st.advance(10));
        assert_eq!(st.projects["p"].operations["op"].op["status"], "DONE");
        assert!(st.projects["p"].compute.contains_key("global/networks/n"));
        assert!(!st.advance(20));
    }
}
