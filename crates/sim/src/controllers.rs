//! Simulated controllers. Level-triggered like real ones: every pass (on any store event, and on
//! a timer for simulated delays) each reconciler reads the objects it cares about and writes only
//! what differs, so passes converge and a restart resumes from the stored objects alone.
//!
//! Reconcilers: namespaces (termination), garbage collection (ownerReferences), infrastructure
//! (GCPCluster/AWSCluster), Talos control plane (with the tcp/50000 reachability check),
//! MachineDeployment, Machine (and workload Nodes), Cluster (v1beta2 conditions, kubeconfig
//! Secret, workload API), CAAPH (HelmChartProxy → HelmReleaseProxy → install) and the mesh view.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::patch::{self, Part};
use crate::resources::ResourceType;
use crate::store::{Change, Key, now_rfc3339};
use crate::{Api, World, mesh};

pub(crate) const CAPI: &str = "cluster.x-k8s.io";
pub(crate) const INFRA: &str = "infrastructure.cluster.x-k8s.io";
pub(crate) const CP: &str = "controlplane.cluster.x-k8s.io";
pub(crate) const BOOT: &str = "bootstrap.cluster.x-k8s.io";
pub(crate) const ADDONS: &str = "addons.cluster.x-k8s.io";
const MANAGER: &str = "meshfleet-sim";
pub(crate) const CLUSTER_LABEL: &str = "cluster.x-k8s.io/cluster-name";

/// Simulated durations (before `--speed` scaling).
pub mod delays {
    use std::time::Duration;
    /// Cloud network, load balancer and firewall creation.
    pub const INFRA: Duration = Duration::from_secs(6);
    /// A VM booting.
    pub const MACHINE: Duration = Duration::from_secs(4);
    /// etcd bootstrap through Talos apid.
    pub const BOOTSTRAP: Duration = Duration::from_secs(3);
    /// Helm install of a chart.
    pub const HELM: Duration = Duration::from_secs(3);
    /// Draining and deleting a VM.
    pub const MACHINE_DELETE: Duration = Duration::from_secs(2);
    /// Deleting cloud resources.
    pub const INFRA_DELETE: Duration = Duration::from_secs(3);
}

/// Timers: when a reconciler first saw a condition start (memory only; a restart restarts them).
#[derive(Default)]
pub(crate) struct Timers(HashMap<String, Instant>);

impl Timers {
    /// Whether `d` (scaled) has passed since `id` was first asked about.
    pub(crate) fn elapsed(&mut self, world: &World, id: &str, d: Duration) -> bool {
        let start = *self.0.entry(id.to_string()).or_insert_with(Instant::now);
        start.elapsed() >= world.scaled(d)
    }
    fn forget(&mut self, id: &str) {
        self.0.remove(id);
    }
    /// Whether some simulated delay is still running (its end needs a pass).
    fn pending(&self, world: &World) -> bool {
        let longest = world.scaled(delays::INFRA);
        self.0.values().any(|t| t.elapsed() < longest)
    }
}

/// Run every controller until `stop`.
pub async fn run(world: Arc<World>, mut stop: watch::Receiver<bool>) {
    let mut rx = world.management.store.subscribe();
    // Fast ticks only matter while a simulated delay runs; slow ticks pick up changes in
    // workload clusters (their stores are not subscribed) and anything else level-triggered.
    let fast = world
        .scaled(Duration::from_millis(250))
        .clamp(Duration::from_millis(20), Duration::from_millis(250));
    let slow = world
        .scaled(Duration::from_millis(1000))
        .clamp(Duration::from_millis(200), Duration::from_millis(1000));
    let mut tick = tokio::time::interval(fast);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timers = Timers::default();
    let mut last = Instant::now()
        .checked_sub(slow)
        .unwrap_or_else(Instant::now);
    loop {
        let mut deleted = false;
        tokio::select! {
            ev = rx.recv() => {
                deleted |= ev.is_ok_and(|e| e.kind == crate::store::EventType::Deleted);
                // Let a burst (an apply of many objects) land, then handle it in one pass.
                tokio::time::sleep(Duration::from_millis(10)).await;
                while let Ok(e) = rx.try_recv() {
                    deleted |= e.kind == crate::store::EventType::Deleted;
                }
            }
            _ = tick.tick() => {
                if !timers.pending(&world) && last.elapsed() < slow {
                    continue;
                }
                deleted = true;
            }
            _ = stop.changed() => return,
        }
        last = Instant::now();
        // A pass is CPU work over every object: keep it off the async workers that serve HTTP.
        let w = world.clone();
        let Ok(t) = tokio::task::spawn_blocking(move || {
            reconcile_all(&w, &mut timers, deleted);
            timers
        })
        .await
        else {
            return;
        };
        timers = t;
        tracing::debug!(took = ?last.elapsed(), "reconcile pass");
    }
}

