//! The executor: runs [`desired::steps`](crate::desired::steps) in order against a [`NetApi`].
//!
//! Per step: resolve the body's `${…}` references (earlier steps' results, CAPA's VPCs, the
//! account, pre-shared keys) → read the resource (the seam finds it by name or tag) → decide
//! create, update or unchanged by comparing the fields the cloud reports back → write. Every
//! step's result is kept for later references, so a re-run of an interrupted run finds what the
//! first run made (by name) and carries on: idempotent and resumable without any state file
//! besides the secrets. A dry run only reads; a reference to a step that would be created is
//! shown as "after <step>".

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;

use serde::Serialize;
use serde_json::Value;

use crate::desired::Step;
use crate::secrets::Secrets;

/// A failure of one API call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Worth retrying: throttling, a 5xx, no response, an eventually consistent read.
    #[error("{0} (transient)")]
    Transient(String),
    /// Not worth retrying: the request was refused.
    #[error("{0}")]
    Refused(String),
}

/// A VPC that CAPA made for an AWSCluster, found by the cluster tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapaVpc {
    /// `vpc-…`.
    pub vpc_id: String,
    /// The private subnets (one per availability zone), where TGW attachments go.
    pub private_subnet_ids: Vec<String>,
    /// The route tables of the private subnets, where routes to peer networks go.
    pub route_table_ids: Vec<String>,
}

/// The calls the executor needs, for both clouds. A step is passed with its body resolved as far
/// as possible; an implementation dispatches on [`Step::action`].
#[allow(async_fn_in_trait)]
pub trait NetApi {
    /// The resource a step makes, found by its name (GCP), its `Name` tag (AWS) or its key
    /// (a route's table and destination, an accepted attachment's id); `None` when absent. The
    /// value holds the step's result fields (`transitGatewayId`, `vpnInterfaces`, …) and the
    /// request fields the cloud reports back, under the request's own keys, so the executor
    /// can compare them.
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError>;
    /// Make the resource; returns what [`NetApi::read`] would return afterwards.
    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError>;
    /// Bring an existing resource to `body` (`fields` are the request keys that differ);
    /// returns what [`NetApi::read`] would return afterwards.
    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError>;
    /// The VPC CAPA made for `cluster` in `region`; `None` while it does not exist yet.
    async fn capa_vpc(&self, region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError>;
    /// The AWS account id (for peering attachments).
    async fn account_id(&self) -> Result<String, ApiError>;
}

/// The step report, shared with the other setups (`meshfleet-steps`).
pub use meshfleet_steps::{Action, Report, Status, StepRow};

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only read.
    pub dry_run: bool,
    /// Attempts per call for transient failures, the first included.
    pub attempts: u32,
    /// First backoff; doubles per attempt.
    pub backoff: Duration,
    /// Steps of one phase (see [`crate::desired::phase`]) in flight at once.
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            attempts: 6,
            backoff: Duration::from_millis(500),
            // Well inside EC2's mutating-action token bucket and Compute's per-project write
            // quota; a throttled call is retried as transient.
            parallel: 16,
        }
    }
}

/// A run that stopped at a step: the report so far (its last row failed) and why.
#[derive(Debug, thiserror::Error)]
#[error(
    "step `{step}` failed: {why}\n  hint: fix the cause and re-run `meshfleet net setup`; it resumes where this run stopped"
)]
pub struct Failure {
    /// The report of every step that ran: up to the failed step's phase, all of it (its steps
    /// run side by side), the failed step's row marked failed.
    pub report: Report,
    /// The step's id.
    pub step: String,
    /// The cause.
    pub why: String,
}

/// The report's kind of a step.
pub fn kind(action: &str) -> &'static str {
    match action {
        "vpnGateways.insert" => "vpn-gateway",
        "routers.insert" => "router",
        "routers.patch" => "router-bgp",
        "externalVpnGateways.insert" => "external-vpn-gateway",
        "vpnTunnels.insert" => "vpn-tunnel",
        "CreateTransitGateway" => "transit-gateway",
        "CreateTransitGatewayVpcAttachment" => "tgw-vpc-attachment",
        "CreateCustomerGateway" => "customer-gateway",
        "CreateVpnConnection" => "vpn-connection",
        "CreateTransitGatewayPeeringAttachment" => "tgw-peering",
        "AcceptTransitGatewayPeeringAttachment" => "tgw-peering-accept",
        "CreateTransitGatewayRoute" => "tgw-route",
        "CreateVpcPeeringConnection" => "vpc-peering",
        "AcceptVpcPeeringConnection" => "vpc-peering-accept",
        "CreateRoute" => "route",
        _ => "step",
    }
}

fn row_name(id: &str) -> String {
    id.splitn(4, '/').nth(3).unwrap_or(id).to_string()
}

