//! `meshfleet net setup` and `up --sim` with links, end to end (issue #15): the simulator keeps
//! node networks separate (its default), `up --sim` creates the fleet's links as `net setup`
//! would once the simulated CAPA has made the VPCs, and ends fully meshed; `net setup --sim`
//! afterwards finds everything in place.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;

use common::BIN;

fn meshfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MESHFLEET_SIM_SPEED", "200")
        .env_remove("MESHFLEET_SIM_SHARED_NETWORKS")
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

fn mesh_status(d: &Path) -> Value {
    let out = meshfleet(
        d,
        &["mesh", "status", "--sim", "-f", "fleet.yaml", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

/// Every cluster is connected to every other.
fn assert_fully_meshed(st: &Value, n: usize) {
    let clusters = st["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), n, "{st}");
    for c in clusters {
        assert_eq!(
            c["connectedPeers"].as_array().unwrap().len(),
            n - 1,
            "{} is not connected to every other cluster: {st}",
            c["name"]
        );
    }
}

fn secrets_are_private(d: &Path, outputs: &[&Output]) {
    use std::os::unix::fs::PermissionsExt;
    let path = d.join("meshfleet.net.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for t in file["tunnels"].as_object().unwrap().values() {
        let psk = t["psk"].as_str().unwrap();
        for o in outputs {
            assert!(!show(o).contains(psk), "a pre-shared key was printed");
        }
    }
}

#[test]
fn example_fleet_with_ha_vpn_is_fully_meshed_and_net_setup_again_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = meshfleet(d, &["init", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = std::fs::read_to_string(d.join("fleet.yaml")).unwrap();
    assert!(text.contains("gcpToAws: haVpn"), "the example sets haVpn");

    let up = meshfleet(d, &["up", "--sim", "-f", "fleet.yaml", "--timeout", "90s"]);
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    assert!(
        show(&up).contains("links between node networks created"),
        "{}",
        show(&up)
    );
    assert_fully_meshed(&mesh_status(d), 3);

    let again = meshfleet(
        d,
        &["net", "setup", "--sim", "-f", "fleet.yaml", "-o", "json"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() > 10, "{report}");
    for s in steps {
        assert_eq!(s["action"], "unchanged", "{s}");
        assert_eq!(s["status"], "done", "{s}");
    }
    let dry = meshfleet(
        d,
        &["net", "setup", "--sim", "-f", "fleet.yaml", "--dry-run"],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    assert!(show(&dry).contains("would change 0 of"), "{}", show(&dry));
    secrets_are_private(d, &[&up, &again, &dry]);
}

#[test]
fn net_setup_rejects_bad_endpoints_and_a_missing_sim_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = meshfleet(d, &["init", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = meshfleet(
        d,
        &["net", "setup", "-f", "fleet.yaml", "--gcp-endpoint", "nope"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("--gcp-endpoint `nope`"),
        "{}",
        show(&out)
    );
    let out = meshfleet(d, &["net", "setup", "-f", "fleet.yaml", "--sim"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("up --sim"), "{}", show(&out));
}

/// Twelve clusters: seven GCP regions on the fleet's one network, five AWS regions with a VPC
/// each, joined by HA VPN (GCP ↔ each AWS region) and peered Transit Gateways (AWS ↔ AWS).
fn twelve() -> String {
    let mut s = String::from(
        "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: dozen }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  network:\n    pods: { pool: 10.64.0.0/10, prefixLength: 16 }\n    services: { pool: 10.128.0.0/12, prefixLength: 20 }\n    nodes: { pool: 10.0.0.0/14, prefixLength: 20 }\n  mesh: { enabled: true, maxConnectedClusters: 255 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { gcpToAws: haVpn, awsCrossRegion: transitGateway }\n  providers:\n    gcp: { project: my-project, network: meshfleet, imageBucket: talos-images-01-7f3a }\n    aws: { sshKeyName: ops }\n  clusters:\n",
    );
    for r in [
        "europe-west1",
        "europe-west4",
        "us-east1",
        "us-central1",
        "us-west1",
        "asia-southeast1",
        "asia-northeast1",
    ] {
        s += &format!(
            "    - name: g-{r}\n      provider: gcp\n      region: {r}\n      zones: [{r}-b]\n      controlPlane: {{ replicas: 1, machineType: n2-standard-2 }}\n      workerPools:\n        - {{ name: general, replicas: 1, machineType: n2-standard-4 }}\n"
        );
    }
    for r in [
        "eu-west-1",
        "eu-central-1",
        "us-east-1",
        "us-west-2",
        "ap-southeast-1",
    ] {
        s += &format!(
            "    - name: a-{r}\n      provider: aws\n      region: {r}\n      zones: [{r}a]\n      controlPlane: {{ replicas: 1, machineType: m6i.large }}\n      workerPools:\n        - {{ name: general, replicas: 1, machineType: m6i.xlarge }}\n"
        );
    }
    s
}

#[test]
fn twelve_clusters_over_twelve_regions_with_transit_gateways_are_fully_meshed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), twelve()).unwrap();
    let out = meshfleet(d, &["validate", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let up = meshfleet(d, &["up", "--sim", "-f", "fleet.yaml", "--timeout", "180s"]);
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    assert!(!show(&up).contains("will be partial"), "{}", show(&up));
    assert_fully_meshed(&mesh_status(d), 12);
    secrets_are_private(d, &[&up]);
}
