//! What runs in a workload cluster once Cilium is there: user Pods (scheduled on a Ready node,
//! given an address from the cluster's pod CIDR), Services (a ClusterIP from its service
//! CIDR), EndpointSlices (the ready Pods a Service selects), and Cilium's multi-cluster
//! services on top: global services merged across the clusters whose mesh links are up, and
//! the MCS-API (`ServiceExport` → `ServiceImport`) when `clustermesh-enable-mcs-api` is on.
//!
//! # Global services (Cilium 1.19)
//!
//! A Service annotated `service.cilium.io/global: "true"` in several clusters, with the same
//! name and namespace, is one service: each cluster's agents load-balance it over their own
//! endpoints and those every connected cluster shares (`service.cilium.io/shared`, default
//! `"true"` for a global service; `"false"` keeps a cluster's endpoints to itself).
//! `service.cilium.io/affinity` picks among them: `local` uses the local endpoints while any is
//! ready and the remote ones only when none is, `remote` the reverse, `none` (the default) all
//! alike. (`cilium/cilium:Documentation/network/clustermesh/services.rst@v1.19.5`,
//! annotations `service.cilium.io/global`, `/shared`, `/affinity` in
//! `pkg/annotation/k8s.go`.)
//!
//! A cluster learns a peer's endpoints through its mesh link. When the link goes down the agent
//! keeps what it had for `clustermesh-cache-ttl` (`clustermesh.cacheTTL`; `0s`, the chart's
//! default, keeps it forever), then drops it: that is when a global service fails over. So a
//! peer's backends are used while the link is up, or while it has been down for less than the
//! TTL (stale: traffic to them still fails if the peer is unreachable). A link that never came
//! up never delivered any.
//!
//! # MCS-API
//!
//! With MCS-API on (`clustermesh-enable-mcs-api: "true"` in `cilium-config`), a `ServiceExport`
//! (`multicluster.x-k8s.io/v1alpha1`) named like a Service exports it: every cluster with
//! MCS-API on that is the exporter or knows it through its mesh link (as above), and holds the
//! namespace, gets a `ServiceImport` of that name (`type: ClusterSetIP`, the Service's ports,
//! `status.clusters` naming every exporting cluster), reachable as
//! `<svc>.<ns>.svc.clusterset.local` ([`crate::echo`]). The export's `Valid` condition says
//! whether a Service backs it (sigs.k8s.io/mcs-api `pkg/apis/v1alpha1/serviceexport.go`,
//! `ServiceExportValid`). The simulator serves these kinds in every workload cluster; a real
//! cluster has them only once the chart installs their CRDs (`clustermesh.mcsapi.installCRDs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::controllers::{
    CAPI, create, delete, list, name_of, ns_of, owner_ref, s, set_status, ty, update,
};
use crate::store::Key;
use crate::{Api, World};

/// Annotation making a Service global.
pub const GLOBAL: &str = "service.cilium.io/global";
/// Annotation saying whether a global Service's endpoints are shared with other clusters.
pub const SHARED: &str = "service.cilium.io/shared";
/// Annotation choosing local, remote or no preference among a global Service's endpoints.
pub const AFFINITY: &str = "service.cilium.io/affinity";
/// Group of the MCS-API kinds.
pub const MCS_GROUP: &str = "multicluster.x-k8s.io";
/// Group of EndpointSlices.
pub const DISCOVERY: &str = "discovery.k8s.io";

/// The simulator's memory of the mesh links, for the cache TTL: since when a link has been
/// down, and which links have ever been up (memory only; a restart reconnects everything on its
/// first pass anyway).
#[derive(Debug, Default)]
pub struct LinkMemory {
    /// By cluster key, then peer: since when the link has been down.
    down_since: HashMap<String, HashMap<String, Instant>>,
    /// By cluster key: the peers whose link has been up. Keyed by cluster, then peer, so a
    /// pass over every link (511 × 510 at Cilium's maximum) looks links up without copying
    /// their names.
    was_up: HashMap<String, HashSet<String>>,
    /// A counter spreading connections over backends, as Cilium's random selection does.
    pub(crate) turn: u64,
}

/// One endpoint of a service as a client in some cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The workload cluster's key (`<namespace>/<name>`).
    pub cluster: String,
    /// The cluster's Cilium name.
    pub cluster_name: String,
    /// The Pod's namespace and name.
    pub pod: (String, String),
    /// The Pod's address.
    pub ip: String,
    /// The port the Pod serves the service on.
    pub port: u16,
}