/// One pass of every reconciler.
/// After a restart the server listens on a new address: point every existing
/// `<cluster>-kubeconfig` Secret at it before the first request is served, so no client reads a
/// kubeconfig that names the old port (the regular passes would fix it only later).
pub(crate) fn refresh_workload_kubeconfigs(world: &World, keys: &[String]) {
    use base64::Engine;
    for wl in keys {
        let Some((ns, name)) = wl.split_once('/') else {
            continue;
        };
        let Some(w) = world.workload(wl) else {
            continue;
        };
        let kc = world.workload_kubeconfig(wl, &w.token);
        let enc = base64::engine::general_purpose::STANDARD.encode(kc.as_bytes());
        let key = Key::new("/secrets", ns, &format!("{name}-kubeconfig"));
        update(&world.management, &key, |v| v["data"]["value"] = json!(enc));
    }
}

pub(crate) fn reconcile_all(world: &World, timers: &mut Timers, collect: bool) {
    let m = &world.management;
    namespaces(m);
    // Garbage can only appear when something was deleted.
    if collect {
        garbage_collect(m);
    }
    for api in world.workloads() {
        namespaces(&api);
        if collect {
            garbage_collect(&api);
        }
    }
    let mut t0 = Instant::now();
    let mut lap = |what: &str| {
        tracing::trace!(reconciler = what, took = ?t0.elapsed());
        t0 = Instant::now();
    };
    infrastructure(world, timers);
    lap("infra");
    let fw = mesh::Firewalls::build(m, Some(&world.gcp));
    lap("firewalls");
    control_planes(world, timers, &fw);
    lap("cp");
    machine_deployments(world);
    lap("md");
    machines(world, timers);
    lap("machines");
    clusters(world, timers);
    lap("clusters");
    crate::caaph::reconcile(world, timers);
    lap("caaph");
    mesh::reconcile(world, &fw);
    lap("mesh");
}

// ---------------------------------------------------------------- helpers

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

