//! The convergence of `up`: apply, wait, deliver the mesh CA, install Cilium, connect the mesh.
//!
//! Every step reads the world before it acts and is a no-op when the world already agrees, so
//! a run interrupted anywhere (Ctrl-C, kill -9, a dropped connection) is finished by the next
//! one: objects are server-side applied by name (never created twice), the mesh CA is created
//! only when absent (a racing run reads the winner's), and the peers' addresses already written
//! into a proxy's values are carried over so a re-run writes the same bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use meshfleet_kube::{KubeError, ObjectRef, Retry, status as kstatus};
use meshfleet_plan::Plan;
use meshfleet_render::{ClusterObjects, PeerEndpoint, Rendered};
use meshfleet_spec::Fleet;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api::Api;
use crate::event::Progress;
use crate::mesh::{self, Endpoints};
use crate::rollout;
use crate::snapshot::{self, Snapshot};
use crate::{Error, objects, providers, secrets, workload};

// The wave-by-wave half of `up` (rolled clusters, health gates, halting) lives beside it.
#[path = "up_waves.rs"]
mod waves;
use waves::roll_waves;

/// What `up` needs to know, decided by the command layer.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Fleet name (also the namespace in the management cluster).
    pub fleet: String,
    /// How long one cluster may take.
    pub timeout: Duration,
    /// How many clusters converge at once.
    pub concurrency: usize,
    /// Whether the fleet meshes its clusters.
    pub mesh: bool,
    /// Whether the fleet encrypts with IPsec (its keys are delivered like the mesh CA).
    pub ipsec: bool,
    /// The fleet's labels for objects meshfleet creates itself (Secrets).
    pub labels: BTreeMap<String, String>,
    /// Cilium cluster IDs by cluster.
    pub mesh_ids: BTreeMap<String, u32>,
    /// `maxConnectedClusters`.
    pub max_connected: u32,
    /// Mesh peers by cluster (from the plan).
    pub peers: BTreeMap<String, Vec<String>>,
}

/// How one cluster ended.
#[derive(Debug, Clone)]
pub struct Outcome<A> {
    /// Cluster name.
    pub cluster: String,
    /// `None` when it converged; the reason otherwise.
    pub failure: Option<String>,
    /// Its clustermesh-apiserver endpoints (when it got that far).
    pub endpoints: Option<Endpoints>,
    /// Its API (when it got that far).
    pub workload: Option<A>,
}

impl<A> Outcome<A> {
    /// The outcome of a convergence result: converged with its endpoints and API, or failed
    /// with the error's whole chain as the reason (one form for `up` and the rollout waves).
    pub(crate) fn of(cluster: String, r: Result<(Option<Endpoints>, A), Error>) -> Self {
        match r {
            Ok((endpoints, workload)) => Self {
                cluster,
                failure: None,
                endpoints,
                workload: Some(workload),
            },
            Err(e) => Self {
                cluster,
                failure: Some(format!("{e:#}")),
                endpoints: None,
                workload: None,
            },
        }
    }
}

/// What `up` ended with.
#[derive(Debug, Clone, Default)]
pub struct UpReport {
    /// Clusters that did not converge, by name, with the reason.
    pub failures: BTreeMap<String, String>,
    /// Mesh problems by cluster (`(fleet)` for fleet-wide ones).
    pub mesh_problems: BTreeMap<String, Vec<String>>,
    /// Clusters the management cluster holds for this fleet that the fleet file no longer
    /// names. `up` never deletes them: that takes `down --cluster NAME`.
    pub not_in_file: Vec<String>,
    /// The cluster a rollout halted at (its reason is in [`UpReport::failures`]).
    pub halted: Option<String>,
    /// Clusters the halted rollout did not touch, in rollout order.
    pub not_rolled: Vec<String>,
}

impl UpReport {
    /// Did everything converge?
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.mesh_problems.is_empty()
    }
}