/// The `cilium-config` ConfigMap of a workload cluster (`None` without Cilium).
pub fn cilium_config(api: &Api) -> Option<Value> {
    api.store
        .get(&Key::new("/configmaps", "kube-system", "cilium-config"))
}

fn config(api: &Api, k: &str) -> String {
    cilium_config(api)
        .map(|c| s(&c, &format!("/data/{k}")).to_string())
        .unwrap_or_default()
}

/// Whether the cluster's Cilium runs the MCS-API.
pub fn mcs_enabled(api: &Api) -> bool {
    config(api, "clustermesh-enable-mcs-api") == "true"
}

/// The cluster's `clustermesh-cache-ttl` (`None`: never revoked).
fn cache_ttl(api: &Api) -> Option<Duration> {
    let text = config(api, "clustermesh-cache-ttl");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += digits.parse::<u64>().ok()? * unit;
        digits.clear();
    }
    (total > 0).then(|| Duration::from_secs(total))
}

/// The management Cluster of a workload key.
fn cluster_object(world: &World, key: &str) -> Option<Value> {
    let (ns, name) = key.split_once('/')?;
    let m = &world.management;
    let t = ty(m, CAPI, "Cluster")?;
    m.store.get(&Key::new(&t.key(), ns, name))
}

fn first_cidr(cluster: &Value, which: &str) -> Option<Ipv4Net> {
    cluster
        .pointer(&format!("/spec/clusterNetwork/{which}/cidrBlocks/0"))
        .and_then(Value::as_str)
        .and_then(|c| c.parse().ok())
}

/// The lowest free address of `net` from `offset` on, not in `used`.
fn free_ip(net: Ipv4Net, offset: u32, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(net.network());
    let size = 1u64 << (32 - net.prefix_len());
    (u64::from(offset)..size.saturating_sub(1))
        .map(|i| Ipv4Addr::from(base + i as u32))
        .find(|ip| !used.contains(ip))
}

fn ready_nodes(api: &Api) -> Vec<String> {
    api.store
        .list("/nodes", None)
        .0
        .iter()
        .filter(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
                })
        })
        .map(|n| name_of(n).to_string())
        .collect()
}

fn node_ip(api: &Api, node: &str) -> String {
    api.store
        .get(&Key::new("/nodes", "", node))
        .and_then(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| s(x, "/type") == "InternalIP"))
                .map(|x| s(x, "/address").to_string())
        })
        .unwrap_or_default()
}

/// Whether a Pod runs and is ready (as the kubelet reports it).
pub fn pod_ready(p: &Value) -> bool {
    s(p, "/status/phase") == "Running"
        && p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
            })
        && p.pointer("/metadata/deletionTimestamp").is_none()
}

/// Schedule and start the Pods users created: a Ready node, an address from the pod CIDR,
/// Running and Ready, once Cilium (the CNI) is there; Pending until then.
fn pods(world: &World, api: &Api) {
    let Some(cluster) = cluster_object(world, &api.name) else {
        return;
    };
    let cni = cilium_config(api).is_some();
    let pods = api.store.list("/pods", None).0;
    let mut used: BTreeSet<Ipv4Addr> = pods
        .iter()
        .filter(|p| p.pointer("/spec/hostNetwork").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| s(p, "/status/podIP").parse().ok())
        .collect();
    let nodes = ready_nodes(api);
    let net = first_cidr(&cluster, "pods");
    for (i, p) in pods.iter().enumerate() {
        let host = p.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        if host
            || !s(p, "/status/podIP").is_empty()
            || p.pointer("/metadata/deletionTimestamp").is_some()
        {
            continue;
        }
        let key = Key::new("/pods", ns_of(p), name_of(p));
        let (Some(net), true, false) = (net, cni, nodes.is_empty()) else {
            if s(p, "/status/phase") != "Pending" {
                let why = if cni {
                    "no Ready node"
                } else {
                    "network plugin not ready: cni plugin not initialized"
                };
                set_status(
                    api,
                    &key,
                    json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why}]}),
                );
            }
            continue;
        };
        let Some(ip) = free_ip(net, 10, &used) else {
            continue;
        };
        used.insert(ip);
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| nodes[i % nodes.len()].clone());
        let host_ip = node_ip(api, &node);
        update(api, &key, |v| v["spec"]["nodeName"] = json!(node));
        let now = crate::store::now_rfc3339();
        let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let statuses: Vec<Value> = p
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                json!({"name": s(c, "/name"), "image": s(c, "/image"), "imageID": "", "ready": true,
                "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}})
            })
            .collect();
        set_status(
            api,
            &key,
            json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": now,
            "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
            "containerStatuses": statuses}),
        );
    }
}

