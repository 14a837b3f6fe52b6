//! TalosControlPlane: machines, etcd bootstrap through Talos apid (tcp/50000), status.

use super::*;

pub(super) fn control_planes(world: &World, timers: &mut Timers, fw: &mesh::Firewalls) {
    let api = &world.management;
    let Some(t) = ty(api, CP, "TalosControlPlane").cloned() else {
        return;
    };
    let all_machines = list(api, CAPI, "Machine", None);
    for tcp in api.store.list_shared(&t.key(), None) {
        let k = key_of(&t, &tcp);
        if deleting(&tcp) {
            // Scale to zero, then let go.
            let ms = owned_machines(&all_machines, &tcp);
            if let Some(mt) = ty(api, CAPI, "Machine") {
                for m in &ms {
                    delete(api, &key_of(mt, m));
                }
            }
            if ms.is_empty() {
                remove_finalizer(api, &k, "talos.controlplane.cluster.x-k8s.io");
            }
            continue;
        }
        add_finalizer(api, &k, "talos.controlplane.cluster.x-k8s.io");
        if cluster_of(api, &tcp).is_some_and(|c| deleting(&c)) {
            continue;
        }
        let replicas = tcp
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0);
        let version = s(&tcp, "/spec/version").to_string();
        let cluster = cluster_of(api, &tcp);
        let infra = cluster.as_ref().and_then(|c| cluster_infra(api, c));
        let machines = owned_machines(&all_machines, &tcp);
        let mut status = json!({"replicas": machines.len(), "version": version,
            "selector": format!("{CLUSTER_LABEL}={},cluster.x-k8s.io/control-plane", cluster.as_ref().map(name_of).unwrap_or(""))});
        let mut conds = Vec::new();
        let Some(cluster) = cluster else {
            conds.push(cond1(
                "Available",
                false,
                "WaitingForCluster",
                "no Cluster references this control plane",
            ));
            status["conditions"] = json!(conds);
            status["ready"] = json!(false);
            status["initialized"] = json!(false);
            set_status(api, &k, status);
            continue;
        };
        ensure_owner(api, &k, &cluster);
        if let Some((tk, _)) = tcp
            .pointer("/spec/infrastructureTemplate")
            .and_then(|r| resolve(api, r, &k.namespace))
        {
            ensure_owner(api, &tk, &cluster);
        }
        if !infra_ready(infra.as_ref()) {
            conds.push(cond1(
                "Available",
                false,
                "WaitingForInfrastructure",
                "waiting for the cluster infrastructure to be ready",
            ));
            status["conditions"] = json!(conds);
            status["ready"] = json!(false);
            status["initialized"] = json!(false);
            set_status(api, &k, status);
            continue;
        }
        let (_, infra_obj) = infra
            .as_ref()
            .map(|(a, b)| (a.clone(), b.clone()))
            .unwrap_or((k.clone(), json!({})));
        let infra_kind = s(&infra_obj, "/kind").to_string();
        let initialized = tcp.pointer("/status/initialized").and_then(Value::as_bool) == Some(true);
        // Scale: the first machine alone until etcd is bootstrapped, then the rest.
        let want = if initialized {
            replicas
        } else {
            replicas.min(1)
        };
        let infra_template = s(&tcp, "/spec/infrastructureTemplate/name").to_string();
        let cp_config = tcp
            .pointer("/spec/controlPlaneConfig/controlplane")
            .cloned()
            .unwrap_or(json!({"generateType": "controlplane"}));
        let create_machine = || {
            let mname = format!("{}-{}", name_of(&tcp), short_id());
            let labels = json!({CLUSTER_LABEL: name_of(&cluster), "cluster.x-k8s.io/control-plane": "",
                "cluster.x-k8s.io/control-plane-name": name_of(&tcp)});
            let mut m = new_machine(&cluster, &tcp, &mname, labels, &infra_kind, &version);
            rollout::stamp(&mut m, &infra_template, None);
            if let Some(mt) = ty(api, CAPI, "Machine") {
                create(api, &key_of(mt, &m), m);
                if let (Some(ct), Some(stored)) = (
                    ty(api, BOOT, "TalosConfig"),
                    api.store.get(&key_of(
                        mt,
                        &json!({"metadata": {"name": mname, "namespace": ns_of(&tcp)}}),
                    )),
                ) {
                    let tc = talos_config(&stored, cp_config.clone());
                    create(api, &key_of(ct, &tc), tc);
                }
            }
        };
        let live_now: Vec<&Value> = machines
            .iter()
            .map(|m| &**m)
            .filter(|m| !deleting(m))
            .collect();
        // Machines whose version, infrastructure template or Talos config differ from the
        // TalosControlPlane's (`MachinesNeedingRollout`, controllers/controlplane.go@v0.5.12).
        let outdated: Vec<&Value> = live_now
            .iter()
            .copied()
            .filter(|m| {
                !rollout::up_to_date(m, &version, &infra_template, None)
                    || machine_talos_config(api, m)
                        .is_some_and(|tc| tc.get("spec") != Some(&cp_config))
            })
            .collect();
        let on_delete = s(&tcp, "/spec/rolloutStrategy/type") == "OnDelete";
        let rolling = initialized && !outdated.is_empty() && !on_delete;
        // Scale-down waits until every machine has a NodeRef
        // (siderolabs/cluster-api-control-plane-provider-talos:`controllers/scale.go`@v0.5.12).
        let all_noderefs = live_now
            .iter()
            .all(|m| m.pointer("/status/nodeRef/name").is_some());
        let mut current = live_now.len() as i64;
        if rolling {
            // RollingUpdate: below `replicas + maxSurge` machines a new one is made (maxSurge
            // defaults to 1, `api/v1alpha3/taloscontrolplane_webhook.go`@v0.5.12); at it, the
            // oldest outdated machine goes once every machine has a NodeRef, one at a time
            // (`upgradeControlPlane`, controllers/upgrade.go, and `selectMachineForScaleDown`,
            // controllers/scale.go@v0.5.12).
            let surge = rollout::int_or_percent(
                tcp.pointer("/spec/rolloutStrategy/rollingUpdate/maxSurge"),
                replicas,
                1,
                true,
            );
            let one_deleting = machines.iter().any(|m| deleting(m));
            if current < replicas + surge {
                create_machine();
            } else if all_noderefs
                && !one_deleting
                && let (Some(old), Some(mt)) =
                    (rollout::oldest(&outdated), ty(api, CAPI, "Machine"))
            {
                delete(api, &key_of(mt, old));
            }
        } else {
            while current < want {
                create_machine();
                current += 1;
            }
            if current > replicas
                && all_noderefs
                && let Some(mt) = ty(api, CAPI, "Machine")
            {
                let mut live = live_now.clone();
                live.sort_by_key(|m| s(m, "/metadata/creationTimestamp").to_string());
                for m in live.iter().rev().take((current - replicas) as usize) {
                    delete(api, &key_of(mt, m));
                }
            }
        }
        // Bootstrap: the provider dials Talos apid (tcp/50000) on the machines' addresses.
        let live: Vec<&Value> = machines
            .iter()
            .map(|m| &**m)
            .filter(|m| !deleting(m))
            .collect();
        let provisioned = !live.is_empty()
            && live
                .iter()
                .all(|m| matches!(s(m, "/status/phase"), "Provisioned" | "Running"));
        let mut bootstrap_error = None;
        let mut bootstrapped =
            tcp.pointer("/status/bootstrapped").and_then(Value::as_bool) == Some(true);
        let timer = format!("bootstrap/{}/{}", k.namespace, k.name);
        if provisioned && !bootstrapped {
            match world
                .cfg
                .egress_ip
                .map(|e| apid_reachable(e, &infra_obj, &live, fw))
            {
                Some(Err(e)) => {
                    bootstrap_error = Some(e);
                    timers.forget(&timer);
                }
                _ => {
                    if timers.elapsed(world, &timer, delays::BOOTSTRAP) {
                        bootstrapped = true;
                    }
                }
            }
        }
        // Initialized once the workload API answers (CACPPT lists its control-plane Nodes
        // through it); ready replicas are the Ready control-plane Nodes
        // (`updateStatus`, taloscontrolplane_controller.go@v0.5.12).
        let workload = world.workload(&format!("{}/{}", k.namespace, name_of(&cluster)));
        let initialized = initialized || (bootstrapped && workload.is_some());
        let ready_nodes = workload
            .as_ref()
            .filter(|_| initialized)
            .map(|w| {
                w.store
                    .list("/nodes", None)
                    .0
                    .iter()
                    .filter(|n| {
                        n.pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
                            .is_some()
                            && n.pointer("/status/conditions")
                                .and_then(Value::as_array)
                                .is_some_and(|a| {
                                    a.iter().any(|c| {
                                        s(c, "/type") == "Ready" && s(c, "/status") == "True"
                                    })
                                })
                    })
                    .count() as i64
            })
            .unwrap_or(0)
            .min(machines.len() as i64);
        let ready = ready_nodes > 0;
        let machines_ready = live.iter().filter(|m| machine_ready(m)).count();
        status["bootstrapped"] = json!(bootstrapped);
        status["initialized"] = json!(initialized);
        status["ready"] = json!(ready);
        status["readyReplicas"] = json!(ready_nodes);
        status["unavailableReplicas"] = json!((machines.len() as i64 - ready_nodes).max(0));
        status["observedGeneration"] = json!(generation(&tcp));
        // Conditions as CACPPT sets them (`reconcileConditions`, `reconcileMachines`@v0.5.12):
        // MachinesBootstrapped False `WaitingForMachines` until it tries, then
        // `WaitingForTalosBoot` with the dial error while bootstrap fails; Available False
        // `WaitingForTalosBoot` until the workload API answers. Both at severity Info.
        let info = |mut c: Value| {
            if c["status"] == "False" {
                c["severity"] = json!("Info");
            }
            c
        };
        let (mb_reason, mb_msg) = match &bootstrap_error {
            Some(e) => ("WaitingForTalosBoot", e.clone()),
            None => ("WaitingForMachines", String::new()),
        };
        conds.push(info(cond1(
            "MachinesBootstrapped",
            bootstrapped,
            mb_reason,
            &mb_msg,
        )));
        conds.push(info(cond1(
            "Available",
            initialized,
            "WaitingForTalosBoot",
            "",
        )));
        conds.push(cond1(
            "MachinesReady",
            machines_ready == machines.len() && machines_ready > 0,
            "MachinesNotReady",
            &format!("{machines_ready} of {} machines ready", machines.len()),
        ));
        // While machines are outdated: MachinesSpecUpToDate False, reason
        // `RollingUpdateInProgress`, severity Warning (taloscontrolplane_controller.go@v0.5.12).
        let mut spec_up_to_date = cond1(
            "MachinesSpecUpToDate",
            outdated.is_empty(),
            "RollingUpdateInProgress",
            &format!(
                "Rolling {} replicas with outdated spec ({} replicas up to date)",
                outdated.len(),
                machines.len() - outdated.len()
            ),
        );
        if !outdated.is_empty() {
            spec_up_to_date["severity"] = json!("Warning");
        }
        conds.push(spec_up_to_date);
        let summary = conds.iter().find(|c| c["status"] == "False").cloned();
        conds.push(match summary {
            Some(c) => {
                let mut r = cond1("Ready", false, s(&c, "/reason"), s(&c, "/message"));
                r["severity"] = c["severity"].clone();
                r
            }
            None => cond1("Ready", true, "", ""),
        });
        if let Some(o) = status.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        status["conditions"] = json!(conds);
        set_status(api, &k, status);
    }
}