/// Converge the fleet: check the providers, apply the fleet-wide objects, create the fleet's
/// secrets, converge every cluster (at most `concurrency` at once), then connect the mesh.
/// A cluster that fails does not stop the others; it is reported in [`UpReport::failures`].
pub async fn run<A: Api>(
    mgmt: &A,
    fleet: &Fleet,
    plan: &Plan,
    rendered: &Rendered,
    opts: UpOptions,
    progress: Arc<Progress>,
) -> Result<UpReport, Error> {
    // Providers first: applying into a cluster that lacks a CRD fails half-way.
    providers::check(mgmt, fleet, rendered).await?;
    // What every cluster runs, and whether the file's versions may follow from it: read
    // before the first write, so an invalid jump touches nothing.
    let live = rollout::read(mgmt, &opts.fleet, fleet, rendered).await?;
    let bad = rollout::check_paths(fleet, &live);
    if !bad.is_empty() {
        return Err(Error::UpgradePath(rollout::grouped(bad)));
    }
    let order = rollout::order(fleet, &live);

    apply_fleet_objects(mgmt, rendered).await?;
    let secrets = secrets::workload_secrets(mgmt, &opts, opts.ipsec).await?;
    let known = recorded_endpoints(mgmt, rendered).await;
    let control_plane_kinds: Vec<(String, String)> = providers::kinds(rendered)
        .into_iter()
        .filter(|(_, k)| k.ends_with("ControlPlane"))
        .collect();
    let (snapshot, lister) = snapshot::spawn(
        mgmt.clone(),
        opts.fleet.clone(),
        control_plane_kinds,
        LIST_INTERVAL,
    );
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let timeout = opts.timeout;
    let shared = Arc::new(Shared {
        mgmt: mgmt.clone(),
        opts,
        secrets,
        progress: progress.clone(),
        known,
        snapshot,
        fleet: fleet.clone(),
        plan: plan.clone(),
    });
    let mut set = tokio::task::JoinSet::new();
    for c in rendered
        .clusters
        .iter()
        .filter(|c| order.at_once.contains(&c.name))
    {
        set.spawn(converge_cluster(shared.clone(), c.clone(), sem.clone()));
    }
    // The rolled clusters go wave by wave beside them.
    let rolled = tokio::spawn(roll_waves(
        shared.clone(),
        rendered.clusters.clone(),
        order,
        live,
    ));
    let mut outcomes = Vec::new();
    while let Some(r) = set.join_next().await {
        let o = r.map_err(|e| Error::Other(format!("a cluster's task panicked: {e}")))?;
        match &o.failure {
            Some(f) => progress.finish(&o.cluster, false, f),
            None if !shared.opts.mesh => progress.finish(&o.cluster, true, "ready"),
            None => {}
        }
        outcomes.push(o);
    }

    let rolled = rolled
        .await
        .map_err(|e| Error::Other(format!("the rollout's task panicked: {e}")))?;
    outcomes.extend(rolled.outcomes);
    let mut report = UpReport {
        not_in_file: not_in_file(mgmt, &shared.opts.fleet, rendered).await?,
        halted: rolled.halted,
        not_rolled: rolled.untouched,
        ..UpReport::default()
    };
    // Nothing waits on the snapshot any more: connecting the mesh reads the workload
    // clusters. Listing on would fetch every Cilium proxy, each naming all its peers, five
    // times a second for as long as the mesh takes to connect (quadratic in the fleet).
    lister.abort();
    if shared.opts.mesh {
        report.mesh_problems = connect_mesh(&shared, &outcomes, timeout).await?;
    }
    for o in outcomes {
        if let Some(f) = o.failure {
            report.failures.insert(o.cluster, f);
        }
    }
    Ok(report)
}

