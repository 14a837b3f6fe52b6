//! Names, kinds and small JSON helpers shared by `up`, `status`, `down` and `kubeconfig`.
//! Object names and labels come from `meshfleet-render`, which owns the object contract.

use std::collections::BTreeMap;

use base64::Engine as _;
use meshfleet_kube::ObjectRef;
use serde_json::{Value, json};

/// The Cluster API core version meshfleet renders.
pub const CAPI_VERSION: &str = "cluster.x-k8s.io/v1beta2";
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
pub const CAAPH_VERSION: &str = "addons.cluster.x-k8s.io/v1alpha1";

/// The management-cluster Secret that holds the fleet's mesh CA.
pub fn mesh_ca_secret(fleet: &str) -> String {
    format!("{fleet}-mesh-ca")
}

/// Is this rendered object a Cilium HelmChartProxy?
pub fn is_proxy(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("HelmChartProxy")
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
pub const MESH_CA_LABEL: &str = "meshfleet.io/mesh-ca";
/// Its value.
pub const MESH_CA_DELIVERED: &str = "delivered";
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

/// The Cilium HelmChartProxy rendered for `cluster`.
pub fn cilium_proxy<'r>(
    rendered: &'r meshfleet_render::Rendered,
    cluster: &str,
) -> Option<&'r Value> {
    rendered
        .fleet_objects
        .iter()
        .find(|o| is_proxy(o) && proxy_cluster(o).as_deref() == Some(cluster))
}

/// The cluster a HelmChartProxy belongs to, from its `meshfleet.io/cluster` label.
pub fn proxy_cluster(obj: &Value) -> Option<String> {
    labels(obj).get(CLUSTER_LABEL).cloned()
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

/// The clustermesh peers' addresses known in a proxy's values:
/// `clustermesh.config.clusters.<peer>.ips`.
pub fn proxy_peer_ips(proxy: &Value) -> BTreeMap<String, Vec<String>> {
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
                        .get("ips")?
                        .as_array()?
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect();
                    Some((peer.clone(), ips))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Write peers' addresses into a rendered proxy's values (`clustermesh.config.clusters.<peer>.ips`,
/// map form); peers without known addresses keep what the renderer wrote.
pub fn with_peer_ips(
    proxy: &Value,
    ips: &BTreeMap<String, Vec<String>>,
) -> Result<Value, crate::Error> {
    let mut proxy = proxy.clone();
    let Some(text) = proxy
        .pointer("/spec/valuesTemplate")
        .and_then(Value::as_str)
    else {
        return Ok(proxy);
    };
    let mut values: Value = serde_saphyr::from_str(text)
        .map_err(|e| crate::Error::Other(format!("cannot read the rendered Cilium values: {e}")))?;
    if let Some(peers) = values
        .pointer_mut("/clustermesh/config/clusters")
        .and_then(Value::as_object_mut)
    {
        for (peer, entry) in peers.iter_mut() {
            if let (Some(list), Some(obj)) = (ips.get(peer), entry.as_object_mut())
                && !list.is_empty()
            {
                obj.insert("ips".into(), json!(list));
            }
        }
    }
    let text = serde_saphyr::to_string(&values)
        .map_err(|e| crate::Error::Other(format!("cannot write the Cilium values: {e}")))?;
    if let Some(t) = proxy.pointer_mut("/spec/valuesTemplate") {
        *t = Value::String(text);
    }
    Ok(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ips_round_trip_through_the_values() {
        let proxy = json!({"kind": "HelmChartProxy", "spec": {"valuesTemplate":
            "cluster:\n  name: a\n  id: 1\nclustermesh:\n  config:\n    enabled: true\n    clusters:\n      b:\n        enabled: true\n        port: 32379\n      c:\n        enabled: true\n        port: 32379\n"}});
        assert!(proxy_peer_ips(&proxy).is_empty());
        let ips = BTreeMap::from([(
            "b".to_string(),
            vec!["10.0.16.2".to_string(), "10.0.16.3".to_string()],
        )]);
        let out = with_peer_ips(&proxy, &ips).unwrap();
        assert_eq!(proxy_peer_ips(&out), ips);
        // Same input, same output: re-applying changes nothing.
        assert_eq!(with_peer_ips(&proxy, &ips).unwrap(), out);
        let values: Value =
            serde_saphyr::from_str(out["spec"]["valuesTemplate"].as_str().unwrap()).unwrap();
        assert_eq!(
            values["clustermesh"]["config"]["clusters"]["b"]["port"],
            32379
        );
        assert!(
            values["clustermesh"]["config"]["clusters"]["c"]
                .get("ips")
                .is_none()
        );
    }
}
