//! The Cluster API add-on provider for Helm, simulated: a HelmChartProxy selects Clusters by
//! label, gets one HelmReleaseProxy per selected Cluster, and each release is "installed" into
//! the workload cluster once its control plane is initialized. A chart named `cilium` has
//! Cilium's effects: `cilium-config`, the `clustermesh-apiserver` Service, the
//! `cilium-clustermesh` Secret with one entry per configured peer, Ready nodes and one agent Pod
//! per node.

use serde_json::{Value, json};

use crate::controllers::{
    ADDONS, CAPI, CLUSTER_LABEL, Timers, create, delays, delete, deleting, key_of, list, name_of,
    ns_of, owner_ref, s, set_status, ty, update,
};
use crate::select::LabelSelector;
use crate::store::{Key, now_rfc3339};
use crate::{Api, World};

/// Render the subset of Go templates CAAPH value templates use for cluster data:
/// `{{ .Cluster.a.b }}` (arrays joined with commas), `{{ .ControlPlane.… }}`.
pub fn render_template(tpl: &str, cluster: &Value, cp: &Value) -> String {
    let mut out = String::new();
    let mut rest = tpl;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let expr = rest[i + 2..i + j]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let first = expr.split('|').next().unwrap_or("").trim();
        let (root, path) = if let Some(p) = first.strip_prefix(".Cluster.") {
            (cluster, p)
        } else if let Some(p) = first.strip_prefix(".ControlPlane.") {
            (cp, p)
        } else {
            (&Value::Null, "")
        };
        let mut cur = Some(root);
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = cur.and_then(|c| c.get(seg));
        }
        let text = match cur {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        out.push_str(&text);
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

fn selector_matches(sel: &Value, cluster: &Value) -> bool {
    let ml = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut ok = LabelSelector::from_match_labels(&ml).matches(cluster);
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "/key");
        let vals: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let expr = match s(e, "/operator") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        ok &= LabelSelector::parse(&expr).is_ok_and(|l| l.matches(cluster));
    }
    // An empty selector selects nothing, as CAAPH does.
    ok && (!ml.is_empty()
        || sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty()))
}

fn cond1(t: &str, ok: bool, reason: &str, msg: &str) -> Value {
    crate::controllers::cond1(t, ok, reason, msg)
}

