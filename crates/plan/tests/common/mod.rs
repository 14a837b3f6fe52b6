//! Fleets for the planner's tests, built from YAML so they pass the spec crate's validation.

#![allow(dead_code)]

use meshfleet_spec::{Cluster, Fleet};

/// The example fleet shipped in `examples/fleet.yaml`.
pub fn example() -> Fleet {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .expect("examples/fleet.yaml");
    meshfleet_spec::parse(&text)
        .expect("the example fleet is valid")
        .fleet
}

/// A valid fleet: `spec_extra` is spliced into `spec` (indented two spaces, e.g. a `mesh:` block),
/// `clusters` are (name, provider, region).
pub fn fleet(spec_extra: &str, clusters: &[(&str, &str, &str)]) -> Fleet {
    let text = fleet_text(spec_extra, clusters);
    match meshfleet_spec::parse(&text) {
        Ok(l) => l.fleet,
        Err(r) => panic!("test fleet is invalid: {:#?}\n{text}", r.errors),
    }
}

/// The text of [`fleet`].
pub fn fleet_text(spec_extra: &str, clusters: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: demo }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  providers: { gcp: { project: my-project }, aws: {} }\n",
    );
    s.push_str(spec_extra);
    if !spec_extra.is_empty() && !spec_extra.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("  clusters:\n");
    for (name, provider, region) in clusters {
        s.push_str(&cluster_yaml(name, provider, region, ""));
    }
    s
}

/// One cluster entry of a `clusters:` list; `extra` adds flow-mapping fields like `meshId: 4`.
pub fn cluster_yaml(name: &str, provider: &str, region: &str, extra: &str) -> String {
    let zone = if provider == "gcp" {
        format!("{region}-b")
    } else {
        format!("{region}a")
    };
    let machine = if provider == "gcp" {
        "n2-standard-2"
    } else {
        "m6i.large"
    };
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "    - {{ name: {name}, provider: {provider}, region: {region}, zones: [{zone}], controlPlane: {{ replicas: 3, machineType: {machine} }}{extra} }}\n"
    )
}

/// A copy of `template` renamed (pins dropped).
pub fn renamed(template: &Cluster, name: &str) -> Cluster {
    let mut c = template.clone();
    c.name = name.to_owned();
    c.mesh_id = None;
    c.network = None;
    c
}
