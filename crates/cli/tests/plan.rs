//! `meshfleet plan` as a user runs it: the built binary in a temporary directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE: &str = include_str!("../../../examples/fleet.yaml");
const HEADER: &str = "# meshfleet.lock:";

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshfleet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("meshfleet runs")
}

fn setup(fleet: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.yaml");
    std::fs::write(&path, fleet).unwrap();
    (dir, path)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The example fleet with one more AWS cluster appended.
fn with_extra_cluster() -> String {
    format!(
        "{EXAMPLE}    - name: aws-use1\n      provider: aws\n      region: us-east-1\n      zones: [us-east-1a]\n      controlPlane: {{ replicas: 3, machineType: m6i.large }}\n"
    )
}

#[test]
fn first_plan_prints_the_table_and_writes_the_lock() {
    let (dir, _) = setup(EXAMPLE);
    let o = run(dir.path(), &["plan", "-f", "fleet.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("example_table", stdout(&o));
    assert!(
        stderr(&o).contains("wrote meshfleet.lock"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("wrote"), "messages stay off stdout");

    let lock = dir.path().join("meshfleet.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.starts_with(HEADER), "{text}");
    assert!(text.contains("do not edit it by hand"));
    assert!(text.contains("Commit it"));
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(
        entries(dir.path()),
        ["fleet.yaml", "meshfleet.lock"],
        "no temp file left"
    );
}

#[test]
fn an_unchanged_plan_leaves_the_lock_alone() {
    let (dir, _) = setup(EXAMPLE);
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    let lock = dir.path().join("meshfleet.lock");
    let before = std::fs::read(&lock).unwrap();
    let ino = std::fs::metadata(&lock).unwrap().ino();
    let o = run(dir.path(), &["plan", "-f", "fleet.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("wrote"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&lock).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&lock).unwrap().ino(),
        ino,
        "not rewritten"
    );
    assert!(
        !stdout(&o).contains('+'),
        "no change is marked:\n{}",
        stdout(&o)
    );
}

#[test]
fn a_changed_plan_replaces_the_lock_by_rename() {
    let (dir, path) = setup(EXAMPLE);
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    let lock = dir.path().join("meshfleet.lock");
    let before = std::fs::read_to_string(&lock).unwrap();
    let ino = std::fs::metadata(&lock).unwrap().ino();
    std::fs::write(&path, with_extra_cluster()).unwrap();
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = std::fs::read_to_string(&lock).unwrap();
    assert_ne!(after, before);
    assert!(after.contains("aws-use1"));
    assert_ne!(
        std::fs::metadata(&lock).unwrap().ino(),
        ino,
        "a new file renamed over the old one, never an in-place write"
    );
    assert_eq!(entries(dir.path()), ["fleet.yaml", "meshfleet.lock"]);
    let out = stdout(&o);
    let row = out.lines().find(|l| l.contains("aws-use1")).unwrap();
    assert!(row.starts_with('+'), "{out}");
    // Existing clusters kept their blocks.
    assert!(after.contains(before.lines().find(|l| l.contains("10.66.0.0/16")).unwrap()));
}

#[test]
fn removed_clusters_are_marked_and_retired_with_their_allocation() {
    let (dir, path) = setup(&with_extra_cluster());
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    std::fs::write(&path, EXAMPLE).unwrap();
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let row = out.lines().find(|l| l.contains("aws-use1")).unwrap();
    assert!(row.starts_with('-') && row.contains("(retired)"), "{out}");
    assert!(out.contains("retired: keeps meshId `4`"), "{out}");
    let lock = std::fs::read_to_string(dir.path().join("meshfleet.lock")).unwrap();
    assert!(
        lock.contains("retired:\n  aws-use1:\n    meshId: 4"),
        "{lock}"
    );
    // A later plan still shows it, retired, without calling it a change again.
    let o = run(dir.path(), &["plan"]);
    let out = stdout(&o);
    let row = out.lines().find(|l| l.contains("aws-use1")).unwrap();
    assert!(row.contains("(retired)"), "{out}");
    assert!(!out.contains("Changes against meshfleet.lock"), "{out}");
}

#[test]
fn json_is_for_programs() {
    let (dir, _) = setup(EXAMPLE);
    let o = run(dir.path(), &["plan", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON only");
    assert_eq!(v["fleet"], "hackathon");
    let c = &v["clusters"][2];
    assert_eq!(c["name"], "aws-euw1");
    assert_eq!(c["provider"], "aws");
    assert_eq!(c["region"], "eu-west-1");
    assert_eq!(c["meshId"], 3);
    assert_eq!(c["network"]["pods"], "10.66.0.0/16");
    assert_eq!(c["network"]["services"], "10.128.32.0/20");
    assert_eq!(c["network"]["nodes"], "10.0.32.0/20");
    let rule = &v["firewall"][0];
    assert_eq!(rule["protocol"], "tcp");
    assert_eq!(rule["ports"][0], 50000);
    assert_eq!(rule["sources"][0], "203.0.113.10/32");
    assert_eq!(rule["targets"][0], "gcp-euw1/control-plane");
    assert_eq!(rule["purpose"], "talos-api-management");
    assert_eq!(
        v["meshPeers"]["aws-euw1"],
        serde_json::json!(["gcp-euw1", "gcp-use1"])
    );
    insta::assert_snapshot!("example_json", stdout(&o));

    let o = run(dir.path(), &["plan", "-o", "yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("meshPeers:"), "{}", stdout(&o));
}

#[test]
fn locked_fails_without_a_lock_and_writes_nothing() {
    let (dir, _) = setup(EXAMPLE);
    let o = run(dir.path(), &["plan", "--locked"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("meshfleet.lock` is missing"), "{err}");
    assert!(err.contains("--locked"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(o.stdout.is_empty());
    assert_eq!(entries(dir.path()), ["fleet.yaml"]);
}

#[test]
fn locked_passes_when_nothing_changes_and_fails_when_something_would() {
    let (dir, path) = setup(EXAMPLE);
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    let o = run(dir.path(), &["plan", "--locked", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();

    let lock = dir.path().join("meshfleet.lock");
    let before = std::fs::read(&lock).unwrap();
    std::fs::write(&path, with_extra_cluster()).unwrap();
    let o = run(dir.path(), &["plan", "--locked"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("would change"), "{err}");
    assert!(err.contains("+ aws-use1"), "{err}");
    assert!(o.stdout.is_empty());
    assert_eq!(std::fs::read(&lock).unwrap(), before, "nothing written");
}

#[test]
fn invalid_input_exits_2_and_writes_nothing() {
    let (dir, _) = setup(&EXAMPLE.replace(
        "pool: 10.64.0.0/10,  prefixLength: 16",
        "pool: 10.64.0.0/14,  prefixLength: 16",
    ));
    let o = run(dir.path(), &["plan"]);
    // 3 clusters fit 4 blocks: valid. Now exhaust it.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (dir, _) = setup(&EXAMPLE.replace(
        "pool: 10.64.0.0/10,  prefixLength: 16",
        "pool: 10.64.0.0/15,  prefixLength: 16",
    ));
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("the pods pool `10.64.0.0/15` is exhausted: 1 more /16 block is needed"),
        "{err}"
    );
    assert!(err.contains("fleet.yaml:17:"), "located in the file: {err}");
    assert!(err.contains("spec.network.pods.pool"), "{err}");
    assert_eq!(entries(dir.path()), ["fleet.yaml"]);

    let (dir, _) = setup("kind: Fleet\n");
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(entries(dir.path()), ["fleet.yaml"]);

    let (dir, _) = setup(EXAMPLE);
    let o = run(dir.path(), &["plan", "-f", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_foreign_or_corrupt_lock_is_refused() {
    let (dir, _) = setup(EXAMPLE);
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    let lock = dir.path().join("meshfleet.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, text.replace("fleet: hackathon", "fleet: other")).unwrap();
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("meshfleet.lock belongs to fleet `other`, not `hackathon`"),
        "{}",
        stderr(&o)
    );
    assert!(
        std::fs::read_to_string(&lock)
            .unwrap()
            .contains("fleet: other"),
        "left untouched"
    );

    std::fs::write(&lock, "clusters: [\n").unwrap();
    let o = run(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a valid lock file"),
        "{}",
        stderr(&o)
    );
}

/// Drop ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn colour_changes_nothing_but_the_colour() {
    let (dir, path) = setup(&with_extra_cluster());
    assert_eq!(run(dir.path(), &["plan"]).status.code(), Some(0));
    // One change of each kind: a removal, an addition and a pin that moves a block.
    let edited = EXAMPLE
        .replace("    - name: gcp-use1", "    - name: gcp-usw1")
        .replace(
            "      labels: { env: prod }\n    - name: aws-euw1",
            "      labels: { env: prod }\n    - name: aws-euw1\n      network: { pods: 10.100.0.0/16 }",
        );
    assert_ne!(edited, EXAMPLE);
    std::fs::write(&path, &edited).unwrap();
    let before = std::fs::read(dir.path().join("meshfleet.lock")).unwrap();
    let plain = run(dir.path(), &["plan", "--locked"]);
    assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
    assert_eq!(
        std::fs::read(dir.path().join("meshfleet.lock")).unwrap(),
        before
    );
    let err = stderr(&plain);
    assert!(
        err.contains("~ aws-euw1: pods `10.66.0.0/16` → `10.100.0.0/16` (pinned)"),
        "{err}"
    );
    assert!(err.contains("- gcp-use1"), "{err}");
    assert!(err.contains("- aws-use1"), "{err}");
    assert!(err.contains("+ gcp-usw1"), "{err}");

    let plain = run(dir.path(), &["plan", "--color", "never"]);
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    // The lock now matches, so the coloured run shows no change: compare against a fresh plan
    // of the same change instead.
    let (dir2, path2) = setup(&with_extra_cluster());
    assert_eq!(run(dir2.path(), &["plan"]).status.code(), Some(0));
    std::fs::write(&path2, &edited).unwrap();
    let coloured = run(dir2.path(), &["plan", "--color", "always"]);
    assert_eq!(coloured.status.code(), Some(0));
    let text = stdout(&coloured);
    assert!(text.contains("\x1b[33m~\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[31m-\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[32m+\x1b[0m"), "{text}");
    assert_eq!(strip_ansi(&text), stdout(&plain));
    let plain_text = stdout(&plain);
    let rows: Vec<&str> = plain_text.lines().collect();
    assert!(
        rows.iter().any(|l| l.starts_with("~  aws-euw1")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|l| l.starts_with("-  gcp-use1")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|l| l.starts_with("+  gcp-usw1")),
        "{rows:#?}"
    );
    assert!(stdout(&plain).contains("Changes against meshfleet.lock:"));
}
