//! The mesh as the workload clusters see it: clustermesh-apiserver endpoints, Cilium's
//! readiness, its view of the peers, and the facts the mesh checks need.
//!
//! Cilium publishes its view of the mesh as Prometheus gauges on every agent (Helm value
//! `prometheus.enabled`, port 9962): `cilium_clustermesh_remote_cluster_readiness_status` and
//! `cilium_clustermesh_remote_cluster_failures` per remote cluster. meshfleet reads them through
//! the API server's pod proxy, so a kubeconfig is all it needs, in the simulator and in real
//! clusters alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshfleet_kube::{KubeError, ObjectRef, status as kstatus};
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;
use crate::objects::CLUSTERMESH_SERVICE;
use crate::promtext;

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
pub async fn endpoints<A: Api>(w: &A) -> Result<Option<Endpoints>, KubeError> {
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
pub async fn cilium_ready<A: Api>(proxy: Option<&Value>, w: &A) -> Result<bool, KubeError> {
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
pub async fn member<A: Api>(
    w: &A,
    name: &str,
    cluster_id: u32,
    max_connected: u32,
    endpoints: Option<&Endpoints>,
) -> Result<meshfleet_mesh::MeshMember, KubeError> {
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

/// Label selector of the Cilium agent Pods (in `kube-system`).
pub const AGENT_SELECTOR: &str = "k8s-app=cilium";
/// Port of the agents' Prometheus endpoint (the chart's `prometheus.port` default, which
/// meshfleet renders).
pub const AGENT_METRICS_PORT: u16 = 9962;
/// How many agents' metrics are read at once per cluster.
const METRICS_CONCURRENCY: usize = 8;
/// How a problem starts when no agent's metrics could be read.
pub const NO_STATUS: &str = "Cilium reports no mesh status";
const READINESS: &str = "cilium_clustermesh_remote_cluster_readiness_status";
const FAILURES: &str = "cilium_clustermesh_remote_cluster_failures";

/// Cilium's view of the mesh in one cluster: every running agent's ClusterMesh gauges, read
/// through the pod proxy (`pods/<agent>:9962/proxy/metrics`). A peer is connected when every
/// agent reports it ready. Listing the agents failing is an error; an agent whose metrics
/// cannot be read is a problem in the view.
pub async fn view<A: Api>(w: &A) -> Result<MeshView, KubeError> {
    let pods = w
        .list("v1", "Pod", Some("kube-system"), AGENT_SELECTOR)
        .await?;
    let agents: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .filter_map(|p| {
            let name = p.pointer("/metadata/name")?.as_str()?.to_string();
            let node = p
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_string();
            Some((name, node))
        })
        .collect();
    let total = agents.len();
    let permits = Arc::new(tokio::sync::Semaphore::new(METRICS_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for (name, node) in agents {
        let (w, permits) = (w.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = w
                .pod_proxy_get("kube-system", &name, AGENT_METRICS_PORT, "metrics")
                .await;
            (node, r.map_err(|e| e.to_string()))
        });
    }
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((node, Ok(text))) => reports.push((node, text)),
            Ok((_, Err(e))) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    reports.sort();
    errors.sort();
    Ok(from_metrics(&reports, total, &errors))
}

/// Judge the agents' metrics (`(node, exposition text)` of each agent read; `agents` running
/// agents in all; `errors` of those that could not be read). Pure.
pub fn from_metrics(reports: &[(String, String)], agents: usize, errors: &[String]) -> MeshView {
    let mut v = MeshView::default();
    let hint =
        "its agents export it only with the Helm value `prometheus.enabled: true` (port 9962)";
    if agents == 0 {
        v.problems.push(format!(
            "{NO_STATUS}: no running Cilium agent Pod (`{AGENT_SELECTOR}`) in `kube-system`; {hint}"
        ));
        return v;
    }
    if reports.is_empty() {
        v.problems.push(format!(
            "{NO_STATUS}: the metrics of none of its {agents} agents can be read ({}); {hint}",
            errors.first().map(String::as_str).unwrap_or("no answer")
        ));
        return v;
    }
    if !errors.is_empty() {
        v.problems.push(format!(
            "{NO_STATUS} on {} of {agents} nodes ({})",
            errors.len(),
            errors[0]
        ));
    }
    // Per peer: agents reporting it ready, agents reporting it not ready, failures.
    let mut peers: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    for (_, text) in reports {
        for s in promtext::samples(text, READINESS) {
            let e = peers
                .entry(s.label("target_cluster").to_string())
                .or_default();
            if s.value == 1.0 {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        for s in promtext::samples(text, FAILURES) {
            if s.value.is_finite() && s.value > 0.0 {
                peers
                    .entry(s.label("target_cluster").to_string())
                    .or_default()
                    .2 += s.value;
            }
        }
    }
    for (peer, (ready, not_ready, failures)) in peers {
        if peer.is_empty() {
            continue;
        }
        if ready == agents {
            v.connected.push(peer);
        } else if ready > 0 {
            v.problems
                .push(format!("{peer}: ready on {ready} of {agents} nodes"));
        } else if not_ready > 0 {
            v.problems.push(format!(
                "{peer}: not connected according to Cilium ({failures} failures on {not_ready} nodes)"
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(node: &str, lines: &[(&str, &str, u32)]) -> (String, String) {
        let mut t = String::from("# TYPE x gauge\n");
        for (metric, peer, v) in lines {
            t.push_str(&format!(
                "cilium_clustermesh_remote_cluster_{metric}{{source_cluster=\"a\",source_node_name=\"{node}\",target_cluster=\"{peer}\"}} {v}\n"
            ));
        }
        (node.to_string(), t)
    }

    #[test]
    fn judges_agents_metrics() {
        let r = [
            agent(
                "n1",
                &[
                    ("readiness_status", "b", 1),
                    ("readiness_status", "c", 0),
                    ("failures", "c", 2),
                    ("readiness_status", "d", 1),
                ],
            ),
            agent(
                "n2",
                &[
                    ("readiness_status", "b", 1),
                    ("readiness_status", "c", 0),
                    ("failures", "c", 3),
                    ("readiness_status", "d", 0),
                ],
            ),
        ];
        let v = from_metrics(&r, 2, &[]);
        assert_eq!(v.connected, ["b"]);
        assert_eq!(
            v.problems,
            [
                "c: not connected according to Cilium (5 failures on 2 nodes)",
                "d: ready on 1 of 2 nodes"
            ]
        );
        // An agent that cannot be read: nothing is connected everywhere, and that is said.
        let v = from_metrics(&r[..1], 2, &["503 ServiceUnavailable".into()]);
        assert!(v.connected.is_empty(), "{v:?}");
        assert!(
            v.problems[0].starts_with("Cilium reports no mesh status on 1 of 2 nodes"),
            "{v:?}"
        );
        assert!(
            v.problems.contains(&"b: ready on 1 of 2 nodes".to_string()),
            "{v:?}"
        );
        for v in [
            from_metrics(&[], 0, &[]),
            from_metrics(&[], 3, &["refused".into()]),
        ] {
            assert!(v.connected.is_empty());
            assert_eq!(v.problems.len(), 1);
            assert!(v.problems[0].starts_with(NO_STATUS), "{v:?}");
            assert!(v.problems[0].contains("prometheus.enabled"), "{v:?}");
        }
    }
}
