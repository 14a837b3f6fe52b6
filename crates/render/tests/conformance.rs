//! Every rendered object against the upstream schema of its kind, with unknown fields rejected
//! the way the API server's strict field validation rejects them; Cilium values against the
//! chart's schema; Talos patches against the Talos schema of the fleet's line.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use meshfleet_render::{Rendered, render};
use serde_json::{Value, json};

/// One API version of a CRD.
struct CrdVersion {
    served: bool,
    schema: Value,
}

/// (group, kind) → version → schema.
type Crds = BTreeMap<(String, String), BTreeMap<String, CrdVersion>>;

/// Make an OpenAPI schema strict: every object schema that lists `properties`, does not
/// preserve unknown fields and says nothing about `additionalProperties` gets
/// `additionalProperties: false` — what strict server-side field validation enforces.
fn strictify(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let preserves = m
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if m.contains_key("properties") && !preserves && !m.contains_key("additionalProperties")
            {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in m.iter_mut() {
                strictify(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strictify),
        _ => {}
    }
}

fn yaml_value(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

fn load_crds(dir: &Path) -> Crds {
    let mut crds = Crds::new();
    let mut stack = vec![dir.join("crds")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read crds dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                // The pre-release CABPT copy is kept for reference; the providers meshfleet
                // targets are the released ones.
                if !path.ends_with("v0.7.0-alpha.2") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read crd");
            let crd = yaml_value(&text, &path.display().to_string());
            let group = crd["spec"]["group"].as_str().expect("group").to_owned();
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("kind")
                .to_owned();
            let versions = crds.entry((group, kind)).or_default();
            for v in crd["spec"]["versions"].as_array().expect("versions") {
                let mut schema = v["schema"]["openAPIV3Schema"].clone();
                strictify(&mut schema);
                versions.insert(
                    v["name"].as_str().expect("name").to_owned(),
                    CrdVersion {
                        served: v["served"].as_bool().unwrap_or(false),
                        schema,
                    },
                );
            }
        }
    }
    assert!(
        crds.len() >= 10,
        "expected the CRDs of CAPI, CAPG, CAPA, CABPT, CACPPT, CAAPH"
    );
    crds
}

fn errors_of(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect()
}

/// Validate one Kubernetes object; returns the problems found.
fn check_object(crds: &Crds, obj: &Value) -> Vec<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let label = format!("{kind} `{name}` ({api_version})");
    let Some((group, version)) = api_version.split_once('/') else {
        // Core API objects: only the fleet Namespace is expected here.
        return if api_version == "v1" && kind == "Namespace" {
            Vec::new()
        } else {
            vec![format!("{label}: unexpected core object")]
        };
    };
    let Some(versions) = crds.get(&(group.to_owned(), kind.to_owned())) else {
        return vec![format!("{label}: no CRD for this group and kind")];
    };
    let Some(v) = versions.get(version) else {
        return vec![format!("{label}: the CRD has no version `{version}`")];
    };
    if !v.served {
        return vec![format!("{label}: version `{version}` is not served")];
    }
    errors_of(&v.schema, obj)
        .into_iter()
        .map(|e| format!("{label}: {e}"))
        .collect()
}

fn check_cilium(dir: &Path, rendered: &Rendered) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("cilium/values.schema.json")).expect("schema");
    let mut schema: Value = serde_json::from_str(&text).expect("json");
    strictify(&mut schema);
    let mut problems = Vec::new();
    for f in rendered
        .files
        .iter()
        .filter(|f| f.path.ends_with("/cilium-values.yaml"))
    {
        let values = yaml_value(&f.contents, &f.path);
        problems.extend(
            errors_of(&schema, &values)
                .into_iter()
                .map(|e| format!("{}: {e}", f.path)),
        );
    }
    problems
}

