//! Fleet upgrades in waves: what each cluster runs now, which clusters a change rolls (replaces
//! machines or upgrades Cilium) and in which wave, whether the version jump is allowed, and the
//! health gate a rolled cluster must pass before the next one starts.
//!
//! Where "from" comes from: the live management cluster, not the lock. The lock records only
//! allocations (mesh IDs, CIDRs) and is written by `plan` before anything runs, so it cannot
//! tell what a cluster actually runs; and after a halted rollout one cluster may run old and
//! new machines side by side, which only the Machines themselves show. So the versions are
//! read from the Machines that run (`spec.version`, and the Talos version of each Machine's
//! TalosConfig), falling back to the TalosControlPlane when no Machine runs yet, and from the
//! Cilium HelmChartProxy's `spec.version`. All of it is read before the first write, so an
//! invalid jump stops `up` with nothing touched.

use std::collections::BTreeMap;

use meshfleet_kube::{KubeError, ObjectRef};
use meshfleet_render::{ClusterObjects, Rendered};
use meshfleet_spec::rollout::{Running, Wave, check_upgrade};
use meshfleet_spec::{Diagnostic, Fleet, Version};
use serde_json::Value;

use crate::api::Api;
use crate::objects;

/// Cluster API's label naming a Machine's (or TalosConfig's) cluster.
const CAPI_CLUSTER_NAME: &str = "cluster.x-k8s.io/cluster-name";
/// The Talos bootstrap provider's API version (the per-machine TalosConfig).
const CABPT_VERSION: &str = meshfleet_render::api::CABPT_V1ALPHA3;

/// What one cluster of the fleet is in the management cluster, read before `up` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// The Cluster object exists (the cluster is not new).
    pub exists: bool,
    /// The versions its running machines and its Cilium release use.
    pub running: Running,
    /// The live control plane, a MachineDeployment or the Cilium proxy differs from the render
    /// in a field that replaces machines (`version`, a template) or upgrades Cilium.
    pub objects_differ: bool,
    /// Machines (not being deleted) whose Kubernetes or Talos version is not the file's: a
    /// rollout that has not finished (it may have halted).
    pub outdated_machines: usize,
    /// Machines (not being deleted) of the cluster.
    pub machines: usize,
}