/// One pass over HelmChartProxies and HelmReleaseProxies.
pub(crate) fn reconcile(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let (Some(hcp_t), Some(hrp_t), Some(ct)) = (
        ty(api, ADDONS, "HelmChartProxy").cloned(),
        ty(api, ADDONS, "HelmReleaseProxy").cloned(),
        ty(api, CAPI, "Cluster").cloned(),
    ) else {
        return;
    };
    let all_clusters = api.store.list(&ct.key(), None).0;
    let all_hrps = api.store.list(&hrp_t.key(), None).0;
    for hcp in api.store.list(&hcp_t.key(), None).0 {
        if deleting(&hcp) {
            continue;
        }
        let ns = ns_of(&hcp).to_string();
        let sel = hcp
            .pointer("/spec/clusterSelector")
            .cloned()
            .unwrap_or(json!({}));
        let clusters: Vec<Value> = all_clusters
            .iter()
            .filter(|c| ns_of(c) == ns && !deleting(c) && selector_matches(&sel, c))
            .cloned()
            .collect();
        let mut wanted = Vec::new();
        for c in &clusters {
            let name = format!("{}-{}", name_of(&hcp), name_of(c));
            let name: String = name
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string();
            wanted.push(name.clone());
            let cp = c
                .pointer("/spec/controlPlaneRef")
                .and_then(|r| crate::controllers::resolve(api, r, &ns))
                .map(|x| x.1)
                .unwrap_or(json!({}));
            let values = render_template(s(&hcp, "/spec/valuesTemplate"), c, &cp);
            let mut spec = json!({
                "clusterRef": {"apiVersion": s(c, "/apiVersion"), "kind": "Cluster", "name": name_of(c), "namespace": ns},
                "chartName": s(&hcp, "/spec/chartName"), "repoURL": s(&hcp, "/spec/repoURL"),
                "namespace": hcp.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("default"),
                "releaseName": hcp.pointer("/spec/releaseName").and_then(Value::as_str).unwrap_or(s(&hcp, "/spec/chartName")),
                "values": values,
            });
            if let Some(v) = hcp.pointer("/spec/version") {
                spec["version"] = v.clone();
            }
            if let Some(o) = hcp.pointer("/spec/options") {
                spec["options"] = o.clone();
            }
            let hrp = json!({"apiVersion": format!("{ADDONS}/v1alpha1"), "kind": "HelmReleaseProxy",
                "metadata": {"name": name, "namespace": ns, "labels": {CLUSTER_LABEL: name_of(c),
                    "helmreleaseproxy.addons.cluster.x-k8s.io/name": name_of(&hcp)},
                    "ownerReferences": [owner_ref(&hcp, true)]},
                "spec": spec});
            let k = Key::new(&hrp_t.key(), &ns, &name);
            create(api, &k, hrp.clone());
            update(api, &k, |v| v["spec"] = hrp["spec"].clone());
        }
        // Releases for Clusters no longer selected are uninstalled.
        let uid = s(&hcp, "/metadata/uid").to_string();
        for hrp in all_hrps.iter().filter(|h| ns_of(h) == ns) {
            let owned = hrp
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|r| s(r, "/uid") == uid));
            if owned && !wanted.iter().any(|w| w == name_of(hrp)) {
                delete(api, &key_of(&hrp_t, hrp));
            }
        }
        // Status only: releases created in this pass are counted in the next one.
        let releases: Vec<&Value> = all_hrps
            .iter()
            .filter(|h| ns_of(h) == ns && wanted.iter().any(|w| w == name_of(h)))
            .collect();
        let ready = releases
            .iter()
            .filter(|h| s(h, "/status/status") == "deployed")
            .count();
        let all = ready == wanted.len();
        set_status(
            api,
            &key_of(&hcp_t, &hcp),
            json!({
                "observedGeneration": hcp.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
                "matchingClusters": clusters.iter().map(|c| json!({"apiVersion": s(c, "/apiVersion"), "kind": "Cluster", "name": name_of(c), "namespace": ns})).collect::<Vec<_>>(),
                "conditions": [
                    cond1("Ready", all, "HelmReleaseProxiesNotReady", &format!("{ready} of {} releases deployed", wanted.len())),
                    cond1("HelmReleaseProxiesReady", all, "HelmReleaseProxiesNotReady", &format!("{ready} of {} releases deployed", wanted.len())),
                    cond1("HelmReleaseProxySpecsUpToDate", true, "", ""),
                ]
            }),
        );
    }
    for hrp in api.store.list(&hrp_t.key(), None).0 {
        if deleting(&hrp) {
            continue;
        }
        let k = key_of(&hrp_t, &hrp);
        let ns = ns_of(&hrp).to_string();
        let cname = s(&hrp, "/spec/clusterRef/name").to_string();
        let cluster = api.store.get(&Key::new(&ct.key(), &ns, &cname));
        let initialized = cluster.as_ref().is_some_and(|c| {
            c.pointer("/status/initialization/controlPlaneInitialized")
                .and_then(Value::as_bool)
                == Some(true)
        });
        let workload = world.workload(&format!("{ns}/{cname}"));
        let id = format!(
            "helm/{ns}/{}/{}",
            name_of(&hrp),
            hrp.pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        );
        let Some(w) = workload.filter(|_| initialized) else {
            set_status(
                api,
                &k,
                json!({"conditions": [
                cond1("Ready", false, "WaitingForControlPlane", &format!("waiting for the control plane of Cluster `{cname}` to be initialized")),
                cond1("ClusterAvailable", false, "WaitingForControlPlane", "the workload cluster API server is not available")]}),
            );
            continue;
        };
        let installed = s(&hrp, "/status/status") == "deployed"
            && hrp
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                == hrp.pointer("/metadata/generation").and_then(Value::as_i64);
        if !installed && !timers.elapsed(world, &id, delays::HELM) {
            set_status(
                api,
                &k,
                json!({"status": "pending-install", "conditions": [
                cond1("Ready", false, "HelmInstallOrUpgradeInProgress", "helm install in progress"),
                cond1("ClusterAvailable", true, "", ""),
                cond1("HelmReleaseReady", false, "HelmInstallOrUpgradeInProgress", "helm install in progress")]}),
            );
            continue;
        }
        let values: Value = match serde_saphyr::from_str::<Value>(s(&hrp, "/spec/values")) {
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(e) => {
                set_status(
                    api,
                    &k,
                    json!({"status": "failed", "conditions": [
                    cond1("Ready", false, "HelmInstallOrUpgradeFailed", &format!("values are not valid YAML: {e}")),
                    cond1("HelmReleaseReady", false, "HelmInstallOrUpgradeFailed", &format!("values are not valid YAML: {e}"))]}),
                );
                continue;
            }
        };
        let revision = hrp
            .pointer("/status/revision")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let deployed_gen = hrp
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64);
        let gen_now = hrp
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if s(&hrp, "/spec/chartName") == "cilium" {
            install_cilium(&w, &values, s(&hrp, "/spec/namespace"));
        }
        let revision = if deployed_gen == Some(gen_now) && revision > 0 {
            revision
        } else {
            revision + 1
        };
        set_status(
            api,
            &k,
            json!({"status": "deployed", "revision": revision, "observedGeneration": gen_now, "conditions": [
            cond1("Ready", true, "", ""), cond1("ClusterAvailable", true, "", ""), cond1("HelmReleaseReady", true, "", "")]}),
        );
    }
    // Nodes of every cluster running Cilium are Ready (the CNI is up).
    for w in world.workloads() {
        let cni = w
            .store
            .get(&Key::new("/configmaps", "kube-system", "cilium-config"))
            .is_some();
        for n in w.store.list("/nodes", None).0 {
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
                });
            if ready != cni {
                let now = now_rfc3339();
                update(&w, &Key::new("/nodes", "", name_of(&n)), |v| {
                    v["status"]["conditions"] =
                        json!([crate::workload::ready_condition(cni, &now)]);
                });
            }
        }
        crate::workload::sync_agents(&w, cni);
    }
}

