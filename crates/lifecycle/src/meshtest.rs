//! `mesh test`: prove that the mesh carries traffic, not only that agents report peers ready.
//!
//! In a namespace of its own in every cluster ([`Options::namespace`], labelled Pod Security
//! `enforce: baseline`; the Pods are `restricted`-clean), meshfleet runs one echo Pod and a
//! Service `echo` exported as a Cilium global service (`service.cilium.io/global: "true"`,
//! `service.cilium.io/shared: "true"`). The echo Pod is Kubernetes' own e2e image `agnhost`
//! running `netexec` ([`ECHO_IMAGE`]): it answers `/hostname` with its Pod name, and
//! `/dial?host=…&port=…&request=hostname&tries=N` makes the Pod itself connect N times to a
//! target and return what answered (`kubernetes/kubernetes:test/images/agnhost/netexec/netexec.go`).
//! meshfleet drives it through each API server's pod proxy, so nothing else has to run in the
//! clusters and the same code works on real clusters and on the simulator.
//!
//! Measured: every ordered pair of clusters pod-to-pod (the client Pod of one dials the echo
//! Pod's IP in the other; latency is the time of that dial through the API server's pod proxy,
//! so it includes the proxy hop), and from each cluster the global service by its cluster DNS
//! name, with which clusters answered. Each failure names its likely cause from what meshfleet
//! can read: a cluster whose API does not answer (an outage), a mesh link down (the agents'
//! gauges, [`crate::mesh::view`]), DNS, a network policy in the namespace, or else the
//! interconnect between the two clusters.
//!
//! The namespace is deleted afterwards in every cluster that answers ([`cleanup`]; the CLI also
//! calls it after Ctrl-C), and a namespace left by an interrupted run is removed before a new
//! run starts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use meshfleet_kube::{KubeError, ObjectRef};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::event::Progress;
use crate::{mesh, workload};

/// The echo image: Kubernetes' e2e `agnhost`, pinned by tag (the version Kubernetes' own e2e
/// suite uses, `kubernetes/kubernetes:test/utils/image/manifest.go`).
pub const ECHO_IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.52";
/// The port `agnhost netexec` serves HTTP on.
pub const ECHO_PORT: u16 = 8080;
/// The port of the `echo` Service.
pub const SERVICE_PORT: u16 = 80;
/// Name of the Service exported as a global service.
pub const SERVICE: &str = "echo";
/// Label on everything `mesh test` creates.
pub const TEST_LABEL: &str = "meshfleet.io/mesh-test";

/// How `mesh test` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace created (and deleted) in every cluster.
    pub namespace: String,
    /// The echo image.
    pub image: String,
    /// How long to wait for the echo Pods to be ready, and for the namespace to be gone.
    pub timeout: Duration,
    /// Connections to the global service per cluster in the fleet (so every cluster can be
    /// seen answering).
    pub tries_per_cluster: u32,
    /// Poll interval.
    pub every: Duration,
    /// How long the global service may take to list a healthy cluster's echo before it is
    /// measured without it: EndpointSlices and Cilium's ClusterMesh sync trail the Pods by a
    /// moment.
    pub settle: Duration,
    /// The fleet runs the MCS-API (`spec.mesh.services.mcsApi`): also export the echo Service
    /// with a `ServiceExport` and reach it as `echo.<namespace>.svc.clusterset.local`.
    pub mcs_api: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "meshfleet-mesh-test".into(),
            image: ECHO_IMAGE.into(),
            timeout: Duration::from_secs(180),
            tries_per_cluster: 4,
            every: Duration::from_millis(500),
            settle: Duration::from_secs(10),
            mcs_api: false,
        }
    }
}

/// One ordered pair, pod to pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pair {
    /// The client's cluster.
    pub from: String,
    /// The echo Pod's cluster.
    pub to: String,
    /// The echo Pod answered with its name.
    pub ok: bool,
    /// Milliseconds of the dial (through the API server's pod proxy).
    pub latency_ms: Option<u64>,
    /// What failed, and its likely cause.
    pub error: Option<String>,
}