impl Live {
    /// Whether `up` rolls this cluster (in its wave, under `maxParallel`, behind a health
    /// gate) rather than applying its changes at once.
    pub fn rolls(&self) -> bool {
        self.exists && (self.objects_differ || self.outdated_machines > 0)
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

fn running_phase(m: &Value) -> bool {
    str_at(m, "/status/phase") == "Running"
}

/// The fields of a live object that make its controller replace machines or upgrade Cilium,
/// as the controllers compare them: CACPPT rolls on `version`, `infrastructureTemplate` and
/// `controlPlaneConfig` (siderolabs/cluster-api-control-plane-provider-talos:
/// `controllers/controlplane.go`@v0.5.12 `MachinesNeedingRollout`); a MachineDeployment on
/// its template's `version`, `infrastructureRef` and bootstrap `configRef`
/// (kubernetes-sigs/cluster-api:`internal/controllers/machinedeployment/mdutil/util.go`@v1.14.0
/// `MachineTemplateUpToDate`); CAAPH upgrades the release on the proxy's `version`.
fn rollout_fields(o: &Value) -> Vec<Value> {
    let paths: &[&str] = match str_at(o, "/kind") {
        "TalosControlPlane" => &[
            "/spec/version",
            "/spec/infrastructureTemplate/name",
            "/spec/controlPlaneConfig",
        ],
        "MachineDeployment" => &[
            "/spec/template/spec/version",
            "/spec/template/spec/infrastructureRef/name",
            "/spec/template/spec/bootstrap/configRef/name",
        ],
        "HelmChartProxy" => &["/spec/version"],
        _ => &[],
    };
    paths
        .iter()
        .map(|p| o.pointer(p).cloned().unwrap_or(Value::Null))
        .collect()
}

/// The number of machines the render asks for: control-plane replicas plus every
/// MachineDeployment's.
pub fn expected_machines(c: &ClusterObjects) -> usize {
    c.objects
        .iter()
        .filter(|o| {
            matches!(
                str_at(o, "/kind"),
                "TalosControlPlane" | "MachineDeployment"
            )
        })
        .filter_map(|o| o.pointer("/spec/replicas").and_then(Value::as_u64))
        .sum::<u64>() as usize
}

/// The machines of one cluster with the Talos version of each (from its TalosConfig).
pub async fn machines<A: Api>(
    mgmt: &A,
    ns: &str,
    cluster: &str,
) -> Result<Vec<(Value, Option<String>)>, KubeError> {
    let sel = format!("{CAPI_CLUSTER_NAME}={cluster}");
    let ms = match mgmt
        .list(objects::CAPI_VERSION, "Machine", Some(ns), &sel)
        .await
    {
        Err(KubeError::NotServed { .. }) => Vec::new(),
        r => r?,
    };
    let configs = match mgmt
        .list(CABPT_VERSION, "TalosConfig", Some(ns), &sel)
        .await
    {
        Err(KubeError::NotServed { .. }) => Vec::new(),
        r => r?,
    };
    let talos_of = |m: &Value| {
        let name = str_at(m, "/spec/bootstrap/configRef/name");
        configs
            .iter()
            .find(|c| str_at(c, "/metadata/name") == name)
            .map(|c| str_at(c, "/spec/talosVersion").to_string())
            .filter(|s| !s.is_empty())
    };
    Ok(ms
        .into_iter()
        .map(|m| {
            let t = talos_of(&m);
            (m, t)
        })
        .collect())
}

async fn get_opt<A: Api>(mgmt: &A, o: &Value) -> Result<Option<Value>, KubeError> {
    match ObjectRef::of(o) {
        Ok(r) => match mgmt.get(&r).await {
            Err(KubeError::NotServed { .. }) => Ok(None),
            other => other,
        },
        Err(_) => Ok(None),
    }
}

/// Read what every cluster of `rendered` is in the management cluster (namespace `ns`).
pub async fn read<A: Api>(
    mgmt: &A,
    ns: &str,
    fleet: &Fleet,
    rendered: &Rendered,
) -> Result<BTreeMap<String, Live>, KubeError> {
    let want_k = Version::parse(&fleet.spec.versions.kubernetes);
    let want_t = Version::parse(&fleet.spec.versions.talos);
    let mut out = BTreeMap::new();
    for c in &rendered.clusters {
        let exists = match mgmt.get(&objects::cluster_ref(ns, &c.name)).await {
            Ok(c) => c.is_some(),
            Err(KubeError::NotServed { .. }) => false,
            Err(e) => return Err(e),
        };
        let mut live = Live {
            exists,
            ..Live::default()
        };
        if !live.exists {
            out.insert(c.name.clone(), live);
            continue;
        }
        let mut tcp_live = None;
        for o in c.objects.iter().filter(|o| {
            matches!(
                str_at(o, "/kind"),
                "TalosControlPlane" | "MachineDeployment"
            )
        }) {
            if let Some(l) = get_opt(mgmt, o).await? {
                live.objects_differ |= rollout_fields(&l) != rollout_fields(o);
                if str_at(o, "/kind") == "TalosControlPlane" {
                    tcp_live = Some(l);
                }
            }
        }
        if !c.cilium.proxy.is_null()
            && let Some(l) = get_opt(mgmt, &c.cilium.proxy).await?
        {
            live.objects_differ |= rollout_fields(&l) != rollout_fields(&c.cilium.proxy);
            if let Some(v) = Version::parse(str_at(&l, "/spec/version")) {
                live.running.cilium.push(v);
            }
        }
        for (m, talos) in machines(mgmt, ns, &c.name).await? {
            if deleting(&m) {
                continue;
            }
            live.machines += 1;
            let k = Version::parse(str_at(&m, "/spec/version"));
            let t = talos.as_deref().and_then(Version::parse);
            if (k.is_some() && k != want_k) || (t.is_some() && t != want_t) {
                live.outdated_machines += 1;
            }
            // Only machines that run constrain the jump: a new machine that never came up
            // (a halted rollout) runs nothing yet.
            if running_phase(&m) {
                live.running.kubernetes.extend(k);
                live.running.talos.extend(t);
            }
        }
        if let Some(tcp) = &tcp_live {
            if live.running.kubernetes.is_empty() {
                live.running
                    .kubernetes
                    .extend(Version::parse(str_at(tcp, "/spec/version")));
            }
            if live.running.talos.is_empty() {
                live.running.talos.extend(Version::parse(str_at(
                    tcp,
                    "/spec/controlPlaneConfig/controlplane/talosVersion",
                )));
            }
        }
        for l in [
            &mut live.running.kubernetes,
            &mut live.running.talos,
            &mut live.running.cilium,
        ] {
            l.sort();
            l.dedup();
        }
        out.insert(c.name.clone(), live);
    }
    Ok(out)
}

/// Check every existing cluster's version jump; the diagnostics point at `spec.versions`.
pub fn check_paths(fleet: &Fleet, live: &BTreeMap<String, Live>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for c in &fleet.spec.clusters {
        if let Some(l) = live.get(&c.name).filter(|l| l.exists) {
            out.extend(check_upgrade(&c.name, &l.running, &fleet.spec.versions));
        }
    }
    out
}

/// How `up` orders the clusters: those whose change applies at once, and the waves of those
/// it rolls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// Clusters converged at once (new, or changed without replacing machines).
    pub at_once: Vec<String>,
    /// The rolled clusters by wave, in rollout order (empty waves left out).
    pub waves: Vec<Wave>,
}

/// Split the fleet into what applies at once and what rolls, by wave.
pub fn order(fleet: &Fleet, live: &BTreeMap<String, Live>) -> Order {
    let rolls = |n: &str| live.get(n).is_some_and(Live::rolls);
    let mut o = Order::default();
    for w in meshfleet_spec::rollout::assign_waves(fleet) {
        let (r, now): (Vec<String>, Vec<String>) = w.clusters.into_iter().partition(|n| rolls(n));
        o.at_once.extend(now);
        if !r.is_empty() {
            o.waves.push(Wave {
                index: w.index,
                clusters: r,
            });
        }
    }
    // Keep fleet-file order for what applies at once.
    let pos = |n: &String| fleet.spec.clusters.iter().position(|c| &c.name == n);
    o.at_once.sort_by_key(pos);
    o
}

/// Describe wave `index` of the fleet's rollout for people (`{}` for everything left).
pub fn describe_wave(fleet: &Fleet, index: usize) -> String {
    match fleet.spec.rollout.waves.get(index) {
        Some(s) if s.is_empty() => "{}".into(),
        Some(s) => {
            let mut parts: Vec<String> = s
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.extend(s.match_expressions.iter().map(|e| {
                if e.values.is_empty() {
                    format!("{:?} {}", e.operator, e.key)
                } else {
                    format!("{} {:?} ({})", e.key, e.operator, e.values.join(", "))
                }
            }));
            parts.join(", ")
        }
        None => "clusters no wave selects".into(),
    }
}

/// Where a rolled cluster stands against the health gate: `None` when its machines all run the
/// file's versions and are ready and as many as the render asks for; otherwise what is still
/// wrong, and `(done, total)` machines at the new version.
pub async fn machines_gate<A: Api>(
    mgmt: &A,
    ns: &str,
    fleet: &Fleet,
    cluster: &ClusterObjects,
) -> Result<(Option<String>, usize, usize), KubeError> {
    let want_k = &fleet.spec.versions.kubernetes;
    let want_t = &fleet.spec.versions.talos;
    let expected = expected_machines(cluster);
    let ms = machines(mgmt, ns, &cluster.name).await?;
    let live: Vec<&(Value, Option<String>)> = ms.iter().filter(|(m, _)| !deleting(m)).collect();
    let ready = |m: &Value| {
        running_phase(m)
            && m.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
                })
    };
    let current = |(m, t): &&(Value, Option<String>)| {
        str_at(m, "/spec/version") == want_k && t.as_deref().is_none_or(|t| t == want_t)
    };
    let done = live.iter().filter(|x| current(x) && ready(&x.0)).count();
    let outdated = live.iter().filter(|x| !current(x)).count();
    let deleting_n = ms.len() - live.len();
    // The most telling machine that is not up: its first False condition with a message.
    let stuck = live.iter().filter(|(m, _)| !ready(m)).find_map(|(m, _)| {
        m.pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .find(|c| {
                str_at(c, "/status") == "False"
                    && !str_at(c, "/message").is_empty()
                    && !matches!(str_at(c, "/type"), "Ready" | "Available")
            })
            .map(|c| {
                format!(
                    "Machine `{}` {} is False: {}",
                    str_at(m, "/metadata/name"),
                    str_at(c, "/type"),
                    str_at(c, "/message")
                )
            })
    });
    let why = if outdated > 0 {
        Some(format!(
            "{outdated} of {} machines still run the old version (want Kubernetes `{want_k}`, Talos `{want_t}`)",
            live.len()
        ))
    } else if deleting_n > 0 || live.len() != expected {
        Some(format!(
            "{} machines, {expected} wanted ({deleting_n} being deleted)",
            live.len()
        ))
    } else if done < live.len() {
        Some(format!("{done} of {} machines ready", live.len()))
    } else {
        None
    };
    let why = why.map(|w| match &stuck {
        Some(s) => format!("{w}; {s}"),
        None => w,
    });
    Ok((why, done, expected.max(live.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_fields_ignore_replicas_and_labels() {
        let a = json!({"kind": "MachineDeployment", "spec": {"replicas": 2, "template": {"spec": {"version": "v1.35.4",
            "infrastructureRef": {"name": "t-1"}, "bootstrap": {"configRef": {"name": "b-1"}}}}}});
        let mut b = a.clone();
        b["spec"]["replicas"] = json!(5);
        b["metadata"] = json!({"labels": {"x": "y"}});
        assert_eq!(rollout_fields(&a), rollout_fields(&b));
        b["spec"]["template"]["spec"]["infrastructureRef"]["name"] = json!("t-2");
        assert_ne!(rollout_fields(&a), rollout_fields(&b));
    }

    #[test]
    fn a_new_cluster_never_rolls_and_an_unfinished_rollout_does() {
        assert!(!Live::default().rolls());
        let l = Live {
            exists: true,
            outdated_machines: 1,
            ..Live::default()
        };
        assert!(l.rolls());
        let l = Live {
            exists: true,
            ..Live::default()
        };
        assert!(!l.rolls());
    }
}
