//! Object helpers every reconciler shares: reading fields, writing main parts and status,
//! Events, finalizers, owner references, conditions, references and machine bookkeeping.

use super::*;

pub(crate) fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn name_of(v: &Value) -> &str {
    s(v, "/metadata/name")
}

pub(crate) fn ns_of(v: &Value) -> &str {
    s(v, "/metadata/namespace")
}

pub(crate) fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

pub(crate) fn ty<'a>(api: &'a Api, group: &str, kind: &str) -> Option<&'a ResourceType> {
    api.registry.by_kind(group, kind)
}

pub(crate) fn key_of(t: &ResourceType, v: &Value) -> Key {
    Key::new(
        &t.key(),
        if t.namespaced { ns_of(v) } else { "" },
        name_of(v),
    )
}

pub(crate) fn list(api: &Api, group: &str, kind: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
    match ty(api, group, kind) {
        Some(t) => api.store.list_shared(&t.key(), ns),
        None => Vec::new(),
    }
}

/// Change an object's main part through `f` (no-op when `f` changes nothing or it is gone).
pub(crate) fn update(api: &Api, key: &Key, f: impl FnOnce(&mut Value)) {
    let _ = api.store.apply(key, |cur| {
        let Some(cur) = cur else {
            return Ok(Change::Keep);
        };
        let mut new = cur.clone();
        f(&mut new);
        if new == *cur {
            return Ok(Change::Keep);
        }
        let av = s(cur, "/apiVersion").to_string();
        patch::record_update(
            Some(cur),
            &mut new,
            MANAGER,
            &av,
            Part::Main {
                status_separate: true,
            },
            &now_rfc3339(),
        );
        Ok(Change::Put(new))
    });
}

/// Record a Kubernetes Event about `obj` (repeats bump `count`), as controllers do.
pub(crate) fn event(api: &Api, obj: &Value, warning: bool, reason: &str, message: &str) {
    let ns = match ns_of(obj) {
        "" => "default",
        n => n,
    };
    let uid = s(obj, "/metadata/uid");
    let h = format!("{uid}/{reason}")
        .bytes()
        .fold(0xcbf29ce484222325u64, |a, b| {
            (a ^ b as u64).wrapping_mul(0x100000001b3)
        });
    let name = format!("{}.{h:016x}", name_of(obj));
    let now = now_rfc3339();
    let key = Key::new("/events", ns, &name);
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": s(obj, "/apiVersion"), "kind": s(obj, "/kind"), "name": name_of(obj),
            "namespace": ns_of(obj), "uid": uid},
        "reason": reason, "message": message, "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": MANAGER}, "reportingComponent": MANAGER, "reportingInstance": MANAGER,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1});
    let _ = api.store.apply(&key, |cur| {
        Ok(match cur {
            None => Change::Put(ev),
            Some(c) => {
                let mut n = c.clone();
                n["count"] = json!(c.get("count").and_then(Value::as_i64).unwrap_or(1) + 1);
                n["lastTimestamp"] = json!(now);
                n["message"] = json!(message);
                Change::Put(n)
            }
        })
    });
}