/// The `$defs` entry a Talos document is an instance of.
fn talos_def(schema: &Value, doc: &Value) -> Option<String> {
    let Some(kind) = doc.get("kind").and_then(Value::as_str) else {
        return Some("v1alpha1.Config".to_owned());
    };
    schema["$defs"].as_object()?.iter().find_map(|(name, def)| {
        let kinds = def["properties"]["kind"]["enum"].as_array()?;
        kinds.iter().any(|k| k == kind).then(|| name.clone())
    })
}

fn check_talos(dir: &Path, rendered: &Rendered, multidoc: bool) -> Vec<String> {
    let file = if multidoc {
        "talos/config.schema.json"
    } else {
        "talos/config.schema.v1.13.json"
    };
    let text = std::fs::read_to_string(dir.join(file)).expect("talos schema");
    let root: Value = serde_json::from_str(&text).expect("json");
    let mut problems = Vec::new();
    let mut seen = 0;
    for f in rendered
        .files
        .iter()
        .filter(|f| f.path.ends_with(".patch.yaml"))
    {
        for doc in yaml_docs(&f.contents, &f.path) {
            seen += 1;
            let Some(def) = talos_def(&root, &doc) else {
                problems.push(format!(
                    "{}: no document kind `{}` in {file}",
                    f.path, doc["kind"]
                ));
                continue;
            };
            if doc.get("$patch").is_some() {
                // A delete directive removes a generated document; it is not itself a config
                // document. Its kind must exist, and nothing but the selector may be in it.
                let keys: Vec<&String> = doc
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                if doc["$patch"] != "delete" || keys.len() != 3 {
                    problems.push(format!("{}: malformed delete directive {doc}", f.path));
                }
                continue;
            }
            // Against the root (a oneOf over every kind), as Talos' own validation does…
            for e in errors_of(&root, &doc) {
                problems.push(format!("{} [{def}]: {e}", f.path));
            }
            // …and against the document's own definition, for errors that name the field.
            let mut one = root.clone();
            if let Some(m) = one.as_object_mut() {
                m.remove("oneOf");
                m.insert("$ref".into(), json!(format!("#/$defs/{def}")));
            }
            for e in errors_of(&one, &doc) {
                problems.push(format!("{} [{def}]: {e}", f.path));
            }
        }
    }
    assert!(seen > 0, "no Talos patch documents rendered");
    problems
}

/// The patches embedded in TalosControlPlane/TalosConfigTemplate are the patch files' documents.
fn check_embedding(rendered: &Rendered) -> Vec<String> {
    let mut problems = Vec::new();
    let file = |p: &str| {
        rendered
            .files
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.contents.clone())
            .unwrap_or_default()
    };
    for c in &rendered.clusters {
        let cp_file = yaml_docs(
            &file(&format!("{}/talos-controlplane.patch.yaml", c.name)),
            "cp",
        );
        let worker_file = yaml_docs(&file(&format!("{}/talos-worker.patch.yaml", c.name)), "w");
        for obj in &c.objects {
            let patches = match obj["kind"].as_str() {
                Some("TalosControlPlane") => (
                    &obj["spec"]["controlPlaneConfig"]["controlplane"]["strategicPatches"],
                    &cp_file,
                ),
                Some("TalosConfigTemplate") => (
                    &obj["spec"]["template"]["spec"]["strategicPatches"],
                    &worker_file,
                ),
                _ => continue,
            };
            let embedded: Vec<Value> = patches
                .0
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|s| yaml_docs(s.as_str().unwrap_or_default(), "embedded"))
                        .collect()
                })
                .unwrap_or_default();
            if &embedded != patches.1 {
                problems.push(format!(
                    "{}: embedded patches differ from the patch file",
                    c.name
                ));
            }
        }
    }
    // Every proxy in `fleet/` is one of the clusters' add-ons, and its values are that add-on's.
    let proxies: Vec<&Value> = rendered
        .fleet_objects
        .iter()
        .filter(|o| o["kind"] == "HelmChartProxy")
        .collect();
    let mut expected = 0;
    for c in &rendered.clusters {
        let cilium_file = file(&format!("{}/cilium-values.yaml", c.name));
        if yaml_value(&cilium_file, "cilium-values.yaml") != c.cilium.values {
            problems.push(format!(
                "{}: Cilium values data differ from the file",
                c.name
            ));
        }
        let releases = std::iter::once((&c.cilium.proxy, &c.cilium.values))
            .chain(c.addons.iter().map(|a| (&a.proxy, &a.values)));
        for (proxy, values) in releases {
            expected += 1;
            if !proxies.contains(&proxy) {
                problems.push(format!(
                    "{}: add-on proxy {} is not in fleet_objects",
                    c.name, proxy["metadata"]["name"]
                ));
            }
            let text = proxy["spec"]["valuesTemplate"].as_str().unwrap_or_default();
            if &yaml_value(text, "valuesTemplate") != values {
                problems.push(format!(
                    "{}: proxy {} values differ from its data",
                    c.name, proxy["metadata"]["name"]
                ));
            }
        }
        if c.cilium.proxy["spec"]["valuesTemplate"].as_str() != Some(cilium_file.as_str()) {
            problems.push(format!(
                "{}: HelmChartProxy values differ from cilium-values.yaml",
                c.name
            ));
        }
    }
    if expected != proxies.len() {
        problems.push(format!(
            "{} proxies in fleet_objects, {expected} add-ons on the clusters",
            proxies.len()
        ));
    }
    problems
}

