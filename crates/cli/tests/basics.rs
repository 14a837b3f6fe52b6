//! The binary as a user meets it: help, init, validate, exit codes, nothing written on bad input.

use std::path::Path;
use std::process::{Command, Output};

fn meshfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshfleet"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("run meshfleet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const BAD: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: demo }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  providers: { gcp: { project: my-project } }\n  clusters:\n    - name: a\n      provider: gcp\n      region: europe-west1\n      zones: [europe-west1-b]\n      controlPlane: { replicas: 2, machineType: n2-standard-2 }\n      workerPool: []\n";

#[test]
fn help_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    for cmd in [
        "init",
        "validate",
        "plan",
        "render",
        "up",
        "status",
        "down",
        "kubeconfig",
        "sim",
        "mesh",
    ] {
        assert!(text(&out.stdout).contains(cmd), "help lists `{cmd}`");
    }
    let out = meshfleet(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = meshfleet(dir.path(), &["validate", "--output", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_writes_a_valid_example_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "init prints nothing on stdout");
    let written = std::fs::read_to_string(dir.path().join("fleet.yaml")).unwrap();
    assert!(written.starts_with("# meshfleet fleet file"));

    let out = meshfleet(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("is valid: fleet `hackathon`, 3 clusters"));

    std::fs::write(dir.path().join("fleet.yaml"), "mine\n").unwrap();
    let out = meshfleet(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fleet.yaml")).unwrap(),
        "mine\n"
    );
}

#[test]
fn invalid_input_exits_2_with_located_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), BAD).unwrap();
    for args in [
        vec!["validate"],
        vec!["plan"],
        vec!["render", "--out", "out"],
    ] {
        let out = meshfleet(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("fleet.yaml:12:33"), "{args:?}: {err}");
        assert!(err.contains("control-plane replicas must be odd"), "{err}");
        assert!(err.contains("fleet.yaml:13:7"), "{err}");
        assert!(err.contains("did you mean `workerPools`?"), "{err}");
        assert!(err.contains("is invalid: 2 errors"), "{err}");
        assert!(
            !err.contains('\x1b'),
            "no colour when stderr is not a terminal"
        );
        assert_eq!(
            entries(dir.path()),
            vec!["fleet.yaml"],
            "{args:?} wrote something"
        );
    }
}

#[test]
fn validate_json_reports_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), BAD).unwrap();
    let out = meshfleet(dir.path(), &["validate", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["errors"][0]["path"],
        "spec.clusters[0].controlPlane.replicas"
    );
    assert_eq!(v["errors"][0]["position"]["line"], 12);
    assert_eq!(v["errors"][0]["position"]["column"], 33);
}

#[test]
fn missing_file_and_colour_controls() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["validate", "-f", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("run `meshfleet init`"));

    std::fs::write(dir.path().join("fleet.yaml"), BAD).unwrap();
    let out = meshfleet(dir.path(), &["--color", "always", "validate"]);
    assert!(
        text(&out.stderr).contains('\x1b'),
        "--color always forces colour"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_meshfleet"))
        .args(["validate"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!text(&out.stderr).contains('\x1b'));
}

#[test]
fn gcp_setup_without_a_fleet_file_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["gcp", "setup"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("fleet file `fleet.yaml` not found") && err.contains("hint:"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_same_warning_on_many_clusters_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = String::from(
        "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: many }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  network:\n    pods: { pool: 10.64.0.0/10, prefixLength: 16 }\n    services: { pool: 10.128.0.0/12, prefixLength: 20 }\n    nodes: { pool: 10.0.0.0/14, prefixLength: 20 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  providers:\n    gcp: { project: my-project, network: meshfleet, imageBucket: talos-images-01-7f3a }\n  clusters:\n",
    );
    for i in 0..6 {
        fleet.push_str(&format!(
            "    - name: c{i}\n      provider: gcp\n      region: europe-west1\n      zones: [europe-west1-b]\n      controlPlane: {{ replicas: 1, machineType: n2-standard-2 }}\n      workerPools:\n        - {{ name: general, replicas: 1, machineType: n2-standard-4 }}\n"
        ));
    }
    std::fs::write(dir.path().join("fleet.yaml"), fleet).unwrap();
    let out = meshfleet(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("warning: one control-plane node").count(),
        3,
        "three in full: {err}"
    );
    assert!(
        err.contains("warning: 3 more like \"one control-plane node: losing it loses the cluster's etcd\": spec.clusters[3].controlPlane.replicas, spec.clusters[4].controlPlane.replicas, spec.clusters[5].controlPlane.replicas\n"),
        "{err}"
    );
    let all = format!("{}{err}", text(&out.stdout));
    assert!(all.contains("6 warnings"), "the count stays exact: {all}");
}