/// The global service as one cluster reaches it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Global {
    /// The client's cluster.
    pub from: String,
    /// The name dialled: the global service's cluster DNS name, or with the MCS-API its
    /// `clusterset.local` name.
    pub service: String,
    /// The clusters whose echo Pods answered.
    pub served_by: Vec<String>,
    /// Every connection was answered.
    pub ok: bool,
    /// What failed, and its likely cause.
    pub error: Option<String>,
}

/// The result of `mesh test`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every ordered pair of clusters.
    pub matrix: Vec<Pair>,
    /// The global service from each cluster.
    pub global_services: Vec<Global>,
}

impl Report {
    /// Whether everything passed.
    pub fn ok(&self) -> bool {
        self.matrix.iter().all(|p| p.ok) && self.global_services.iter().all(|g| g.ok)
    }
}

fn pod_name(cluster: &str) -> String {
    format!("echo-{cluster}")
}

fn labels(fleet: &str, cluster: &str) -> Value {
    json!({TEST_LABEL: "true", "meshfleet.io/fleet": fleet, "meshfleet.io/cluster": cluster,
        "app.kubernetes.io/name": "meshfleet-echo", "app.kubernetes.io/managed-by": "meshfleet"})
}

/// The objects `mesh test` creates in one cluster: the namespace, the echo Pod, the global
/// Service.
pub fn objects(fleet: &str, cluster: &str, o: &Options) -> Vec<Value> {
    let ns = &o.namespace;
    let mut objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            TEST_LABEL: "true", "meshfleet.io/fleet": fleet,
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"}}}),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(cluster), "namespace": ns, "labels": labels(fleet, cluster)},
            "spec": {
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "echo", "image": o.image,
                    "args": ["netexec", format!("--http-port={ECHO_PORT}")],
                    "ports": [{"name": "http", "containerPort": ECHO_PORT, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/hostname", "port": ECHO_PORT}, "periodSeconds": 2},
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}}}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": ns, "labels": labels(fleet, cluster),
                "annotations": {"service.cilium.io/global": "true", "service.cilium.io/shared": "true"}},
            "spec": {"selector": {"app.kubernetes.io/name": "meshfleet-echo"},
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}}),
    ];
    // The MCS-API export of the same Service (a `ServiceExport` is named like the Service it
    // exports; sigs.k8s.io/mcs-api `pkg/apis/v1alpha1/serviceexport.go`).
    if o.mcs_api {
        objs.push(
            json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
            "metadata": {"name": SERVICE, "namespace": ns, "labels": labels(fleet, cluster)}}),
        );
    }
    objs
}

fn ns_ref(ns: &str) -> ObjectRef {
    ObjectRef::new("v1", "Namespace", None, ns)
}

fn ready_ip(p: Option<&Value>) -> Option<String> {
    let p = p?;
    let ready = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let ip = p.pointer("/status/podIP").and_then(Value::as_str)?;
    (ready && !ip.is_empty()).then(|| ip.to_string())
}

/// Wait until `ns` is gone in `w` (or `timeout` passes); `false` when it is still there.
async fn gone<A: Api>(
    w: &A,
    ns: &str,
    timeout: Duration,
    every: Duration,
) -> Result<bool, KubeError> {
    let (_, done) = w.wait(&ns_ref(ns), timeout, every, |v| v.is_none()).await?;
    Ok(done)
}

/// A cluster as the test sees it.
struct Member<A> {
    api: Option<A>,
    /// Why its API does not answer.
    unreachable: Option<String>,
    /// Its echo Pod's IP once ready.
    ip: Option<String>,
    /// Why its echo Pod is not ready.
    not_ready: Option<String>,
    /// Peers its Cilium agents report connected (`None`: unknown).
    connected: Option<BTreeSet<String>>,
    /// Network policies in the test namespace (names).
    policies: Vec<String>,
}

async fn open<A: Api>(mgmt: &A, fleet: &str, cluster: &str) -> Result<A, String> {
    let err = match workload::from_secret(mgmt, fleet, cluster, workload::GLANCE).await {
        Ok(Some(w)) => match w.list("v1", "Node", None, "").await {
            Ok(_) => return Ok(w),
            Err(e) => e.to_string(),
        },
        Ok(None) => return Err("no kubeconfig Secret yet (the cluster is not up)".into()),
        Err(e) => e.to_string(),
    };
    Err(match probe_failed(mgmt, fleet, cluster).await {
        Some(m) => format!("{err}; Cluster API agrees: RemoteConnectionProbe is False: {m}"),
        None => err,
    })
}

