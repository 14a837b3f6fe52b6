//! The Cluster API add-on provider for Helm, simulated: a HelmChartProxy selects Clusters by
//! label, gets one HelmReleaseProxy per selected Cluster, and each release is "installed" into
//! the workload cluster once its control plane is initialized. A chart named `cilium` has
//! Cilium's effects: `cilium-config`, the `clustermesh-apiserver` Service, the
//! `cilium-clustermesh` Secret with one entry per configured peer, Ready nodes and one agent Pod
//! per node. Cilium's chart refuses peers without an address as the real one does
//! ([`cilium_values_refused`]); the cloud controller manager charts of [`crate::ccm::CHARTS`]
//! run their Pod.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::controllers::{
    ADDONS, CAPI, CLUSTER_LABEL, Timers, create, delays, delete, deleting, key_of, list, name_of,
    ns_of, owner_ref, s, set_status, ty, update,
};
use crate::select::LabelSelector;
use crate::store::{Key, now_rfc3339};
use crate::{Api, World};

/// Render the subset of Go templates CAAPH value templates use for cluster data:
/// `{{ .Cluster.a.b }}` (arrays joined with commas), `{{ .ControlPlane.… }}`.
pub fn render_template(tpl: &str, cluster: &Value, cp: &Value) -> String {
    let mut out = String::new();
    let mut rest = tpl;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let expr = rest[i + 2..i + j]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let first = expr.split('|').next().unwrap_or("").trim();
        let (root, path) = if let Some(p) = first.strip_prefix(".Cluster.") {
            (cluster, p)
        } else if let Some(p) = first.strip_prefix(".ControlPlane.") {
            (cp, p)
        } else {
            (&Value::Null, "")
        };
        let mut cur = Some(root);
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = cur.and_then(|c| c.get(seg));
        }
        let text = match cur {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        out.push_str(&text);
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

/// A HelmChartProxy's `clusterSelector`, compiled once per pass: it is matched against every
/// Cluster, and compiling it for each (511 proxies × 511 Clusters at Cilium's maximum) made the
/// pass quadratic in allocations.
struct ClusterSelector {
    /// `matchLabels`, then each `matchExpressions` entry with a known operator.
    all: Vec<LabelSelector>,
    /// No expression failed to parse (one that does matches nothing).
    valid: bool,
    /// Whether the selector names anything: an empty selector selects nothing, as CAAPH does.
    nonempty: bool,
}

impl ClusterSelector {
    fn compile(sel: &Value) -> Self {
        let ml = sel
            .get("matchLabels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut all = vec![LabelSelector::from_match_labels(&ml)];
        let mut valid = true;
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = s(e, "/key");
            let vals: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let expr = match s(e, "/operator") {
                "In" => format!("{key} in ({})", vals.join(",")),
                "NotIn" => format!("{key} notin ({})", vals.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            match LabelSelector::parse(&expr) {
                Ok(l) => all.push(l),
                Err(_) => valid = false,
            }
        }
        let nonempty = !ml.is_empty()
            || sel
                .get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        Self {
            all,
            valid,
            nonempty,
        }
    }

    fn matches(&self, cluster: &Value) -> bool {
        self.valid && self.nonempty && self.all.iter().all(|l| l.matches(cluster))
    }
}

fn cond1(t: &str, ok: bool, reason: &str, msg: &str) -> Value {
    crate::controllers::cond1(t, ok, reason, msg)
}

/// One pass over HelmChartProxies and HelmReleaseProxies.
pub(crate) fn reconcile(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let (Some(hcp_t), Some(hrp_t), Some(ct)) = (
        ty(api, ADDONS, "HelmChartProxy").cloned(),
        ty(api, ADDONS, "HelmReleaseProxy").cloned(),
        ty(api, CAPI, "Cluster").cloned(),
    ) else {
        return;
    };
    let all_clusters = api.store.list_shared(&ct.key(), None);
    let all_hrps = api.store.list_shared(&hrp_t.key(), None);
    // Releases by their proxy's uid, so each proxy finds its own without a scan of every
    // release (a scan per proxy was quadratic in the fleet).
    let mut by_owner: HashMap<&str, Vec<&Value>> = HashMap::new();
    for h in &all_hrps {
        for r in h
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            by_owner.entry(s(r, "/uid")).or_default().push(&**h);
        }
    }
    let rv = |v: &Value| s(v, "/metadata/resourceVersion").to_string();
    for hcp in api.store.list_shared(&hcp_t.key(), None) {
        if deleting(&hcp) {
            continue;
        }
        let ns = ns_of(&hcp).to_string();
        let uid = s(&hcp, "/metadata/uid").to_string();
        let owned: &[&Value] = by_owner.get(uid.as_str()).map_or(&[], Vec::as_slice);
        let sel =
            ClusterSelector::compile(hcp.pointer("/spec/clusterSelector").unwrap_or(&Value::Null));
        let clusters: Vec<&Value> = all_clusters
            .iter()
            .map(|c| &**c)
            .filter(|c| ns_of(c) == ns && !deleting(c) && sel.matches(c))
            .collect();
        let mut wanted = Vec::new();
        for c in &clusters {
            let name = format!("{}-{}", name_of(&hcp), name_of(c));
            let name: String = name
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string();
            wanted.push(name.clone());
            let cp = c
                .pointer("/spec/controlPlaneRef")
                .and_then(|r| crate::controllers::resolve(api, r, &ns))
                .map(|x| x.1)
                .unwrap_or(json!({}));
            let k = Key::new(&hrp_t.key(), &ns, &name);
            // The release's spec is a function of the proxy, the Cluster and its control plane
            // alone: when none of them and not the release itself changed since the pass that
            // found the release up to date, it still is. Rendering every release's values (each
            // with every mesh peer) on every pass was quadratic in the fleet.
            let generation = owned
                .iter()
                .find(|h| name_of(h) == name)
                .and_then(|h| h.pointer("/metadata/generation"))
                .and_then(Value::as_i64);
            let inputs = RenderInputs {
                proxy: rv(&hcp),
                cluster: rv(c),
                control_plane: rv(&cp),
                release: generation,
            };
            if world
                .caaph
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .get(&k)
                == Some(&inputs)
            {
                continue;
            }
            let values = render_template(s(&hcp, "/spec/valuesTemplate"), c, &cp);
            let mut spec = json!({
                "clusterRef": {"apiVersion": s(c, "/apiVersion"), "kind": "Cluster", "name": name_of(c), "namespace": ns},
                "chartName": s(&hcp, "/spec/chartName"), "repoURL": s(&hcp, "/spec/repoURL"),
                "namespace": hcp.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("default"),
                "releaseName": hcp.pointer("/spec/releaseName").and_then(Value::as_str).unwrap_or(s(&hcp, "/spec/chartName")),
                "values": values,
            });
            if let Some(v) = hcp.pointer("/spec/version") {
                spec["version"] = v.clone();
            }
            if let Some(o) = hcp.pointer("/spec/options") {
                spec["options"] = o.clone();
            }
            let hrp = json!({"apiVersion": format!("{ADDONS}/v1alpha1"), "kind": "HelmReleaseProxy",
                "metadata": {"name": name, "namespace": ns, "labels": {CLUSTER_LABEL: name_of(c),
                    "helmreleaseproxy.addons.cluster.x-k8s.io/name": name_of(&hcp)},
                    "ownerReferences": [owner_ref(&hcp, true)]},
                "spec": spec});
            // Compared in place: copying every release's values to find them unchanged made
            // the pass quadratic in the fleet.
            match api
                .store
                .read(&k, |cur| cur.get("spec") == Some(&hrp["spec"]))
            {
                None => create(api, &k, hrp),
                Some(false) => update(api, &k, |v| v["spec"] = hrp["spec"].clone()),
                Some(true) => {
                    // Up to date as it stands: remembered until one of the inputs changes.
                    world
                        .caaph
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .1
                        .insert(k, inputs);
                }
            }
        }
        let wanted_set: std::collections::HashSet<&str> =
            wanted.iter().map(String::as_str).collect();
        // Releases for Clusters no longer selected are uninstalled.
        for hrp in owned.iter().filter(|h| ns_of(h) == ns) {
            if !wanted_set.contains(name_of(hrp)) {
                delete(api, &key_of(&hrp_t, hrp));
            }
        }
        // Status only: releases created in this pass are counted in the next one.
        let releases: Vec<&Value> = owned
            .iter()
            .copied()
            .filter(|h| ns_of(h) == ns && wanted_set.contains(name_of(h)))
            .collect();
        let ready = releases
            .iter()
            .filter(|h| s(h, "/status/status") == "deployed")
            .count();
        let all = ready == wanted.len();
        set_status(
            api,
            &key_of(&hcp_t, &hcp),
            json!({
                "observedGeneration": hcp.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
                "matchingClusters": clusters.iter().map(|c| json!({"apiVersion": s(c, "/apiVersion"), "kind": "Cluster", "name": name_of(c), "namespace": ns})).collect::<Vec<_>>(),
                "conditions": [
                    cond1("Ready", all, "HelmReleaseProxiesNotReady", &format!("{ready} of {} releases deployed", wanted.len())),
                    cond1("HelmReleaseProxiesReady", all, "HelmReleaseProxiesNotReady", &format!("{ready} of {} releases deployed", wanted.len())),
                    cond1("HelmReleaseProxySpecsUpToDate", true, "", ""),
                ]
            }),
        );
    }
    let hrps = api.store.list_shared(&hrp_t.key(), None);
    for hrp in &hrps {
        if deleting(hrp) {
            continue;
        }
        release(world, timers, hrp, &key_of(&hrp_t, hrp), &ct.key());
    }
    // Releases gone from the store leave the cache.
    let live: std::collections::HashSet<Key> = hrps.iter().map(|h| key_of(&hrp_t, h)).collect();
    {
        let mut cache = world.caaph.lock().unwrap_or_else(|e| e.into_inner());
        cache.0.retain(|k, _| live.contains(k));
        cache.1.retain(|k, _| live.contains(k));
    }
    // Nodes of every cluster running Cilium are Ready (the CNI is up).
    for w in world.workloads() {
        let cni = w
            .store
            .get(&Key::new("/configmaps", "kube-system", "cilium-config"))
            .is_some();
        for n in w.store.list("/nodes", None).0 {
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
                });
            if ready != cni {
                let now = now_rfc3339();
                update(&w, &Key::new("/nodes", "", name_of(&n)), |v| {
                    v["status"]["conditions"] =
                        json!([crate::workload::ready_condition(cni, &now)]);
                });
            }
        }
        crate::workload::sync_agents(&w, cni);
        if let Some((ns, name)) = w.name.split_once('/')
            && let Some(c) = api.store.get(&Key::new(&ct.key(), ns, name))
            && let Some((_, infra)) = crate::controllers::cluster_infra(api, &c)
        {
            crate::ccm::reconcile_services(&w, s(&infra, "/kind"), s(&infra, "/spec/region"));
        }
    }
}

