//! MachineDeployment: one Machine per replica (owned directly; no MachineSet).

use super::*;

pub(super) fn machine_deployments(world: &World) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "MachineDeployment").cloned() else {
        return;
    };
    let Some(mt) = ty(api, CAPI, "Machine").cloned() else {
        return;
    };
    let all_machines = api.store.list_shared(&mt.key(), None);
    for md in api.store.list_shared(&t.key(), None) {
        let k = key_of(&t, &md);
        if deleting(&md) || cluster_of(api, &md).is_some_and(|c| deleting(&c)) {
            continue;
        }
        let replicas = md
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0);
        let Some(cluster) = cluster_of(api, &md) else {
            set_status(
                api,
                &k,
                json!({"replicas": 0, "phase": "ScalingUp",
                "conditions": [cond("Available", Some(false), "WaitingForCluster", &format!("Cluster `{}` does not exist", s(&md, "/spec/clusterName")), generation(&md))]}),
            );
            continue;
        };
        ensure_owner(api, &k, &cluster);
        // Cluster API makes the Cluster own the templates a MachineDeployment uses, so they go
        // with it.
        for p in [
            "/spec/template/spec/infrastructureRef",
            "/spec/template/spec/bootstrap/configRef",
        ] {
            if let Some((tk, _)) = md.pointer(p).and_then(|r| resolve(api, r, &k.namespace)) {
                ensure_owner(api, &tk, &cluster);
            }
        }
        let machines = owned_machines(&all_machines, &md);
        let live: Vec<&Value> = machines
            .iter()
            .map(|m| &**m)
            .filter(|m| !deleting(m))
            .collect();
        let infra_kind = cluster_infra(api, &cluster)
            .map(|(_, v)| s(&v, "/kind").to_string())
            .unwrap_or_else(|| "GCPCluster".into());
        let version = s(&md, "/spec/template/spec/version").to_string();
        let infra_template = s(&md, "/spec/template/spec/infrastructureRef/name").to_string();
        let boot_template = md
            .pointer("/spec/template/spec/bootstrap/configRef/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let create_machine = || {
            let mname = format!("{}-{}", name_of(&md), short_id());
            let labels = json!({CLUSTER_LABEL: name_of(&cluster), "cluster.x-k8s.io/deployment-name": name_of(&md)});
            let mut m = new_machine(&cluster, &md, &mname, labels, &infra_kind, &version);
            if md
                .pointer("/spec/template/spec/bootstrap/configRef")
                .is_some()
            {
                m["spec"]["bootstrap"]["configRef"] =
                    json!({"apiGroup": BOOT, "kind": "TalosConfig", "name": mname});
            }
            rollout::stamp(&mut m, &infra_template, boot_template.as_deref());
            create(api, &key_of(&mt, &m), m);
            if let (Some(ct), Some(stored)) = (
                ty(api, BOOT, "TalosConfig"),
                api.store.get(&Key::new(&mt.key(), ns_of(&md), &mname)),
            ) {
                // Cluster API clones the TalosConfigTemplate's `spec.template.spec` into the
                // Machine's TalosConfig (patches included).
                let spec = md
                    .pointer("/spec/template/spec/bootstrap/configRef")
                    .and_then(|r| resolve(api, r, &k.namespace))
                    .and_then(|(_, t)| t.pointer("/spec/template/spec").cloned())
                    .unwrap_or_else(|| json!({"generateType": "worker"}));
                let tc = talos_config(&stored, spec);
                create(api, &key_of(ct, &tc), tc);
            }
        };
        // A machine is outdated when its version or templates differ from the deployment's
        // (`MachineTemplateUpToDate`, core/reconcilers/machinedeployment/mdutil/util.go@v1.14.0).
        let (fresh, old): (Vec<&Value>, Vec<&Value>) = live.iter().copied().partition(|m| {
            rollout::up_to_date(m, &version, &infra_template, boot_template.as_deref())
        });
        // RollingUpdate defaults: maxSurge 1 (a percentage rounds up), maxUnavailable 0
        // (rounds down); both 0 is refused by Cluster API, read here as a surge of 1
        // (`spec.rollout.strategy.rollingUpdate`, defaulted in cluster-api:`core/webhooks/admission/machinedeployment.go`@v1.14.0).
        let ru = md.pointer("/spec/rollout/strategy/rollingUpdate");
        let mut surge =
            rollout::int_or_percent(ru.and_then(|r| r.get("maxSurge")), replicas, 1, true);
        let unavailable =
            rollout::int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), replicas, 0, false);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        let on_delete = s(&md, "/spec/rollout/strategy/type") == "OnDelete";
        if old.is_empty() || on_delete {
            for _ in live.len() as i64..replicas {
                create_machine();
            }
            if live.len() as i64 > replicas {
                let mut sorted = live.clone();
                sorted.sort_by_key(|m| s(m, "/metadata/creationTimestamp").to_string());
                for m in sorted.iter().rev().take(live.len() - replicas as usize) {
                    delete(api, &key_of(&mt, m));
                }
            }
        } else {
            // New machines up to `replicas + maxSurge` in all; old ones go while at least
            // `replicas - maxUnavailable` machines stay ready (the MachineSet scale-up and
            // scale-down of a rolling update, `rolloutRolling`,
            // cluster-api:`core/reconcilers/machinedeployment/machinedeployment_rollout_rollingupdate.go`@v1.14.0).
            let room = (replicas + surge - live.len() as i64).min(replicas - fresh.len() as i64);
            for _ in 0..room.max(0) {
                create_machine();
            }
            let ready_now = live.iter().filter(|m| machine_ready(m)).count() as i64;
            let mut may_lose = ready_now - (replicas - unavailable);
            let mut total = live.len() as i64 + room.max(0);
            let mut order = old.clone();
            order.sort_by_key(|m| {
                (
                    machine_ready(m),
                    s(m, "/metadata/creationTimestamp").to_string(),
                )
            });
            for m in order {
                if !machine_ready(m) {
                    if total > replicas {
                        delete(api, &key_of(&mt, m));
                        total -= 1;
                    }
                } else if may_lose > 0 {
                    delete(api, &key_of(&mt, m));
                    may_lose -= 1;
                    total -= 1;
                }
            }
        }
        let ready = live.iter().filter(|m| machine_ready(m)).count() as i64;
        let running = live.iter().filter(|m| machine_running(m)).count() as i64;
        let available = ready >= replicas - unavailable;
        set_status(
            api,
            &k,
            json!({
                "replicas": live.len(), "readyReplicas": ready, "availableReplicas": ready, "upToDateReplicas": fresh.len(),
                "observedGeneration": generation(&md),
                "phase": if running >= replicas && live.len() as i64 == replicas { "Running" } else if (live.len() as i64) < replicas || running < replicas { "ScalingUp" } else { "ScalingDown" },
                "selector": format!("{CLUSTER_LABEL}={},cluster.x-k8s.io/deployment-name={}", name_of(&cluster), name_of(&md)),
                "conditions": [
                    cond("Available", Some(available), if available { "Available" } else { "NotAvailable" },
                        &if available { String::new() } else { format!("{ready} available replicas, at least {replicas} required (spec.replicas)") }, generation(&md)),
                    cond("MachinesReady", Some(ready == live.len() as i64), if ready == live.len() as i64 { "Ready" } else { "NotReady" },
                        &format!("{ready} of {} machines ready", live.len()), generation(&md)),
                    cond("MachinesUpToDate", Some(old.is_empty()), if old.is_empty() { "UpToDate" } else { "NotUpToDate" },
                        &if old.is_empty() { String::new() } else { format!("{} of {} machines not up-to-date", old.len(), live.len()) }, generation(&md)),
                    cond("RollingOut", Some(!old.is_empty() && !on_delete), if !old.is_empty() && !on_delete { "RollingOut" } else { "NotRollingOut" },
                        &if old.is_empty() { String::new() } else { format!("Rolling out {} not up-to-date replicas", old.len()) }, generation(&md)),
                ]
            }),
        );
    }
}