fn get<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    v.pointer(p)
}

fn install_cilium(w: &Api, values: &Value, release_ns: &str) {
    let ns = if release_ns.is_empty() {
        "kube-system"
    } else {
        release_ns
    };
    let name = get(values, "/cluster/name")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let id = get(values, "/cluster/id")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let max = get(values, "/clustermesh/maxConnectedClusters")
        .and_then(Value::as_i64)
        .unwrap_or(255);
    let routing = get(values, "/routingMode")
        .and_then(Value::as_str)
        .unwrap_or("tunnel");
    let tunnel = get(values, "/tunnelProtocol")
        .and_then(Value::as_str)
        .unwrap_or("vxlan");
    let str_of = |p: &str, d: &str| match get(values, p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => d.to_string(),
        Some(v) => v.to_string(),
    };
    let data = json!({
        "cluster-name": name, "cluster-id": id.to_string(), "max-connected-clusters": max.to_string(),
        "routing-mode": routing, "tunnel-protocol": tunnel,
        "ipam": str_of("/ipam/mode", "cluster-pool"),
        "kube-proxy-replacement": str_of("/kubeProxyReplacement", "false"),
        "k8s-service-host": str_of("/k8sServiceHost", ""), "k8s-service-port": str_of("/k8sServicePort", ""),
        "enable-ipv4": "true", "enable-wireguard": (get(values, "/encryption/type").and_then(Value::as_str) == Some("wireguard") && get(values, "/encryption/enabled").and_then(Value::as_bool) == Some(true)).to_string(),
        "cgroup-root": str_of("/cgroup/hostRoot", "/run/cilium/cgroupv2"),
    });
    let labels =
        json!({"app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/managed-by": "Helm"});
    let ck = Key::new("/configmaps", ns, "cilium-config");
    create(
        w,
        &ck,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": ns, "labels": labels}, "data": data}),
    );
    update(w, &ck, |v| v["data"] = data.clone());
    if get(values, "/clustermesh/useAPIServer").and_then(Value::as_bool) == Some(true) {
        let svc_type = get(values, "/clustermesh/apiserver/service/type")
            .and_then(Value::as_str)
            .unwrap_or("NodePort")
            .to_string();
        let node_port = get(values, "/clustermesh/apiserver/service/nodePort")
            .and_then(Value::as_i64)
            .unwrap_or(32379);
        let mut port =
            json!({"name": "apiserv", "port": 2379, "targetPort": 2379, "protocol": "TCP"});
        if svc_type != "ClusterIP" {
            port["nodePort"] = json!(node_port);
        }
        let sk = Key::new("/services", ns, "clustermesh-apiserver");
        let mut svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "clustermesh-apiserver", "namespace": ns, "labels": {"k8s-app": "clustermesh-apiserver", "app.kubernetes.io/part-of": "cilium"}},
            "spec": {"type": svc_type, "selector": {"k8s-app": "clustermesh-apiserver"}, "ports": [port], "clusterIP": format!("10.96.0.{}", 10 + id % 200)},
            "status": {"loadBalancer": {}}});
        if svc_type == "LoadBalancer" {
            svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{}", 1 + id % 250)}]}});
        }
        create(w, &sk, svc.clone());
        update(w, &sk, |v| {
            v["spec"]["type"] = svc["spec"]["type"].clone();
            v["spec"]["ports"] = svc["spec"]["ports"].clone();
            v["status"] = svc["status"].clone();
        });
    }
    if get(values, "/clustermesh/config/enabled").and_then(Value::as_bool) == Some(true) {
        use base64::Engine;
        let domain = get(values, "/clustermesh/config/domain")
            .and_then(Value::as_str)
            .unwrap_or("mesh.cilium.io");
        let mut peers: Vec<(String, Value)> = Vec::new();
        match get(values, "/clustermesh/config/clusters") {
            Some(Value::Object(m)) => peers.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
            Some(Value::Array(a)) => {
                peers.extend(a.iter().map(|v| (s(v, "/name").to_string(), v.clone())))
            }
            _ => {}
        }
        let mut data = serde_json::Map::new();
        for (peer, cfg) in peers
            .into_iter()
            .filter(|(p, _)| !p.is_empty() && *p != name)
        {
            let port = cfg.get("port").and_then(Value::as_i64).unwrap_or(2379);
            let host = cfg
                .get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{peer}.{domain}"));
            let text = format!(
                "endpoints:\n- https://{host}:{port}\ntrusted-ca-file: /var/lib/cilium/clustermesh/common-etcd-client-ca.crt\nkey-file: /var/lib/cilium/clustermesh/common-etcd-client.key\ncert-file: /var/lib/cilium/clustermesh/common-etcd-client.crt\n"
            );
            data.insert(
                peer,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
        let data = Value::Object(data);
        let sk = Key::new("/secrets", ns, "cilium-clustermesh");
        create(
            w,
            &sk,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cilium-clustermesh", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "cilium"}}, "data": data}),
        );
        update(w, &sk, |v| v["data"] = data.clone());
    }
    let _ = list;
}