/// A HelmReleaseProxy's v1beta2 conditions, as CAAPH v0.6.4 sets them
/// (kubernetes-sigs/cluster-api-addon-provider-helm:`controllers/helmreleaseproxy/helmreleaseproxy_controller.go`@v0.6.4):
/// `ClusterAvailable` and `HelmReleaseReady`, and `Ready` summarising both with Cluster API's
/// default merge strategy (kubernetes-sigs/cluster-api:`util/conditions/merge_strategies.go`@v1.14.0:
/// one issue gives its reason, the message lists `* <Type>: <message>`).
fn release_conditions(hrp: &Value, cluster: (bool, &str), helm: (bool, &str, &str)) -> Value {
    let g = hrp
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let parts = [
        (
            "ClusterAvailable",
            cluster.0,
            if cluster.0 { "Available" } else { cluster.1 },
            "",
        ),
        ("HelmReleaseReady", helm.0, helm.1, helm.2),
    ];
    let issues: Vec<_> = parts.iter().filter(|p| !p.1).collect();
    let (ready_reason, ready_msg) = match issues.as_slice() {
        [] => ("InfoReported".to_string(), String::new()),
        [one] => (one.2.to_string(), summary_line(one)),
        many => (
            "IssuesReported".to_string(),
            many.iter()
                .map(|p| summary_line(p))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    };
    let mut conds = vec![crate::controllers::cond(
        "Ready",
        Some(issues.is_empty()),
        &ready_reason,
        &ready_msg,
        g,
    )];
    for (t, ok, reason, msg) in parts {
        conds.push(crate::controllers::cond(t, Some(ok), reason, msg, g));
    }
    json!(conds)
}

fn summary_line(p: &(&str, bool, &str, &str)) -> String {
    if p.3.is_empty() {
        format!("* {}: {}", p.0, p.2)
    } else {
        format!("* {}: {}", p.0, p.3)
    }
}

/// What CAAPH's pass needs of one release's values, parsed once per values: the pass reads every
/// release on every run, and parsing the YAML of every Cilium release with every mesh peer each
/// time made the pass quadratic in the fleet (511 releases of 510 peers each).
pub(crate) struct ParsedValues {
    /// The values the entry was made from: the HelmReleaseProxy's uid and generation (its spec
    /// changes only with a new generation) and the length of `spec.values`.
    from: (String, i64, usize),
    /// The values, or the YAML error.
    values: Result<Value, String>,
    /// Why Cilium's chart refuses them ([`cilium_values_refused`]).
    refused: Option<String>,
    /// What Cilium's chart would install with them.
    cilium: Option<CiliumObjects>,
}

/// [`ParsedValues`] by HelmReleaseProxy, and what each release's spec was last found up to
/// date with ([`RenderInputs`]).
#[derive(Default)]
pub(crate) struct ValuesCache(
    std::collections::HashMap<Key, std::sync::Arc<ParsedValues>>,
    HashMap<Key, RenderInputs>,
);

/// What a HelmReleaseProxy's spec is rendered from: the resourceVersions of its proxy, Cluster
/// and control plane, and the release's own generation (a spec edited by someone else has a new
/// one, and is put right on the next pass, as CAAPH does).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RenderInputs {
    proxy: String,
    cluster: String,
    control_plane: String,
    release: Option<i64>,
}