/// Why a reference has no value yet.
enum Pending {
    /// Produced by a step that has not run (dry run: would be created).
    After(String),
    /// CAPA has not made the cluster's VPC yet.
    Capa(String),
}

/// The values known so far.
struct Resolver<'a> {
    opts: &'a Options,
    secrets: &'a Secrets,
    ids: HashSet<&'a str>,
    outputs: HashMap<String, Value>,
    capa: HashMap<(String, String), Option<CapaVpc>>,
    account: Option<String>,
}

/// The step a reference `step-id.path` names: the longest id it starts with, followed by a dot
/// (ids hold dots themselves: a route's destination).
fn step_of<'i>(ids: &HashSet<&'i str>, inner: &str) -> Option<&'i str> {
    inner
        .rmatch_indices('.')
        .find_map(|(at, _)| ids.get(&inner[..at]).copied())
}

/// Call `f` with the text of every `${…}` reference in a body.
fn each_ref<'b>(body: &'b Value, f: &mut impl FnMut(&'b str)) {
    match body {
        Value::String(s) => {
            if let Some(inner) = s.strip_prefix("${").and_then(|x| x.strip_suffix('}')) {
                f(inner);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| each_ref(x, f)),
        Value::Object(m) => m.values().for_each(|x| each_ref(x, f)),
        _ => {}
    }
}

/// A CAPA reference (`rest` follows `capa:`) as `(region, cluster, field)`; `None` when
/// malformed. `cluster@region` names a VPC in another region than the step's (a peering's
/// accepter).
fn capa_ref<'a>(region: &'a str, rest: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
    let (cluster, field) = rest.split_once('.')?;
    let (cluster, region) = cluster.split_once('@').unwrap_or((cluster, region));
    Some((region, cluster, field))
}

