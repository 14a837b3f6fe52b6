//! The rolled half of `up`: the clusters whose change replaces machines or upgrades Cilium go
//! wave by wave, at most `maxParallel` at a time, each held to its health gate; the first that
//! fails halts the rollout and nothing not yet started is touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use meshfleet_kube::ObjectRef;
use meshfleet_render::ClusterObjects;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{Deadline, Outcome, POLL, Shared, converge_inner};
use crate::api::Api;
use crate::rollout::{self, Live, Order};
use crate::{Error, mesh};

/// What the wave-by-wave part of `up` ended with.
pub(super) struct Rolled<A> {
    pub(super) outcomes: Vec<Outcome<A>>,
    pub(super) halted: Option<String>,
    pub(super) untouched: Vec<String>,
}

/// Roll the clusters of `order.waves` wave by wave, at most `maxParallel` at a time, each
/// behind its health gate. The first cluster that fails its gate halts the rollout: no
/// cluster not yet started is touched (those already in flight finish their own gate).
pub(super) async fn roll_waves<A: Api>(
    shared: Arc<Shared<A>>,
    clusters: Vec<ClusterObjects>,
    order: Order,
    live: BTreeMap<String, Live>,
) -> Rolled<A> {
    let p = shared.progress.clone();
    let ro = shared.fleet.spec.rollout.clone();
    let mut out = Rolled {
        outcomes: Vec::new(),
        halted: None,
        untouched: Vec::new(),
    };
    let n = order.waves.len();
    let live = Arc::new(live);
    for (i, wave) in order.waves.iter().enumerate() {
        if out.halted.is_some() {
            out.untouched.extend(wave.clusters.iter().cloned());
            continue;
        }
        let label = format!(
            "wave {}/{n} ({})",
            i + 1,
            rollout::describe_wave(&shared.fleet, wave.index)
        );
        p.info(&format!(
            "rollout {label}: {} (at most {} at a time)",
            wave.clusters.join(", "),
            ro.max_parallel.max(1)
        ));
        let sem = Arc::new(Semaphore::new(ro.max_parallel.max(1) as usize));
        let halted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        let mut skipped = Vec::new();
        // Clusters start in file order as slots free up; a task records a failure before it
        // gives its slot back, so no cluster starts after one has failed.
        for name in &wave.clusters {
            let Some(c) = clusters.iter().find(|c| &c.name == name).cloned() else {
                continue;
            };
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            if halted.load(std::sync::atomic::Ordering::SeqCst) {
                skipped.push(c.name);
                continue;
            }
            let (shared, halted, label, live) =
                (shared.clone(), halted.clone(), label.clone(), live.clone());
            set.spawn(async move {
                let o = converge_rolling(&shared, &c, &label, live.get(&c.name)).await;
                if o.failure.is_some() {
                    halted.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                drop(permit);
                o
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(o) => {
                    match &o.failure {
                        Some(f) => {
                            if out.halted.is_none() {
                                out.halted = Some(o.cluster.clone());
                            }
                            p.finish(&o.cluster, false, f);
                        }
                        None if !shared.opts.mesh => p.finish(&o.cluster, true, "ready, rolled"),
                        None => {}
                    }
                    out.outcomes.push(o);
                }
                Err(e) => out.outcomes.push(Outcome {
                    cluster: "(rollout)".into(),
                    failure: Some(format!("a rolled cluster's task panicked: {e}")),
                    endpoints: None,
                    workload: None,
                }),
            }
        }
        // Keep rollout order for the report.
        skipped.sort_by_key(|n| wave.clusters.iter().position(|c| c == n));
        out.untouched.extend(skipped);
        if out.halted.is_none() && i + 1 < n && !ro.pause().is_zero() {
            p.info(&format!(
                "rollout {label} healthy; pausing {} before the next wave",
                ro.pause_between_waves.as_deref().unwrap_or("")
            ));
            tokio::time::sleep(ro.pause()).await;
        }
    }
    if let Some(h) = &out.halted {
        let untouched = if out.untouched.is_empty() {
            "none".to_string()
        } else {
            out.untouched
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let prev = live.get(h).map(|l| {
            let first =
                |v: &[meshfleet_spec::Version], pre: &str| v.first().map(|x| format!("{pre}{x}"));
            [
                first(&l.running.kubernetes, "v").map(|v| format!("kubernetes: {v}")),
                first(&l.running.talos, "v").map(|v| format!("talos: {v}")),
                first(&l.running.cilium, "").map(|v| format!("cilium: {v}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        });
        for o in out.outcomes.iter_mut().filter(|o| &o.cluster == h) {
            if let Some(f) = &mut o.failure {
                *f = format!(
                    "{f}\n  the rollout halted at `{h}`; clusters not touched: {untouched}\n  hint: fix the cause and run `meshfleet up` again to resume from `{h}`; to roll `{h}` back, put its previous versions back under `spec.versions` ({}) and run `meshfleet up`",
                    prev.clone().unwrap_or_default()
                );
            }
        }
        p.warn(&format!(
            "rollout halted at `{h}`; not touched: {untouched}"
        ));
    }
    out
}

/// Converge one rolled cluster, then hold it to the health gate until `healthTimeout`.
async fn converge_rolling<A: Api>(
    shared: &Shared<A>,
    cluster: &ClusterObjects,
    wave: &str,
    live: Option<&Live>,
) -> Outcome<A> {
    let name = cluster.name.clone();
    let deadline = Deadline {
        start: Instant::now(),
        timeout: shared.fleet.spec.rollout.timeout(),
    };
    if let Some(l) = live {
        shared.progress.step(
            &name,
            &format!(
                "rolling ({wave}): {} machines to replace",
                l.outdated_machines.max(usize::from(l.objects_differ))
            ),
        );
    }
    let r = match converge_inner(shared, cluster, &deadline).await {
        Ok((endpoints, workload)) => health_gate(shared, cluster, wave, &deadline, &workload)
            .await
            .map(|()| (endpoints, workload)),
        Err(e) => Err(e),
    };
    Outcome::of(name, r)
}

/// The health gate of a rolled cluster: control plane and workers at the file's versions and
/// ready, the Cilium release at its new generation with every agent ready, and its mesh links
/// to the peers already known back up.
async fn health_gate<A: Api>(
    shared: &Shared<A>,
    cluster: &ClusterObjects,
    wave: &str,
    deadline: &Deadline,
    workload: &A,
) -> Result<(), Error> {
    let p = &shared.progress;
    let name = cluster.name.as_str();
    let k8s = &shared.fleet.spec.versions.kubernetes;
    loop {
        let (mut why, done, total) =
            rollout::machines_gate(&shared.mgmt, &shared.opts.fleet, &shared.fleet, cluster)
                .await?;
        if why.is_none() && !cluster.cilium.proxy.is_null() {
            let pref = ObjectRef::of(&cluster.cilium.proxy)?;
            let proxy = shared.snap().proxies.get(&pref.name).cloned();
            let generation = |p: &Value, path: &str| p.pointer(path).and_then(Value::as_i64);
            let current = proxy.as_ref().is_some_and(|p| {
                match (
                    generation(p, "/metadata/generation"),
                    generation(p, "/status/observedGeneration"),
                ) {
                    (Some(g), Some(o)) => o >= g,
                    _ => true,
                }
            });
            match mesh::cilium_ready(proxy.as_ref(), workload).await {
                Ok(true) if current => {}
                Err(e) if !e.is_transient() => return Err(e.into()),
                _ => why = Some("the Cilium agents are not ready at the new release".into()),
            }
        }
        if why.is_none() && shared.opts.mesh {
            let want: Vec<&String> = shared
                .opts
                .peers
                .get(name)
                .into_iter()
                .flatten()
                .filter(|x| shared.known.contains_key(*x))
                .collect();
            if !want.is_empty() {
                let view = mesh::view(workload).await.unwrap_or_default();
                let missing: Vec<&str> = want
                    .iter()
                    .filter(|x| !view.connected.contains(x))
                    .map(|x| x.as_str())
                    .collect();
                if !missing.is_empty() {
                    why = Some(format!("mesh links not back up: {}", missing.join(", ")));
                }
            }
        }
        let Some(w) = why else {
            p.step(
                name,
                &format!("rolled ({wave}): {done} of {total} machines at `{k8s}`"),
            );
            return Ok(());
        };
        if deadline.passed() {
            return Err(Error::Other(format!(
                "not healthy after {}s ({}): {w}",
                deadline.timeout.as_secs(),
                shared.fleet.spec.rollout.health_timeout
            )));
        }
        p.step(
            name,
            &format!("rolling ({wave}): {done} of {total} machines at `{k8s}`; waiting: {w}"),
        );
        tokio::time::sleep(POLL * 3).await;
    }
}
