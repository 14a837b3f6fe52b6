//! TalosControlPlane: machines, etcd bootstrap through Talos apid (tcp/50000), status.

use super::*;

pub(super) fn control_planes(world: &World, timers: &mut Timers, fw: &mesh::Firewalls) {
    let api = &world.management;
    let Some(t) = ty(api, CP, "TalosControlPlane").cloned() else {
        return;
    };
    let all_machines = list(api, CAPI, "Machine", None);
    for tcp in api.store.list(&t.key(), None).0 {
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
        let mut current = machines.iter().filter(|m| !deleting(m)).count() as i64;
        while current < want {
            let mname = format!("{}-{}", name_of(&tcp), short_id());
            let labels = json!({CLUSTER_LABEL: name_of(&cluster), "cluster.x-k8s.io/control-plane": "",
                "cluster.x-k8s.io/control-plane-name": name_of(&tcp)});
            let m = new_machine(&cluster, &tcp, &mname, labels, &infra_kind, &version);
            if let Some(mt) = ty(api, CAPI, "Machine") {
                create(api, &key_of(mt, &m), m);
                if let (Some(ct), Some(stored)) = (
                    ty(api, BOOT, "TalosConfig"),
                    api.store.get(&key_of(
                        mt,
                        &json!({"metadata": {"name": mname, "namespace": ns_of(&tcp)}}),
                    )),
                ) {
                    let spec = tcp
                        .pointer("/spec/controlPlaneConfig/controlplane")
                        .cloned()
                        .unwrap_or(json!({"generateType": "controlplane"}));
                    let tc = talos_config(&stored, spec);
                    create(api, &key_of(ct, &tc), tc);
                }
            }
            current += 1;
        }
        if current > replicas
            && let Some(mt) = ty(api, CAPI, "Machine")
        {
            let mut live: Vec<&Value> = machines.iter().filter(|m| !deleting(m)).collect();
            live.sort_by_key(|m| s(m, "/metadata/creationTimestamp").to_string());
            for m in live.iter().rev().take((current - replicas) as usize) {
                delete(api, &key_of(mt, m));
            }
        }
        // Bootstrap: the provider dials Talos apid on tcp/50000 of the first control-plane node.
        let first = machines
            .iter()
            .filter(|m| !deleting(m))
            .min_by_key(|m| s(m, "/metadata/creationTimestamp").to_string());
        let provisioned =
            first.is_some_and(|m| matches!(s(m, "/status/phase"), "Provisioned" | "Running"));
        let mut bootstrap_error = None;
        let mut bootstrapped =
            tcp.pointer("/status/bootstrapped").and_then(Value::as_bool) == Some(true);
        if provisioned && !bootstrapped {
            let ip = first
                .map(|m| s(m, "/status/addresses/0/address").to_string())
                .unwrap_or_default();
            match world.cfg.egress_ip {
                Some(egress)
                    if !fw.allows(&infra_obj, &ipnet::IpNet::from(egress), "tcp", 50000, true) =>
                {
                    bootstrap_error = Some(format!(
                        "failed to bootstrap etcd on machine `{}`: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp {ip}:50000: i/o timeout\"; the {infra_kind} firewall does not allow the management egress `{egress}` to reach tcp/50000 (Talos apid)",
                        first.map(name_of).unwrap_or("")
                    ));
                    timers.forget(&format!("bootstrap/{}/{}", k.namespace, k.name));
                }
                _ => {
                    if timers.elapsed(
                        world,
                        &format!("bootstrap/{}/{}", k.namespace, k.name),
                        delays::BOOTSTRAP,
                    ) {
                        bootstrapped = true;
                    }
                }
            }
        }
        let running = machines
            .iter()
            .filter(|m| !deleting(m) && machine_running(m))
            .count() as i64;
        let initialized = initialized || (bootstrapped && running >= 1);
        let ready = initialized && running >= replicas;
        status["bootstrapped"] = json!(bootstrapped);
        status["initialized"] = json!(initialized);
        status["ready"] = json!(ready);
        status["readyReplicas"] = json!(running);
        status["unavailableReplicas"] = json!((machines.len() as i64 - running).max(0));
        status["observedGeneration"] = json!(generation(&tcp));
        match &bootstrap_error {
            Some(e) => {
                conds.push(cond1("Available", false, "EtcdBootstrapFailed", e));
                conds.push(cond1(
                    "MachinesBootstrapped",
                    false,
                    "EtcdBootstrapFailed",
                    e,
                ));
                status["failureReason"] = Value::Null;
            }
            None => {
                conds.push(cond1(
                    "Available",
                    initialized,
                    "WaitingForEtcdBootstrap",
                    "waiting for the first control-plane machine to bootstrap etcd",
                ));
                conds.push(cond1(
                    "MachinesBootstrapped",
                    bootstrapped,
                    "WaitingForBootstrap",
                    "waiting for machines to boot and bootstrap",
                ));
            }
        }
        conds.push(cond1(
            "MachinesReady",
            running == machines.len() as i64 && running > 0,
            "MachinesNotReady",
            &format!("{running} of {} machines running", machines.len()),
        ));
        conds.push(cond1(
            "Ready",
            ready,
            "ScalingUp",
            &format!("{running} of {replicas} control-plane machines ready"),
        ));
        if let Some(o) = status.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        status["conditions"] = json!(conds);
        set_status(api, &k, status);
    }
}