/// Render a fleet and check everything; panics with every problem at once.
fn conform(name: &str, fleet_text: &str) -> Option<Rendered> {
    let dir = common::schema_dir()?;
    let crds = load_crds(&dir);
    let fleet = common::parse(fleet_text);
    let plan = common::plan(&fleet);
    let rendered = render(&fleet, &plan).expect("render");
    // The v1alpha1 form must validate against the Talos v1.13 schema whatever the fleet's
    // Talos line (CABPT v0.6.12 decodes with machinery v1.13); the multi-document form against
    // the newest schema (v1.15).
    let multidoc = fleet.spec.talos.patch_format == meshfleet_spec::PatchFormat::MultiDocument;

    let mut problems = Vec::new();
    let mut kinds = BTreeMap::<String, usize>::new();
    for obj in rendered.all_objects() {
        *kinds
            .entry(obj["kind"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        problems.extend(check_object(&crds, obj));
    }
    // The YAML files are the same objects: parse them back and check those too.
    for f in rendered
        .files
        .iter()
        .filter(|f| f.path.ends_with("/cluster.yaml") || f.path.starts_with("fleet/"))
    {
        for obj in yaml_docs(&f.contents, &f.path) {
            problems.extend(
                check_object(&crds, &obj)
                    .into_iter()
                    .map(|p| format!("{}: {p}", f.path)),
            );
        }
    }
    problems.extend(check_cilium(&dir, &rendered));
    problems.extend(check_talos(&dir, &rendered, multidoc));
    problems.extend(check_embedding(&rendered));
    assert!(
        problems.is_empty(),
        "{name}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("{name}: conformant: {kinds:?}");
    Some(rendered)
}

fn variant(replacements: &[(&str, &str)]) -> String {
    let mut text = common::example_fleet_text();
    for (from, to) in replacements {
        assert!(text.contains(from), "example fleet has no `{from}`");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn example_fleet_conforms() {
    if let Some(r) = conform("example", &common::example_fleet_text()) {
        // Both clouds, the fleet objects and both prerequisite files are there.
        let kinds: Vec<&str> = r.all_objects().filter_map(|o| o["kind"].as_str()).collect();
        for k in [
            "Namespace",
            "HelmChartProxy",
            "Cluster",
            "GCPCluster",
            "GCPMachineTemplate",
            "AWSCluster",
            "AWSMachineTemplate",
            "TalosControlPlane",
            "TalosConfigTemplate",
            "MachineDeployment",
            "MachineHealthCheck",
        ] {
            assert!(kinds.contains(&k), "no {k} rendered");
        }
    }
}

#[test]
fn encryption_geneve_loadbalancer_variant_conforms() {
    conform(
        "wireguard+geneve+LoadBalancer",
        &common::aws_fleet_text(
            "apiserverService: LoadBalancer, tunnelProtocol: geneve, encryption: wireguard",
        ),
    );
}

#[test]
fn wireguard_geneve_nodeport_variant_conforms() {
    conform(
        "wireguard+geneve+NodePort",
        &variant(&[
            ("tunnelProtocol: vxlan", "tunnelProtocol: geneve"),
            ("encryption: none", "encryption: wireguard"),
        ]),
    );
}

#[test]
fn ipsec_native_routing_variant_conforms() {
    conform(
        "ipsec+native",
        &variant(&[
            ("routing: tunnel", "routing: native"),
            ("encryption: none", "encryption: ipsec"),
        ]),
    );
}

#[test]
fn mesh_disabled_variant_conforms() {
    conform("mesh off", &variant(&[("enabled: true", "enabled: false")]));
}

#[test]
fn talos_1_14_fleet_conforms() {
    conform(
        "talos 1.14",
        &variant(&[("talos: v1.13.9", "talos: v1.14.1")]),
    );
}

#[test]
fn talos_1_14_with_every_mesh_option_conforms() {
    conform(
        "talos 1.14 + wireguard + geneve",
        &variant(&[
            ("talos: v1.13.9", "talos: v1.14.1"),
            ("tunnelProtocol: vxlan", "tunnelProtocol: geneve"),
            ("encryption: none", "encryption: wireguard"),
        ]),
    );
}

/// The multi-document switch: one document per concern, each valid against the v1.15 schema.
#[test]
fn talos_multi_document_switch_conforms_to_the_newest_schema() {
    let text = variant(&[
        ("talos: v1.13.9", "talos: v1.14.1"),
        (
            "  providers:\n",
            "  talos: { patchFormat: multiDocument }\n  providers:\n",
        ),
    ]);
    let Some(r) = conform("talos 1.14 multi-document", &text) else {
        return;
    };
    let cp = r
        .files
        .iter()
        .find(|f| f.path == "gcp-euw1/talos-controlplane.patch.yaml")
        .expect("patch file");
    for kind in [
        "KubeNetworkConfig",
        "KubeProxyConfig",
        "KubePrismConfig",
        "KubeAdmissionControlConfig",
        "KubeAuthenticationConfig",
        "KubeTalosAPIAccessConfig",
    ] {
        assert!(cp.contents.contains(&format!("kind: {kind}")), "no {kind}");
    }
    assert!(cp.contents.contains("externalCloudProvider"));
}

/// Talos 1.13 and 1.14 fleets get v1alpha1 documents only (no `kind`), with the cloud
/// provider on.
#[test]
fn talos_1_13_and_1_14_fleets_get_v1alpha1_patches_only() {
    for talos in ["v1.13.9", "v1.14.1"] {
        let fleet = common::parse(&variant(&[("talos: v1.13.9", &format!("talos: {talos}"))]));
        let r = render(&fleet, &common::plan(&fleet)).expect("render");
        for f in r.files.iter().filter(|f| f.path.ends_with(".patch.yaml")) {
            let docs = yaml_docs(&f.contents, &f.path);
            assert_eq!(docs.len(), 1, "{talos} {}", f.path);
            assert!(docs[0].get("kind").is_none(), "{talos} {}", f.path);
            assert_eq!(
                docs[0]["cluster"]["externalCloudProvider"]["enabled"],
                json!(true),
                "{talos} {}",
                f.path
            );
        }
    }
}

/// The values `cilium_proxy_with_peers` gives, with every peer named, are Cilium values the
/// schema accepts, in both endpoint forms.
#[test]
fn values_with_peers_conform() {
    let Some(dir) = common::schema_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("cilium/values.schema.json")).expect("schema");
    let mut schema: Value = serde_json::from_str(&text).expect("json");
    strictify(&mut schema);
    for (fleet_text, lb) in [
        (common::example_fleet_text(), false),
        (
            common::aws_fleet_text("apiserverService: LoadBalancer"),
            true,
        ),
    ] {
        let fleet = common::parse(&fleet_text);
        let plan = common::plan(&fleet);
        for c in &fleet.spec.clusters {
            let peers = common::peer_endpoints(&plan, &c.name, lb);
            assert!(!peers.is_empty());
            let proxy = meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, &c.name, &peers)
                .expect("proxy");
            let values = yaml_value(
                proxy["spec"]["valuesTemplate"].as_str().expect("values"),
                "values",
            );
            let errors = errors_of(&schema, &values);
            assert!(errors.is_empty(), "{}: {errors:?}", c.name);
            let named = values["clustermesh"]["config"]["clusters"]
                .as_object()
                .expect("peers");
            assert_eq!(named.len(), peers.len());
        }
    }
}

#[test]
fn large_fleet_conforms() {
    conform("100 clusters", &common::large_fleet_text(100, 255));
}

/// The schema check itself must reject what the API server rejects, or the tests above prove
/// nothing: an unknown field, a version that is not served, a wrong type.
#[test]
fn strict_validation_rejects_bad_objects() {
    let Some(dir) = common::schema_dir() else {
        return;
    };
    let crds = load_crds(&dir);
    let fleet = common::parse(&common::example_fleet_text());
    let rendered = render(&fleet, &common::plan(&fleet)).expect("render");
    let find = |kind: &str| {
        rendered
            .all_objects()
            .find(|o| o["kind"] == kind)
            .cloned()
            .expect("kind rendered")
    };

    let mut unknown = find("GCPCluster");
    unknown["spec"]["network"]["firewall"]["firewallRules"][0]["sourceRange"] =
        json!(["1.2.3.4/32"]);
    assert!(
        !check_object(&crds, &unknown).is_empty(),
        "unknown field accepted"
    );

    let mut old = find("AWSCluster");
    old["apiVersion"] = json!("infrastructure.cluster.x-k8s.io/v1beta1");
    let p = check_object(&crds, &old);
    assert!(p.iter().any(|e| e.contains("not served")), "{p:?}");

    let mut mhc = find("MachineHealthCheck");
    mhc["apiVersion"] = json!("cluster.x-k8s.io/v1alpha4");
    assert!(
        !check_object(&crds, &mhc).is_empty(),
        "v1alpha4 MachineHealthCheck accepted"
    );

    let mut typed = find("Cluster");
    typed["spec"]["clusterNetwork"]["pods"]["cidrBlocks"] = json!("10.0.0.0/16");
    assert!(
        !check_object(&crds, &typed).is_empty(),
        "wrong type accepted"
    );

    // Preserve-unknown-fields subtrees stay open (e.g. a CRD's free-form values).
    let mut schema = json!({"type": "object", "properties": {"a": {"type": "object",
        "x-kubernetes-preserve-unknown-fields": true, "properties": {"b": {}}}}});
    strictify(&mut schema);
    assert!(errors_of(&schema, &json!({"a": {"c": 1}})).is_empty());
    assert!(!errors_of(&schema, &json!({"z": 1})).is_empty());
}

#[test]
fn talos_schema_check_rejects_legacy_keys_on_1_14() {
    let Some(dir) = common::schema_dir() else {
        return;
    };
    let fleet = common::parse(&common::example_fleet_text());
    let rendered = render(&fleet, &common::plan(&fleet)).expect("render");
    // The 1.13 patches use keys the 1.14+ schema no longer has: checking them against the
    // wrong line must fail, which shows the per-line check is real.
    assert!(check_talos(&dir, &rendered, false).is_empty());
    assert!(!check_talos(&dir, &rendered, true).is_empty());
}