/// Replace an object's status (keeps lastTransitionTime of conditions whose status did not
/// change). A condition turning True, or False for a failure reason, is also recorded as an Event.
pub(crate) fn set_status(api: &Api, key: &Key, mut status: Value) {
    let mut events: Vec<(bool, String, String)> = Vec::new();
    let mut subject = Value::Null;
    let _ = api.store.apply(key, |cur| {
        let Some(cur) = cur else {
            return Ok(Change::Keep);
        };
        let old_conds = cur
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in status
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let prev = old_conds.iter().find(|o| o.get("type") == c.get("type"));
            let before = prev.map(|o| s(o, "/status"));
            let now = s(c, "/status");
            let same_reason = prev.is_some_and(|o| s(o, "/reason") == s(c, "/reason"));
            if (before == Some(now) && same_reason)
                || matches!(s(c, "/type"), "Paused" | "Deleting")
            {
                continue;
            }
            if now == "True" && before.is_some() && before != Some("True") {
                events.push((
                    false,
                    s(c, "/type").to_string(),
                    format!("{} is now True", s(c, "/type")),
                ));
            } else if now == "False" && s(c, "/reason").contains("Failed") {
                events.push((
                    true,
                    s(c, "/reason").to_string(),
                    s(c, "/message").to_string(),
                ));
            }
        }
        // The subject of the events only: a copy per call of every object with every status
        // write (HelmReleaseProxies hold every mesh peer) was most of CAAPH's pass at 511.
        if !events.is_empty() {
            subject = cur.clone();
        }
        if let Some(old) = cur.pointer("/status/conditions").and_then(Value::as_array)
            && let Some(new) = status.get_mut("conditions").and_then(Value::as_array_mut)
        {
            for c in new.iter_mut() {
                if let Some(o) = old.iter().find(|o| o.get("type") == c.get("type"))
                    && o.get("status") == c.get("status")
                    && let Some(t) = o.get("lastTransitionTime")
                {
                    c["lastTransitionTime"] = t.clone();
                }
            }
        }
        if cur.get("status") == Some(&status) {
            return Ok(Change::Keep);
        }
        let mut new = cur.clone();
        new["status"] = status;
        let av = s(cur, "/apiVersion").to_string();
        patch::record_update(
            Some(cur),
            &mut new,
            MANAGER,
            &av,
            Part::Status,
            &now_rfc3339(),
        );
        Ok(Change::Put(new))
    });
    for (warning, reason, message) in events {
        event(api, &subject, warning, &reason, &message);
    }
}

/// Create an object (as a controller) unless it exists.
pub(crate) fn create(api: &Api, key: &Key, mut obj: Value) {
    let _ = api.store.apply(key, |cur| {
        if cur.is_some() {
            return Ok(Change::Keep);
        }
        let av = s(&obj, "/apiVersion").to_string();
        patch::record_update(
            None,
            &mut obj,
            MANAGER,
            &av,
            Part::Main {
                status_separate: false,
            },
            &now_rfc3339(),
        );
        Ok(Change::Put(obj))
    });
}

/// Delete like the API does: graceful when finalizers are set.
pub(crate) fn delete(api: &Api, key: &Key) {
    let _ = api.store.apply(key, |cur| {
        let Some(cur) = cur else {
            return Ok(Change::Keep);
        };
        let fin = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || (key.resource == "/namespaces"
                && cur
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()));
        if !fin {
            return Ok(Change::Remove);
        }
        if deleting(cur) {
            return Ok(Change::Keep);
        }
        let mut n = cur.clone();
        n["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        Ok(Change::Put(n))
    });
}

pub(crate) fn add_finalizer(api: &Api, key: &Key, f: &str) {
    update(api, key, |o| {
        if deleting(o) {
            return;
        }
        let arr = o["metadata"]
            .as_object_mut()
            .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Value::Array(a)) = arr
            && !a.iter().any(|x| x == f)
        {
            a.push(json!(f));
        }
    });
}

pub(crate) fn remove_finalizer(api: &Api, key: &Key, f: &str) {
    update(api, key, |o| {
        if let Some(a) = o
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            a.retain(|x| x != f);
            if a.is_empty()
                && let Some(m) = o["metadata"].as_object_mut()
            {
                m.remove("finalizers");
            }
        }
    });
}

pub(crate) fn owner_ref(owner: &Value, controller: bool) -> Value {
    json!({"apiVersion": s(owner, "/apiVersion"), "kind": s(owner, "/kind"), "name": name_of(owner),
        "uid": s(owner, "/metadata/uid"), "controller": controller, "blockOwnerDeletion": true})
}

pub(super) fn ensure_owner(api: &Api, key: &Key, owner: &Value) {
    let uid = s(owner, "/metadata/uid").to_string();
    let r = owner_ref(owner, false);
    update(api, key, |o| {
        let refs = o["metadata"]
            .as_object_mut()
            .map(|m| m.entry("ownerReferences").or_insert_with(|| json!([])));
        if let Some(Value::Array(a)) = refs
            && !a.iter().any(|x| s(x, "/uid") == uid)
        {
            a.push(r);
        }
    });
}

/// A v1beta2 (metav1) condition.
pub(crate) fn cond(
    t: &str,
    ok: Option<bool>,
    reason: &str,
    message: &str,
    generation: i64,
) -> Value {
    let status = match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    json!({"type": t, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": now_rfc3339(), "observedGeneration": generation})
}

/// A v1beta1 (Cluster API) condition.
pub(crate) fn cond1(t: &str, ok: bool, reason: &str, message: &str) -> Value {
    // reason and message are always present: some providers' schemas require them.
    let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now_rfc3339(),
        "reason": if ok { t } else { reason }, "message": if ok { "" } else { message }});
    if !ok {
        c["severity"] = json!("Warning");
    }
    c
}

