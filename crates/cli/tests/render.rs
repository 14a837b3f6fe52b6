//! `meshfleet render` as a user meets it: the layout, re-rendering, refusing foreign
//! directories, removing a dropped cluster's files and nothing else, never writing the lock.

use std::path::Path;
use std::process::{Command, Output};

const FLEET: &str = include_str!("../../../examples/fleet.yaml");

fn meshfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshfleet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run meshfleet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), FLEET).unwrap();
    dir
}

#[test]
fn renders_the_layout_and_lists_it_on_stdout() {
    let dir = setup();
    let out = meshfleet(
        dir.path(),
        &["render", "-f", "fleet.yaml", "--out", "rendered"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    for p in [
        "rendered/gcp-euw1/cluster.yaml",
        "rendered/gcp-euw1/cilium-values.yaml",
        "rendered/gcp-euw1/talos-controlplane.patch.yaml",
        "rendered/gcp-euw1/talos-worker.patch.yaml",
        "rendered/aws-euw1/cluster.yaml",
        "rendered/fleet/00-namespace.yaml",
        "rendered/fleet/10-cilium-helmchartproxies.yaml",
        "rendered/prerequisites/gcp.yaml",
        "rendered/prerequisites/aws.yaml",
    ] {
        assert!(
            listed.iter().any(|l| l == p),
            "stdout lacks {p}:\n{listed:?}"
        );
        assert!(dir.path().join(p).is_file(), "{p} not written");
    }
    for l in &listed {
        assert!(dir.path().join(l).is_file(), "listed but missing: {l}");
    }
    assert!(dir.path().join("rendered/.meshfleet-render").is_file());
    let err = text(&out.stderr);
    assert!(
        err.contains("rendered fleet `hackathon`: 3 clusters"),
        "{err}"
    );
    // Render reads the lock but never writes it; it says how to record allocations.
    assert!(!dir.path().join("meshfleet.lock").exists());
    assert!(err.contains("meshfleet plan"), "{err}");
    // No temporary files left behind.
    for entry in walk(&dir.path().join("rendered")) {
        let name = Path::new(&entry)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!name.ends_with(".tmp"), "{entry}");
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn rerender_is_byte_identical_and_quiet_hides_the_summary() {
    let dir = setup();
    let args = ["render", "-f", "fleet.yaml", "--out", "out"];
    assert_eq!(meshfleet(dir.path(), &args).status.code(), Some(0));
    let before = std::fs::read(dir.path().join("out/gcp-use1/cluster.yaml")).unwrap();
    let out = meshfleet(
        dir.path(),
        &["--quiet", "render", "-f", "fleet.yaml", "--out", "out"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(
        before,
        std::fs::read(dir.path().join("out/gcp-use1/cluster.yaml")).unwrap()
    );
}

#[test]
fn refuses_a_foreign_non_empty_directory_unless_forced() {
    let dir = setup();
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep me").unwrap();
    let out = meshfleet(dir.path(), &["render", "-f", "fleet.yaml", "--out", "mine"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("not written by `meshfleet render`") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(walk(&dir.path().join("mine")).len(), 1, "nothing written");

    let out = meshfleet(
        dir.path(),
        &["render", "-f", "fleet.yaml", "--out", "mine", "--force"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(dir.path().join("mine/gcp-euw1/cluster.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mine/notes.txt")).unwrap(),
        "keep me"
    );

    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let out = meshfleet(
        dir.path(),
        &["render", "-f", "fleet.yaml", "--out", "afile"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_removed_cluster_loses_its_files_and_nothing_else() {
    let dir = setup();
    let args = ["render", "-f", "fleet.yaml", "--out", "out"];
    assert_eq!(meshfleet(dir.path(), &args).status.code(), Some(0));
    std::fs::write(dir.path().join("out/README.md"), "ours").unwrap();
    std::fs::write(dir.path().join("out/aws-euw1/extra.yaml"), "user file").unwrap();

    // Drop the AWS cluster (the last one in the example).
    let start = FLEET.find("    - name: aws-euw1").unwrap();
    let fewer = FLEET[..start].to_owned();
    std::fs::write(dir.path().join("fleet.yaml"), fewer).unwrap();
    let out = meshfleet(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("removed stale"), "{err}");

    assert!(!dir.path().join("out/aws-euw1/cluster.yaml").exists());
    assert!(!dir.path().join("out/prerequisites/aws.yaml").exists());
    assert!(dir.path().join("out/gcp-euw1/cluster.yaml").is_file());
    // Files render did not write survive, and so does their directory.
    assert!(dir.path().join("out/aws-euw1/extra.yaml").is_file());
    assert!(dir.path().join("out/README.md").is_file());
    let marker = std::fs::read_to_string(dir.path().join("out/.meshfleet-render")).unwrap();
    assert!(!marker.contains("aws-euw1/"), "{marker}");
}

#[test]
fn invalid_fleet_writes_nothing() {
    let dir = setup();
    let bad = FLEET.replace(
        "replicas: 3, machineType: n2-standard-2, diskGiB: 50",
        "replicas: 2, machineType: n2-standard-2",
    );
    std::fs::write(dir.path().join("fleet.yaml"), bad).unwrap();
    let out = meshfleet(dir.path(), &["render", "-f", "fleet.yaml", "--out", "out"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("out").exists());
}

#[test]
fn renders_against_the_lock_without_rewriting_it() {
    let dir = setup();
    let plan = meshfleet(dir.path(), &["plan", "-f", "fleet.yaml"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let lock = std::fs::read(dir.path().join("meshfleet.lock")).unwrap();
    let out = meshfleet(dir.path(), &["render", "-f", "fleet.yaml", "--out", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("does not record"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        lock,
        std::fs::read(dir.path().join("meshfleet.lock")).unwrap()
    );
}
