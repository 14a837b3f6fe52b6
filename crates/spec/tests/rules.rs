//! Every validation rule, table-driven: a mutation of the example fleet and the exact error (or
//! warning) it must produce, with its field path and position.

use meshfleet_spec::{Diagnostic, Severity, parse};

const EXAMPLE: &str = include_str!("../../../examples/fleet.yaml");

/// Replace `from` (which must occur) in the example.
fn mutate(from: &str, to: &str) -> String {
    assert!(
        EXAMPLE.contains(from),
        "fixture drift: `{from}` not in the example"
    );
    EXAMPLE.replacen(from, to, 1)
}

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(l) => l.warnings,
        Err(r) => r.errors.into_iter().chain(r.warnings).collect(),
    }
}

#[track_caller]
fn expect(text: &str, severity: Severity, path: &str, message: &str) -> Diagnostic {
    let all = problems(text);
    let found = all
        .iter()
        .find(|d| d.path == path && d.message == message && d.severity == severity);
    match found {
        Some(d) => {
            assert!(d.position.is_some(), "no position for {d:?}");
            d.clone()
        }
        None => panic!(
            "expected {severity:?} at `{path}`: {message}\n got:\n{}",
            all.iter()
                .map(|d| format!("  {:?} {} : {}", d.severity, d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[track_caller]
fn error(text: &str, path: &str, message: &str) -> Diagnostic {
    expect(text, Severity::Error, path, message)
}

#[test]
fn the_example_is_valid_without_warnings() {
    let loaded = parse(EXAMPLE).expect("example must validate");
    assert_eq!(loaded.fleet.spec.clusters.len(), 3);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn document_shape() {
    let d = error("", "", "the fleet file is empty");
    assert_eq!(d.position.map(|p| (p.line, p.column)), Some((1, 1)));
    error("# only a comment\n", "", "the fleet file is empty");
    error(
        "- a\n- b\n",
        "",
        "the fleet file must be a mapping, found a list",
    );
    error(
        "just text\n",
        "",
        "the fleet file must be a mapping, found a string `just text`",
    );
    let bad = problems("apiVersion: [unclosed\n");
    assert!(
        bad[0].message.starts_with("the file is not valid YAML"),
        "{bad:?}"
    );
    assert!(bad[0].position.is_some());
    let multi = problems(&format!("{EXAMPLE}---\n{EXAMPLE}"));
    assert_eq!(multi.len(), 1, "{multi:?}");
    assert!(
        multi[0].message.starts_with("the file is not valid YAML"),
        "{multi:?}"
    );
}

#[test]
fn identity() {
    let d = error(
        &mutate(
            "apiVersion: meshfleet.io/v1alpha1",
            "apiVersion: meshfleet.io/v1",
        ),
        "apiVersion",
        "`apiVersion` must be `meshfleet.io/v1alpha1`",
    );
    assert_eq!(d.value.as_deref(), Some("meshfleet.io/v1"));
    assert_eq!(d.position.map(|p| (p.line, p.column)), Some((5, 13)));
    error(
        &mutate("kind: Fleet", "kind: Cluster"),
        "kind",
        "`kind` must be `Fleet`",
    );
    // With a wrong kind nothing else is reported: the rest is another format.
    assert_eq!(problems(&mutate("kind: Fleet", "kind: Cluster")).len(), 1);
    error(
        &mutate("kind: Fleet\n", ""),
        "kind",
        "missing required field `kind`",
    );
}

#[test]
fn unknown_fields_suggest_the_right_one() {
    let d = error(
        &mutate(
            "      workerPools:\n        - { name: general, replicas: 3, machineType: n2-standard-4 }\n      labels: { env: prod }\n    - name: gcp-use1",
            "      workerPool:\n        - { name: general, replicas: 3, machineType: n2-standard-4 }\n      labels: { env: prod }\n    - name: gcp-use1",
        ),
        "spec.clusters[0].workerPool",
        "unknown field `workerPool`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `workerPools`?"));
    assert_eq!(d.position.map(|p| (p.line, p.column)), Some((45, 7)));
    let d = error(
        &mutate("spec:\n", "spce:\n"),
        "spce",
        "unknown field `spce`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `spec`?"));
    let d = error(
        &mutate(
            "machineType: n2-standard-2, diskGiB: 50",
            "machine_type: n2-standard-2, diskGiB: 50",
        ),
        "spec.clusters[0].controlPlane.machine_type",
        "unknown field `machine_type`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `machineType`?"));
    // Two unknown keys in one mapping are two diagnostics, each at its own key.
    let text = mutate("enabled: true", "enabeld: true\n    colour: blue");
    error(&text, "spec.mesh.enabeld", "unknown field `enabeld`");
    error(&text, "spec.mesh.colour", "unknown field `colour`");
}

#[test]
fn types_and_enums() {
    let d = error(
        &mutate("cilium: 1.19.5", "cilium: 1.19"),
        "spec.versions.cilium",
        "expected a string, found a number `1.19`",
    );
    assert!(d.hint.unwrap().contains("quote it"));
    error(
        &mutate(
            "replicas: 3, machineType: n2-standard-2, diskGiB",
            "replicas: three, machineType: n2-standard-2, diskGiB",
        ),
        "spec.clusters[0].controlPlane.replicas",
        "expected a whole number, found a string `three`",
    );
    let d = error(
        &mutate("routing: tunnel", "routing: tunel"),
        "spec.mesh.routing",
        "`tunel` is not one of `tunnel`, `native`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `tunnel`?"));
    error(
        &mutate("enforce: baseline", "enforce: strict"),
        "spec.podSecurity.enforce",
        "`strict` is not one of `privileged`, `baseline`, `restricted`",
    );
    error(
        &mutate("provider: aws", "provider: azure"),
        "spec.clusters[2].provider",
        "`azure` is not one of `gcp`, `aws`",
    );
    error(
        &mutate("    - name: gcp-use1\n", "    - nam: gcp-use1\n"),
        "spec.clusters[1].name",
        "missing required field `name`",
    );
}

#[test]
fn structural_and_semantic_problems_come_together() {
    // An unknown key (structural) and an even replica count (semantic) in one run.
    let text = mutate("enabled: true", "enabeld: true").replacen(
        "replicas: 3, machineType: n2-standard-2, diskGiB",
        "replicas: 2, machineType: n2-standard-2, diskGiB",
        1,
    );
    error(&text, "spec.mesh.enabeld", "unknown field `enabeld`");
    error(
        &text,
        "spec.clusters[0].controlPlane.replicas",
        "control-plane replicas must be odd, got `2`",
    );
}

#[test]
fn names() {
    error(
        &mutate("name: hackathon", "name: Hackathon"),
        "metadata.name",
        "`Hackathon` is not a DNS-1123 label",
    );
    let d = error(
        &mutate("name: gcp-euw1", "name: GCP_euw1"),
        "spec.clusters[0].name",
        "`GCP_euw1` is not a valid cluster name",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("use lower-case letters, digits and `-`, e.g. `gcp-euw1`")
    );
    let long = "a".repeat(33);
    let d = error(
        &mutate("name: gcp-euw1", &format!("name: {long}")),
        "spec.clusters[0].name",
        &format!("`{long}` is not a valid cluster name"),
    );
    assert!(d.hint.unwrap().contains("32 characters"));
    error(
        &mutate("name: gcp-euw1", "name: default"),
        "spec.clusters[0].name",
        "`default` is reserved by Cilium",
    );
    let d = error(
        &mutate("name: gcp-use1", "name: gcp-euw1"),
        "spec.clusters[1].name",
        "duplicate cluster name `gcp-euw1`",
    );
    assert!(d.hint.unwrap().contains("spec.clusters[0]"));
    error(
        &mutate(
            "- { name: general, replicas: 2",
            "- { name: general, replicas: 1, machineType: e2 }\n        - { name: general, replicas: 2",
        ),
        "spec.clusters[1].workerPools[1].name",
        "duplicate pool name `general`",
    );
    error(
        &mutate(
            "labels: { env: prod }",
            "labels: { meshfleet.io/env: prod }",
        ),
        "spec.clusters[0].labels[\"meshfleet.io/env\"]",
        "`meshfleet.io/env` uses the reserved `meshfleet.io` prefix",
    );
    error(
        &mutate("labels: { env: prod }", "labels: { \"bad key!\": prod }"),
        "spec.clusters[0].labels[\"bad key!\"]",
        "`bad key!` is not a valid label key",
    );
}

#[test]
fn versions() {
    let d = error(
        &mutate("kubernetes: v1.35.4", "kubernetes: 1.35.4"),
        "spec.versions.kubernetes",
        "`1.35.4` lacks the leading `v`",
    );
    assert_eq!(d.hint.as_deref(), Some("write `v1.35.4`"));
    error(
        &mutate("cilium: 1.19.5", "cilium: v1.19.5"),
        "spec.versions.cilium",
        "`v1.19.5` must not have a leading `v`",
    );
    error(
        &mutate("talos: v1.13.9", "talos: v1.13"),
        "spec.versions.talos",
        "`v1.13` is not a MAJOR.MINOR.PATCH version",
    );
    error(
        &mutate("talos: v1.13.9", "talos: v1.9.0"),
        "spec.versions.talos",
        "Talos `v1.9.0` is not supported",
    );
    let d = error(
        &mutate("kubernetes: v1.35.4", "kubernetes: v1.29.0"),
        "spec.versions.kubernetes",
        "Kubernetes `v1.29.0` is not supported by Talos `v1.13.9`",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("Talos v1.13 supports Kubernetes v1.31 to v1.36")
    );
    error(
        &mutate("cilium: 1.19.5", "cilium: 1.16.3"),
        "spec.versions.cilium",
        "Cilium `1.16.3` is not supported",
    );
    expect(
        &mutate("cilium: 1.19.5", "cilium: 1.20.0"),
        Severity::Warning,
        "spec.versions.cilium",
        "Cilium `1.20.0` is newer than the 1.19 line meshfleet's values are checked against",
    );
}

#[test]
fn pools() {
    let d = error(
        &mutate("pool: 10.64.0.0/10", "pool: 10.64.0.1/10"),
        "spec.network.pods.pool",
        "`10.64.0.1/10` has host bits set",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `10.64.0.0/10`?"));
    error(
        &mutate("pool: 10.64.0.0/10", "pool: 10.64.0.0"),
        "spec.network.pods.pool",
        "`10.64.0.0` is not a CIDR",
    );
    error(
        &mutate("pool: 10.64.0.0/10", "pool: banana"),
        "spec.network.pods.pool",
        "`banana` is not a CIDR",
    );
    error(
        &mutate(
            "pool: 10.64.0.0/10,  prefixLength: 16",
            "pool: 10.64.0.0/10,  prefixLength: 8",
        ),
        "spec.network.pods.prefixLength",
        "prefix length `8` does not fit pool `10.64.0.0/10`: it must be between 10 and 32",
    );
    error(
        &mutate(
            "pool: 10.64.0.0/10,  prefixLength: 16",
            "pool: 10.64.0.0/10,  prefixLength: 26",
        ),
        "spec.network.pods.prefixLength",
        "pod blocks of /26 are smaller than one node's /24",
    );
    error(
        &mutate(
            "pool: 10.128.0.0/12, prefixLength: 20",
            "pool: 10.128.0.0/9, prefixLength: 11",
        ),
        "spec.network.services.prefixLength",
        "service blocks of /11 are larger than the API server accepts",
    );
    error(
        &mutate("pool: 10.0.0.0/14", "pool: 10.64.0.0/14"),
        "spec.network.nodes.pool",
        "the nodes pool `10.64.0.0/14` overlaps the pods pool `10.64.0.0/10`",
    );
}

#[test]
fn mesh() {
    error(
        &mutate("maxConnectedClusters: 255", "maxConnectedClusters: 300"),
        "spec.mesh.maxConnectedClusters",
        "`300` is not a value Cilium accepts",
    );
    error(
        &mutate("name: gcp-euw1", "name: gcp-euw1\n      meshId: 0"),
        "spec.clusters[0].meshId",
        "mesh ID `0` is outside 1..=255",
    );
    error(
        &mutate("name: gcp-euw1", "name: gcp-euw1\n      meshId: 256"),
        "spec.clusters[0].meshId",
        "mesh ID `256` is outside 1..=255",
    );
    let text = mutate("name: gcp-euw1", "name: gcp-euw1\n      meshId: 7").replacen(
        "name: gcp-use1",
        "name: gcp-use1\n      meshId: 7",
        1,
    );
    error(
        &text,
        "spec.clusters[1].meshId",
        "mesh ID `7` is also pinned by `spec.clusters[0]`",
    );
    expect(
        &mutate("routing: tunnel ", "routing: native ").replacen(
            "tunnelProtocol: vxlan",
            "tunnelProtocol: geneve",
            1,
        ),
        Severity::Warning,
        "spec.mesh.tunnelProtocol",
        "`tunnelProtocol` has no effect with `routing: native`",
    );
    expect(
        &mutate("routing: tunnel ", "routing: native "),
        Severity::Warning,
        "spec.mesh.routing",
        "with `routing: native` the network between clusters must route every cluster's pod CIDR to its nodes, and meshfleet does not create those routes",
    );
}

#[test]
fn too_many_meshed_clusters() {
    let mut text = EXAMPLE.to_owned();
    for i in 0..253 {
        text.push_str(&format!(
            "    - {{ name: extra-{i}, provider: gcp, region: us-east1, zones: [us-east1-b], controlPlane: {{ machineType: e2 }} }}\n"
        ));
    }
    error(
        &text,
        "spec.clusters",
        "256 meshed clusters exceed `maxConnectedClusters: 255`",
    );
}

#[test]
fn mesh_services() {
    error(
        &mutate(
            "encryption: none",
            "encryption: none\n    services: { cacheTTL: 5 minutes }",
        ),
        "spec.mesh.services.cacheTTL",
        "`5 minutes` is not a duration",
    );
    let fleet = parse(&mutate(
        "encryption: none",
        "encryption: none\n    services: { mcsApi: true, cacheTTL: 1h30m }",
    ))
    .expect("valid")
    .fleet;
    assert!(fleet.spec.mesh.services.mcs_api);
    assert_eq!(
        meshfleet_spec::duration_seconds(&fleet.spec.mesh.services.cache_ttl),
        Some(5400)
    );
    for bad in ["", "5", "m", "1.5m", "-1s", "1d"] {
        assert_eq!(meshfleet_spec::duration_seconds(bad), None, "{bad}");
    }
    assert_eq!(meshfleet_spec::duration_seconds("0s"), Some(0));
    // The default drops a lost cluster's backends after a minute.
    let default = meshfleet_spec::MeshServices::default();
    assert_eq!((default.mcs_api, default.cache_ttl.as_str()), (false, "1m"));
}

#[test]
fn pins() {
    let pin = |c: &str, net: &str| format!("name: {c}\n      network: {net}");
    let text = mutate("name: gcp-euw1", &pin("gcp-euw1", "{ pods: 10.64.0.0/16 }")).replacen(
        "name: gcp-use1",
        &pin("gcp-use1", "{ pods: 10.64.128.0/17 }"),
        1,
    );
    let d = error(
        &text,
        "spec.clusters[1].network.pods",
        "pods CIDR `10.64.128.0/17` overlaps the pods CIDR `10.64.0.0/16` of cluster `gcp-euw1`",
    );
    assert!(
        d.hint
            .unwrap()
            .contains("Cilium routes pods to the wrong cluster")
    );
    error(
        &mutate(
            "name: gcp-euw1",
            &pin("gcp-euw1", "{ nodes: 10.64.0.0/20 }"),
        ),
        "spec.clusters[0].network.nodes",
        "pinned nodes CIDR `10.64.0.0/20` overlaps the pods pool `10.64.0.0/10`",
    );
    error(
        &mutate(
            "name: gcp-euw1",
            &pin("gcp-euw1", "{ pods: 172.16.0.0/16, nodes: 172.16.0.0/20 }"),
        ),
        "spec.clusters[0].network.nodes",
        "nodes CIDR `172.16.0.0/20` overlaps this cluster's pods CIDR `172.16.0.0/16`",
    );
    error(
        &mutate("name: gcp-euw1", &pin("gcp-euw1", "{ pods: 10.64.0.0/25 }")),
        "spec.clusters[0].network.pods",
        "pod CIDR `10.64.0.0/25` is smaller than one node's /24",
    );
    let text = mutate(
        "name: gcp-euw1",
        &pin("gcp-euw1", "{ nodes: 192.168.0.0/20 }"),
    )
    .replacen(
        "name: gcp-use1",
        &pin("gcp-use1", "{ pods: 192.168.0.0/16 }"),
        1,
    );
    error(
        &text,
        "spec.clusters[1].network.pods",
        "pods CIDR `192.168.0.0/16` overlaps the nodes CIDR `192.168.0.0/20` of cluster `gcp-euw1`",
    );
}

#[test]
fn regions_zones_and_machines() {
    error(
        &mutate("region: europe-west1", "region: europe_west1"),
        "spec.clusters[0].region",
        "`europe_west1` is not a gcp region name",
    );
    let d = error(
        &mutate(
            "europe-west1-b, europe-west1-c",
            "europe-west1-b, europe-west4-c",
        ),
        "spec.clusters[0].zones[1]",
        "zone `europe-west4-c` is not in region `europe-west1`",
    );
    assert_eq!(d.position.map(|p| (p.line, p.column)), Some((43, 31)));
    error(
        &mutate(
            "europe-west1-b, europe-west1-c",
            "europe-west1-b, europe-west1-b",
        ),
        "spec.clusters[0].zones[1]",
        "zone `europe-west1-b` is listed twice",
    );
    error(
        &mutate("zones: [eu-west-1a, eu-west-1b, eu-west-1c]", "zones: []"),
        "spec.clusters[2].zones",
        "a cluster needs at least one zone",
    );
    error(
        &mutate(
            "zones: [eu-west-1a, eu-west-1b, eu-west-1c]",
            "zones: [eu-west-1-a]",
        ),
        "spec.clusters[2].zones[0]",
        "zone `eu-west-1-a` is not in region `eu-west-1`",
    );
    error(
        &mutate(
            "replicas: 3, machineType: m6i.large",
            "replicas: 4, machineType: m6i.large",
        ),
        "spec.clusters[2].controlPlane.replicas",
        "control-plane replicas must be odd, got `4`",
    );
    error(
        &mutate(
            "replicas: 3, machineType: m6i.large",
            "replicas: 0, machineType: m6i.large",
        ),
        "spec.clusters[2].controlPlane.replicas",
        "control-plane replicas must be odd, got `0`",
    );
    expect(
        &mutate(
            "replicas: 3, machineType: m6i.large",
            "replicas: 1, machineType: m6i.large",
        ),
        Severity::Warning,
        "spec.clusters[2].controlPlane.replicas",
        "one control-plane node: losing it loses the cluster's etcd",
    );
    error(
        &mutate("machineType: m6i.large", "machineType: \"\""),
        "spec.clusters[2].controlPlane.machineType",
        "the machine type is empty",
    );
    error(
        &mutate("diskGiB: 50", "diskGiB: 5"),
        "spec.clusters[0].controlPlane.diskGiB",
        "a `5` GiB disk is too small for Talos",
    );
}

#[test]
fn providers_and_management() {
    error(
        &mutate("    aws: { sshKeyName: ops }\n", ""),
        "spec.clusters[2].provider",
        "provider `aws` is used but not configured",
    );
    error(
        &mutate("project: my-project", "project: My_Project"),
        "spec.providers.gcp.project",
        "`My_Project` is not a GCP project id",
    );
    error(
        &mutate("imageBucket: talos-images-01-7f3a", "imageBucket: Talos"),
        "spec.providers.gcp.imageBucket",
        "`Talos` is not a valid bucket name",
    );
    error(
        &mutate(
            "egressCIDRs: [203.0.113.10/32]",
            "egressCIDRs: [203.0.113.10]",
        ),
        "spec.management.egressCIDRs[0]",
        "`203.0.113.10` is not a CIDR",
    );
    expect(
        &mutate("egressCIDRs: [203.0.113.10/32]", "egressCIDRs: []"),
        Severity::Warning,
        "spec.management.egressCIDRs",
        "no management egress CIDR: nothing opens Talos apid (tcp/50000) to the management cluster",
    );
    expect(
        &mutate("egressCIDRs: [203.0.113.10/32]", "egressCIDRs: [0.0.0.0/0]"),
        Severity::Warning,
        "spec.management.egressCIDRs[0]",
        "`0.0.0.0/0` opens Talos apid (tcp/50000) to the whole internet",
    );
    let text = mutate("  clusters:\n", "  clusters: []\n  x-ignored:\n");
    let all = problems(&text);
    assert!(
        all.iter().any(|d| d.message == "unknown field `x-ignored`"),
        "{all:?}"
    );
}

#[test]
fn pod_security() {
    error(
        &mutate(
            "exemptions: { namespaces: [kube-system] }",
            "exemptions: { namespaces: [] }",
        ),
        "spec.podSecurity.exemptions.namespaces",
        "enforcing `baseline` without exempting `kube-system` blocks Cilium's privileged pods, so no node becomes Ready",
    );
    error(
        &mutate(
            "namespaces: [kube-system]",
            "namespaces: [kube-system, Bad_NS]",
        ),
        "spec.podSecurity.exemptions.namespaces[1]",
        "`Bad_NS` is not a namespace name",
    );
    expect(
        &mutate("enforce: baseline", "enforce: privileged"),
        Severity::Warning,
        "spec.podSecurity.enforce",
        "Pod Security enforces nothing with `privileged`",
    );
    expect(
        &mutate("audit: restricted", "audit: privileged"),
        Severity::Warning,
        "spec.podSecurity.audit",
        "`audit: privileged` is looser than `enforce: baseline`, so it never reports anything",
    );
}

#[test]
fn defaults_fill_what_is_absent() {
    let text = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: tiny }\nspec:\n  versions: { kubernetes: v1.35.0, talos: v1.13.0, cilium: 1.19.5 }\n  management: { egressCIDRs: [192.0.2.1/32] }\n  providers: { aws: {} }\n  clusters:\n    - { name: one, provider: aws, region: us-east-1, zones: [us-east-1a], controlPlane: { machineType: m6i.large } }\n";
    let l = parse(text).unwrap();
    let s = &l.fleet.spec;
    assert_eq!(s.network.pods.pool, "10.64.0.0/10");
    assert!(s.mesh.enabled);
    assert_eq!(s.mesh.max_connected_clusters, 255);
    assert_eq!(s.clusters[0].control_plane.replicas, 3);
    assert_eq!(s.clusters[0].control_plane.disk_gib, 50);
    assert_eq!(s.pod_security.exemptions.namespaces, vec!["kube-system"]);
}

#[track_caller]
fn warning(text: &str, path: &str, message: &str) -> Diagnostic {
    expect(text, Severity::Warning, path, message)
}

#[test]
fn releases_are_checked_against_the_table() {
    let d = warning(
        &mutate("talos: v1.13.9", "talos: v1.13.99"),
        "spec.versions.talos",
        "Talos `v1.13.99` is newer than the newest v1.13 release meshfleet knows",
    );
    assert!(
        d.hint.as_deref().unwrap_or_default().contains("`v1.13.9`"),
        "{d:?}"
    );
    warning(
        &mutate("talos: v1.13.9", "talos: v1.14.1"),
        "spec.versions.talos",
        "Talos `v1.14.1` is from a line with no release meshfleet knows",
    );
    let d = warning(
        &mutate("kubernetes: v1.35.4", "kubernetes: v1.35.40"),
        "spec.versions.kubernetes",
        "Kubernetes `v1.35.40` is newer than the newest v1.35 release meshfleet knows",
    );
    assert!(
        d.hint.as_deref().unwrap_or_default().contains("`v1.35.4`"),
        "{d:?}"
    );
    // A pair outside the support matrix stays an error, whatever the table says.
    error(
        &mutate("kubernetes: v1.35.4", "kubernetes: v1.30.5"),
        "spec.versions.kubernetes",
        "Kubernetes `v1.30.5` is not supported by Talos `v1.13.9`",
    );
}

#[test]
fn multi_document_patches_need_talos_1_14() {
    let with = |talos: &str| {
        mutate("talos: v1.13.9", &format!("talos: {talos}")).replacen(
            "  providers:\n",
            "  talos: { patchFormat: multiDocument }\n  providers:\n",
            1,
        )
    };
    let d = error(
        &with("v1.13.9"),
        "spec.talos.patchFormat",
        "the multi-document patch form needs Talos v1.14 or newer, and the fleet runs `v1.13.9`",
    );
    assert_eq!(d.value.as_deref(), Some("multiDocument"));
    warning(
        &with("v1.14.1"),
        "spec.talos.patchFormat",
        "the Talos bootstrap provider v0.6.12 cannot decode multi-document patches (it is built on Talos machinery v1.13)",
    );
    let loaded = parse(&mutate(
        "  providers:\n",
        "  talos: { patchFormat: v1alpha1 }\n  providers:\n",
    ))
    .expect("v1alpha1 is always fine");
    assert!(loaded.warnings.is_empty());
}

#[test]
fn load_balancer_clustermesh_is_refused_on_gcp() {
    let d = error(
        &mutate(
            "apiserverService: NodePort",
            "apiserverService: LoadBalancer",
        ),
        "spec.mesh.apiserverService",
        "a LoadBalancer clustermesh-apiserver needs a GCP cloud controller manager on `gcp-euw1`, `gcp-use1`, and none can be delivered",
    );
    assert!(d.hint.as_deref().unwrap_or_default().contains("NodePort"));
    // Without the mesh the Service is never created.
    let off = mutate(
        "apiserverService: NodePort",
        "apiserverService: LoadBalancer",
    )
    .replacen("enabled: true", "enabled: false", 1);
    assert!(parse(&off).is_ok());
}

#[test]
fn gcp_cluster_names_start_with_a_letter() {
    error(
        &mutate("- name: gcp-euw1", "- name: 1gcp-euw1"),
        "spec.clusters[0].name",
        "GCP cluster `1gcp-euw1` starts with a digit",
    );
}

#[test]
fn machine_deployment_names_fit_in_a_label() {
    let long = "p".repeat(45);
    let d = error(
        &mutate(
            "{ name: general, replicas: 3, machineType: n2-standard-4 }",
            &format!("{{ name: {long}, replicas: 3, machineType: n2-standard-4 }}"),
        ),
        "spec.clusters[0].workerPools[0].name",
        &format!(
            "the pool's MachineDeployment name `gcp-euw1-workers-{long}-d` is 64 characters, more than the 63 a label value allows"
        ),
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("shorten the pool name to at most 44 characters")
    );
}
