//! Simulated workload clusters: each one is an [`Api`] of its own (core kinds only), served on
//! the same listener under `/workload/<namespace>/<name>`, holding what a fresh Talos cluster
//! holds (namespaces, nodes) and what the simulated Cilium installs.
//!
//! Mesh view: a workload cluster with Cilium runs one agent Pod per node (`kube-system`,
//! `k8s-app=cilium`); each serves the ClusterMesh gauges on `:9962/metrics` through the API
//! server's pod proxy ([`crate::http`]), computed by [`crate::mesh`].

use serde_json::{Value, json};

use crate::Api;
use crate::store::{Change, Key, StoreError};

/// Create `obj` under `key` unless it exists.
pub fn ensure(api: &Api, key: &Key, obj: Value) -> Result<(), StoreError> {
    api.store.mutate(key, |cur| {
        Ok(if cur.is_some() {
            Change::Keep
        } else {
            Change::Put(obj)
        })
    })?;
    Ok(())
}

fn namespace(api: &Api, name: &str) -> Result<(), StoreError> {
    ensure(
        api,
        &Key::new("/namespaces", "", name),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
            "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    )
}

/// The objects every Kubernetes cluster starts with.
pub fn seed(api: &Api) -> Result<(), StoreError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        namespace(api, ns)?;
    }
    Ok(())
}

/// The providers the simulator's controllers stand for, as `clusterctl init` would have
/// recorded them: (namespace, providerName, inventory type, version). The versions are the
/// releases whose code the simulated controllers follow (the citations in `controllers/`).
pub const PROVIDERS: [(&str, &str, &str, &str); 6] = [
    ("capi-system", "cluster-api", "CoreProvider", "v1.14.0"),
    ("cabpt-system", "talos", "BootstrapProvider", "v0.6.12"),
    ("cacppt-system", "talos", "ControlPlaneProvider", "v0.5.12"),
    ("capg-system", "gcp", "InfrastructureProvider", "v1.12.0"),
    ("capa-system", "aws", "InfrastructureProvider", "v2.11.1"),
    ("caaph-system", "helm", "AddonProvider", "v0.6.4"),
];

/// clusterctl's name and `cluster.x-k8s.io/provider` label for an inventory entry
/// (`ManifestLabel`, cluster-api:`cmd/clusterctl/api/v1alpha3/labels.go`@v1.14.0).
fn manifest_label(name: &str, type_: &str) -> String {
    match type_ {
        "BootstrapProvider" => format!("bootstrap-{name}"),
        "ControlPlaneProvider" => format!("control-plane-{name}"),
        "InfrastructureProvider" => format!("infrastructure-{name}"),
        "AddonProvider" => format!("addon-{name}"),
        _ => name.to_string(),
    }
}

/// The management cluster: standard namespaces, its own (always Ready) node, and the provider
/// namespaces and inventory `clusterctl init` leaves. The providers' credentials Secrets are
/// not seeded: on a real cluster they hold the user's cloud credentials, so `up --sim` writes
/// them as a user would (and `doctor` reports them missing until then).
pub fn seed_management(api: &Api) -> Result<(), StoreError> {
    seed(api)?;
    for (ns, name, type_, version) in PROVIDERS {
        namespace(api, ns)?;
        let label = manifest_label(name, type_);
        ensure(
            api,
            &Key::new("clusterctl.cluster.x-k8s.io/providers", ns, &label),
            json!({
                "apiVersion": "clusterctl.cluster.x-k8s.io/v1alpha3", "kind": "Provider",
                "metadata": {"name": label, "namespace": ns, "labels": {
                    "cluster.x-k8s.io/provider": label,
                    "clusterctl.cluster.x-k8s.io": "",
                    "clusterctl.cluster.x-k8s.io/core": "inventory"}},
                "providerName": name, "type": type_, "version": version,
            }),
        )?;
    }
    ensure(
        api,
        &Key::new("/nodes", "", "meshfleet-sim"),
        node_json(
            "meshfleet-sim",
            "10.255.0.1",
            true,
            &[("node-role.kubernetes.io/control-plane", "")],
            "v1.35.0",
        ),
    )
}

