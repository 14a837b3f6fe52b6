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

use anyhow::{Context, anyhow};
use meshfleet_kube::{Kube, KubeError, ObjectRef, Retry, status as kstatus};
use meshfleet_render::Rendered;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::mesh::{self, Endpoints};
use super::objects;
use super::progress::Progress;
use super::snapshot::Snapshot;

/// What `up` needs to know, decided by the command layer.
pub struct UpOptions {
    /// Fleet name (also the namespace in the management cluster).
    pub fleet: String,
    /// How long one cluster may take.
    pub timeout: Duration,
    /// How many clusters converge at once.
    pub concurrency: usize,
    /// Whether the fleet meshes its clusters.
    pub mesh: bool,
    /// The fleet's labels for objects meshfleet creates itself (Secrets).
    pub labels: BTreeMap<String, String>,
    /// Cilium cluster IDs by cluster.
    pub mesh_ids: BTreeMap<String, u32>,
    /// `maxConnectedClusters`.
    pub max_connected: u32,
}

/// How one cluster ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Cluster name.
    pub cluster: String,
    /// `None` when it converged; the reason otherwise.
    pub failure: Option<String>,
    /// Its clustermesh-apiserver endpoints (when it got that far).
    pub endpoints: Option<Endpoints>,
    /// Its API (when it got that far).
    pub workload: Option<Kube>,
}

/// The fleet's kinds the management cluster must serve.
pub fn kinds(rendered: &Rendered) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rendered
        .all_objects()
        .filter_map(|o| {
            Some((
                o.get("apiVersion")?.as_str()?.to_string(),
                o.get("kind")?.as_str()?.to_string(),
            ))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The `clusterctl init` line that installs the providers serving `missing`.
pub fn install_hint(missing: &[(String, String)]) -> String {
    let mut infra = Vec::new();
    let (mut core, mut bootstrap, mut cp, mut addon) = (false, false, false, false);
    for (av, kind) in missing {
        let group = av.split('/').next().unwrap_or_default();
        match group {
            "cluster.x-k8s.io" => core = true,
            "bootstrap.cluster.x-k8s.io" => bootstrap = true,
            "controlplane.cluster.x-k8s.io" => cp = true,
            "addons.cluster.x-k8s.io" => addon = true,
            "infrastructure.cluster.x-k8s.io" if kind.starts_with("GCP") => infra.push("gcp"),
            "infrastructure.cluster.x-k8s.io" if kind.starts_with("AWS") => infra.push("aws"),
            _ => {}
        }
    }
    infra.sort();
    infra.dedup();
    let mut cmd = String::from("clusterctl init");
    if !infra.is_empty() {
        cmd.push_str(&format!(" --infrastructure {}", infra.join(",")));
    }
    if bootstrap {
        cmd.push_str(" --bootstrap talos");
    }
    if cp {
        cmd.push_str(" --control-plane talos");
    }
    if addon {
        cmd.push_str(" --addon helm");
    }
    if !core && infra.is_empty() && !bootstrap && !cp && !addon {
        return "install the CustomResourceDefinitions of the kinds above".into();
    }
    cmd
}

/// Apply the fleet-wide objects that are not per-cluster proxies (the Namespace first).
pub async fn apply_fleet_objects(mgmt: &Kube, rendered: &Rendered) -> Result<(), KubeError> {
    for o in rendered
        .fleet_objects
        .iter()
        .filter(|o| !objects::is_proxy(o))
    {
        mgmt.apply(o).await?;
    }
    Ok(())
}

/// Ensure a fleet-wide secret exists in the management cluster (created once, from
/// `generate`; a racing run reads the winner's) and return its data. Never printed.
pub async fn ensure_fleet_secret(
    mgmt: &Kube,
    opts: &UpOptions,
    name: &str,
    keys: &[&str],
    generate: impl FnOnce() -> anyhow::Result<BTreeMap<String, String>>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let r = ObjectRef::new("v1", "Secret", Some(&opts.fleet), name);
    let read = |v: &Value| -> anyhow::Result<BTreeMap<String, String>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = BTreeMap::new();
        for key in keys {
            let s = v
                .pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1")))
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("Secret `{}/{name}` has no `{key}`\n  hint: delete it to have it generated again (every cluster then receives the new one)", opts.fleet))?;
            let bytes = base64::Engine::decode(&b64, s).with_context(|| {
                format!("Secret `{}/{name}` key `{key}` is not base64", opts.fleet)
            })?;
            out.insert(
                key.to_string(),
                String::from_utf8(bytes).with_context(|| {
                    format!("Secret `{}/{name}` key `{key}` is not text", opts.fleet)
                })?,
            );
        }
        Ok(out)
    };
    if let Some(v) = mgmt.get(&r).await? {
        return read(&v);
    }
    let data = generate()?;
    let (stored, _created) = mgmt
        .create_if_absent(&objects::secret(&opts.fleet, name, &opts.labels, &data))
        .await?;
    read(&stored)
}