/// Give every Service that needs one a ClusterIP from the cluster's service CIDR.
fn services(world: &World, api: &Api) {
    let Some(net) = cluster_object(world, &api.name).and_then(|c| first_cidr(&c, "services"))
    else {
        return;
    };
    let svcs = api.store.list("/services", None).0;
    let mut used: BTreeSet<Ipv4Addr> = svcs
        .iter()
        .filter_map(|v| s(v, "/spec/clusterIP").parse().ok())
        .collect();
    for v in &svcs {
        if !s(v, "/spec/clusterIP").is_empty() || s(v, "/spec/type") == "ExternalName" {
            continue;
        }
        let Some(ip) = free_ip(net, 20, &used) else {
            continue;
        };
        used.insert(ip);
        update(api, &Key::new("/services", ns_of(v), name_of(v)), |o| {
            o["spec"]["clusterIP"] = json!(ip.to_string());
            o["spec"]["clusterIPs"] = json!([ip.to_string()]);
        });
    }
}

fn selects(selector: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(k, want)| {
            pod.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .is_some_and(|v| v == want)
        })
}

/// The container port a Service port targets on `pod`: a number, or a named container port.
fn target_port(port: &Value, pod: &Value) -> Option<u16> {
    match port.get("targetPort") {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u16),
        Some(Value::String(name)) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|p| s(p, "/name") == name)
            .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
            .map(|n| n as u16),
        _ => port.get("port").and_then(Value::as_u64).map(|n| n as u16),
    }
}

/// Keep one EndpointSlice per Service with a selector, listing the Pods it selects, as the
/// EndpointSlice controller does (label `kubernetes.io/service-name`, owned by the Service).
fn endpoint_slices(api: &Api) {
    let Some(t) = ty(api, DISCOVERY, "EndpointSlice") else {
        return;
    };
    let tk = t.key();
    let pods = api.store.list("/pods", None).0;
    for svc in api.store.list("/services", None).0 {
        let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
            continue;
        };
        let (ns, name) = (ns_of(&svc), name_of(&svc));
        let chosen: Vec<&Value> = pods
            .iter()
            .filter(|p| ns_of(p) == ns && selects(sel, p) && !s(p, "/status/podIP").is_empty())
            .collect();
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let n = chosen.first().and_then(|pod| target_port(p, pod)).or_else(|| p.get("port").and_then(Value::as_u64).map(|n| n as u16));
                json!({"name": s(p, "/name"), "port": n, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))})
            })
            .collect();
        let endpoints: Vec<Value> = chosen
            .iter()
            .map(|p| {
                let ready = pod_ready(p);
                json!({"addresses": [s(p, "/status/podIP")],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "nodeName": s(p, "/spec/nodeName"),
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": name_of(p), "uid": s(p, "/metadata/uid")}})
            })
            .collect();
        let slice = format!(
            "{name}-{}",
            &crate::workload::agent_name(&format!("{ns}/{name}"))[7..]
        );
        let key = Key::new(&tk, ns, &slice);
        create(
            api,
            &key,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice, "namespace": ns, "ownerReferences": [owner_ref(&svc, true)],
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": [], "ports": []}),
        );
        update(api, &key, |v| {
            v["endpoints"] = json!(endpoints);
            v["ports"] = json!(ports);
        });
    }
}

/// The ready endpoints of Service `ns/name` in `api`, from its EndpointSlices.
pub fn local_backends(api: &Api, cluster_name: &str, ns: &str, name: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    for es in list(api, DISCOVERY, "EndpointSlice", Some(ns)) {
        if s(&es, "/metadata/labels/kubernetes.io~1service-name") != name {
            continue;
        }
        let port = es
            .pointer("/ports/0/port")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16;
        for e in es
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            out.push(Backend {
                cluster: api.name.clone(),
                cluster_name: cluster_name.to_string(),
                pod: (ns.to_string(), s(e, "/targetRef/name").to_string()),
                ip: s(e, "/addresses/0").to_string(),
                port,
            });
        }
    }
    out
}

