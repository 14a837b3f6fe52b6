//! Interconnects end to end (issue #15): a simulator whose node networks are separate (its
//! default; `--separate-networks` is still accepted) runs the example fleet; GCP and AWS nodes
//! reach each other only through a link that exists in its cloud fakes.

use std::path::Path;
use std::process::{Command, Output};

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

/// The example fleet (`meshfleet init`) with its `spec.interconnect` block removed.
fn example_without_links(d: &Path) {
    let out = meshfleet(d, &["init", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = std::fs::read_to_string(d.join("fleet.yaml")).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("  interconnect:") && !l.trim_start().starts_with("gcpToAws:"))
        .collect();
    assert!(
        kept.len() < text.lines().count(),
        "the example sets spec.interconnect"
    );
    std::fs::write(d.join("fleet.yaml"), kept.join("\n") + "\n").unwrap();
}

fn connected(st: &Value, cluster: &str) -> Vec<String> {
    st["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster} in {st}"))["connectedPeers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn without_links_cross_cloud_mesh_links_are_down_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_without_links(d);
    let sim = Sim::start_at(
        d,
        "200",
        &["--egress-ip", "203.0.113.10", "--separate-networks"],
    );
    let out = sim.up("20s");
    let text = show(&out);
    // The mesh cannot complete: GCP and AWS nodes have no path.
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("the mesh will be partial"), "{text}");
    assert!(
        text.contains("`gcp-euw1`, `gcp-use1` ↔ `aws-euw1`"),
        "the summary names the clusters apart: {text}"
    );
    assert!(
        text.contains("meshfleet net setup -f"),
        "the summary names the command that makes links: {text}"
    );

    let out = meshfleet(
        d,
        &[
            "mesh",
            "status",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            sim.kc(),
            "-o",
            "json",
        ],
    );
    let st: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    // The two GCP clusters share the fleet's network: meshed. AWS reaches neither.
    assert_eq!(connected(&st, "gcp-euw1"), ["gcp-use1"], "{st}");
    assert_eq!(connected(&st, "gcp-use1"), ["gcp-euw1"], "{st}");
    assert!(connected(&st, "aws-euw1").is_empty(), "{st}");
    let problems = st["problems"].to_string();
    assert!(
        problems.contains("link `meshfleet--aws-euw1`")
            && problems.contains("`spec.interconnect.gcpToAws` is not set"),
        "mesh status names the missing interconnect: {problems}"
    );
    assert!(
        problems.contains("meshfleet net setup -f"),
        "and the command that creates it: {problems}"
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
}
