//! The mesh as the workload clusters see it: clustermesh-apiserver endpoints, Cilium's
//! readiness, its view of the peers, and the facts the mesh checks need.

use meshfleet_kube::{Kube, KubeError, ObjectRef, status as kstatus};
use serde::Serialize;
use serde_json::Value;

use super::objects::CLUSTERMESH_SERVICE;

/// Where a cluster's clustermesh-apiserver answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// NodePort: every node's InternalIP; LoadBalancer: the ingress addresses.
    pub ips: Vec<String>,
    /// The port peers dial.
    pub port: u16,
}

/// What one cluster's Cilium reports about its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeshView {
    /// Peers it is connected to.
    pub connected: Vec<String>,
    /// What is wrong, as Cilium says it.
    pub problems: Vec<String>,
}

/// Read the clustermesh-apiserver Service (kube-system) and derive the addresses peers dial:
/// NodePort → every node's InternalIP and the node port; LoadBalancer → the ingress IPs and
/// the Service port. `None` until the Service exists.
pub async fn endpoints(w: &Kube) -> Result<Option<Endpoints>, KubeError> {
    let svc = w
        .get(&ObjectRef::new(
            "v1",
            "Service",
            Some("kube-system"),
            CLUSTERMESH_SERVICE,
        ))
        .await?;
    let Some(svc) = svc else { return Ok(None) };
    let port = svc.pointer("/spec/ports/0");
    let kind = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    match kind {
        "NodePort" => {
            let Some(port) = port.and_then(|p| p.get("nodePort")).and_then(Value::as_u64) else {
                return Ok(None);
            };
            let mut ips = Vec::new();
            for n in w.list("v1", "Node", None, "").await? {
                for a in n
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if a.get("type").and_then(Value::as_str) == Some("InternalIP")
                        && let Some(ip) = a.get("address").and_then(Value::as_str)
                    {
                        ips.push(ip.to_string());
                    }
                }
            }
            ips.sort();
            ips.dedup();
            Ok(Some(Endpoints {
                ips,
                port: u16::try_from(port).unwrap_or(0),
            }))
        }
        "LoadBalancer" => {
            let Some(port) = port.and_then(|p| p.get("port")).and_then(Value::as_u64) else {
                return Ok(None);
            };
            let mut ips: Vec<String> = svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("ip").and_then(Value::as_str).map(str::to_string))
                .collect();
            ips.sort();
            ips.dedup();
            Ok(Some(Endpoints {
                ips,
                port: u16::try_from(port).unwrap_or(0),
            }))
        }
        _ => Ok(None),
    }
}

/// Is Cilium installed and running: the proxy's `Ready` condition true (CAAPH installed the
/// release), and the agent DaemonSet in the workload cluster fully ready when it reports.
pub async fn cilium_ready(proxy: Option<&Value>, w: &Kube) -> Result<bool, KubeError> {
    let Some(p) = proxy else { return Ok(false) };
    let conds = kstatus::conditions(p);
    if !kstatus::condition(&conds, "Ready").is_some_and(kstatus::Condition::is_true) {
        return Ok(false);
    }
    let ds = w
        .get(&ObjectRef::new(
            "apps/v1",
            "DaemonSet",
            Some("kube-system"),
            "cilium",
        ))
        .await;
    Ok(match ds {
        Ok(Some(ds)) => {
            let n = |k: &str| {
                ds.pointer(&format!("/status/{k}"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            n("desiredNumberScheduled") > 0 && n("numberReady") >= n("desiredNumberScheduled")
        }
        // No DaemonSet reported (or the kind is not served): the proxy's word stands.
        Ok(None) | Err(KubeError::NotServed { .. }) => true,
        Err(e) => return Err(e),
    })
}

/// The facts the mesh checks need about one cluster.
pub async fn member(
    w: &Kube,
    name: &str,
    cluster_id: u32,
    max_connected: u32,
    endpoints: Option<&Endpoints>,
) -> anyhow::Result<meshfleet_mesh::MeshMember> {
    let ca = w
        .secret_value(
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAMESPACE,
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAME,
            meshfleet_mesh::pki::CILIUM_CA_CERT_KEY,
        )
        .await?;
    let ca_fingerprint = match ca {
        Some(pem) => {
            let pem = String::from_utf8_lossy(&pem).into_owned();
            meshfleet_mesh::pki::inspect_pem(&pem, "cilium-ca")
                .map(|i| i.fingerprint_sha256)
                .unwrap_or_default()
        }
        None => String::new(),
    };
    Ok(meshfleet_mesh::MeshMember {
        name: name.to_string(),
        cluster_id,
        max_connected_clusters: max_connected,
        ca_fingerprint,
        endpoints: endpoints
            .map(|e| {
                e.ips
                    .iter()
                    .map(|ip| format!("https://{ip}:{}", e.port))
                    .collect()
            })
            .unwrap_or_default(),
        cert_not_after: Vec::new(),
    })
}

/// Cilium's view of the mesh in one cluster: the ConfigMap `kube-system/clustermesh-status`,
/// key `status.json`, one entry per configured peer with `connected` and, when not connected,
/// the `reason` (what `cilium clustermesh status` reports). Absent until Cilium runs.
pub async fn view(w: &Kube) -> Result<MeshView, KubeError> {
    let cm = w
        .get(&ObjectRef::new(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            STATUS_CONFIGMAP,
        ))
        .await?;
    let Some(text) = cm
        .as_ref()
        .and_then(|c| c.pointer("/data/status.json"))
        .and_then(Value::as_str)
    else {
        return Ok(MeshView {
            connected: Vec::new(),
            problems: vec![format!(
                "Cilium reports no mesh status yet (no ConfigMap `kube-system/{STATUS_CONFIGMAP}`)"
            )],
        });
    };
    Ok(parse_view(text))
}

/// Name of the ConfigMap with Cilium's mesh view.
pub const STATUS_CONFIGMAP: &str = "clustermesh-status";

/// Parse `status.json`: a list of peers (`[{name, connected, reason}]`, possibly under
/// `clusters` or `peers`) or a map keyed by peer name.
pub fn parse_view(text: &str) -> MeshView {
    let mut v = MeshView::default();
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        v.problems.push("Cilium's mesh status is not JSON".into());
        return v;
    };
    let list = doc
        .get("clusters")
        .or_else(|| doc.get("peers"))
        .unwrap_or(&doc);
    let entries: Vec<(String, &Value)> = match list {
        Value::Array(a) => a
            .iter()
            .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e)))
            .collect(),
        Value::Object(m) => m.iter().map(|(k, e)| (k.clone(), e)).collect(),
        _ => Vec::new(),
    };
    for (name, e) in entries {
        if e.get("connected").and_then(Value::as_bool) == Some(true) {
            v.connected.push(name);
        } else {
            let reason = e
                .get("reason")
                .or_else(|| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("not connected");
            v.problems.push(format!("{name}: {reason}"));
        }
    }
    v.connected.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cilium_mesh_views() {
        let v = parse_view(
            r#"{"clusters": [{"name": "b", "connected": true}, {"name": "a", "connected": false, "reason": "dial tcp 10.0.0.1:32379: i/o timeout"}]}"#,
        );
        assert_eq!(v.connected, ["b"]);
        assert_eq!(v.problems, ["a: dial tcp 10.0.0.1:32379: i/o timeout"]);
        let v = parse_view(r#"{"c": {"connected": true}, "b": {"connected": true}}"#);
        assert_eq!(v.connected, ["b", "c"]);
        assert!(parse_view("nope").problems.len() == 1);
    }
}