/// Remember link transitions (for the cache TTL) after [`crate::mesh::reconcile`] decided
/// the links.
fn remember_links(world: &World) {
    let state = world.mesh.lock().unwrap_or_else(|e| e.into_inner());
    let mut mem = world.links.lock().unwrap_or_else(|e| e.into_inner());
    let mem = &mut *mem;
    mem.down_since.retain(|k, _| state.contains_key(k));
    mem.was_up.retain(|k, _| state.contains_key(k));
    for (key, l) in state.iter() {
        if !mem.down_since.contains_key(key) {
            mem.down_since.insert(key.clone(), HashMap::new());
        }
        if !mem.was_up.contains_key(key) {
            mem.was_up.insert(key.clone(), HashSet::new());
        }
        let (Some(down), Some(up)) = (mem.down_since.get_mut(key), mem.was_up.get_mut(key)) else {
            continue;
        };
        for link in &l.links {
            let peer = link.peer.as_str();
            if link.ready {
                down.remove(peer);
                if !up.contains(peer) {
                    up.insert(link.peer.clone());
                }
            } else if !down.contains_key(peer) {
                down.insert(link.peer.clone(), Instant::now());
            }
        }
        // Links no longer configured are forgotten.
        let configured: HashSet<&str> = l.links.iter().map(|x| x.peer.as_str()).collect();
        down.retain(|p, _| configured.contains(p.as_str()));
        up.retain(|p| configured.contains(p.as_str()));
    }
}

/// Whether cluster `key` still holds what its link to peer `peer` (Cilium name) delivered:
/// the link is up, or went down less than the cluster's cache TTL ago.
pub fn knows(world: &World, api: &Api, key: &str, peer: &str) -> bool {
    let Some(l) = world.mesh_links(key) else {
        return false;
    };
    let Some(link) = l.links.iter().find(|x| x.peer == peer) else {
        return false;
    };
    if link.ready {
        return true;
    }
    let mem = world.links.lock().unwrap_or_else(|e| e.into_inner());
    if !mem.was_up.get(key).is_some_and(|s| s.contains(peer)) {
        return false;
    }
    match (
        cache_ttl(api),
        mem.down_since.get(key).and_then(|d| d.get(peer)),
    ) {
        (None, _) => true,
        (Some(ttl), Some(since)) => since.elapsed() < world.scaled(ttl),
        (Some(_), None) => true,
    }
}

/// The clusters with Cilium: key → (API, Cilium name).
pub fn members(world: &World) -> BTreeMap<String, (Arc<Api>, String)> {
    world
        .workloads()
        .into_iter()
        .filter_map(|a| {
            let name = s(&cilium_config(&a)?, "/data/cluster-name").to_string();
            Some((a.name.clone(), (a, name)))
        })
        .collect()
}

fn annotation<'a>(svc: &'a Value, k: &str) -> &'a str {
    svc.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The backends a client in cluster `key` reaches through Service `ns/name`: its own
/// endpoints and, for a global service, those of every connected cluster sharing it, chosen by
/// the service's affinity. `None` when the cluster has no such Service.
pub fn service_backends(world: &World, key: &str, ns: &str, name: &str) -> Option<Vec<Backend>> {
    let all = members(world);
    let (api, me) = all.get(key)?;
    let svc = api.store.get(&Key::new("/services", ns, name))?;
    let local = local_backends(api, me, ns, name);
    if annotation(&svc, GLOBAL) != "true" {
        return Some(local);
    }
    let mut remote = Vec::new();
    for (k, (other, other_name)) in &all {
        if k == key || !knows(world, api, key, other_name) {
            continue;
        }
        let Some(theirs) = other.store.get(&Key::new("/services", ns, name)) else {
            continue;
        };
        if annotation(&theirs, GLOBAL) != "true" || annotation(&theirs, SHARED) == "false" {
            continue;
        }
        remote.extend(local_backends(other, other_name, ns, name));
    }
    Some(match annotation(&svc, AFFINITY) {
        "local" if !local.is_empty() => local,
        "local" => remote,
        "remote" if !remote.is_empty() => remote,
        "remote" => local,
        _ => local.into_iter().chain(remote).collect(),
    })
}

/// The backends of the ServiceImport `ns/name` as a client in cluster `key` sees them (MCS-API:
/// every exporting cluster it knows); `None` without MCS-API or without that import.
pub fn import_backends(world: &World, key: &str, ns: &str, name: &str) -> Option<Vec<Backend>> {
    let all = members(world);
    let (api, _) = all.get(key)?;
    let t = ty(api, MCS_GROUP, "ServiceImport")?;
    if !mcs_enabled(api) {
        return None;
    }
    api.store.get(&Key::new(&t.key(), ns, name))?;
    Some(
        exporters(world, &all, key, ns, name)
            .into_iter()
            .flat_map(|(k, n)| local_backends(&all[&k].0, &n, ns, name))
            .collect(),
    )
}

