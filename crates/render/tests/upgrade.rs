//! What a version change does to the rendered objects: a Talos upgrade reaches machines only
//! through new machine-template names (Cluster API treats infrastructure machine templates as
//! immutable: a change is a new template and a new reference, which triggers the rolling
//! update, kubernetes-sigs/cluster-api:`docs/book/src/tasks/updating-machine-templates.md`@v1.14.0),
//! never through an edit of a template a machine already uses; a Kubernetes upgrade changes the
//! `version` of the TalosControlPlane and of every MachineDeployment template.

mod common;

use std::collections::BTreeMap;

use meshfleet_render::{Rendered, render};
use serde_json::Value;

fn rendered(text: &str) -> Rendered {
    let fleet = common::parse(text);
    let plan = common::plan(&fleet);
    render(&fleet, &plan).expect("render")
}

/// (kind, name) → spec of every template-like object, and the names the owners reference.
fn templates(r: &Rendered) -> BTreeMap<(String, String), Value> {
    r.clusters
        .iter()
        .flat_map(|c| c.objects.iter())
        .filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Template")))
        .map(|o| {
            (
                (
                    o["kind"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                ),
                o["spec"].clone(),
            )
        })
        .collect()
}

fn refs(r: &Rendered) -> Vec<String> {
    let mut out = Vec::new();
    for o in r.clusters.iter().flat_map(|c| c.objects.iter()) {
        for p in [
            "/spec/infrastructureTemplate/name",
            "/spec/template/spec/infrastructureRef/name",
            "/spec/template/spec/bootstrap/configRef/name",
        ] {
            if let Some(n) = o.pointer(p).and_then(Value::as_str) {
                out.push(n.to_string());
            }
        }
    }
    out
}

fn versions(r: &Rendered) -> Vec<(String, String)> {
    r.clusters
        .iter()
        .flat_map(|c| c.objects.iter())
        .filter_map(|o| {
            let v = o
                .pointer("/spec/version")
                .or_else(|| o.pointer("/spec/template/spec/version"))?;
            Some((o["kind"].as_str()?.to_string(), v.as_str()?.to_string()))
        })
        .filter(|(k, _)| k == "TalosControlPlane" || k == "MachineDeployment")
        .collect()
}

#[test]
fn a_talos_upgrade_renders_new_machine_templates_and_points_every_owner_at_them() {
    let old_text = common::example_fleet_text();
    let old = rendered(&old_text);
    // v1.12.11 → v1.13.9 keeps Kubernetes v1.35 inside both lines' support.
    let new = rendered(&old_text.replacen("talos: v1.13.9", "talos: v1.12.11", 1));
    let (a, b) = (templates(&old), templates(&new));
    // No name survives with a different spec: a used template is never edited in place.
    for (key, spec) in &a {
        if let Some(other) = b.get(key) {
            assert_eq!(spec, other, "template {key:?} changed in place");
        }
    }
    // Every machine template (GCP and AWS) and every worker config template is new.
    for kind in [
        "GCPMachineTemplate",
        "AWSMachineTemplate",
        "TalosConfigTemplate",
    ] {
        let old_names: Vec<_> = a.keys().filter(|(k, _)| k == kind).collect();
        assert!(!old_names.is_empty(), "no {kind} in the example");
        for k in old_names {
            assert!(
                !b.contains_key(k),
                "{k:?} kept its name across a Talos upgrade"
            );
        }
    }
    // The owners reference only templates of the new render.
    for n in refs(&new) {
        assert!(
            b.keys().any(|(_, name)| *name == n),
            "`{n}` is referenced but not rendered"
        );
        assert!(
            !a.keys().any(|(_, name)| *name == n),
            "`{n}` still references an old template"
        );
    }
    // The control plane's Talos config follows.
    let tcp = new.clusters[0]
        .objects
        .iter()
        .find(|o| o["kind"] == "TalosControlPlane")
        .unwrap();
    assert_eq!(
        tcp["spec"]["controlPlaneConfig"]["controlplane"]["talosVersion"],
        "v1.12.11"
    );
}

#[test]
fn a_kubernetes_upgrade_changes_the_control_plane_and_deployment_versions() {
    let old_text = common::example_fleet_text();
    let new = rendered(&old_text.replacen("kubernetes: v1.35.4", "kubernetes: v1.36.3", 1));
    let vs = versions(&new);
    assert!(vs.iter().any(|(k, _)| k == "TalosControlPlane"));
    assert!(vs.iter().any(|(k, _)| k == "MachineDeployment"));
    assert!(vs.iter().all(|(_, v)| v == "v1.36.3"), "{vs:?}");
    let (a, b) = (templates(&rendered(&old_text)), templates(&new));
    for (key, spec) in &a {
        if let Some(other) = b.get(key) {
            assert_eq!(spec, other, "template {key:?} changed in place");
        }
    }
}
