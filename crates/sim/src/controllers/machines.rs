//! Machine: Pending → Provisioning → Provisioned → Running, and the workload Nodes.

use super::*;

pub(super) fn node_ip(infra: Option<&Value>, index: u32) -> String {
    let cidr = infra.and_then(mesh::node_cidr);
    match cidr {
        Some(ipnet::IpNet::V4(n)) => {
            let base = u32::from(n.network());
            std::net::Ipv4Addr::from(base + 10 + index % 4000).to_string()
        }
        _ => format!("10.250.{}.{}", index / 250, 10 + index % 240),
    }
}

pub(super) fn machines(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "Machine").cloned() else {
        return;
    };
    let all = api.store.list(&t.key(), None).0;
    for (i, m) in all.iter().enumerate() {
        let k = key_of(&t, m);
        let id = format!("machine/{}/{}", k.namespace, k.name);
        let cluster = cluster_of(api, m);
        let wl_key = cluster
            .as_ref()
            .map(|c| format!("{}/{}", ns_of(c), name_of(c)));
        let workload = wl_key.as_deref().and_then(|w| world.workload(w));
        if deleting(m) {
            if let Some(w) = &workload {
                let nk = Key::new("/nodes", "", s(m, "/status/nodeRef/name"));
                if !nk.name.is_empty() {
                    delete(w, &nk);
                }
            }
            let mut st = m.get("status").cloned().unwrap_or(json!({}));
            st["phase"] = json!("Deleting");
            set_status(api, &k, st);
            if timers.elapsed(world, &format!("{id}/delete"), delays::MACHINE_DELETE) {
                remove_finalizer(api, &k, "machine.cluster.x-k8s.io");
            }
            continue;
        }
        let Some(cluster) = cluster else { continue };
        let infra = cluster_infra(api, &cluster);
        let is_cp = m
            .pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
            .is_some();
        let cp = cluster
            .pointer("/spec/controlPlaneRef")
            .and_then(|r| resolve(api, r, ns_of(&cluster)));
        let cp_bootstrapped = cp.as_ref().is_some_and(|(_, v)| {
            v.pointer("/status/bootstrapped").and_then(Value::as_bool) == Some(true)
        });
        let cp_initialized = cp.as_ref().is_some_and(|(_, v)| {
            v.pointer("/status/initialized").and_then(Value::as_bool) == Some(true)
        });
        // Bootstrap data: the first control-plane machine gets it at once, others once etcd runs.
        let first_cp = is_cp && !cp_initialized;
        let has_bootstrap = first_cp || cp_initialized;
        let g = generation(m);
        if !infra_ready(infra.as_ref()) || !has_bootstrap {
            let why = if !infra_ready(infra.as_ref()) {
                "waiting for the cluster infrastructure"
            } else {
                "waiting for the control plane to be initialized"
            };
            set_status(
                api,
                &k,
                json!({"phase": "Pending", "conditions": [
                cond("BootstrapConfigReady", Some(has_bootstrap), if has_bootstrap { "Ready" } else { "NotReady" }, if has_bootstrap { "" } else { why }, g),
                cond("InfrastructureReady", Some(false), "NotReady", why, g),
                cond("NodeReady", None, "NodeDoesNotExist", "no node yet", g),
                cond("Ready", Some(false), "NotReady", why, g),
                cond("Available", Some(false), "NotReady", why, g)]}),
            );
            continue;
        }
        let booted = matches!(s(m, "/status/phase"), "Provisioned" | "Running")
            || timers.elapsed(world, &id, delays::MACHINE);
        let infra_obj = infra.as_ref().map(|(_, v)| v);
        let ip = m
            .pointer("/status/addresses/0/address")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| node_ip(infra_obj, i as u32));
        let infra_kind = infra_obj.map(|v| s(v, "/kind")).unwrap_or("");
        let provider_id = if infra_kind == "AWSCluster" {
            format!(
                "aws:///{}a/i-{:017x}",
                infra_obj.map(|v| s(v, "/spec/region")).unwrap_or(""),
                name_of(m)
                    .bytes()
                    .fold(1u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64))
                    & 0xfffffffffffffff
            )
        } else {
            format!(
                "gce://{}/{}-a/{}",
                infra_obj.map(|v| s(v, "/spec/project")).unwrap_or(""),
                infra_obj.map(|v| s(v, "/spec/region")).unwrap_or(""),
                name_of(m)
            )
        };
        if !booted {
            set_status(
                api,
                &k,
                json!({"phase": "Provisioning", "conditions": [
                cond("BootstrapConfigReady", Some(true), "Ready", "", g),
                cond("InfrastructureReady", Some(false), "NotReady", "instance is being created", g),
                cond("NodeReady", None, "NodeDoesNotExist", "no node yet", g),
                cond("Ready", Some(false), "NotReady", "instance is being created", g),
                cond("Available", Some(false), "NotReady", "instance is being created", g)]}),
            );
            continue;
        }
        if providerless(m) {
            update(api, &k, |v| v["spec"]["providerID"] = json!(provider_id));
        }
        // A node registers once its kubelet can reach an API server: after etcd bootstrap.
        let node_up = cp_bootstrapped && workload.is_some();
        let mut node_ready = false;
        if node_up && let Some(w) = &workload {
            let nk = Key::new("/nodes", "", name_of(m));
            let role: &[(&str, &str)] = if is_cp {
                &[("node-role.kubernetes.io/control-plane", "")]
            } else {
                &[]
            };
            let mut node =
                crate::workload::node_json(name_of(m), &ip, false, role, s(m, "/spec/version"));
            node["spec"]["providerID"] = json!(provider_id);
            crate::workload::ensure(w, &nk, node).ok();
            node_ready = w.store.get(&nk).is_some_and(|n| {
                n.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|a| {
                        a.iter()
                            .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
                    })
            });
        }
        let phase = if node_up { "Running" } else { "Provisioned" };
        let not_up = if is_cp {
            "waiting for etcd bootstrap through Talos apid (tcp/50000)"
        } else {
            "waiting for the node to join"
        };
        let mut st = json!({
            "phase": phase,
            "addresses": [{"type": "InternalIP", "address": ip}],
            "initialization": {"bootstrapDataSecretCreated": true, "infrastructureProvisioned": true},
            "conditions": [
                cond("BootstrapConfigReady", Some(true), "Ready", "", g),
                cond("InfrastructureReady", Some(true), "Ready", "", g),
                cond("NodeReady", Some(node_ready), if node_ready { "NodeReady" } else { "NodeNotReady" },
                    if node_up && !node_ready { "container runtime network not ready: cni plugin not initialized" } else if node_up { "" } else { not_up }, g),
                cond("NodeHealthy", Some(node_ready), if node_ready { "Healthy" } else { "NotHealthy" }, "", g),
                cond("Ready", Some(node_ready), if node_ready { "Ready" } else { "NotReady" }, if node_ready { "" } else { "node is not ready" }, g),
                cond("Available", Some(node_ready), if node_ready { "Available" } else { "NotAvailable" }, "", g),
            ]
        });
        if node_up {
            st["nodeRef"] = json!({"name": name_of(m)});
            st["nodeInfo"] =
                json!({"kubeletVersion": s(m, "/spec/version"), "osImage": "Talos (v1.13)"});
        }
        set_status(api, &k, st);
    }
}

pub(super) fn providerless(m: &Value) -> bool {
    m.pointer("/spec/providerID")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
}