/// `hrp`'s parsed values, from the cache when its spec has not changed since.
fn parsed(world: &World, k: &Key, hrp: &Value) -> std::sync::Arc<ParsedValues> {
    let text = s(hrp, "/spec/values");
    let from = (
        s(hrp, "/metadata/uid").to_string(),
        hrp.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        text.len(),
    );
    let mut cache = world.caaph.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.0.get(k)
        && p.from == from
    {
        return p.clone();
    }
    let values = match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(json!({})),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    };
    let cilium_chart = s(hrp, "/spec/chartName") == "cilium";
    let (refused, cilium) = match &values {
        Ok(v) if cilium_chart => match cilium_values_refused(v) {
            Some(why) => (Some(why), None),
            None => (None, Some(cilium_objects(v, s(hrp, "/spec/namespace")))),
        },
        _ => (None, None),
    };
    let p = std::sync::Arc::new(ParsedValues {
        from,
        values,
        refused,
        cilium,
    });
    cache.0.insert(k.clone(), p.clone());
    p
}

/// Install (or refuse) one HelmReleaseProxy's release in its workload cluster.
fn release(world: &World, timers: &mut Timers, hrp: &Value, k: &Key, cluster_res: &str) {
    let api = &world.management;
    let ns = ns_of(hrp).to_string();
    let cname = s(hrp, "/spec/clusterRef/name").to_string();
    let cluster = api.store.get(&Key::new(cluster_res, &ns, &cname));
    let initialized = cluster.as_ref().is_some_and(|c| {
        c.pointer("/status/initialization/controlPlaneInitialized")
            .and_then(Value::as_bool)
            == Some(true)
    });
    let gen_now = hrp
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let id = format!("helm/{ns}/{}/{gen_now}", name_of(hrp));
    let keep = |st: &mut Value| {
        for f in ["status", "revision", "releaseName"] {
            if let Some(v) = hrp.pointer(&format!("/status/{f}")) {
                st[f] = v.clone();
            }
        }
    };
    let Some(w) = world
        .workload(&format!("{ns}/{cname}"))
        .filter(|_| initialized)
    else {
        // CAAPH waits for `status.initialization.controlPlaneInitialized` with an empty message.
        let mut st = json!({"conditions": release_conditions(hrp, (false, "NotAvailable"),
            (false, "PreparingToHelmInstall", "Preparing to to install Helm chart"))});
        keep(&mut st);
        set_status(api, k, st);
        return;
    };
    let installed = s(hrp, "/status/status") == "deployed"
        && hrp
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            == Some(gen_now);
    if !installed && !timers.elapsed(world, &id, delays::HELM) {
        let mut st = json!({"conditions": release_conditions(hrp, (true, ""),
            (false, "HelmReleasePending", "Helm release is in a pending state: pending-install"))});
        keep(&mut st);
        st["status"] = json!("pending-install");
        set_status(api, k, st);
        return;
    }
    let revision = hrp
        .pointer("/status/revision")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let failed = |why: &str| {
        // Helm returns the release it could not render with status `failed` and the error;
        // nothing was stored in the cluster, so the next reconcile installs again
        // (controller-runtime requeues a reconcile that returned an error).
        json!({"status": "failed", "revision": revision.max(1), "observedGeneration": gen_now,
            "conditions": release_conditions(hrp, (true, ""), (false, "HelmInstallOrUpgradeFailed", why))})
    };
    let entry = parsed(world, k, hrp);
    let values = match &entry.values {
        Ok(v) => v,
        Err(e) => {
            set_status(api, k, failed(&format!("failed to parse values: {e}")));
            return;
        }
    };
    let chart = s(hrp, "/spec/chartName");
    let release_ns = s(hrp, "/spec/namespace");
    if chart == "cilium" {
        if let Some(why) = &entry.refused {
            set_status(api, k, failed(why));
            return;
        }
        if let Some(objs) = &entry.cilium {
            install_cilium(&w, objs);
        }
    } else if let Some(ccm) = crate::ccm::by_chart(chart) {
        crate::ccm::install(&w, ccm, s(hrp, "/spec/releaseName"), release_ns, values);
    }
    let deployed_gen = hrp
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let revision = if deployed_gen == Some(gen_now) && installed {
        revision
    } else {
        revision + 1
    };
    set_status(
        api,
        k,
        json!({"status": "deployed", "revision": revision, "observedGeneration": gen_now,
            "releaseName": s(hrp, "/spec/releaseName"),
            "conditions": release_conditions(hrp, (true, ""), (true, "Ready", ""))}),
    );
}