/// The Secrets every workload cluster needs in `kube-system` before Cilium starts: the mesh CA
/// (`cilium-ca`, one per fleet: clusters with different CAs cannot mesh) and, with IPsec, the
/// shared keys (`cilium-ipsec-keys`). Each is generated once and kept in the management cluster.
pub async fn workload_secrets(
    mgmt: &Kube,
    opts: &UpOptions,
    ipsec: bool,
) -> anyhow::Result<Vec<(String, BTreeMap<String, String>)>> {
    use meshfleet_mesh::pki;
    let mut out = Vec::new();
    let ca = ensure_fleet_secret(
        mgmt,
        opts,
        &objects::mesh_ca_secret(&opts.fleet),
        &[pki::CILIUM_CA_CERT_KEY, pki::CILIUM_CA_KEY_KEY],
        || {
            let ca = pki::generate_ca(
                pki::DEFAULT_CA_NAME,
                pki::DEFAULT_CA_DAYS,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| anyhow!("cannot generate the mesh CA: {e}"))?;
            Ok(pki::cilium_ca_secret_data(&ca))
        },
    )
    .await?;
    out.push((pki::CILIUM_CA_SECRET_NAME.to_string(), ca));
    if ipsec {
        let keys = ensure_fleet_secret(
            mgmt,
            opts,
            &format!("{}-ipsec-keys", opts.fleet),
            &["keys"],
            || Ok(BTreeMap::from([("keys".to_string(), ipsec_keys()?)])),
        )
        .await?;
        out.push((meshfleet_render::IPSEC_SECRET_NAME.to_string(), keys));
    }
    Ok(out)
}

/// Cilium's IPsec key line: key ID 3, per-tunnel keys (`+`), AES-GCM with a random 20-byte key
/// (16 bytes of key, 4 of salt) and a 128-bit ICV.
fn ipsec_keys() -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 20];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow!("the system random source failed"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("3+ rfc4106(gcm(aes)) {hex} 128"))
}

/// Everything one cluster's convergence shares with the others.
pub struct Shared {
    /// The management cluster.
    pub mgmt: Kube,
    /// Options.
    pub opts: UpOptions,
    /// Secrets (name, data) every workload cluster gets in `kube-system` before Cilium.
    pub secrets: Vec<(String, BTreeMap<String, String>)>,
    /// Progress.
    pub progress: Arc<Progress>,
    /// Peer addresses already recorded in the proxies (carried over on re-runs).
    pub known_ips: BTreeMap<String, Vec<String>>,
    /// The fleet's management-cluster objects, listed for all clusters at once.
    pub snapshot: tokio::sync::watch::Receiver<Arc<Snapshot>>,
}

