//! Cluster deletion: workers, then the control plane, then the infrastructure, then the Cluster.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn teardown(
    world: &World,
    c: &Value,
    k: &Key,
    infra: Option<(Key, Value)>,
    cp: Option<(Key, Value)>,
    mds: &[Arc<Value>],
    machines: &[Arc<Value>],
    timers: &mut Timers,
) {
    let api = &world.management;
    let g = generation(c);
    // Order: workers and control plane (machines) first, infrastructure last.
    let mut waiting = Vec::new();
    if let Some(t) = ty(api, CAPI, "MachineDeployment") {
        for md in mds {
            delete(api, &key_of(t, md));
        }
    }
    if let Some(t) = ty(api, CAPI, "MachineHealthCheck") {
        for m in list(api, CAPI, "MachineHealthCheck", Some(&k.namespace))
            .iter()
            .filter(|m| s(m, "/spec/clusterName") == k.name)
        {
            delete(api, &key_of(t, m));
        }
    }
    let is_worker = |m: &&Value| {
        m.pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
            .is_none()
    };
    let workers: Vec<&Value> = machines.iter().map(|m| &**m).filter(is_worker).collect();
    if let Some(t) = ty(api, CAPI, "Machine") {
        for m in &workers {
            delete(api, &key_of(t, m));
        }
    }
    if !workers.is_empty() {
        waiting.push(format!("{} worker machines", workers.len()));
    } else if let Some((ck, cv)) = &cp {
        delete(api, ck);
        waiting.push(format!(
            "{} `{}` ({} machines)",
            s(cv, "/kind"),
            ck.name,
            machines.len()
        ));
    } else if !machines.is_empty() {
        if let Some(t) = ty(api, CAPI, "Machine") {
            for m in machines {
                delete(api, &key_of(t, m));
            }
        }
        waiting.push(format!("{} machines", machines.len()));
    } else if let Some((ik, iv)) = &infra {
        delete(api, ik);
        waiting.push(format!("{} `{}`", s(iv, "/kind"), ik.name));
    }
    let done = machines.is_empty() && cp.is_none() && infra.is_none();
    let mut st = c.get("status").cloned().unwrap_or(json!({}));
    st["phase"] = json!("Deleting");
    let mut conds: Vec<Value> = st
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conds.retain(|x| s(x, "/type") != "Deleting");
    conds.push(cond(
        "Deleting",
        Some(true),
        "WaitingForDeletion",
        &format!(
            "waiting for {}",
            if waiting.is_empty() {
                "finalizers".to_string()
            } else {
                waiting.join(", ")
            }
        ),
        g,
    ));
    st["conditions"] = json!(conds);
    set_status(api, k, st);
    if done {
        // What only this Cluster owns (machine templates, …) goes with it.
        let uid = s(c, "/metadata/uid").to_string();
        for t in &api.registry.types {
            if !t.namespaced {
                continue;
            }
            for o in api.store.list(&t.key(), Some(&k.namespace)).0 {
                let refs = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !refs.is_empty() && refs.iter().all(|r| s(r, "/uid") == uid) {
                    delete(api, &key_of(t, &o));
                }
            }
        }
        let wl = format!("{}/{}", k.namespace, k.name);
        world.remove_workload(&wl);
        delete(
            api,
            &Key::new("/secrets", &k.namespace, &format!("{}-kubeconfig", k.name)),
        );
        timers.forget(&wl);
        remove_finalizer(api, k, "cluster.cluster.x-k8s.io");
    }
}
