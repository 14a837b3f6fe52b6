//! `mesh status` end to end: `meshfleet sim serve` as the management cluster, `up` on a
//! two-cluster fleet, then what an operator breaks, read back through the same kube-rs clients
//! a real fleet would get.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

mod common;

use common::{BIN, Sim};

fn meshfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MESHFLEET_SIM_SPEED", "200")
        .output()
        .expect("run meshfleet")
}

fn show(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const FLEET: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: duo }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  network:\n    pods: { pool: 10.64.0.0/10, prefixLength: 16 }\n    services: { pool: 10.128.0.0/12, prefixLength: 20 }\n    nodes: { pool: 10.0.0.0/14, prefixLength: 20 }\n  mesh: { enabled: true, maxConnectedClusters: 255 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  providers:\n    gcp: { project: my-project, network: meshfleet, imageBucket: talos-images-01-7f3a }\n  clusters:\n    - name: eu\n      provider: gcp\n      region: europe-west1\n      zones: [europe-west1-b]\n      controlPlane: { replicas: 1, machineType: n2-standard-2 }\n      workerPools:\n        - { name: general, replicas: 1, machineType: n2-standard-4 }\n    - name: us\n      provider: gcp\n      region: us-east1\n      zones: [us-east1-b]\n      controlPlane: { replicas: 1, machineType: n2-standard-2 }\n      workerPools:\n        - { name: general, replicas: 1, machineType: n2-standard-4 }\n";

fn mesh_status(dir: &Path, kc: &str) -> (Option<i32>, Value, Output) {
    let out = meshfleet(
        dir,
        &[
            "mesh",
            "status",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            kc,
            "-o",
            "json",
        ],
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out.status.code(), v, out)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn client_from(rt: &tokio::runtime::Runtime, kc: kube::config::Kubeconfig) -> kube::Client {
    rt.block_on(async {
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    })
}

#[test]
fn healthy_mesh_then_a_foreign_ca_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), FLEET).unwrap();
    let sim = Sim::start_at(d, "200", &["--egress-ip", "203.0.113.10"]);
    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let (code, st, out) = mesh_status(d, sim.kc());
    assert_eq!(code, Some(0), "{}", show(&out));
    let clusters = st["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2, "{st}");
    let mut ids = Vec::new();
    for c in clusters {
        let name = c["name"].as_str().unwrap();
        let other = if name == "eu" { "us" } else { "eu" };
        assert_eq!(strs(&c["expectedPeers"]), [other], "{c}");
        assert_eq!(strs(&c["configuredPeers"]), [other], "{c}");
        assert_eq!(strs(&c["connectedPeers"]), [other], "{c}");
        assert!(!strs(&c["endpoints"]).is_empty(), "{c}");
        assert!(
            strs(&c["endpoints"])
                .iter()
                .all(|e| e.starts_with("https://") && e.ends_with(":32379")),
            "{c}"
        );
        assert!(c["problems"].as_array().unwrap().is_empty(), "{c}");
        ids.push(c["clusterId"].as_u64().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "distinct cluster IDs: {st}");
    assert!(st["problems"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(
        clusters[0]["ca"]["fingerprint"], clusters[1]["ca"]["fingerprint"],
        "one mesh CA"
    );

    // What an operator breaks: `us` gets a CA of its own, as if someone re-ran
    // `mesh ca init` and pushed it into that cluster only.
    let out = meshfleet(d, &["mesh", "ca", "init", "--dir", "other-ca"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mgmt = client_from(
        &rt,
        kube::config::Kubeconfig::read_from(&sim.kubeconfig).unwrap(),
    );
    rt.block_on(async {
        let secrets: kube::Api<Secret> = kube::Api::namespaced(mgmt, "duo");
        let s = secrets.get("us-kubeconfig").await.unwrap();
        let text = String::from_utf8(s.data.unwrap()["value"].0.clone()).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let w = kube::Client::try_from(cfg).unwrap();
        let api: kube::Api<Secret> = kube::Api::namespaced(w, "kube-system");
        let mut ca = api.get("cilium-ca").await.unwrap();
        let data = ca.data.get_or_insert_with(Default::default);
        for k in ["ca.crt", "ca.key"] {
            let b = std::fs::read(d.join("other-ca").join(k)).unwrap();
            data.insert(k.to_string(), ByteString(b));
        }
        api.replace("cilium-ca", &Default::default(), &ca)
            .await
            .unwrap();
    });

    let (code, st, out) = mesh_status(d, sim.kc());
    assert_eq!(code, Some(1), "{}", show(&out));
    let problems = st["problems"].as_array().unwrap();
    let mismatch = problems
        .iter()
        .find(|p| {
            p["message"]
                .as_str()
                .unwrap()
                .contains("do not share one mesh CA")
        })
        .unwrap_or_else(|| panic!("CA mismatch reported: {st}"));
    assert_eq!(mismatch["severity"], "error", "{mismatch}");
    let msg = mismatch["message"].as_str().unwrap();
    assert!(msg.contains("`eu`") && msg.contains("`us`"), "{msg}");
    assert!(mismatch["hint"].as_str().unwrap().contains("cilium-ca"));
    let us = st["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "us")
        .unwrap();
    assert!(
        us["ca"]["subject"].as_str().unwrap().contains("meshfleet"),
        "{us}"
    );
    // The keys never leave the clusters.
    assert!(!show(&out).contains("PRIVATE KEY"));

    // The table says the same, problems first.
    let out = meshfleet(
        d,
        &[
            "mesh",
            "status",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            sim.kc(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("ERROR"), "{table}");
    assert!(table.contains("do not share one mesh CA"), "{table}");
    assert!(table.contains("CLUSTER"), "{table}");
}

#[test]
fn unreachable_management_cluster_names_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), FLEET).unwrap();
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: m\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: m\n  user:\n    token: t\ncontexts:\n- name: m\n  context:\n    cluster: m\n    user: m\ncurrent-context: m\n"
    );
    std::fs::write(d.join("gone.kubeconfig"), kc).unwrap();
    let start = Instant::now();
    let out = meshfleet(
        d,
        &[
            "mesh",
            "status",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            "gone.kubeconfig",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(start.elapsed() < Duration::from_secs(20), "fails fast");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("does not answer"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("meshfleet sim serve"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), "kind: [").unwrap();
    let out = meshfleet(
        d,
        &["mesh", "status", "-f", "fleet.yaml", "--kubeconfig", "nope"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // `--sim` without a state kept by `up --sim` is invalid input too.
    std::fs::write(d.join("fleet.yaml"), FLEET).unwrap();
    let out = meshfleet(d, &["mesh", "status", "-f", "fleet.yaml", "--sim"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("up --sim"),
        "{}",
        show(&out)
    );
}

#[test]
fn sim_flag_reads_the_state_up_sim_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), FLEET).unwrap();
    let out = meshfleet(d, &["up", "--sim", "-f", "fleet.yaml", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = meshfleet(
        d,
        &["mesh", "status", "--sim", "-f", "fleet.yaml", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in st["clusters"].as_array().unwrap() {
        assert_eq!(c["connectedPeers"].as_array().unwrap().len(), 1, "{c}");
    }
    // `doctor --sim` checks what `up --sim` prepared (providers, their credentials, the
    // simulated project and account): every required check is ok.
    let out = meshfleet(d, &["doctor", "--sim", "-f", "fleet.yaml", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["check"].as_str().unwrap().starts_with("credentials "))
    );
    for c in checks.iter().filter(|c| c["required"] == true) {
        assert_eq!(c["status"], "ok", "{c}");
    }
}

/// Closing the clustermesh-apiserver's NodePort in one cluster's security group (what an
/// operator's hand-edited firewall does): the others report it unreachable, with the port.
/// CAPA opens NodePorts to `nodePortIngressRuleCidrBlocks` as well as by the rendered 32379
/// rule, so both are narrowed to the cluster's own nodes.
#[test]
fn a_closed_32379_is_reported_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = meshfleet(d, &["init", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let sim = Sim::start_at(d, "200", &["--egress-ip", "203.0.113.10"]);
    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (code, st, out) = mesh_status(d, sim.kc());
    assert_eq!(code, Some(0), "{}", show(&out));
    assert_eq!(st["clusters"].as_array().unwrap().len(), 3);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mgmt = client_from(
        &rt,
        kube::config::Kubeconfig::read_from(&sim.kubeconfig).unwrap(),
    );
    rt.block_on(async {
        let gvk = kube::core::GroupVersionKind::gvk(
            "infrastructure.cluster.x-k8s.io",
            "v1beta2",
            "AWSCluster",
        );
        let (ar, _) = kube::discovery::pinned_kind(&mgmt, &gvk).await.unwrap();
        let api: kube::Api<kube::core::DynamicObject> =
            kube::Api::namespaced_with(mgmt.clone(), "hackathon", &ar);
        let mut aws = api.get("aws-euw1").await.unwrap();
        let rules = aws.data["spec"]["network"]["additionalNodeIngressRules"]
            .as_array_mut()
            .unwrap();
        let before = rules.len();
        rules.retain(|r| r["fromPort"] != 32379);
        assert_eq!(
            rules.len(),
            before - 1,
            "the rendered rule for 32379 is there"
        );
        let own = aws.data["spec"]["network"]["vpc"]["cidrBlock"].clone();
        assert!(own.is_string(), "the VPC's CIDR is rendered: {}", aws.data);
        aws.data["spec"]["network"]["nodePortIngressRuleCidrBlocks"] = serde_json::json!([own]);
        api.replace("aws-euw1", &Default::default(), &aws)
            .await
            .unwrap();
    });

    // Cilium's view follows the firewall, cluster by cluster; give every simulated agent a
    // moment to see the link go down before judging.
    let both_down = |st: &Value| {
        ["gcp-euw1", "gcp-use1"].iter().all(|name| {
            st["clusters"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["name"] == *name
                        && !strs(&c["connectedPeers"]).contains(&"aws-euw1".to_string())
                })
            })
        })
    };
    let start = Instant::now();
    let (code, st, out) = loop {
        let r = mesh_status(d, sim.kc());
        if (r.0 == Some(1) && both_down(&r.1)) || start.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, Some(1), "{}", show(&out));
    for name in ["gcp-euw1", "gcp-use1"] {
        let c = st["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        assert!(
            !strs(&c["connectedPeers"]).contains(&"aws-euw1".to_string()),
            "{c}"
        );
        let p = c["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot reach `aws-euw1`'s clustermesh-apiserver")
            })
            .unwrap_or_else(|| panic!("{c}"));
        assert_eq!(p["severity"], "error");
        assert!(p["hint"].as_str().unwrap().contains("tcp/32379"), "{p}");
    }
}