/// Why Cilium 1.19.5's chart refuses these values at render time, if it does: every enabled
/// entry of `clustermesh.config.clusters` (map or list form) needs non-empty `ips` or
/// `address`, else the `required` in `clustermesh-config-generate-etcd-cfg`
/// (`templates/clustermesh-config/_helpers.tpl`) fails. With `clustermesh.useAPIServer` and
/// `clustermesh.apiserver.kvstoremesh.enabled` (the default) it runs from
/// `kvstoremesh-secret.yaml`, otherwise from `clustermesh-secret.yaml`; only
/// `clustermesh.config.enabled: false` or `enabled: false` on the entry avoids it. The message is
/// the one Helm's engine gives (checked with the real chart and Helm v4 engine, see
/// `shared/charts/SOURCES.md`).
pub fn cilium_values_refused(values: &Value) -> Option<String> {
    if get(values, "/clustermesh/config/enabled").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let entries: Vec<&Value> = match get(values, "/clustermesh/config/clusters") {
        Some(Value::Object(m)) => m.values().collect(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Some(format!(
                "values don't meet the specifications of the schema(s) in the following chart(s):\ncilium:\n- at '/clustermesh/config/clusters': got {}, want array or object",
                match other {
                    Value::String(_) => "string",
                    Value::Bool(_) => "boolean",
                    _ => "number",
                }
            ));
        }
    };
    let truthy = |v: Option<&Value>| match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Null) | None => false,
    };
    let missing = entries.iter().any(|e| {
        e.get("enabled") != Some(&Value::Bool(false))
            && !truthy(e.get("ips"))
            && !truthy(e.get("address"))
    });
    if !missing {
        return None;
    }
    let kvstoremesh = get(values, "/clustermesh/useAPIServer").and_then(Value::as_bool)
        == Some(true)
        && get(values, "/clustermesh/apiserver/kvstoremesh/enabled").and_then(Value::as_bool)
            != Some(false);
    let at = if kvstoremesh {
        "cilium/templates/clustermesh-config/kvstoremesh-secret.yaml:19:18"
    } else {
        "cilium/templates/clustermesh-config/clustermesh-secret.yaml:22:18"
    };
    Some(format!(
        "execution error at ({at}): missing clustermesh.apiserver.config.clusters.address"
    ))
}

