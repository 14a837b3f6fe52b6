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

mod bootstrap;
mod clusters;
mod control_plane;
mod gc;
mod infrastructure;
mod machine_deployments;
mod machines;
mod namespaces;
mod objects;
pub(crate) mod rollout;
mod teardown;

pub(crate) use bootstrap::machine_talos_config;
use bootstrap::talos_configs;
use clusters::*;
use control_plane::*;
use gc::*;
pub(crate) use infrastructure::*;
use machine_deployments::*;
use machines::*;
use namespaces::*;
pub(crate) use objects::*;
use teardown::*;

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

/// One pass of every reconciler before the API servers answer, when a kept state comes back:
/// its clusters were running when the state was saved, so their agents' metrics, mesh links
/// and workloads must be there for the first request (a real Cilium agent serves its
/// ClusterMesh gauges as long as it runs), not one pass later. The timers it started carry on
/// in [`run`].
pub(crate) async fn first_pass(world: &Arc<World>) -> Timers {
    let w = world.clone();
    tokio::task::spawn_blocking(move || {
        let mut timers = Timers::default();
        reconcile_all(&w, &mut timers, true);
        timers
    })
    .await
    .unwrap_or_default()
}

/// Run every controller until `stop`, from the `timers` of [`first_pass`] (or none).
pub(crate) async fn run(world: Arc<World>, mut stop: watch::Receiver<bool>, mut timers: Timers) {
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
    crate::outage::track(world);
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
    talos_configs(world);
    lap("talosconfig");
    machines(world, timers);
    lap("machines");
    clusters(world, timers);
    lap("clusters");
    crate::caaph::reconcile(world, timers);
    lap("caaph");
    mesh::reconcile(world, &fw);
    lap("mesh");
    crate::workloads::reconcile(world);
    lap("workloads");
}
