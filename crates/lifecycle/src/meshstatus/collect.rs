//! Reading what `mesh status` judges: the management cluster's objects and, through each
//! cluster's kubeconfig Secret, its Cilium.

use ipnet::IpNet;
use meshfleet_kube::{KubeError, ObjectRef};
use serde_json::Value;

use super::{CaSummary, Facts, Planned, Problem};
use crate::api::Api;
use crate::{mesh, objects, workload};

/// Clusters read at once: each opens its own connections to its API server, and hundreds of
/// handshakes at once only make them time out.
const CLUSTERS_AT_ONCE: usize = 32;

/// Read every planned cluster, [`CLUSTERS_AT_ONCE`] at a time.
pub async fn collect<A: Api>(mgmt: &A, fleet: &str, planned: &[Planned]) -> Vec<Facts> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(CLUSTERS_AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in planned.iter().enumerate() {
        let (mgmt, fleet, name) = (mgmt.clone(), fleet.to_string(), c.name.clone());
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, read_cluster(&mgmt, &fleet, &name).await)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, f)| f).collect()
}

fn unreachable(name: &str, server: &str, e: &KubeError) -> Problem {
    Problem::error(
        format!("the workload API of `{name}` at `{server}` does not answer: {e}"),
        "check the cluster's control plane (`meshfleet status`); its kubeconfig comes from the management cluster's `<cluster>-kubeconfig` Secret",
    )
}