pub(super) fn generation(v: &Value) -> i64 {
    v.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Resolve a reference (v1beta2 `apiGroup`/`kind`/`name`, or v1beta1 `apiVersion`).
pub(crate) fn resolve(api: &Api, r: &Value, ns: &str) -> Option<(Key, Value)> {
    let kind = s(r, "/kind");
    let name = s(r, "/name");
    let group = match r.get("apiGroup").and_then(Value::as_str) {
        Some(g) => g.to_string(),
        None => s(r, "/apiVersion")
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default(),
    };
    let t = ty(api, &group, kind)?;
    let k = Key::new(&t.key(), ns, name);
    api.store.get(&k).map(|v| (k, v))
}

pub(crate) fn short_id() -> String {
    (0..5)
        .map(|_| {
            fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789".iter())
                .map(|c| *c as char)
                .unwrap_or('x')
        })
        .collect()
}

pub(super) fn cluster_of(api: &Api, o: &Value) -> Option<Value> {
    let ns = ns_of(o);
    let by_label = s(o, "/metadata/labels/cluster.x-k8s.io~1cluster-name");
    let by_spec = s(o, "/spec/clusterName");
    let ct = ty(api, CAPI, "Cluster")?;
    for n in [by_spec, by_label] {
        if !n.is_empty()
            && let Some(c) = api.store.get(&Key::new(&ct.key(), ns, n))
        {
            return Some(c);
        }
    }
    for r in o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if s(r, "/kind") == "Cluster"
            && let Some(c) = api.store.get(&Key::new(&ct.key(), ns, s(r, "/name")))
        {
            return Some(c);
        }
    }
    // The Cluster that names this object as its control plane.
    api.store.list(&ct.key(), Some(ns)).0.into_iter().find(|c| {
        s(c, "/spec/controlPlaneRef/name") == name_of(o)
            && s(c, "/spec/controlPlaneRef/kind") == s(o, "/kind")
    })
}

pub(super) fn infra_ready(infra: Option<&(Key, Value)>) -> bool {
    infra.is_some_and(|(_, v)| v.pointer("/status/ready").and_then(Value::as_bool) == Some(true))
}

pub(super) fn machine_kind(infra_kind: &str) -> &'static str {
    if infra_kind == "AWSCluster" {
        "AWSMachine"
    } else {
        "GCPMachine"
    }
}

pub(super) fn new_machine(
    cluster: &Value,
    owner: &Value,
    name: &str,
    labels: Value,
    infra_kind: &str,
    version: &str,
) -> Value {
    json!({
        "apiVersion": format!("{CAPI}/v1beta2"), "kind": "Machine",
        "metadata": {"name": name, "namespace": ns_of(cluster), "labels": labels,
            "ownerReferences": [owner_ref(owner, true)], "finalizers": ["machine.cluster.x-k8s.io"]},
        "spec": {
            "clusterName": name_of(cluster),
            "version": version,
            "bootstrap": {"configRef": {"apiGroup": BOOT, "kind": "TalosConfig", "name": name}},
            "infrastructureRef": {"apiGroup": INFRA, "kind": machine_kind(infra_kind), "name": name},
        }
    })
}

pub(super) fn talos_config(machine: &Value, spec: Value) -> Value {
    json!({"apiVersion": format!("{BOOT}/v1alpha3"), "kind": "TalosConfig",
        "metadata": {"name": name_of(machine), "namespace": ns_of(machine),
            "labels": machine.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref(machine, true)]},
        "spec": spec})
}

/// The machines in `all` that `owner` owns (callers list machines once per pass, shared).
pub(super) fn owned_machines(all: &[Arc<Value>], owner: &Value) -> Vec<Arc<Value>> {
    let uid = s(owner, "/metadata/uid");
    all.iter()
        .filter(|m| {
            m.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|r| s(r, "/uid") == uid))
        })
        .cloned()
        .collect()
}

pub(super) fn machine_running(m: &Value) -> bool {
    s(m, "/status/phase") == "Running"
}

pub(super) fn machine_ready(m: &Value) -> bool {
    m.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
        })
}
