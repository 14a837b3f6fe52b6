//! Simulated workload clusters: each one is an [`Api`] of its own (core kinds only), served on
//! the same listener under `/workload/<namespace>/<name>`, holding what a fresh Talos cluster
//! holds (namespaces, nodes) and what the simulated Cilium installs.
//!
//! Mesh view: every workload cluster with Cilium carries the ConfigMap
//! `kube-system/clustermesh-status`; its key `status.json` lists each configured peer with
//! `connected` and, when not connected, the `reason` (what `cilium clustermesh status` would
//! report). The controller that computes it lives in [`crate::controllers`].

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

/// The management cluster: standard namespaces and its own (always Ready) node.
pub fn seed_management(api: &Api) -> Result<(), StoreError> {
    seed(api)?;
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
