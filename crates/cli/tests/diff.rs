//! `meshfleet diff` against `meshfleet sim serve`: empty right after `up`, exactly the edited
//! field after an edit, `delete` for a cluster the file no longer names (which a plain `up`
//! leaves running and names, and `down --cluster` deletes); exit 0 / 1 / 2.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Sim, meshfleet, show};
use serde_json::Value;

fn diff_json(dir: &Path, kc: &str, want: i32) -> Value {
    let out = meshfleet(
        dir,
        &["diff", "-f", "fleet.yaml", "--kubeconfig", kc, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(want), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

fn actions(d: &Value) -> Vec<(String, String)> {
    d["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn diff_after_up_edit_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = meshfleet(d, &["init", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let sim = Sim::start_at(d, "200", &["--egress-ip", "203.0.113.10"]);

    // Before `up`: every cluster would be created.
    let before = diff_json(d, sim.kc(), 1);
    assert!(
        actions(&before).iter().all(|(_, a)| a == "create"),
        "{before:#}"
    );

    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let after = diff_json(d, sim.kc(), 0);
    assert!(
        actions(&after).iter().all(|(_, a)| a == "unchanged"),
        "{after:#}"
    );

    // One more worker in gcp-euw1's pool (3 → 4 over three zones): one MachineDeployment's
    // replicas, nothing else.
    let fleet = d.join("fleet.yaml");
    let text = std::fs::read_to_string(&fleet).unwrap();
    let edited = text.replacen(
        "replicas: 3, machineType: n2-standard-4",
        "replicas: 4, machineType: n2-standard-4",
        1,
    );
    assert_ne!(text, edited, "the example has gcp-euw1's worker pool");
    std::fs::write(&fleet, &edited).unwrap();
    let d1 = diff_json(d, sim.kc(), 1);
    let changed: Vec<&Value> = d1["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .collect();
    assert_eq!(changed.len(), 1, "{d1:#}");
    assert_eq!(changed[0]["name"], "gcp-euw1");
    let changes = changed[0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{d1:#}");
    assert_eq!(changes[0]["kind"], "MachineDeployment");
    assert_eq!(changes[0]["field"], "spec.replicas");
    assert_eq!(changes[0]["from"], 1);
    assert_eq!(changes[0]["to"], 2);
    assert!(
        changed[0]["effects"][0]
            .as_str()
            .unwrap()
            .contains("scales from 1 to 2"),
        "{d1:#}"
    );

    // The table for people names the field too.
    let out = meshfleet(d, &["diff", "-f", "fleet.yaml", "--kubeconfig", sim.kc()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("spec.replicas: 1 → 2"),
        "{}",
        show(&out)
    );

    // aws-euw1 (the last cluster) out of the file: `delete`, and it is still running.
    let cut = edited
        .find("    - name: aws-euw1")
        .expect("aws-euw1 in the example");
    std::fs::write(&fleet, &edited[..cut]).unwrap();
    let d2 = diff_json(d, sim.kc(), 1);
    assert!(
        actions(&d2).contains(&("aws-euw1".to_owned(), "delete".to_owned())),
        "{d2:#}"
    );

    // A plain `up` leaves it running and says so by name; `down --cluster` deletes it.
    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("cluster `aws-euw1` runs for fleet `hackathon` but is no longer in")
            && err.contains("meshfleet down --cluster aws-euw1"),
        "{err}"
    );
    let d3 = diff_json(d, sim.kc(), 1);
    assert!(
        actions(&d3).contains(&("aws-euw1".to_owned(), "delete".to_owned())),
        "still there after a plain up: {d3:#}"
    );
    let lock = std::fs::read_to_string(d.join("meshfleet.lock")).unwrap();
    assert!(
        lock.contains("retired:\n  aws-euw1:\n    meshId: 3"),
        "the lock holds its mesh ID and CIDRs while it runs: {lock}"
    );
    let out = meshfleet(
        d,
        &[
            "down",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            sim.kc(),
            "--cluster",
            "aws-euw1",
            "--timeout",
            "60s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let lock = std::fs::read_to_string(d.join("meshfleet.lock")).unwrap();
    assert!(
        !lock.contains("retired:\n") && lock.contains("retiredMeshIds:\n  aws-euw1: 3"),
        "seen deleted: its CIDRs are free, its mesh ID stays retired: {lock}"
    );
    let d4 = diff_json(d, sim.kc(), 0);
    assert!(
        actions(&d4)
            .iter()
            .all(|(n, a)| n != "aws-euw1" && a == "unchanged"),
        "{d4:#}"
    );

    // gcp-use1 out of the file too, and `up --prune`: the others drop it from their mesh, then
    // it is deleted and the lock frees its CIDRs.
    let now = std::fs::read_to_string(&fleet).unwrap();
    let cut = now
        .find("    - name: gcp-use1")
        .expect("gcp-use1 in the example");
    std::fs::write(&fleet, &now[..cut]).unwrap();
    let out = Command::new(BIN)
        .args([
            "up",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            sim.kc(),
            "--prune",
        ])
        .args(["--timeout", "60s"])
        .current_dir(d)
        .env("NO_COLOR", "1")
        .output()
        .expect("run up --prune");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let d5 = diff_json(d, sim.kc(), 0);
    assert_eq!(
        actions(&d5),
        [("gcp-euw1".to_owned(), "unchanged".to_owned())],
        "{d5:#}"
    );
    let lock = std::fs::read_to_string(d.join("meshfleet.lock")).unwrap();
    assert!(
        lock.contains("  gcp-use1: 2") && !lock.contains("retired:\n"),
        "{lock}"
    );

    // Invalid input: exit 2.
    std::fs::write(&fleet, edited.replace("workerPools", "workerPool")).unwrap();
    let out = meshfleet(d, &["diff", "-f", "fleet.yaml", "--kubeconfig", sim.kc()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