/// The fleet's live Clusters (by the fleet label) that `rendered` does not name, sorted.
pub async fn not_in_file<A: Api>(
    mgmt: &A,
    fleet: &str,
    rendered: &Rendered,
) -> Result<Vec<String>, Error> {
    let selector = format!("{}={fleet}", objects::FLEET_LABEL);
    let live = match mgmt
        .list(objects::CAPI_VERSION, "Cluster", Some(fleet), &selector)
        .await
    {
        Ok(l) => l,
        Err(KubeError::NotServed { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out: Vec<String> = live
        .iter()
        .filter_map(|c| c.pointer("/metadata/name")?.as_str().map(str::to_string))
        .filter(|n| !rendered.clusters.iter().any(|c| &c.name == n))
        .collect();
    out.sort();
    Ok(out)
}

/// Apply the fleet-wide objects that are not some cluster's add-on (the Namespace first): each
/// cluster's add-ons are applied with the cluster, Cilium's once its peers are known.
pub async fn apply_fleet_objects<A: Api>(mgmt: &A, rendered: &Rendered) -> Result<(), KubeError> {
    let addon = |o: &Value| {
        rendered
            .clusters
            .iter()
            .any(|c| c.cilium.proxy == *o || c.addons.iter().any(|a| a.proxy == *o))
    };
    for o in rendered.fleet_objects.iter().filter(|o| !addon(o)) {
        mgmt.apply(o).await?;
    }
    Ok(())
}

/// Everything one cluster's convergence shares with the others.
struct Shared<A> {
    /// The management cluster.
    mgmt: A,
    /// Options.
    opts: UpOptions,
    /// Secrets (name, data) every workload cluster gets in `kube-system` before Cilium.
    secrets: Vec<(String, BTreeMap<String, String>)>,
    /// Progress.
    progress: Arc<Progress>,
    /// Peer endpoints already recorded in the proxies (carried over on re-runs).
    known: BTreeMap<String, PeerEndpoint>,
    /// The fleet's management-cluster objects, listed for all clusters at once.
    snapshot: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    /// The fleet and its plan, from which render gives each Cilium proxy with its peers.
    fleet: Fleet,
    plan: Plan,
}

impl<A> Shared<A> {
    /// `cluster`'s Cilium proxy naming those of its plan peers whose endpoints are in `known`.
    fn cilium_proxy(
        &self,
        cluster: &str,
        known: &BTreeMap<String, PeerEndpoint>,
    ) -> Result<Value, Error> {
        let peers: BTreeMap<String, PeerEndpoint> = self
            .opts
            .peers
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.clone(), known.get(p)?.clone())))
            .collect();
        meshfleet_render::cilium_proxy_with_peers(&self.fleet, &self.plan, cluster, &peers)
            .map_err(|e| Error::Other(e.to_string()))
    }

    fn snap(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// How often a waiting cluster looks again. Cheap: it mostly reads the shared snapshot.
const POLL: Duration = Duration::from_millis(100);

/// Clusters the mesh phase of `up` visits at once (as `mesh status` reads them).
const MESH_CONCURRENCY: usize = 32;

/// How often the snapshot is listed.
pub const LIST_INTERVAL: Duration = Duration::from_millis(200);

/// Why a cluster is not ready yet, from its Cluster and control plane conditions.
pub fn why_waiting(snap: &Snapshot, fleet: &str, cluster: &str) -> Option<String> {
    let c = snap.clusters.get(cluster)?;
    let mut conds = kstatus::conditions(c);
    // Infrastructure comes first: while it is not ready the control plane only says it waits
    // for it, and the cause (e.g. the provider's network missing) is on the Cluster.
    if let Some(infra) = kstatus::condition(&conds, "InfrastructureReady")
        && !infra.is_true()
        && infra.message.is_some()
    {
        return Some(describe(infra));
    }
    // The control plane holds the detail (e.g. Talos bootstrap unable to reach apid on 50000).
    if let Some(cp) = control_plane_ref(c, fleet)
        && let Some(cpo) = snap.control_planes.get(&cp.name)
    {
        let mut cpc: Vec<_> = kstatus::conditions(cpo)
            .into_iter()
            .map(|mut k| {
                k.type_ = format!("{}/{}", cp.kind, k.type_);
                k
            })
            .collect();
        cpc.append(&mut conds);
        conds = cpc;
    }
    kstatus::blocking(&conds).map(describe)
}

fn describe(b: &kstatus::Condition) -> String {
    let mut s = format!("{} is {}", b.type_, b.status);
    if let Some(r) = &b.reason {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(m) = &b.message {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// The control plane object a Cluster points at (v1beta2 `controlPlaneRef`: apiGroup, kind,
/// name; same namespace).
pub fn control_plane_ref(cluster: &Value, fleet: &str) -> Option<ObjectRef> {
    let r = cluster.pointer("/spec/controlPlaneRef")?;
    let kind = r.get("kind")?.as_str()?;
    let name = r.get("name")?.as_str()?;
    let api_version = match (
        r.get("apiVersion").and_then(Value::as_str),
        r.get("apiGroup").and_then(Value::as_str),
    ) {
        (Some(av), _) => av.to_string(),
        (None, Some(g)) if g == "controlplane.cluster.x-k8s.io" && kind == "TalosControlPlane" => {
            format!("{g}/v1alpha3")
        }
        _ => return None,
    };
    Some(ObjectRef::new(&api_version, kind, Some(fleet), name))
}

/// Is the Cluster ready: `Available` (v1beta2) or `Ready` (v1beta1) true.
pub fn cluster_ready(c: &Value) -> bool {
    let conds = kstatus::conditions(c);
    kstatus::condition(&conds, "Available")
        .or_else(|| kstatus::condition(&conds, "Ready"))
        .is_some_and(kstatus::Condition::is_true)
}

struct Deadline {
    start: Instant,
    timeout: Duration,
}

impl Deadline {
    fn passed(&self) -> bool {
        self.start.elapsed() > self.timeout
    }
}

/// Converge one cluster as far as it can go on its own (everything but the mesh links).
async fn converge_cluster<A: Api>(
    shared: Arc<Shared<A>>,
    cluster: ClusterObjects,
    sem: Arc<Semaphore>,
) -> Outcome<A> {
    let name = cluster.name.clone();
    let _permit = sem.acquire_owned().await;
    let deadline = Deadline {
        start: Instant::now(),
        timeout: shared.opts.timeout,
    };
    Outcome::of(name, converge_inner(&shared, &cluster, &deadline).await)
}

async fn converge_inner<A: Api>(
    shared: &Shared<A>,
    cluster: &ClusterObjects,
    deadline: &Deadline,
) -> Result<(Option<Endpoints>, A), Error> {
    let p = &shared.progress;
    let mgmt = &shared.mgmt;
    let name = cluster.name.as_str();

    p.step(name, "applying");
    for o in &cluster.objects {
        mgmt.apply(o).await?;
    }
    // The cloud controller managers go with the cluster: until one runs, no Node gets a
    // providerID, so Cluster API never matches Machines to Nodes.
    for a in &cluster.addons {
        mgmt.apply(&a.proxy).await?;
    }

    p.step(name, "waiting for the control plane");
    let workload = workload_api(shared, name, deadline).await?;

    // The CA (and IPsec keys) must be in place before Cilium starts, or the chart mints a CA
    // of its own and the cluster can never join: deliver them, then let the proxy install it.
    if !shared.secrets.is_empty() {
        p.step(name, "delivering the mesh CA");
    }
    for (secret_name, data) in &shared.secrets {
        let s = objects::secret(
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAMESPACE,
            secret_name,
            &shared.opts.labels,
            data,
        );
        loop {
            match workload.apply(&s).await {
                Ok(_) => break,
                // A workload API that has just come up may still refuse for a moment.
                Err(e) if e.is_transient() || matches!(e, KubeError::NotServed { .. }) => {
                    wait_or_fail(shared, name, deadline, "the workload API").await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Cilium's proxy selects only Clusters labelled as holding the mesh CA, so CAAPH cannot
    // install before the CA is there, however the proxy was applied (render's held-back
    // install). The label is applied under its own field manager: re-applying the rendered
    // Cluster leaves it alone.
    if cluster.cilium.held_back {
        mgmt.apply_as(
            &objects::mesh_ca_label_patch(&shared.opts.fleet, name),
            objects::MESH_CA_MANAGER,
        )
        .await?;
    }
    let has_cilium = !cluster.cilium.proxy.is_null();
    if has_cilium {
        p.step(name, "installing Cilium");
        mgmt.apply(&shared.cilium_proxy(name, &shared.known)?)
            .await?;
    }

    p.step(name, "waiting for the cluster to be available");
    loop {
        if shared.snap().clusters.get(name).is_some_and(cluster_ready) {
            break;
        }
        wait_or_fail(shared, name, deadline, "the cluster").await?;
    }

    if has_cilium {
        p.step(name, "waiting for Cilium");
        let pref = ObjectRef::of(&cluster.cilium.proxy)?;
        loop {
            let live = shared.snap().proxies.get(&pref.name).cloned();
            match mesh::cilium_ready(live.as_ref(), &workload).await {
                Ok(true) => break,
                Err(e) if !e.is_transient() => return Err(e.into()),
                _ => wait_or_fail(shared, name, deadline, "Cilium").await?,
            }
        }
    }

    let endpoints = if shared.opts.mesh {
        p.step(name, "reading clustermesh-apiserver endpoints");
        loop {
            match mesh::endpoints(&workload).await {
                Ok(Some(e)) if !e.ips.is_empty() => break Some(e),
                Err(e) if !e.is_transient() => return Err(e.into()),
                _ => wait_or_fail(shared, name, deadline, "the clustermesh-apiserver").await?,
            }
        }
    } else {
        None
    };
    p.step(name, "ready");
    Ok((endpoints, workload))
}

/// The workload cluster's API, once its admin kubeconfig Secret exists and the API answers.
/// The Secret is read again after every failed probe: it may be rewritten (a rotated
/// certificate, an endpoint that moved), and a stale copy must not keep a cluster waiting.
async fn workload_api<A: Api>(
    shared: &Shared<A>,
    name: &str,
    deadline: &Deadline,
) -> Result<A, Error> {
    let fleet = &shared.opts.fleet;
    let secret = objects::kubeconfig_secret(name);
    loop {
        let Some(kubeconfig) = shared.snap().kubeconfigs.get(&secret).cloned() else {
            wait_or_fail(shared, name, deadline, "the control plane").await?;
            continue;
        };
        let w = workload::open(&shared.mgmt, fleet, name, &kubeconfig, workload::PROBE).await?;
        match w
            .get(&ObjectRef::new("v1", "Namespace", None, "kube-system"))
            .await
        {
            Ok(_) => {
                return Ok(workload::open(
                    &shared.mgmt,
                    fleet,
                    name,
                    &kubeconfig,
                    Retry::default(),
                )
                .await?);
            }
            Err(e) if e.is_transient() || matches!(e, KubeError::NotServed { .. }) => {
                wait_or_fail(shared, name, deadline, "the workload API").await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn wait_or_fail<A>(
    shared: &Shared<A>,
    name: &str,
    deadline: &Deadline,
    what: &str,
) -> Result<(), Error> {
    let why = why_waiting(&shared.snap(), &shared.opts.fleet, name);
    if deadline.passed() {
        let secs = deadline.timeout.as_secs();
        return Err(match why {
            Some(w) => Error::Other(format!("stuck waiting for {what} after {secs}s: {w}")),
            None => Error::Other(format!("stuck waiting for {what} after {secs}s")),
        });
    }
    let msg = match &why {
        Some(w) => format!("waiting for {what}: {w}"),
        None => format!("waiting for {what}"),
    };
    shared.progress.step(name, &msg);
    tokio::time::sleep(POLL).await;
    Ok(())
}

/// Record every cluster's peers' addresses in its proxy and wait until each cluster's Cilium
/// reports its peers connected. Returns the problems found, by cluster.
async fn connect_mesh<A: Api>(
    shared: &Shared<A>,
    done: &[Outcome<A>],
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let p = &shared.progress;
    let peers = &shared.opts.peers;
    let up: BTreeMap<&str, &Outcome<A>> = done
        .iter()
        .filter(|o| o.failure.is_none())
        .map(|o| (o.cluster.as_str(), o))
        .collect();
    // Fresh endpoints win; a peer that failed this run keeps the addresses recorded earlier,
    // so one stuck cluster does not unwire itself from the others.
    let mut known = shared.known.clone();
    known.extend(up.iter().filter_map(|(n, o)| {
        let e = o.endpoints.as_ref()?;
        Some((n.to_string(), peer_endpoint(e)))
    }));

    // Check what Cilium would refuse before wiring anything. Every step of this phase visits
    // every cluster; one at a time, each waiting on its own round trips, it took minutes at
    // 511 clusters, so each runs MESH_CONCURRENCY clusters at once (in fleet order).
    let members: Vec<_> = stream::iter(
        up.iter()
            .filter_map(|(n, o)| Some((*n, o.workload.as_ref()?, *o))),
    )
    .map(|(n, w, o)| {
        mesh::member(
            w,
            n,
            shared.opts.mesh_ids.get(n).copied().unwrap_or(0),
            shared.opts.max_connected,
            o.endpoints.as_ref(),
        )
    })
    .buffered(MESH_CONCURRENCY)
    .try_collect()
    .await?;
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let checks = meshfleet_mesh::check_mesh(
        &members,
        time::OffsetDateTime::now_utc(),
        meshfleet_mesh::EXPIRY_WARNING,
    );
    let fatal: Vec<_> = checks
        .iter()
        .filter(|c| c.severity() == meshfleet_mesh::Severity::Error)
        .map(|c| c.message())
        .collect();
    for c in &checks {
        if c.severity() != meshfleet_mesh::Severity::Error && up.len() > 1 {
            p.warn(&c.message());
        }
    }
    if !fatal.is_empty() && up.len() > 1 {
        problems.insert("(fleet)".into(), fatal);
        return Ok(problems);
    }

    // Each proxy names every peer; built as it is sent, so only the ones in flight are held.
    let known = &known;
    stream::iter(up.keys())
        .map(|c| async move {
            p.step(c, "connecting the mesh");
            let proxy = shared.cilium_proxy(c, known)?;
            shared.mgmt.apply(&proxy).await?;
            Ok::<(), Error>(())
        })
        .buffered(MESH_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;

    let start = Instant::now();
    let mut pending: BTreeMap<&str, Vec<String>> = up
        .keys()
        .map(|n| {
            let want: Vec<String> = peers
                .get(*n)
                .map(|ps| {
                    ps.iter()
                        .filter(|x| up.contains_key(x.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            (*n, want)
        })
        .collect();
    // Polled more slowly the longer it takes: every view reads every agent's gauges, one per
    // peer, so a fast poll of 511 clusters moved gigabytes while the mesh settled.
    let mut poll = Duration::from_millis(200);
    loop {
        let mut still = BTreeMap::new();
        let up = &up;
        let views: Vec<_> = stream::iter(pending)
            .map(|(n, want)| async move {
                let view = match up.get(n).and_then(|o| o.workload.as_ref()) {
                    Some(w) => mesh::view(w).await.unwrap_or_default(),
                    None => mesh::MeshView::default(),
                };
                (n, want, view)
            })
            .buffered(MESH_CONCURRENCY)
            .collect()
            .await;
        for (n, want, view) in views {
            let missing: Vec<String> = want
                .iter()
                .filter(|x| !view.connected.contains(x))
                .cloned()
                .collect();
            if missing.is_empty() {
                p.finish(n, true, &format!("ready, meshed with {} peers", want.len()));
            } else {
                p.step(
                    n,
                    &format!(
                        "waiting for {} mesh peers: {}",
                        missing.len(),
                        meshfleet_plan::some(&missing)
                    ),
                );
                if start.elapsed() > timeout {
                    let mut why = vec![format!(
                        "not connected to {} peers: {}",
                        missing.len(),
                        meshfleet_plan::some(&missing)
                    )];
                    why.extend(view.problems);
                    problems.insert(n.to_string(), why);
                } else {
                    still.insert(n, want);
                }
            }
        }
        if still.is_empty() {
            break;
        }
        pending = still;
        tokio::time::sleep(poll).await;
        poll = (poll * 3 / 2).min(Duration::from_secs(2));
    }
    Ok(problems)
}

/// What render needs of a peer's clustermesh-apiserver endpoints.
fn peer_endpoint(e: &Endpoints) -> PeerEndpoint {
    PeerEndpoint {
        ips: e.ips.clone(),
        address: None,
        port: e.port,
    }
}

/// Read the peer endpoints already recorded in the fleet's live Cilium proxies (for carrying
/// over): a peer that does not converge in this run stays wired to the others.
async fn recorded_endpoints<A: Api>(
    mgmt: &A,
    rendered: &Rendered,
) -> BTreeMap<String, PeerEndpoint> {
    let mut out = BTreeMap::new();
    for c in &rendered.clusters {
        let Ok(r) = ObjectRef::of(&c.cilium.proxy) else {
            continue;
        };
        if let Ok(Some(live)) = mgmt.get(&r).await {
            for (peer, e) in objects::proxy_peer_endpoints(&live) {
                out.entry(peer).or_insert(e);
            }
        }
    }
    out
}