/// A Node object as a kubelet reports it.
pub fn node_json(
    name: &str,
    ip: &str,
    ready: bool,
    labels: &[(&str, &str)],
    version: &str,
) -> Value {
    let now = crate::store::now_rfc3339();
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/hostname".into(), json!(name));
    l.insert("kubernetes.io/os".into(), json!("linux"));
    l.insert("kubernetes.io/arch".into(), json!("amd64"));
    for (k, v) in labels {
        l.insert((*k).into(), json!(v));
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": l},
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [ready_condition(ready, &now)],
            "nodeInfo": {"kubeletVersion": version, "osImage": "Talos (v1.13)", "containerRuntimeVersion": "containerd://2.1.0",
                "kernelVersion": "6.12.0-talos", "operatingSystem": "linux", "architecture": "amd64",
                "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }
    })
}

/// The Node `Ready` condition: NotReady until a CNI runs, as kubelet reports it.
pub fn ready_condition(ready: bool, now: &str) -> Value {
    if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    }
}

/// Port of the Cilium agent's Prometheus endpoint (the chart's `prometheus.port` default).
pub const AGENT_METRICS_PORT: u16 = 9962;

/// Label the Cilium DaemonSet puts on its agent Pods.
pub const AGENT_LABEL: (&str, &str) = ("k8s-app", "cilium");

/// The agent Pod name for `node`: the DaemonSet's `cilium-` prefix and a stable suffix.
pub fn agent_name(node: &str) -> String {
    let h = node.bytes().fold(0xcbf29ce484222325u64, |a, b| {
        (a ^ b as u64).wrapping_mul(0x100000001b3)
    });
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| ALPHA[((h >> (i * 8)) % ALPHA.len() as u64) as usize] as char)
        .collect();
    format!("cilium-{suffix}")
}

/// Keep one Running, Ready Cilium agent Pod per node while Cilium is installed (`cni`), none
/// otherwise, as the DaemonSet does.
pub fn sync_agents(api: &Api, cni: bool) {
    let nodes = api.store.list("/nodes", None).0;
    let mut want = std::collections::BTreeSet::new();
    if cni {
        for n in &nodes {
            let node = n
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ip = n
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                })
                .and_then(|x| x.get("address"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if node.is_empty() {
                continue;
            }
            let name = agent_name(node);
            want.insert(name.clone());
            let _ = ensure(
                api,
                &Key::new("/pods", "kube-system", &name),
                agent_pod(&name, node, ip),
            );
        }
    }
    for p in api.store.list("/pods", Some("kube-system")).0 {
        let is_agent = p
            .pointer("/metadata/labels/k8s-app")
            .and_then(Value::as_str)
            == Some(AGENT_LABEL.1);
        let name = p
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if is_agent && !want.contains(name) {
            crate::controllers::delete(api, &Key::new("/pods", "kube-system", name));
        }
    }
}

fn agent_pod(name: &str, node: &str, ip: &str) -> Value {
    let now = crate::store::now_rfc3339();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system",
            "labels": {AGENT_LABEL.0: AGENT_LABEL.1, "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": AGENT_METRICS_PORT.to_string()}},
        "spec": {"nodeName": node, "hostNetwork": true, "serviceAccountName": "cilium",
            "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium",
                "ports": [{"name": "prometheus", "containerPort": AGENT_METRICS_PORT, "hostPort": AGENT_METRICS_PORT, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": ip,
            "podIPs": [{"ip": ip}], "hostIPs": [{"ip": ip}], "startTime": now,
            "conditions": [cond("Initialized"), cond("ContainersReady"), cond("PodScheduled"), cond("Ready")],
            "containerStatuses": [{"name": "cilium-agent", "ready": true, "started": true, "restartCount": 0,
                "image": "quay.io/cilium/cilium", "imageID": "", "state": {"running": {"startedAt": now}}}]}
    })
}