fn get<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    v.pointer(p)
}

/// What Cilium's chart puts into a workload cluster that the simulator models, computed once per
/// release values ([`ValuesCache`]): building the `cilium-clustermesh` Secret of every peer for
/// every release on every pass made the pass quadratic in the fleet.
pub(crate) struct CiliumObjects {
    ns: String,
    config: Value,
    service: Option<Value>,
    mesh_secret: Option<Value>,
}

fn cilium_objects(values: &Value, release_ns: &str) -> CiliumObjects {
    let ns = if release_ns.is_empty() {
        "kube-system"
    } else {
        release_ns
    };
    let name = get(values, "/cluster/name")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let id = get(values, "/cluster/id")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let max = get(values, "/clustermesh/maxConnectedClusters")
        .and_then(Value::as_i64)
        .unwrap_or(255);
    let routing = get(values, "/routingMode")
        .and_then(Value::as_str)
        .unwrap_or("tunnel");
    let tunnel = get(values, "/tunnelProtocol")
        .and_then(Value::as_str)
        .unwrap_or("vxlan");
    let str_of = |p: &str, d: &str| match get(values, p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => d.to_string(),
        Some(v) => v.to_string(),
    };
    let data = json!({
        "cluster-name": name, "cluster-id": id.to_string(), "max-connected-clusters": max.to_string(),
        "routing-mode": routing, "tunnel-protocol": tunnel,
        "ipam": str_of("/ipam/mode", "cluster-pool"),
        "kube-proxy-replacement": str_of("/kubeProxyReplacement", "false"),
        "k8s-service-host": str_of("/k8sServiceHost", ""), "k8s-service-port": str_of("/k8sServicePort", ""),
        "enable-ipv4": "true", "enable-wireguard": (get(values, "/encryption/type").and_then(Value::as_str) == Some("wireguard") && get(values, "/encryption/enabled").and_then(Value::as_bool) == Some(true)).to_string(),
        "cgroup-root": str_of("/cgroup/hostRoot", "/run/cilium/cgroupv2"),
        // templates/cilium-configmap.yaml of the 1.19.5 chart.
        "clustermesh-cache-ttl": str_of("/clustermesh/cacheTTL", "0s"),
        "clustermesh-enable-mcs-api": (get(values, "/clustermesh/mcsapi/enabled").and_then(Value::as_bool) == Some(true)
            || get(values, "/clustermesh/enableMCSAPISupport").and_then(Value::as_bool) == Some(true)).to_string(),
        "policy-default-local-cluster": str_of("/clustermesh/policyDefaultLocalCluster", "true"),
    });
    let labels =
        json!({"app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/managed-by": "Helm"});
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": ns, "labels": labels}, "data": data});
    let mut service = None;
    if get(values, "/clustermesh/useAPIServer").and_then(Value::as_bool) == Some(true) {
        let svc_type = get(values, "/clustermesh/apiserver/service/type")
            .and_then(Value::as_str)
            .unwrap_or("NodePort")
            .to_string();
        let node_port = get(values, "/clustermesh/apiserver/service/nodePort")
            .and_then(Value::as_i64)
            .unwrap_or(32379);
        let mut port =
            json!({"name": "apiserv", "port": 2379, "targetPort": 2379, "protocol": "TCP"});
        if svc_type != "ClusterIP" {
            port["nodePort"] = json!(node_port);
        }
        service = Some(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "clustermesh-apiserver", "namespace": ns, "labels": {"k8s-app": "clustermesh-apiserver", "app.kubernetes.io/part-of": "cilium"}},
            "spec": {"type": svc_type, "selector": {"k8s-app": "clustermesh-apiserver"}, "ports": [port], "clusterIP": format!("10.96.0.{}", 10 + id % 200)},
            "status": {"loadBalancer": {}}}));
    }
    let mut mesh_secret = None;
    if get(values, "/clustermesh/config/enabled").and_then(Value::as_bool) == Some(true) {
        use base64::Engine;
        let domain = get(values, "/clustermesh/config/domain")
            .and_then(Value::as_str)
            .unwrap_or("mesh.cilium.io");
        let mut peers: Vec<(String, Value)> = Vec::new();
        match get(values, "/clustermesh/config/clusters") {
            Some(Value::Object(m)) => peers.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
            Some(Value::Array(a)) => {
                peers.extend(a.iter().map(|v| (s(v, "/name").to_string(), v.clone())))
            }
            _ => {}
        }
        let mut data = serde_json::Map::new();
        for (peer, cfg) in peers
            .into_iter()
            .filter(|(p, _)| !p.is_empty() && *p != name)
        {
            let port = cfg.get("port").and_then(Value::as_i64).unwrap_or(2379);
            let host = cfg
                .get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{peer}.{domain}"));
            let text = format!(
                "endpoints:\n- https://{host}:{port}\ntrusted-ca-file: /var/lib/cilium/clustermesh/common-etcd-client-ca.crt\nkey-file: /var/lib/cilium/clustermesh/common-etcd-client.key\ncert-file: /var/lib/cilium/clustermesh/common-etcd-client.crt\n"
            );
            data.insert(
                peer,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
        mesh_secret = Some(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cilium-clustermesh", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "cilium"}}, "data": data}),
        );
    }
    CiliumObjects {
        ns: ns.to_string(),
        config,
        service,
        mesh_secret,
    }
}

/// Write what Cilium's chart renders into the workload cluster, changing only what differs
/// (looked at in place, so a pass over installed releases copies nothing).
fn install_cilium(w: &Api, objs: &CiliumObjects) {
    let ns = objs.ns.as_str();
    let absent = |k: &Key| w.store.read(k, |_| ()).is_none();
    let ck = Key::new("/configmaps", ns, "cilium-config");
    if absent(&ck) {
        create(w, &ck, objs.config.clone());
    }
    let data = &objs.config["data"];
    if w.store.read(&ck, |v| v.get("data") == Some(data)) == Some(false) {
        update(w, &ck, |v| v["data"] = data.clone());
    }
    if let Some(svc) = &objs.service {
        // A LoadBalancer gets its ingress from the cloud's service controller, not from the
        // chart ([`crate::ccm::reconcile_services`]).
        let sk = Key::new("/services", ns, "clustermesh-apiserver");
        if absent(&sk) {
            create(w, &sk, svc.clone());
        }
        update(w, &sk, |v| {
            if v["spec"]["type"] != svc["spec"]["type"] {
                v["status"] = svc["status"].clone();
            }
            v["spec"]["type"] = svc["spec"]["type"].clone();
            v["spec"]["ports"] = svc["spec"]["ports"].clone();
        });
    }
    if let Some(sec) = &objs.mesh_secret {
        let sk = Key::new("/secrets", ns, "cilium-clustermesh");
        if absent(&sk) {
            create(w, &sk, sec.clone());
        }
        let data = &sec["data"];
        if w.store.read(&sk, |v| v.get("data") == Some(data)) == Some(false) {
            update(w, &sk, |v| v["data"] = data.clone());
        }
    }
    let _ = list;
}