/// Whether CACPPT, dialling from the management egress, reaches Talos apid on one of the
/// machines: its Talos client uses every InternalIP and ExternalIP of the machines as endpoints
/// (`talosconfigForMachines`, siderolabs/cluster-api-control-plane-provider-talos:`controllers/configs.go`@v0.5.12).
/// An address is routable when it is public, or when it is private and the egress is inside
/// the cluster's node network (a management cluster on that network); the firewall must then
/// let the egress reach tcp/50000. `Err` holds what the Talos client reports, plus why.
fn apid_reachable(
    egress: std::net::IpAddr,
    infra: &Value,
    machines: &[&Value],
    fw: &mesh::Firewalls,
) -> Result<(), String> {
    let src = ipnet::IpNet::from(egress);
    let node_net = mesh::node_cidr(infra);
    let kind = s(infra, "/kind");
    let mut endpoints: Vec<(String, bool)> = Vec::new();
    for m in machines {
        for a in m
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if matches!(s(a, "/type"), "InternalIP" | "ExternalIP")
                && let Ok(ip) = s(a, "/address").parse::<std::net::IpAddr>()
            {
                endpoints.push((ip.to_string(), mesh::is_private(&ip)));
            }
        }
    }
    // The client tries public endpoints first here, so the error names the most useful one.
    endpoints.sort_by_key(|(_, private)| *private);
    let Some((first, first_private)) = endpoints.first().cloned() else {
        return Err("no addresses were found for the control-plane machines".to_string());
    };
    let egress_private = mesh::is_private(&egress);
    let routable = |private: bool, ip: &str| {
        !private
            || (egress_private
                && ip
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .zip(node_net)
                    .is_some_and(|(ip, n)| n.contains(&ip) && n.contains(&egress)))
    };
    let open = fw.allows(infra, &src, "tcp", 50000, true);
    if open && endpoints.iter().any(|(ip, p)| routable(*p, ip)) {
        return Ok(());
    }
    let why = if !endpoints.iter().any(|(ip, p)| routable(*p, ip)) {
        if first_private && !egress_private {
            format!(
                "the management egress `{egress}` is public and the control-plane machines have only private addresses ({}); give them a public address (`publicIP: true` on the control-plane machine template) or reach the node network privately",
                endpoints
                    .iter()
                    .map(|(ip, _)| ip.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "the management egress `{egress}` is outside the node network {} and cannot route to {first}",
                node_net
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "(unknown)".into())
            )
        }
    } else {
        format!(
            "the {kind} firewall does not allow the management egress `{egress}` to reach tcp/50000 (Talos apid)"
        )
    };
    Err(format!(
        "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp {first}:50000: i/o timeout\"; {why}"
    ))
}