pub(crate) fn list(api: &Api, group: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
    match ty(api, group, kind) {
        Some(t) => api.store.list(&t.key(), ns).0,
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
        subject = cur.clone();
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

fn ensure_owner(api: &Api, key: &Key, owner: &Value) {
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

fn generation(v: &Value) -> i64 {
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

// ---------------------------------------------------------------- namespaces and GC

fn namespaces(api: &Api) {
    for n in api
        .store
        .list("/namespaces", None)
        .0
        .iter()
        .filter(|n| deleting(n))
    {
        let name = name_of(n).to_string();
        let mut left = 0;
        for t in api.registry.types.iter().filter(|t| t.namespaced) {
            for o in api.store.list(&t.key(), Some(&name)).0 {
                left += 1;
                delete(api, &key_of(t, &o));
            }
        }
        if left == 0 {
            update(api, &Key::new("/namespaces", "", &name), |o| {
                o["spec"]["finalizers"] = json!([]);
            });
        }
    }
}

fn garbage_collect(api: &Api) {
    // Runs on every slow tick over every object of every cluster: read in place, copy only the
    // owner references.
    let mut uids = HashSet::new();
    let mut owned: Vec<(Key, Vec<String>)> = Vec::new();
    api.store.visit(|k, o| {
        uids.insert(s(o, "/metadata/uid").to_string());
        if let Some(refs) = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            owned.push((
                k.clone(),
                refs.iter().map(|r| s(r, "/uid").to_string()).collect(),
            ));
        }
    });
    for (k, refs) in owned {
        if refs.iter().all(|r| !uids.contains(r)) {
            delete(api, &k);
        }
    }
}

// ---------------------------------------------------------------- infrastructure

fn infra_kinds() -> [&'static str; 2] {
    ["GCPCluster", "AWSCluster"]
}

fn infrastructure(world: &World, timers: &mut Timers) {
    let api = &world.management;
    for kind in infra_kinds() {
        let Some(t) = ty(api, INFRA, kind).cloned() else {
            continue;
        };
        let fin = format!("{}.infrastructure.cluster.x-k8s.io", kind.to_lowercase());
        for o in api.store.list(&t.key(), None).0 {
            let k = key_of(&t, &o);
            let id = format!("infra/{}/{}/{}", kind, k.namespace, k.name);
            if deleting(&o) {
                if timers.elapsed(world, &format!("{id}/delete"), delays::INFRA_DELETE) {
                    remove_finalizer(api, &k, &fin);
                }
                continue;
            }
            add_finalizer(api, &k, &fin);
            // CAPG uses a network it does not own only when it exists with its subnets.
            let missing = if kind == "GCPCluster" {
                gcp_network_missing(world, &o)
            } else {
                None
            };
            // Once ready, always ready: timers live in memory and restart with the process.
            let ready = o.pointer("/status/ready").and_then(Value::as_bool) == Some(true)
                || (missing.is_none() && timers.elapsed(world, &id, delays::INFRA));
            let host = endpoint_host(&o, &k);
            if ready
                && o.pointer("/spec/controlPlaneEndpoint/host")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                update(api, &k, |v| {
                    v["spec"]["controlPlaneEndpoint"] = json!({"host": host, "port": 6443});
                });
            }
            let mut status = o.get("status").cloned().unwrap_or_else(|| json!({}));
            status["ready"] = json!(ready);
            let (reason, msg) = match (&missing, ready) {
                (_, true) => ("Provisioning", String::new()),
                (Some(why), false) => ("NetworkNotFound", why.clone()),
                (None, false) => (
                    "Provisioning",
                    "creating network, subnets, firewall rules and the control-plane load balancer"
                        .to_string(),
                ),
            };
            if let Some(why) = &missing
                && !ready
                && s(&o, "/status/conditions/0/reason") != "NetworkNotFound"
            {
                event(api, &o, true, "NetworkNotFound", why);
            }
            status["conditions"] = json!([
                cond1("Ready", ready, reason, &msg),
                cond1("NetworkReady", ready, reason, &msg),
            ]);
            if kind == "AWSCluster" {
                status["initialization"] = json!({"provisioned": ready});
            }
            if ready {
                status["failureDomains"] = if kind == "GCPCluster" {
                    let region = s(&o, "/spec/region");
                    json!({format!("{region}-a"): {"controlPlane": true}, format!("{region}-b"): {"controlPlane": true}})
                } else {
                    let region = s(&o, "/spec/region");
                    json!({format!("{region}a"): {"controlPlane": true}, format!("{region}b"): {"controlPlane": true}})
                };
                if kind == "GCPCluster" {
                    status["network"] = json!({"selfLink": format!("https://www.googleapis.com/compute/v1/projects/{}/global/networks/{}", s(&o, "/spec/project"), s(&o, "/spec/network/name"))});
                }
            }
            set_status(api, &k, status);
        }
    }
}

/// Why CAPG cannot use a GCPCluster's network: the network or one of its subnets does not exist
/// in the simulated project (see [`crate::gcp`]).
fn gcp_network_missing(world: &World, o: &Value) -> Option<String> {
    let subnets: Vec<(String, String)> = o
        .pointer("/spec/network/subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| (s(x, "/name").to_string(), s(x, "/region").to_string()))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let network = match s(o, "/spec/network/name") {
        "" => "default",
        n => n,
    };
    world
        .gcp
        .network_missing(s(o, "/spec/project"), network, &subnets)
}

fn endpoint_host(o: &Value, k: &Key) -> String {
    // Stable pseudo-public address per infra object (documentation range 198.51.100.0/24).
    let h = k
        .name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    let _ = o;
    format!("198.51.100.{}", 1 + h % 250)
}

/// The infrastructure object of a Cluster (key, object), if it exists.
pub(crate) fn cluster_infra(api: &Api, cluster: &Value) -> Option<(Key, Value)> {
    resolve(
        api,
        cluster.pointer("/spec/infrastructureRef")?,
        ns_of(cluster),
    )
}

// ---------------------------------------------------------------- control plane

fn cluster_of(api: &Api, o: &Value) -> Option<Value> {
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

fn infra_ready(infra: Option<&(Key, Value)>) -> bool {
    infra.is_some_and(|(_, v)| v.pointer("/status/ready").and_then(Value::as_bool) == Some(true))
}

fn machine_kind(infra_kind: &str) -> &'static str {
    if infra_kind == "AWSCluster" {
        "AWSMachine"
    } else {
        "GCPMachine"
    }
}

fn new_machine(
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

fn talos_config(machine: &Value, spec: Value) -> Value {
    json!({"apiVersion": format!("{BOOT}/v1alpha3"), "kind": "TalosConfig",
        "metadata": {"name": name_of(machine), "namespace": ns_of(machine),
            "labels": machine.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref(machine, true)]},
        "spec": spec})
}

/// The machines in `all` that `owner` owns (callers list machines once per pass: listing
/// clones every object).
fn owned_machines(all: &[Value], owner: &Value) -> Vec<Value> {
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

fn machine_running(m: &Value) -> bool {
    s(m, "/status/phase") == "Running"
}

fn control_planes(world: &World, timers: &mut Timers, fw: &mesh::Firewalls) {
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

// ---------------------------------------------------------------- machine deployments

fn machine_deployments(world: &World) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "MachineDeployment").cloned() else {
        return;
    };
    let Some(mt) = ty(api, CAPI, "Machine").cloned() else {
        return;
    };
    let all_machines = api.store.list(&mt.key(), None).0;
    for md in api.store.list(&t.key(), None).0 {
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
        let live: Vec<&Value> = machines.iter().filter(|m| !deleting(m)).collect();
        let infra_kind = cluster_infra(api, &cluster)
            .map(|(_, v)| s(&v, "/kind").to_string())
            .unwrap_or_else(|| "GCPCluster".into());
        let version = s(&md, "/spec/template/spec/version").to_string();
        for _ in live.len() as i64..replicas {
            let mname = format!("{}-{}", name_of(&md), short_id());
            let labels = json!({CLUSTER_LABEL: name_of(&cluster), "cluster.x-k8s.io/deployment-name": name_of(&md)});
            let mut m = new_machine(&cluster, &md, &mname, labels, &infra_kind, &version);
            if let Some(b) = md
                .pointer("/spec/template/spec/bootstrap/configRef")
                .cloned()
            {
                m["spec"]["bootstrap"]["configRef"] =
                    json!({"apiGroup": BOOT, "kind": "TalosConfig", "name": mname});
                let _ = b;
            }
            create(api, &key_of(&mt, &m), m);
            if let (Some(ct), Some(stored)) = (
                ty(api, BOOT, "TalosConfig"),
                api.store.get(&Key::new(&mt.key(), ns_of(&md), &mname)),
            ) {
                let tc = talos_config(&stored, json!({"generateType": "worker"}));
                create(api, &key_of(ct, &tc), tc);
            }
        }
        if live.len() as i64 > replicas {
            let mut sorted = live.clone();
            sorted.sort_by_key(|m| s(m, "/metadata/creationTimestamp").to_string());
            for m in sorted.iter().rev().take(live.len() - replicas as usize) {
                delete(api, &key_of(&mt, m));
            }
        }
        let ready = live.iter().filter(|m| machine_ready(m)).count() as i64;
        let running = live.iter().filter(|m| machine_running(m)).count() as i64;
        let available = ready >= replicas;
        set_status(
            api,
            &k,
            json!({
                "replicas": live.len(), "readyReplicas": ready, "availableReplicas": ready, "upToDateReplicas": live.len(),
                "observedGeneration": generation(&md),
                "phase": if running >= replicas && live.len() as i64 == replicas { "Running" } else if (live.len() as i64) < replicas || running < replicas { "ScalingUp" } else { "ScalingDown" },
                "selector": format!("{CLUSTER_LABEL}={},cluster.x-k8s.io/deployment-name={}", name_of(&cluster), name_of(&md)),
                "conditions": [
                    cond("Available", Some(available), if available { "Available" } else { "NotAvailable" },
                        &if available { String::new() } else { format!("{ready} available replicas, at least {replicas} required (spec.replicas)") }, generation(&md)),
                    cond("MachinesReady", Some(ready == live.len() as i64), if ready == live.len() as i64 { "Ready" } else { "NotReady" },
                        &format!("{ready} of {} machines ready", live.len()), generation(&md)),
                ]
            }),
        );
    }
}

fn machine_ready(m: &Value) -> bool {
    m.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
        })
}