async fn read_cluster<A: Api>(mgmt: &A, fleet: &str, name: &str) -> Facts {
    let mut f = Facts {
        name: name.to_string(),
        ..Facts::default()
    };
    let c_obj = match mgmt.get(&objects::cluster_ref(fleet, name)).await {
        Ok(Some(c)) => {
            f.exists = true;
            f.pod_cidrs.extend(
                c.pointer("/spec/clusterNetwork/pods/cidrBlocks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str()?.parse::<IpNet>().ok()),
            );
            c
        }
        Ok(None) => {
            f.problems.push(Problem::error(
                format!("cluster `{name}` is not created (no Cluster `{fleet}/{name}`)"),
                "run `meshfleet up`",
            ));
            return f;
        }
        Err(e) => {
            f.problems.push(Problem::error(
                format!("cannot read Cluster `{fleet}/{name}`: {e}"),
                "check the management cluster's health and your access to it",
            ));
            return f;
        }
    };
    if let Some(r) = infra_ref(&c_obj, fleet)
        && let Ok(Some(i)) = mgmt.get(&r).await
    {
        f.infra = Some(i);
    }
    let proxy = ObjectRef::new(
        objects::CAAPH_VERSION,
        "HelmChartProxy",
        Some(fleet),
        &meshfleet_render::proxy_name(name),
    );
    if let Ok(Some(p)) = mgmt.get(&proxy).await {
        f.proxy_peers = Some(proxy_peers(&p));
    }

    let secret = objects::kubeconfig_secret(name);
    let kc = match mgmt.secret_value(fleet, &secret, "value").await {
        Ok(Some(v)) => v,
        Ok(None) => {
            f.problems.push(Problem::error(
                format!("cluster `{name}` has no kubeconfig yet (no Secret `{fleet}/{secret}`)"),
                "it is still bootstrapping; see `meshfleet status`",
            ));
            return f;
        }
        Err(e) => {
            f.problems.push(Problem::error(
                format!("cannot read Secret `{fleet}/{secret}`: {e}"),
                "check your access to Secrets in the management cluster",
            ));
            return f;
        }
    };
    let w = match workload::open(mgmt, fleet, name, &kc, workload::GLANCE).await {
        Ok(w) => w,
        Err(e) => {
            f.problems.push(Problem::error(
                format!("{e}"),
                format!(
                    "Cluster API writes Secret `{fleet}/{secret}`; check the control plane provider"
                ),
            ));
            return f;
        }
    };
    let cm = match w
        .get(&ObjectRef::new(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            "cilium-config",
        ))
        .await
    {
        Ok(cm) => cm,
        Err(e) => {
            f.problems.push(unreachable(name, w.server(), &e));
            return f;
        }
    };
    f.reachable = true;
    let Some(cm) = cm else {
        f.problems.push(Problem::error(
            format!("Cilium is not installed in `{name}` (no ConfigMap `kube-system/cilium-config`)"),
            "run `meshfleet up`; Cluster API Add-on Provider for Helm installs Cilium from the HelmChartProxy",
        ));
        return f;
    };
    let d = |k: &str| {
        cm.pointer(&format!("/data/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    f.cilium = Some((
        d("cluster-name").unwrap_or_default(),
        d("cluster-id").and_then(|s| s.trim().parse().ok()),
        d("max-connected-clusters")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(255),
    ));
    if let Some(pool) = d("cluster-pool-ipv4-cidr") {
        f.pod_cidrs.extend(
            pool.split([' ', ','])
                .filter_map(|s| s.trim().parse::<IpNet>().ok()),
        );
    }
    f.pod_cidrs.sort();
    f.pod_cidrs.dedup();

    match w
        .get(&ObjectRef::new(
            "v1",
            "Secret",
            Some("kube-system"),
            "cilium-clustermesh",
        ))
        .await
    {
        // Only the keys: one per peer (Cilium's etcd config); the common client certificate
        // files have dotted names, which no cluster name has.
        Ok(Some(s)) => {
            let mut peers: Vec<String> = s
                .get("data")
                .and_then(Value::as_object)
                .map(|m| m.keys().filter(|k| !k.contains('.')).cloned().collect())
                .unwrap_or_default();
            peers.sort();
            f.secret_peers = Some(peers);
        }
        Ok(None) => {}
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }

    match w
        .secret_value(
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAMESPACE,
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAME,
            meshfleet_mesh::pki::CILIUM_CA_CERT_KEY,
        )
        .await
    {
        Ok(Some(pem)) => {
            let pem = String::from_utf8_lossy(&pem).into_owned();
            match meshfleet_mesh::pki::inspect_pem(&pem, "`kube-system/cilium-ca` `ca.crt`") {
                Ok(i) => {
                    f.ca = Some((
                        CaSummary {
                            fingerprint: i.fingerprint_sha256.clone(),
                            subject: i.subject.clone(),
                            not_after: meshfleet_mesh::pki::rfc3339(i.not_after),
                        },
                        i.not_after,
                    ));
                }
                Err(e) => f.problems.push(Problem::error(
                    format!("the mesh CA of `{name}` cannot be read: {e}"),
                    "replace `kube-system/cilium-ca` with the fleet's CA (`meshfleet up` delivers it)",
                )),
            }
        }
        Ok(None) => f.problems.push(Problem::error(
            format!("`{name}` has no mesh CA (no `ca.crt` in Secret `kube-system/cilium-ca`)"),
            "Cilium then makes a CA of its own and no peer trusts it; run `meshfleet up` to deliver the fleet's CA, then restart Cilium",
        )),
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }

    match mesh::endpoints(&w).await {
        Ok(e) => f.endpoints = e,
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }
    match mesh::view(&w).await {
        Ok(v) => f.view = Some(v),
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }
    f
}

/// The peers named in a HelmChartProxy's Cilium values (`clustermesh.config.clusters`, map or
/// list form).
pub fn proxy_peers(proxy: &Value) -> Vec<String> {
    let Some(values) = proxy
        .pointer("/spec/valuesTemplate")
        .and_then(Value::as_str)
        .and_then(|t| serde_saphyr::from_str::<Value>(t).ok())
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = match values.pointer("/clustermesh/config/clusters") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|e| Some(e.get("name")?.as_str()?.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// The infrastructure object a Cluster refers to (v1beta2 `apiGroup`, or an older
/// `apiVersion`), at the version meshfleet renders it.
pub(crate) fn infra_ref(cluster: &Value, fleet: &str) -> Option<ObjectRef> {
    let r = cluster.pointer("/spec/infrastructureRef")?;
    let kind = r.get("kind")?.as_str()?;
    let name = r.get("name")?.as_str()?;
    let api_version = match (r.get("apiVersion").and_then(Value::as_str), kind) {
        (Some(v), _) => v,
        (None, "AWSCluster") => "infrastructure.cluster.x-k8s.io/v1beta2",
        (None, "GCPCluster") => "infrastructure.cluster.x-k8s.io/v1beta1",
        _ => return None,
    };
    Some(ObjectRef::new(api_version, kind, Some(fleet), name))
}