impl Shared {
    fn snap(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// How often a waiting cluster looks again. Cheap: it mostly reads the shared snapshot.
const POLL: Duration = Duration::from_millis(100);

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
pub async fn converge_cluster(
    shared: Arc<Shared>,
    name: String,
    cluster_objects: Vec<Value>,
    proxy: Option<Value>,
    sem: Arc<Semaphore>,
) -> Outcome {
    let _permit = sem.acquire_owned().await;
    let deadline = Deadline {
        start: Instant::now(),
        timeout: shared.opts.timeout,
    };
    match converge_inner(&shared, &name, &cluster_objects, proxy.as_ref(), &deadline).await {
        Ok((endpoints, workload)) => Outcome {
            cluster: name,
            failure: None,
            endpoints,
            workload: Some(workload),
        },
        Err(e) => Outcome {
            cluster: name,
            failure: Some(format!("{e:#}")),
            endpoints: None,
            workload: None,
        },
    }
}

async fn converge_inner(
    shared: &Shared,
    name: &str,
    cluster_objects: &[Value],
    proxy: Option<&Value>,
    deadline: &Deadline,
) -> anyhow::Result<(Option<Endpoints>, Kube)> {
    let p = &shared.progress;
    let mgmt = &shared.mgmt;

    p.step(name, "applying");
    for o in cluster_objects {
        mgmt.apply(o).await?;
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
    if let Some(proxy) = proxy {
        p.step(name, "installing Cilium");
        mgmt.apply(&objects::with_peer_ips(proxy, &shared.known_ips)?)
            .await?;
    }

    p.step(name, "waiting for the cluster to be available");
    loop {
        if shared.snap().clusters.get(name).is_some_and(cluster_ready) {
            break;
        }
        wait_or_fail(shared, name, deadline, "the cluster").await?;
    }

    if let Some(proxy) = proxy {
        p.step(name, "waiting for Cilium");
        let pref = ObjectRef::of(proxy)?;
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
async fn workload_api(shared: &Shared, name: &str, deadline: &Deadline) -> anyhow::Result<Kube> {
    let fleet = &shared.opts.fleet;
    let secret = objects::kubeconfig_secret(name);
    loop {
        let Some(kubeconfig) = shared.snap().kubeconfigs.get(&secret).cloned() else {
            wait_or_fail(shared, name, deadline, "the control plane").await?;
            continue;
        };
        let text = String::from_utf8(kubeconfig)
            .map_err(|_| anyhow!("Secret `{fleet}/{secret}` key `value` is not text"))?;
        let w = Kube::from_yaml(&text, &format!("Secret `{fleet}/{secret}`"))
            .await?
            .with_retry(Retry {
                attempts: 2,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(500),
            });
        match w
            .get(&ObjectRef::new("v1", "Namespace", None, "kube-system"))
            .await
        {
            Ok(_) => return Ok(w.with_retry(Retry::default())),
            Err(e) if e.is_transient() || matches!(e, KubeError::NotServed { .. }) => {
                wait_or_fail(shared, name, deadline, "the workload API").await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn wait_or_fail(
    shared: &Shared,
    name: &str,
    deadline: &Deadline,
    what: &str,
) -> anyhow::Result<()> {
    let why = why_waiting(&shared.snap(), &shared.opts.fleet, name);
    if deadline.passed() {
        let secs = deadline.timeout.as_secs();
        return Err(match why {
            Some(w) => anyhow!("stuck waiting for {what} after {secs}s: {w}"),
            None => anyhow!("stuck waiting for {what} after {secs}s"),
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
pub async fn connect_mesh(
    shared: &Shared,
    rendered: &Rendered,
    peers: &BTreeMap<String, Vec<String>>,
    done: &[Outcome],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let p = &shared.progress;
    let up: BTreeMap<&str, &Outcome> = done
        .iter()
        .filter(|o| o.failure.is_none())
        .map(|o| (o.cluster.as_str(), o))
        .collect();
    // Fresh endpoints win; a peer that failed this run keeps the addresses recorded earlier,
    // so one stuck cluster does not unwire itself from the others.
    let mut ips = shared.known_ips.clone();
    ips.extend(
        up.iter()
            .filter_map(|(n, o)| Some((n.to_string(), o.endpoints.as_ref()?.ips.clone()))),
    );

    // Check what Cilium would refuse before wiring anything.
    let mut members = Vec::new();
    for (n, o) in &up {
        let Some(w) = &o.workload else { continue };
        members.push(
            mesh::member(
                w,
                n,
                shared.opts.mesh_ids.get(*n).copied().unwrap_or(0),
                shared.opts.max_connected,
                o.endpoints.as_ref(),
            )
            .await?,
        );
    }
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let checks = meshfleet_mesh::check_mesh(
        &members,
        time::OffsetDateTime::now_utc(),
        time::Duration::days(30),
    );
    let fatal: Vec<_> = checks
        .iter()
        .filter(|c| c.severity() == meshfleet_mesh::Severity::Error)
        .map(|c| c.message())
        .collect();
    for c in &checks {
        if c.severity() != meshfleet_mesh::Severity::Error && up.len() > 1 {
            p.line(&format!("warning: {}", c.message()));
        }
    }
    if !fatal.is_empty() && up.len() > 1 {
        problems.insert("(fleet)".into(), fatal);
        return Ok(problems);
    }

    for proxy in rendered
        .fleet_objects
        .iter()
        .filter(|o| objects::is_proxy(o))
    {
        let Some(c) = objects::proxy_cluster(proxy) else {
            continue;
        };
        if !up.contains_key(c.as_str()) {
            continue;
        }
        p.step(&c, "connecting the mesh");
        shared
            .mgmt
            .apply(&objects::with_peer_ips(proxy, &ips)?)
            .await?;
    }

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
    loop {
        let mut still = BTreeMap::new();
        for (n, want) in pending {
            let w = up.get(n).and_then(|o| o.workload.as_ref());
            let view = match w {
                Some(w) => mesh::view(w).await.unwrap_or_default(),
                None => mesh::MeshView::default(),
            };
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
                    &format!("waiting for mesh peers: {}", missing.join(", ")),
                );
                if start.elapsed() > timeout {
                    let mut why = vec![format!("not connected to {}", missing.join(", "))];
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(problems)
}

/// Read the peer addresses already recorded in the fleet's proxies (for carrying over).
pub async fn recorded_ips(mgmt: &Kube, rendered: &Rendered) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for proxy in rendered
        .fleet_objects
        .iter()
        .filter(|o| objects::is_proxy(o))
    {
        let Ok(r) = ObjectRef::of(proxy) else {
            continue;
        };
        if let Ok(Some(live)) = mgmt.get(&r).await {
            for (peer, ips) in objects::proxy_peer_ips(&live) {
                out.entry(peer).or_insert(ips);
            }
        }
    }
    out
}