// ---------------------------------------------------------------- machines and nodes

fn node_ip(infra: Option<&Value>, index: u32) -> String {
    let cidr = infra.and_then(mesh::node_cidr);
    match cidr {
        Some(ipnet::IpNet::V4(n)) => {
            let base = u32::from(n.network());
            std::net::Ipv4Addr::from(base + 10 + index % 4000).to_string()
        }
        _ => format!("10.250.{}.{}", index / 250, 10 + index % 240),
    }
}

fn machines(world: &World, timers: &mut Timers) {
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

fn providerless(m: &Value) -> bool {
    m.pointer("/spec/providerID")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
}

// ---------------------------------------------------------------- clusters

fn clusters(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "Cluster").cloned() else {
        return;
    };
    // Listed once per pass: listing clones every object.
    let all_mds = list(api, CAPI, "MachineDeployment", None);
    let all_machines = list(api, CAPI, "Machine", None);
    for c in api.store.list(&t.key(), None).0 {
        let k = key_of(&t, &c);
        let wl = format!("{}/{}", k.namespace, k.name);
        let g = generation(&c);
        let infra = cluster_infra(api, &c);
        let cp = c
            .pointer("/spec/controlPlaneRef")
            .and_then(|r| resolve(api, r, &k.namespace));
        let mine = |m: &&Value| ns_of(m) == k.namespace && s(m, "/spec/clusterName") == k.name;
        let mds: Vec<Value> = all_mds.iter().filter(mine).cloned().collect();
        let machines: Vec<Value> = all_machines.iter().filter(mine).cloned().collect();
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
                a.iter()
                    .find(|x| s(x, "/type") == "Available" && s(x, "/status") != "True")
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
        let cp_machines: Vec<&Value> = machines
            .iter()
            .filter(|m| {
                m.pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
                    .is_some()
            })
            .collect();
        let w_machines: Vec<&Value> = machines
            .iter()
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
                Some(cp_init),
                if cp_init {
                    "ProbeSucceeded"
                } else {
                    "ProbeFailed"
                },
                if cp_init {
                    ""
                } else {
                    "the workload cluster API server is not reachable yet"
                },
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

#[allow(clippy::too_many_arguments)]
fn teardown(
    world: &World,
    c: &Value,
    k: &Key,
    infra: Option<(Key, Value)>,
    cp: Option<(Key, Value)>,
    mds: &[Value],
    machines: &[Value],
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
    let workers: Vec<&Value> = machines.iter().filter(is_worker).collect();
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
