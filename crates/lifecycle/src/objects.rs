//! Names, kinds and small JSON helpers shared by `up`, `status`, `down` and `kubeconfig`.
//! Object names and labels come from `meshfleet-render`, which owns the object contract.

use std::collections::BTreeMap;

use base64::Engine as _;
use meshfleet_kube::ObjectRef;
use meshfleet_render::PeerEndpoint;
use serde_json::{Value, json};

/// The Cluster API core version meshfleet renders.
pub const CAPI_VERSION: &str = meshfleet_render::api::CAPI_V1BETA2;
/// Label naming the fleet.
pub const FLEET_LABEL: &str = meshfleet_render::FLEET_LABEL;
/// Label naming the cluster.
pub const CLUSTER_LABEL: &str = meshfleet_render::CLUSTER_LABEL;
/// Service of the clustermesh-apiserver in each workload cluster.
pub const CLUSTERMESH_SERVICE: &str = "clustermesh-apiserver";

/// The `Cluster` object of a workload cluster.
pub fn cluster_ref(fleet: &str, cluster: &str) -> ObjectRef {
    ObjectRef::new(CAPI_VERSION, "Cluster", Some(fleet), cluster)
}

/// The Secret Cluster API writes with the workload cluster's admin kubeconfig.
pub fn kubeconfig_secret(cluster: &str) -> String {
    format!("{cluster}-kubeconfig")
}

/// The management-cluster Secret that holds the fleet's IPsec keys.
pub fn ipsec_keys_secret(fleet: &str) -> String {
    format!("{fleet}-ipsec-keys")
}

/// The CAAPH API version meshfleet renders its HelmChartProxies in.
pub const CAAPH_VERSION: &str = meshfleet_render::api::CAAPH_V1ALPHA1;

/// The management-cluster Secret that holds the fleet's mesh CA.
pub fn mesh_ca_secret(fleet: &str) -> String {
    format!("{fleet}-mesh-ca")
}

/// The labels of an object.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The label `up` puts on a Cluster once the mesh CA is in its workload cluster; Cilium's
/// HelmChartProxy selects only Clusters that carry it.
pub const MESH_CA_LABEL: &str = meshfleet_render::MESH_CA_LABEL;
/// Its value.
pub const MESH_CA_DELIVERED: &str = meshfleet_render::MESH_CA_DELIVERED;
/// The field manager that owns that label (not meshfleet's own, whose full applies would drop it).
pub const MESH_CA_MANAGER: &str = "meshfleet-mesh-ca";

/// The partial Cluster that sets [`MESH_CA_LABEL`].
pub fn mesh_ca_label_patch(fleet: &str, cluster: &str) -> Value {
    json!({
        "apiVersion": CAPI_VERSION,
        "kind": "Cluster",
        "metadata": {
            "name": cluster,
            "namespace": fleet,
            "labels": {MESH_CA_LABEL: MESH_CA_DELIVERED},
        },
    })
}

/// An Opaque Secret as JSON, data base64-encoded.
pub fn secret(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: &BTreeMap<String, String>,
) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "data": data,
    })
}

/// The clustermesh peers' endpoints recorded in a live proxy's values
/// (`clustermesh.config.clusters.<peer>`: `ips` or `address`, and `port`). Only entries with an
/// address count: they are what an earlier run learnt.
pub fn proxy_peer_endpoints(proxy: &Value) -> BTreeMap<String, PeerEndpoint> {
    let Some(values) = proxy
        .pointer("/spec/valuesTemplate")
        .and_then(Value::as_str)
        .and_then(|t| serde_saphyr::from_str::<Value>(t).ok())
    else {
        return BTreeMap::new();
    };
    values
        .pointer("/clustermesh/config/clusters")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(peer, v)| {
                    let ips: Vec<String> = v
                        .get("ips")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect();
                    let address = v
                        .get("address")
                        .and_then(Value::as_str)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string);
                    let port = v.get("port").and_then(Value::as_u64)?;
                    if ips.is_empty() && address.is_none() {
                        return None;
                    }
                    Some((
                        peer.clone(),
                        PeerEndpoint {
                            ips,
                            address,
                            port: u16::try_from(port).ok()?,
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_peer_endpoints_are_read_from_live_values() {
        let proxy = json!({"kind": "HelmChartProxy", "spec": {"valuesTemplate":
            "clustermesh:\n  config:\n    enabled: true\n    clusters:\n      b:\n        ips: [10.0.16.2, 10.0.16.3]\n        port: 32379\n      c:\n        address: mesh.c.example\n        port: 2379\n      d:\n        port: 32379\n"}});
        let got = proxy_peer_endpoints(&proxy);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            ["b", "c"],
            "d has no address"
        );
        assert_eq!(got["b"].ips, ["10.0.16.2", "10.0.16.3"]);
        assert_eq!(got["b"].port, 32379);
        assert_eq!(got["c"].address.as_deref(), Some("mesh.c.example"));
        assert!(proxy_peer_endpoints(&json!({"spec": {}})).is_empty());
    }
}
