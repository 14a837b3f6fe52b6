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

use meshfleet_kube::KubeError;
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
/// (kubernetes-sigs/cluster-api:`core/reconcilers/machinedeployment/mdutil/util.go`@v1.14.0
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

/// LIST a kind in `ns`, by name; a kind the management cluster does not serve is empty.
async fn by_name<A: Api>(
    mgmt: &A,
    api_version: &str,
    kind: &str,
    ns: &str,
) -> Result<BTreeMap<String, Value>, KubeError> {
    let items = match mgmt.list(api_version, kind, Some(ns), "").await {
        Err(KubeError::NotServed { .. }) => Vec::new(),
        r => r?,
    };
    Ok(items
        .into_iter()
        .map(|o| (str_at(&o, "/metadata/name").to_string(), o))
        .filter(|(n, _)| !n.is_empty())
        .collect())
}

/// Read what every cluster of `rendered` is in the management cluster (namespace `ns`): one
/// LIST per kind for the whole fleet (a few requests, not a few per cluster).
pub async fn read<A: Api>(
    mgmt: &A,
    ns: &str,
    fleet: &Fleet,
    rendered: &Rendered,
) -> Result<BTreeMap<String, Live>, KubeError> {
    let want_k = Version::parse(&fleet.spec.versions.kubernetes);
    let want_t = Version::parse(&fleet.spec.versions.talos);
    let clusters = by_name(mgmt, objects::CAPI_VERSION, "Cluster", ns).await?;
    let mut owners: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut kinds: Vec<(String, String)> = rendered
        .clusters
        .iter()
        .flat_map(|c| c.objects.iter())
        .filter(|o| {
            matches!(
                str_at(o, "/kind"),
                "TalosControlPlane" | "MachineDeployment"
            )
        })
        .map(|o| {
            (
                str_at(o, "/apiVersion").to_string(),
                str_at(o, "/kind").to_string(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    if rendered.clusters.iter().any(|c| !c.cilium.proxy.is_null()) {
        kinds.push((
            objects::CAAPH_VERSION.to_string(),
            "HelmChartProxy".to_string(),
        ));
    }
    for (av, kind) in &kinds {
        for (n, o) in by_name(mgmt, av, kind, ns).await? {
            owners.insert((kind.clone(), n), o);
        }
    }
    let all_machines = by_name(mgmt, objects::CAPI_VERSION, "Machine", ns).await?;
    let configs = by_name(mgmt, CABPT_VERSION, "TalosConfig", ns).await?;
    let live_of = |o: &Value| {
        owners
            .get(&(
                str_at(o, "/kind").to_string(),
                str_at(o, "/metadata/name").to_string(),
            ))
            .cloned()
    };
    let mut out = BTreeMap::new();
    for c in &rendered.clusters {
        let mut live = Live {
            exists: clusters.contains_key(&c.name),
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
            if let Some(l) = live_of(o) {
                live.objects_differ |= rollout_fields(&l) != rollout_fields(o);
                if str_at(o, "/kind") == "TalosControlPlane" {
                    tcp_live = Some(l);
                }
            }
        }
        if !c.cilium.proxy.is_null()
            && let Some(l) = live_of(&c.cilium.proxy)
        {
            live.objects_differ |= rollout_fields(&l) != rollout_fields(&c.cilium.proxy);
            if let Some(v) = Version::parse(str_at(&l, "/spec/version")) {
                live.running.cilium.push(v);
            }
        }
        for m in all_machines.values().filter(|m| {
            str_at(
                m,
                &format!("/metadata/labels/{}", CAPI_CLUSTER_NAME.replace('/', "~1")),
            ) == c.name
        }) {
            if deleting(m) {
                continue;
            }
            live.machines += 1;
            let k = Version::parse(str_at(m, "/spec/version"));
            let t = configs
                .get(str_at(m, "/spec/bootstrap/configRef/name"))
                .and_then(|tc| Version::parse(str_at(tc, "/spec/talosVersion")));
            if (k.is_some() && k != want_k) || (t.is_some() && t != want_t) {
                live.outdated_machines += 1;
            }
            // Only machines that run constrain the jump: a new machine that never came up
            // (a halted rollout) runs nothing yet.
            if running_phase(m) {
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

/// The same refusal for many clusters (a fleet-wide version change usually is) as one
/// diagnostic naming them, so a 500-cluster fleet gets one error, not 500.
pub fn grouped(ds: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut groups: Vec<(Diagnostic, String, Vec<String>)> = Vec::new();
    for d in ds {
        let Some((name, tail)) = d
            .message
            .strip_prefix("cluster `")
            .and_then(|m| m.split_once("` runs "))
            .map(|(n, t)| (n.to_string(), t.to_string()))
        else {
            groups.push((d, String::new(), Vec::new()));
            continue;
        };
        match groups.iter_mut().find(|(g, t, names)| {
            !names.is_empty() && *t == tail && g.path == d.path && g.hint == d.hint
        }) {
            Some((_, _, names)) => names.push(name),
            None => groups.push((d, tail, vec![name])),
        }
    }
    groups
        .into_iter()
        .map(|(mut d, tail, names)| {
            if names.len() > 1 {
                let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
                let more = names.len() - shown.len();
                let who = if more > 0 {
                    format!("{} and {more} more", shown.join(", "))
                } else {
                    shown.join(", ")
                };
                d.message = format!("clusters {who} run {tail}");
            }
            d
        })
        .collect()
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
    fn the_same_refusal_for_many_clusters_is_one_diagnostic() {
        let d = |n: &str| {
            Diagnostic::error(
                "spec.versions.kubernetes",
                format!("cluster `{n}` runs Kubernetes `v1.34.8`; `v1.36.3` skips `1.35`"),
            )
            .with_hint("h")
        };
        let names: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
        let mut ds: Vec<Diagnostic> = names.iter().map(|n| d(n)).collect();
        ds.push(d("x").with_hint("other"));
        let g = grouped(ds);
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[0].message,
            "clusters `c0`, `c1`, `c2`, `c3`, `c4` and 2 more run Kubernetes `v1.34.8`; `v1.36.3` skips `1.35`"
        );
        assert!(g[1].message.starts_with("cluster `x` runs"));
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