/// Clusters (key, Cilium name) exporting `ns/name` that cluster `key` knows (itself included).
fn exporters(
    world: &World,
    all: &BTreeMap<String, (Arc<Api>, String)>,
    key: &str,
    ns: &str,
    name: &str,
) -> Vec<(String, String)> {
    let Some((api, _)) = all.get(key) else {
        return Vec::new();
    };
    all.iter()
        .filter(|(k, (other, other_name))| {
            (*k == key || knows(world, api, key, other_name))
                && mcs_enabled(other)
                && ty(other, MCS_GROUP, "ServiceExport").is_some_and(|t| {
                    other.store.get(&Key::new(&t.key(), ns, name)).is_some()
                        && other.store.get(&Key::new("/services", ns, name)).is_some()
                })
        })
        .map(|(k, (_, n))| (k.clone(), n.clone()))
        .collect()
}

/// MCS-API: mark exports valid, and keep each cluster's ServiceImports to what it can import.
fn mcs(world: &World) {
    let all = members(world);
    for (key, (api, _)) in &all {
        let (Some(et), Some(it)) = (
            ty(api, MCS_GROUP, "ServiceExport"),
            ty(api, MCS_GROUP, "ServiceImport"),
        ) else {
            continue;
        };
        let (ek, ik) = (et.key(), it.key());
        if !mcs_enabled(api) {
            continue;
        }
        for e in api.store.list(&ek, None).0 {
            let backed = api
                .store
                .get(&Key::new("/services", ns_of(&e), name_of(&e)))
                .is_some();
            let c = if backed {
                json!({"type": "Valid", "status": "True", "reason": "Valid", "message": "Service exported"})
            } else {
                json!({"type": "Valid", "status": "False", "reason": "NoService", "message": "No Service of that name in the namespace"})
            };
            set_status(
                api,
                &Key::new(&ek, ns_of(&e), name_of(&e)),
                json!({"conditions": [c]}),
            );
        }
        // Every export any cluster holds, by namespace/name.
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        for (other, _) in all.values() {
            if let Some(t) = ty(other, MCS_GROUP, "ServiceExport") {
                for e in other.store.list(&t.key(), None).0 {
                    wanted.insert((ns_of(&e).to_string(), name_of(&e).to_string()));
                }
            }
        }
        let mut keep = BTreeSet::new();
        for (ns, name) in &wanted {
            let from = exporters(world, &all, key, ns, name);
            // Only into a namespace that exists and is not terminating: the API server's
            // NamespaceLifecycle admission refuses new objects in a terminating namespace.
            let live = api
                .store
                .get(&Key::new("/namespaces", "", ns))
                .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_none());
            if from.is_empty() || !live {
                continue;
            }
            let ports: Vec<Value> = all[&from[0].0]
                .0
                .store
                .get(&Key::new("/services", ns, name))
                .and_then(|svc| svc.pointer("/spec/ports").cloned())
                .and_then(|p| p.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|p| json!({"name": s(p, "/name"), "port": p.get("port"), "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))}))
                .collect();
            let k = Key::new(&ik, ns, name);
            create(
                api,
                &k,
                json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                "metadata": {"name": name, "namespace": ns}, "spec": {"type": "ClusterSetIP", "ports": []}}),
            );
            update(api, &k, |v| v["spec"]["ports"] = json!(ports));
            let clusters: Vec<Value> = from.iter().map(|(_, n)| json!({"cluster": n})).collect();
            set_status(api, &k, json!({"clusters": clusters}));
            keep.insert((ns.clone(), name.clone()));
        }
        for i in api.store.list(&ik, None).0 {
            if !keep.contains(&(ns_of(&i).to_string(), name_of(&i).to_string())) {
                delete(api, &Key::new(&ik, ns_of(&i), name_of(&i)));
            }
        }
    }
}

/// One pass over every workload cluster (after the mesh links are decided).
pub fn reconcile(world: &World) {
    remember_links(world);
    for api in world.workloads() {
        pods(world, &api);
        services(world, &api);
        endpoint_slices(&api);
    }
    mcs(world);
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