/// The message of the Cluster's `RemoteConnectionProbe` condition when it is False: Cluster
/// API's own view that the workload API has stopped answering (after its grace period,
/// `core/reconcilers/cluster/cluster_controller_status.go`@v1.14.0).
async fn probe_failed<A: Api>(mgmt: &A, fleet: &str, cluster: &str) -> Option<String> {
    let c = mgmt
        .get(&crate::objects::cluster_ref(fleet, cluster))
        .await
        .ok()??;
    meshfleet_kube::status::conditions(&c)
        .into_iter()
        .find(|x| x.type_ == "RemoteConnectionProbe" && x.status == "False")
        .map(|x| x.message.unwrap_or_else(|| "no message".into()))
}

/// Set up one cluster: a leftover namespace is waited out, then the objects are applied.
async fn setup<A: Api>(w: &A, fleet: &str, cluster: &str, o: &Options) -> Result<(), String> {
    let left = w
        .get(&ns_ref(&o.namespace))
        .await
        .map_err(|e| e.to_string())?;
    if left.is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
        && !gone(w, &o.namespace, o.timeout, o.every)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "namespace `{}` from an earlier run is still terminating",
            o.namespace
        ));
    }
    for obj in objects(fleet, cluster, o) {
        w.apply(&obj).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Run `mesh test` over `clusters` (the fleet's meshed clusters). Never fails as a whole: what
/// cannot be reached or set up is reported as failed pairs with their cause. Cleans up.
pub async fn run<A: Api>(
    mgmt: &A,
    fleet: &str,
    clusters: &[String],
    o: &Options,
    progress: &Progress,
) -> Report {
    let mut members: BTreeMap<String, Member<A>> = BTreeMap::new();
    for c in clusters {
        progress.step(c, "opening the cluster's API");
        let (api, unreachable) = match open(mgmt, fleet, c).await {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        members.insert(
            c.clone(),
            Member {
                api,
                unreachable,
                ip: None,
                not_ready: None,
                connected: None,
                policies: Vec::new(),
            },
        );
    }
    for (c, m) in &mut members {
        let Some(w) = &m.api else { continue };
        progress.step(
            c,
            &format!(
                "deploying the echo Pod and global Service in `{}`",
                o.namespace
            ),
        );
        if let Err(e) = setup(w, fleet, c, o).await {
            m.not_ready = Some(format!("could not set up the test: {e}"));
        }
    }
    // Wait for every echo Pod at once, up to the timeout.
    let start = Instant::now();
    loop {
        let mut waiting = false;
        for (c, m) in &mut members {
            let (Some(w), None, None) = (&m.api, &m.ip, &m.not_ready) else {
                continue;
            };
            let r = ObjectRef::new("v1", "Pod", Some(&o.namespace), &pod_name(c));
            match w.get(&r).await {
                Ok(p) => match ready_ip(p.as_ref()) {
                    Some(ip) => {
                        progress.step(c, &format!("echo Pod ready at {ip}"));
                        m.ip = Some(ip);
                    }
                    None => waiting = true,
                },
                Err(e) => m.unreachable = Some(e.to_string()),
            }
        }
        if !waiting {
            break;
        }
        if start.elapsed() >= o.timeout {
            for m in members.values_mut() {
                if m.api.is_some()
                    && m.ip.is_none()
                    && m.not_ready.is_none()
                    && m.unreachable.is_none()
                {
                    m.not_ready = Some(format!(
                        "its echo Pod was not ready within {}s",
                        o.timeout.as_secs()
                    ));
                }
            }
            break;
        }
        tokio::time::sleep(o.every).await;
    }
    // What meshfleet can read to explain failures: the agents' view and the policies.
    for m in members.values_mut() {
        let Some(w) = &m.api else { continue };
        if m.unreachable.is_some() {
            continue;
        }
        m.connected = mesh::view(w)
            .await
            .ok()
            .map(|v| v.connected.into_iter().collect());
        for (av, kind) in [
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("cilium.io/v2", "CiliumNetworkPolicy"),
        ] {
            if let Ok(l) = w.list(av, kind, Some(&o.namespace), "").await {
                m.policies.extend(l.iter().filter_map(|p| {
                    p.pointer("/metadata/name")?
                        .as_str()
                        .map(|n| format!("{kind} `{n}`"))
                }));
            }
        }
    }
    let mut report = Report::default();
    for from in clusters {
        for to in clusters.iter().filter(|t| *t != from) {
            report.matrix.push(pair(&members, from, to, o).await);
        }
    }
    let mut names = vec![format!("{SERVICE}.{}.svc.cluster.local", o.namespace)];
    if o.mcs_api {
        names.push(format!("{SERVICE}.{}.svc.clusterset.local", o.namespace));
    }
    // Every (name, source cluster) is measured at once: each may wait up to `settle` for the
    // global service to list every healthy echo, and a partition or an outage makes several
    // of them wait; in sequence those waits would add up.
    let checks = names
        .iter()
        .flat_map(|host| clusters.iter().map(move |from| (host, from)))
        .map(|(host, from)| global(&members, clusters, from, host, o));
    report.global_services = futures_util::future::join_all(checks).await;
    for c in clusters {
        let ok = report
            .matrix
            .iter()
            .filter(|p| &p.from == c || &p.to == c)
            .all(|p| p.ok);
        progress.finish(
            c,
            ok,
            if ok {
                "every pair answered"
            } else {
                "some pairs failed"
            },
        );
    }
    for w in cleanup_members(&members, o).await {
        progress.warn(&w);
    }
    report
}

/// Dial through `from`'s echo Pod: `Ok(body)` or the error.
async fn dial<A: Api>(
    w: &A,
    from: &str,
    o: &Options,
    host: &str,
    port: u16,
    tries: u32,
) -> Result<Value, String> {
    let path = format!("dial?request=hostname&protocol=http&host={host}&port={port}&tries={tries}");
    let text = w
        .pod_proxy_get(&o.namespace, &pod_name(from), ECHO_PORT, &path)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|_| format!("the echo Pod answered `{}`", text.trim()))
}

/// The likely cause of `from` not reaching `to`'s pods, from what meshfleet read.
fn cause<A>(members: &BTreeMap<String, Member<A>>, from: &str, to: &str) -> String {
    let (f, t) = (&members[from], &members[to]);
    let link = |a: &Member<A>, peer: &str| a.connected.as_ref().map(|c| c.contains(peer));
    if let Some(e) = &t.unreachable {
        return format!(
            "cluster `{to}` does not answer (its API is unreachable: {e}): an outage of the cluster or its region"
        );
    }
    if link(f, to) == Some(false) {
        return format!(
            "mesh link down: the Cilium agents of `{from}` do not report `{to}` ready (see `meshfleet mesh status`)"
        );
    }
    if link(t, from) == Some(false) {
        return format!(
            "mesh link down: the Cilium agents of `{to}` do not report `{from}` ready (see `meshfleet mesh status`)"
        );
    }
    let policies: Vec<&String> = f.policies.iter().chain(&t.policies).collect();
    if !policies.is_empty() {
        return format!(
            "policy: {} in the test namespace may drop it (with `policy-default-local-cluster`, selectors match the local cluster only)",
            policies
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    format!(
        "interconnect: the mesh links are up but packets between the nodes of `{from}` and `{to}` are dropped (VPN, peering, routes or the tunnel port in a firewall)"
    )
}

async fn pair<A: Api>(
    members: &BTreeMap<String, Member<A>>,
    from: &str,
    to: &str,
    o: &Options,
) -> Pair {
    let fail = |error: String| Pair {
        from: from.into(),
        to: to.into(),
        ok: false,
        latency_ms: None,
        error: Some(error),
    };
    let (f, t) = (&members[from], &members[to]);
    if let Some(e) = &f.unreachable {
        return fail(format!(
            "cannot run the client: the API of `{from}` is unreachable ({e}): an outage of the cluster or its region"
        ));
    }
    if let Some(e) = &f.not_ready {
        return fail(format!("the client in `{from}` is not running: {e}"));
    }
    let Some(ip) = &t.ip else {
        return fail(match &t.not_ready {
            Some(e) if t.unreachable.is_none() => format!("no echo Pod in `{to}`: {e}"),
            _ => cause(members, from, to),
        });
    };
    let Some(w) = &f.api else {
        return fail("no client".into());
    };
    let started = Instant::now();
    let r = dial(w, from, o, ip, ECHO_PORT, 1).await;
    let ms = started.elapsed().as_millis() as u64;
    let want = pod_name(to);
    match r {
        Ok(v)
            if v["responses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == want.as_str())) =>
        {
            Pair {
                from: from.into(),
                to: to.into(),
                ok: true,
                latency_ms: Some(ms),
                error: None,
            }
        }
        Ok(v) => {
            let err = v["errors"][0].as_str().unwrap_or("no answer").to_string();
            fail(format!("{err}; likely cause: {}", cause(members, from, to)))
        }
        Err(e) => fail(format!("the dial through `{from}`'s echo Pod failed: {e}")),
    }
}

async fn global<A: Api>(
    members: &BTreeMap<String, Member<A>>,
    clusters: &[String],
    from: &str,
    host: &str,
    o: &Options,
) -> Global {
    let fail = |error: String| Global {
        from: from.into(),
        service: host.into(),
        served_by: Vec::new(),
        ok: false,
        error: Some(error),
    };
    let f = &members[from];
    if let Some(e) = &f.unreachable {
        return fail(format!(
            "the API of `{from}` is unreachable ({e}): an outage of the cluster or its region"
        ));
    }
    if let Some(e) = &f.not_ready {
        return fail(format!("the client in `{from}` is not running: {e}"));
    }
    let Some(w) = &f.api else {
        return fail("no client".into());
    };
    let tries = o.tries_per_cluster.max(1) * clusters.len() as u32;
    let by_pod: BTreeMap<String, &String> = clusters.iter().map(|c| (pod_name(c), c)).collect();
    // The clusters whose echo is up: the global service should reach them all once synced.
    let healthy: BTreeSet<&String> = clusters
        .iter()
        .filter(|c| {
            members
                .get(c.as_str())
                .is_some_and(|m| m.unreachable.is_none() && m.not_ready.is_none())
        })
        .collect();
    let started = tokio::time::Instant::now();
    let (v, served_by) = loop {
        let v = match dial(w, from, o, host, SERVICE_PORT, tries).await {
            Ok(v) => v,
            Err(e) if e.contains("no such host") || e.contains("lookup ") => {
                return fail(format!("DNS: `{host}` does not resolve in `{from}` ({e})"));
            }
            Err(e) => return fail(format!("the dial through `{from}`'s echo Pod failed: {e}")),
        };
        let served_by: Vec<String> = v["responses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| by_pod.get(r.as_str()?).map(|c| (*c).clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let all = healthy.iter().all(|c| served_by.contains(c));
        if all || started.elapsed() >= o.settle {
            break (v, served_by);
        }
        tokio::time::sleep(o.every).await;
    };
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let error = match (errors.first(), served_by.is_empty()) {
        (None, false) => None,
        (None, true) => Some("no backend answered".to_string()),
        (Some(e), _) => {
            // Which expected backends did not answer, and why.
            let missing: Vec<String> = clusters
                .iter()
                .filter(|c| !served_by.contains(c) && c.as_str() != from)
                .map(|c| format!("`{c}`: {}", cause(members, from, c)))
                .collect();
            Some(format!(
                "{} of {tries} connections failed ({e}){}",
                errors.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not answering: {} (a lost cluster's backends are kept until `cacheTTL` passes)",
                        missing.join("; ")
                    )
                }
            ))
        }
    };
    Global {
        from: from.into(),
        service: host.into(),
        ok: error.is_none(),
        served_by,
        error,
    }
}

async fn cleanup_members<A: Api>(
    members: &BTreeMap<String, Member<A>>,
    o: &Options,
) -> Vec<String> {
    let mut warnings = Vec::new();
    // Delete everywhere first, then wait: one cluster's namespace must not wait on another's.
    let mut deleted = Vec::new();
    for (c, m) in members {
        let Some(w) = &m.api else {
            warnings.push(format!(
                "`{c}`: not cleaned up (its API is unreachable); the next `mesh test` removes namespace `{}`",
                o.namespace
            ));
            continue;
        };
        match w.delete(&ns_ref(&o.namespace)).await {
            Ok(_) => deleted.push((c, w)),
            Err(e) => warnings.push(format!(
                "`{c}`: namespace `{}` not removed: {e}",
                o.namespace
            )),
        }
    }
    for (c, w) in deleted {
        match gone(w, &o.namespace, o.timeout, o.every).await {
            Ok(true) => {}
            Ok(false) => warnings.push(format!(
                "`{c}`: namespace `{}` not removed: still terminating after {}s",
                o.namespace,
                o.timeout.as_secs()
            )),
            Err(e) => warnings.push(format!(
                "`{c}`: namespace `{}` not removed: {e}",
                o.namespace
            )),
        }
    }
    warnings
}

/// Remove the test namespace from every cluster that answers (after an interrupted run);
/// returns a warning per cluster where that did not happen.
pub async fn cleanup<A: Api>(
    mgmt: &A,
    fleet: &str,
    clusters: &[String],
    o: &Options,
) -> Vec<String> {
    let mut members = BTreeMap::new();
    for c in clusters {
        let (api, unreachable) = match open(mgmt, fleet, c).await {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        members.insert(
            c.clone(),
            Member {
                api,
                unreachable,
                ip: None,
                not_ready: None,
                connected: None,
                policies: Vec::new(),
            },
        );
    }
    cleanup_members(&members, o).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_pod_is_restricted_clean_and_the_service_global() {
        let o = Options::default();
        let objs = objects("f", "eu", &o);
        assert_eq!(
            objs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "baseline"
        );
        let pod = &objs[1];
        assert_eq!(pod["metadata"]["name"], "echo-eu");
        let spec = &pod["spec"];
        // What Pod Security `restricted` asks of every Pod and container.
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert!(
            spec.get("hostNetwork").is_none() && c["securityContext"].get("privileged").is_none()
        );
        assert_eq!(c["image"], ECHO_IMAGE);
        assert_eq!(c["args"], json!(["netexec", "--http-port=8080"]));
        let svc = &objs[2];
        assert_eq!(
            svc["metadata"]["annotations"]["service.cilium.io/global"],
            "true"
        );
        assert_eq!(svc["spec"]["ports"][0]["port"], SERVICE_PORT);
    }

    fn member(unreachable: Option<&str>, connected: &[&str], policies: &[&str]) -> Member<()> {
        Member {
            api: None,
            unreachable: unreachable.map(str::to_string),
            ip: None,
            not_ready: None,
            connected: Some(connected.iter().map(|s| s.to_string()).collect()),
            policies: policies.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn causes_in_order_of_what_meshfleet_can_read() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), member(None, &["b"], &[]));
        m.insert(
            "b".to_string(),
            member(Some("connection refused"), &[], &[]),
        );
        assert!(cause(&m, "a", "b").contains("outage"));
        m.insert("b".to_string(), member(None, &[], &[]));
        assert!(cause(&m, "a", "b").contains("agents of `b` do not report `a`"));
        m.insert("a".to_string(), member(None, &[], &[]));
        assert!(cause(&m, "a", "b").contains("agents of `a` do not report `b`"));
        m.insert(
            "a".to_string(),
            member(None, &["b"], &["NetworkPolicy `deny`"]),
        );
        m.insert("b".to_string(), member(None, &["a"], &[]));
        assert!(cause(&m, "a", "b").starts_with("policy: NetworkPolicy `deny`"));
        m.insert("a".to_string(), member(None, &["b"], &[]));
        assert!(cause(&m, "a", "b").starts_with("interconnect"));
    }

    #[test]
    fn a_report_passes_only_when_everything_does() {
        let mut r = Report::default();
        assert!(r.ok());
        r.global_services.push(Global {
            service: "echo".into(),
            from: "a".into(),
            served_by: vec!["a".into()],
            ok: true,
            error: None,
        });
        assert!(r.ok());
        r.matrix.push(Pair {
            from: "a".into(),
            to: "b".into(),
            ok: false,
            latency_ms: None,
            error: Some("x".into()),
        });
        assert!(!r.ok());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["matrix"][0]["latencyMs"], Value::Null);
        assert_eq!(v["globalServices"][0]["servedBy"], json!(["a"]));
    }
}
