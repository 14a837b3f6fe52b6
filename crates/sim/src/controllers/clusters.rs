//! Cluster: v1beta2 conditions, the kubeconfig Secret and the workload API.

use super::*;

pub(super) fn clusters(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "Cluster").cloned() else {
        return;
    };
    // Listed once per pass, shared with the store (a copy of each was most of the pass).
    let all_mds = list(api, CAPI, "MachineDeployment", None);
    let all_machines = list(api, CAPI, "Machine", None);
    for c in api.store.list_shared(&t.key(), None) {
        let k = key_of(&t, &c);
        let wl = format!("{}/{}", k.namespace, k.name);
        let g = generation(&c);
        let infra = cluster_infra(api, &c);
        let cp = c
            .pointer("/spec/controlPlaneRef")
            .and_then(|r| resolve(api, r, &k.namespace));
        let mine = |m: &&Arc<Value>| ns_of(m) == k.namespace && s(m, "/spec/clusterName") == k.name;
        let mds: Vec<Arc<Value>> = all_mds.iter().filter(mine).cloned().collect();
        let machines: Vec<Arc<Value>> = all_machines.iter().filter(mine).cloned().collect();
        if deleting(&c) {
            teardown(world, &c, &k, infra, cp, &mds, &machines, timers);
            continue;
        }
        add_finalizer(api, &k, "cluster.cluster.x-k8s.io");
        if let Some((ik, _)) = &infra {
            ensure_owner(api, ik, &c);
        }
        if let Some((ck, _)) = &cp {
            ensure_owner(api, ck, &c);
        }
        let infra_ready = infra_ready(infra.as_ref());
        let endpoint = infra
            .as_ref()
            .and_then(|(_, v)| v.pointer("/spec/controlPlaneEndpoint").cloned())
            .filter(|e| {
                e.get("host")
                    .and_then(Value::as_str)
                    .is_some_and(|h| !h.is_empty())
            });
        if let Some(e) = &endpoint
            && c.pointer("/spec/controlPlaneEndpoint").is_none_or(|x| {
                x.get("host")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
        {
            let e = e.clone();
            update(api, &k, |v| v["spec"]["controlPlaneEndpoint"] = e);
        }
        let cpv = cp.as_ref().map(|(_, v)| v.clone()).unwrap_or(json!({}));
        let cp_init = cpv.pointer("/status/initialized").and_then(Value::as_bool) == Some(true);
        let cp_ready = cpv.pointer("/status/ready").and_then(Value::as_bool) == Some(true);
        let cp_msg = cpv
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|a| {
                // The control plane's first failing condition that says why (CACPPT puts the
                // apid dial error on MachinesBootstrapped).
                a.iter().find(|x| {
                    s(x, "/type") != "Ready"
                        && s(x, "/status") != "True"
                        && !s(x, "/message").is_empty()
                })
            })
            .map(|x| s(x, "/message").to_string())
            .unwrap_or_default();
        // The workload API server answers once etcd is bootstrapped; the kubeconfig Secret follows.
        let cp_boot = cpv.pointer("/status/bootstrapped").and_then(Value::as_bool) == Some(true);
        if (cp_init || cp_boot)
            && let Ok(w) = world.ensure_workload(&wl)
        {
            {
                let kc = world.workload_kubeconfig(&wl, &w.token);
                use base64::Engine;
                let enc = base64::engine::general_purpose::STANDARD.encode(kc.as_bytes());
                let sk = Key::new("/secrets", &k.namespace, &format!("{}-kubeconfig", k.name));
                let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "cluster.x-k8s.io/secret",
                    "metadata": {"name": sk.name, "namespace": k.namespace, "labels": {CLUSTER_LABEL: k.name},
                        "ownerReferences": [owner_ref(&c, true)]},
                    "data": {"value": enc}});
                create(api, &sk, secret);
                update(api, &sk, |v| v["data"]["value"] = json!(enc));
            }
        }
        // Cluster API's probe of the workload API: an outage turns it False only once the
        // remote-connection grace period has passed since the last success, with the message
        // `setRemoteConnectionProbeCondition` writes (cluster_controller_status.go@v1.14.0).
        let lost = crate::outage::lost(world, &wl)
            .filter(|l| l.past(world, crate::outage::REMOTE_CONNECTION_GRACE));
        let (probe_ok, probe_msg) = match (&lost, cp_init) {
            (Some(l), true) => (
                false,
                format!(
                    "Remote connection probe failed, probe last succeeded at {}",
                    l.last_success
                ),
            ),
            (None, true) => (true, String::new()),
            (_, false) => (
                false,
                "the workload cluster API server is not reachable yet".to_string(),
            ),
        };
        let cp_machines: Vec<&Value> = machines
            .iter()
            .map(|m| &**m)
            .filter(|m| {
                m.pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
                    .is_some()
            })
            .collect();
        let w_machines: Vec<&Value> = machines
            .iter()
            .map(|m| &**m)
            .filter(|m| {
                m.pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
                    .is_none()
            })
            .collect();
        let count = |ms: &[&Value], f: &dyn Fn(&Value) -> bool| ms.iter().filter(|m| f(m)).count();
        let desired_workers: i64 = mds
            .iter()
            .map(|m| {
                m.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            })
            .sum();
        let workers_avail: i64 = mds
            .iter()
            .map(|m| {
                m.pointer("/status/availableReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .min(
                        m.pointer("/spec/replicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(1),
                    )
            })
            .sum();
        let workers_ok = workers_avail >= desired_workers;
        let cp_desired = cpv
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let infra_kind = infra
            .as_ref()
            .map(|(_, v)| s(v, "/kind").to_string())
            .unwrap_or_else(|| s(&c, "/spec/infrastructureRef/kind").to_string());
        let mut conds = vec![
            match &infra {
                None => cond(
                    "InfrastructureReady",
                    None,
                    "InfrastructureDoesNotExist",
                    &format!(
                        "{infra_kind} `{}` does not exist",
                        s(&c, "/spec/infrastructureRef/name")
                    ),
                    g,
                ),
                Some(_) if infra_ready => cond("InfrastructureReady", Some(true), "Ready", "", g),
                Some((_, v)) => {
                    // CAPG's Ready reason/message surfaces in the Cluster, as in CAPI.
                    let why = v
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().find(|x| s(x, "/type") == "Ready"))
                        .filter(|x| s(x, "/reason") != "Provisioning")
                        .map(|x| s(x, "/message").to_string())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "provisioning".to_string());
                    cond(
                        "InfrastructureReady",
                        Some(false),
                        "NotReady",
                        &format!("{infra_kind} status.ready is false: {why}"),
                        g,
                    )
                }
            },
            match &cp {
                None => cond(
                    "ControlPlaneInitialized",
                    None,
                    "ControlPlaneDoesNotExist",
                    &format!(
                        "{} `{}` does not exist",
                        s(&c, "/spec/controlPlaneRef/kind"),
                        s(&c, "/spec/controlPlaneRef/name")
                    ),
                    g,
                ),
                Some(_) if cp_init => {
                    cond("ControlPlaneInitialized", Some(true), "Initialized", "", g)
                }
                Some(_) => cond(
                    "ControlPlaneInitialized",
                    Some(false),
                    "NotInitialized",
                    if cp_msg.is_empty() {
                        "control plane not yet initialized"
                    } else {
                        &cp_msg
                    },
                    g,
                ),
            },
            cond(
                "ControlPlaneAvailable",
                Some(cp_ready),
                if cp_ready {
                    "Available"
                } else {
                    "NotAvailable"
                },
                if cp_ready {
                    ""
                } else if cp_msg.is_empty() {
                    "control plane not available"
                } else {
                    &cp_msg
                },
                g,
            ),
            cond(
                "WorkersAvailable",
                Some(workers_ok),
                if workers_ok {
                    "Available"
                } else {
                    "NotAvailable"
                },
                &if workers_ok {
                    String::new()
                } else {
                    format!("{workers_avail} of {desired_workers} worker replicas available")
                },
                g,
            ),
            cond(
                "RemoteConnectionProbe",
                Some(probe_ok),
                if probe_ok {
                    "ProbeSucceeded"
                } else {
                    "ProbeFailed"
                },
                &probe_msg,
                g,
            ),
            cond(
                "ControlPlaneMachinesReady",
                Some(
                    count(&cp_machines, &machine_ready) == cp_machines.len()
                        && !cp_machines.is_empty(),
                ),
                "Machines",
                &format!(
                    "{} of {} ready",
                    count(&cp_machines, &machine_ready),
                    cp_machines.len()
                ),
                g,
            ),
            cond(
                "WorkerMachinesReady",
                Some(count(&w_machines, &machine_ready) == w_machines.len()),
                "Machines",
                &format!(
                    "{} of {} ready",
                    count(&w_machines, &machine_ready),
                    w_machines.len()
                ),
                g,
            ),
            cond("Paused", Some(false), "NotPaused", "", g),
            cond("Deleting", Some(false), "NotDeleting", "", g),
        ];
        let blockers: Vec<String> = conds
            .iter()
            .filter(|x| {
                matches!(
                    s(x, "/type"),
                    "InfrastructureReady"
                        | "ControlPlaneAvailable"
                        | "WorkersAvailable"
                        | "RemoteConnectionProbe"
                ) && s(x, "/status") != "True"
            })
            .map(|x| format!("{}: {}", s(x, "/type"), s(x, "/message")))
            .collect();
        let available = blockers.is_empty();
        conds.insert(
            0,
            cond(
                "Available",
                Some(available),
                if available {
                    "Available"
                } else {
                    "NotAvailable"
                },
                &blockers.join("; "),
                g,
            ),
        );
        let phase = if infra.is_none() {
            "Pending"
        } else if infra_ready && endpoint.is_some() {
            "Provisioned"
        } else {
            "Provisioning"
        };
        set_status(
            api,
            &k,
            json!({
                "phase": phase,
                "observedGeneration": g,
                "initialization": {"infrastructureProvisioned": infra_ready, "controlPlaneInitialized": cp_init},
                "controlPlane": {"desiredReplicas": cp_desired, "replicas": cp_machines.len(), "readyReplicas": count(&cp_machines, &machine_ready),
                    "availableReplicas": count(&cp_machines, &machine_ready), "upToDateReplicas": cp_machines.len()},
                "workers": {"desiredReplicas": desired_workers, "replicas": w_machines.len(), "readyReplicas": count(&w_machines, &machine_ready),
                    "availableReplicas": count(&w_machines, &machine_ready), "upToDateReplicas": w_machines.len()},
                "conditions": conds,
            }),
        );
    }
}