/// Follow `a.b[0].c` into a value.
fn follow<'v>(mut cur: &'v Value, path: &str) -> Option<&'v Value> {
    for part in path.split('.') {
        let (key, idx) = match part.split_once('[') {
            Some((k, i)) => (k, Some(i.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

impl Resolver<'_> {
    /// The value of one reference (`inner` is the text between `${` and `}`).
    async fn value<A: NetApi>(
        &mut self,
        api: &A,
        region: &str,
        inner: &str,
    ) -> Result<Result<Value, Pending>, String> {
        if let Some(t) = inner.strip_prefix("secret:") {
            return match self.secrets.tunnels.get(t) {
                Some(s) => Ok(Ok(Value::String(s.psk.clone()))),
                None => Err(format!(
                    "no pre-shared key for tunnel `{t}` in {}",
                    crate::secrets::FILE
                )),
            };
        }
        if inner == "account" {
            if self.account.is_none() {
                self.account = Some(
                    retry(self.opts, || api.account_id())
                        .await
                        .map_err(|e| format!("reading the AWS account id: {e}"))?,
                );
            }
            return Ok(Ok(Value::String(self.account.clone().unwrap_or_default())));
        }
        if let Some(rest) = inner.strip_prefix("capa:") {
            let (region, cluster, field) = capa_ref(region, rest)
                .ok_or_else(|| format!("malformed reference `${{{inner}}}`"))?;
            let key = (region.to_string(), cluster.to_string());
            if !self.capa.contains_key(&key) {
                let v = retry(self.opts, || api.capa_vpc(region, cluster))
                    .await
                    .map_err(|e| format!("finding {cluster}'s VPC: {e}"))?;
                self.capa.insert(key.clone(), v);
            }
            return Ok(match &self.capa[&key] {
                None => Err(Pending::Capa(cluster.to_string())),
                Some(v) => {
                    let j = serde_json::to_value(v).map_err(|e| e.to_string())?;
                    Ok(follow(&j, field)
                        .cloned()
                        .ok_or_else(|| format!("CAPA's VPC has no field `{field}`"))?)
                }
            });
        }
        // `step-id.path`: the longest step id the reference starts with.
        let id = step_of(&self.ids, inner)
            .ok_or_else(|| format!("reference `${{{inner}}}` names no step"))?;
        let path = &inner[id.len() + 1..];
        match self.outputs.get(id) {
            None => Ok(Err(Pending::After(id.to_string()))),
            Some(out) => follow(out, path).cloned().map(Ok).ok_or_else(|| {
                format!("step `{id}`'s result has no `{path}` (the cloud answered without it)")
            }),
        }
    }

    /// Resolve a body; returns it and the references still pending (left as written).
    async fn body<A: NetApi>(
        &mut self,
        api: &A,
        region: &str,
        body: &Value,
        pending: &mut Vec<String>,
    ) -> Result<Value, String> {
        Ok(match body {
            Value::String(s) => match s.strip_prefix("${").and_then(|x| x.strip_suffix('}')) {
                None => body.clone(),
                Some(inner) => match self.value(api, region, inner).await? {
                    Ok(v) => v,
                    Err(p) => {
                        let why = match p {
                            Pending::After(id) => format!("after {id}"),
                            Pending::Capa(c) => format!("after CAPA creates {c}'s VPC"),
                        };
                        if !pending.contains(&why) {
                            pending.push(why);
                        }
                        body.clone()
                    }
                },
            },
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for x in a {
                    out.push(Box::pin(self.body(api, region, x, pending)).await?);
                }
                Value::Array(out)
            }
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    out.insert(
                        k.clone(),
                        Box::pin(self.body(api, region, v, pending)).await?,
                    );
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// Equal as the clouds compare them: numbers and booleans also match their string forms (EC2's
/// query parameters are strings), objects compare the keys the request sets.
fn same(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            w.iter().all(|(k, v)| h.get(k).is_none_or(|hv| same(v, hv)))
        }
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| same(a, b))
        }
        (Value::String(w), Value::String(h)) => w == h,
        (Value::String(s), other) | (other, Value::String(s)) => {
            s.as_str() == other.to_string().as_str()
        }
        (w, h) => w == h,
    }
}

/// The request keys whose reported value differs (keys the cloud does not report back, such as
/// a GCP tunnel's shared secret, cannot be compared and are skipped).
pub fn differing(body: &Value, current: &Value) -> Vec<String> {
    let Some(b) = body.as_object() else {
        return vec![];
    };
    b.iter()
        .filter(|(k, v)| current.get(k.as_str()).is_some_and(|c| !same(v, c)))
        .map(|(k, _)| k.clone())
        .collect()
}

fn backoff(opts: &Options, attempt: u32) -> Duration {
    opts.backoff
        .saturating_mul(1u32 << (attempt - 1).min(10))
        .min(Duration::from_secs(20))
}

async fn retry<T, F: std::future::Future<Output = Result<T, ApiError>>>(
    opts: &Options,
    mut f: impl FnMut() -> F,
) -> Result<T, ApiError> {
    let mut attempt = 1;
    loop {
        match f().await {
            Err(ApiError::Transient(_)) if attempt < opts.attempts => {
                tokio::time::sleep(backoff(opts, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Run `steps` against `api`, phase by phase in their order: the steps of one phase (a run of
/// consecutive steps with the same [`crate::desired::phase`], none referring to another) go out
/// up to [`Options::parallel`] at a time, since at fleet scale a phase is hundreds of
/// independent requests (an attachment or a route per VPC) that would otherwise wait on each
/// other's round trips, and on AWS's minutes until an attachment is `available`. A failure stops
/// the run after its phase: the report holds every step of that phase that ran, in order.
pub async fn run<A: NetApi>(
    api: &A,
    steps: &[Step],
    secrets: &Secrets,
    opts: &Options,
) -> Result<Report, Failure> {
    let mut r = Resolver {
        opts,
        secrets,
        ids: steps.iter().map(|s| s.id.as_str()).collect(),
        outputs: HashMap::new(),
        capa: HashMap::new(),
        account: None,
    };
    let mut report = Report::default();
    let mut at = 0;
    while at < steps.len() {
        let end = phase_end(&r.ids, steps, at);
        let phase = &steps[at..end];
        at = end;
        prefetch_capa(api, &mut r, phase).await;
        // Resolve every body first (the resolver's caches are shared), then write at once.
        let mut ready = Vec::with_capacity(phase.len());
        for step in phase {
            let mut row = StepRow {
                kind: kind(step.action),
                name: row_name(&step.id),
                action: Action::Create,
                status: Status::Failed,
                detail: String::new(),
            };
            let body = prepare(api, &mut r, step, opts, &mut row).await;
            ready.push((step, row, body));
        }
        let done: Vec<_> = futures_util::stream::iter(ready)
            .map(|(step, mut row, body)| async move {
                let res = match body {
                    Err(why) => Err(why),
                    Ok(None) => Ok(None),
                    Ok(Some(body)) => write(api, step, &body, opts, &mut row).await,
                };
                (step, row, res)
            })
            .buffered(opts.parallel.max(1))
            .collect()
            .await;
        let mut failed = None;
        for (step, mut row, res) in done {
            match res {
                Ok(out) => {
                    if let Some(out) = out {
                        r.outputs.insert(step.id.clone(), out);
                    }
                }
                Err(why) => {
                    row.status = Status::Failed;
                    row.detail = why.clone();
                    failed.get_or_insert((step.id.clone(), why));
                }
            }
            report.steps.push(row);
        }
        if let Some((step, why)) = failed {
            return Err(Failure { report, step, why });
        }
    }
    Ok(report)
}

/// Where the phase that starts at `from` ends: the first step of another phase, or one that
/// refers to a step of this phase.
fn phase_end(ids: &HashSet<&str>, steps: &[Step], from: usize) -> usize {
    let phase = crate::desired::phase(steps[from].action);
    let mut inside: HashSet<&str> = HashSet::new();
    let mut end = from;
    while end < steps.len() && crate::desired::phase(steps[end].action) == phase {
        let mut within = false;
        each_ref(&steps[end].body, &mut |inner| {
            within |= step_of(ids, inner).is_some_and(|id| inside.contains(id));
        });
        if within {
            break;
        }
        inside.insert(steps[end].id.as_str());
        end += 1;
    }
    end.max(from + 1)
}

/// Look up, all at once, the CAPA VPCs a phase refers to that are not known yet; a lookup that
/// fails is left for [`Resolver::value`] to repeat and report.
async fn prefetch_capa<A: NetApi>(api: &A, r: &mut Resolver<'_>, phase: &[Step]) {
    let mut want = Vec::new();
    for step in phase {
        each_ref(&step.body, &mut |inner| {
            if let Some((region, cluster, _)) = inner
                .strip_prefix("capa:")
                .and_then(|rest| capa_ref(&step.region, rest))
            {
                want.push((region.to_string(), cluster.to_string()));
            }
        });
    }
    want.sort_unstable();
    want.dedup();
    want.retain(|k| !r.capa.contains_key(k));
    let opts = r.opts;
    let found: Vec<_> = futures_util::stream::iter(want)
        .map(|(region, cluster)| async move {
            let v = retry(opts, || api.capa_vpc(&region, &cluster)).await;
            ((region, cluster), v)
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    for (k, v) in found {
        if let Ok(v) = v {
            r.capa.insert(k, v);
        }
    }
}

/// Read, decide, write (unless `dry_run`): the action, the result for later references, the
/// fields that differed.
async fn decide_and_write<A: NetApi>(
    api: &A,
    step: &Step,
    body: &Value,
    dry_run: bool,
) -> Result<(Action, Option<Value>, String), ApiError> {
    let ctx = |what: &str, e: ApiError| match e {
        ApiError::Transient(m) => ApiError::Transient(format!("{what}: {m}")),
        ApiError::Refused(m) => ApiError::Refused(format!("{what}: {m}")),
    };
    let current = api.read(step, body).await.map_err(|e| ctx("reading", e))?;
    Ok(match current {
        None if dry_run => (Action::Create, None, String::new()),
        None => {
            let out = api
                .create(step, body)
                .await
                .map_err(|e| ctx("creating", e))?;
            (Action::Create, Some(out), String::new())
        }
        Some(cur) => {
            let fields = differing(body, &cur);
            if fields.is_empty() {
                (Action::Unchanged, Some(cur), String::new())
            } else if dry_run {
                // Later steps may still use what exists (its ids do not change on update).
                (Action::Update, Some(cur), fields.join(", "))
            } else {
                let out = api
                    .update(step, body, &cur, &fields)
                    .await
                    .map_err(|e| ctx(&format!("updating {}", fields.join(", ")), e))?;
                (Action::Update, Some(out), fields.join(", "))
            }
        }
    })
}

/// Resolve a step's body: `Some` to write, `None` when the row is already decided (a dry run
/// waiting on a step it would create), or why it cannot run.
async fn prepare<A: NetApi>(
    api: &A,
    r: &mut Resolver<'_>,
    step: &Step,
    opts: &Options,
    row: &mut StepRow,
) -> Result<Option<Value>, String> {
    let mut pending = Vec::new();
    let body = r.body(api, &step.region, &step.body, &mut pending).await?;
    if !pending.is_empty() {
        if !opts.dry_run {
            // A real run has every earlier step's result; only CAPA can be missing.
            return Err(format!(
                "cannot run yet: {}\n  hint: `meshfleet up` makes the AWS VPCs; run `net setup` once they exist",
                pending.join(", ")
            ));
        }
        // What it depends on would be created first: so would this.
        row.action = Action::Create;
        row.status = Status::Planned;
        row.detail = pending.join(", ");
        return Ok(None);
    }
    Ok(Some(body))
}

/// Read, decide and write one resolved step, retrying transient failures; its result for later
/// references.
async fn write<A: NetApi>(
    api: &A,
    step: &Step,
    body: &Value,
    opts: &Options,
    row: &mut StepRow,
) -> Result<Option<Value>, String> {
    // A transient failure repeats the read too: a create whose answer was lost must be found,
    // not made twice (AWS tags are not unique).
    let (action, out, detail) = retry(opts, || decide_and_write(api, step, body, opts.dry_run))
        .await
        .map_err(|e| e.to_string())?;
    row.action = action;
    row.status = if opts.dry_run {
        Status::Planned
    } else {
        Status::Done
    };
    if action == Action::Unchanged {
        row.status = Status::Done;
    }
    row.detail = detail;
    Ok(out)
}
