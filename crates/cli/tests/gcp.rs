//! `meshfleet gcp setup` as a process against the simulator's Google Cloud endpoints: create
//! then unchanged, dry run, kill and resume, injected faults, and the errors that carry a fix.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::BIN;

const PROJECT: &str = "my-project";
const BUCKET: &str = "talos-images-01-7f3a";

/// A simulator process (killed on drop) with its GCP base URL.
struct Sim {
    _process: common::Sim,
    gcp: String,
}

impl Sim {
    fn start(dir: &Path, speed: &str) -> Self {
        let process = common::Sim::spawn(dir, speed, &[]);
        let gcp = process.gcp_url();
        Sim {
            _process: process,
            gcp,
        }
    }

    /// One plain HTTP request to the simulator's GCP listener.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        common::http(&self.gcp, method, path, body)
    }

    fn admin(&self, path: &str, body: &str) {
        let (code, text) = self.http("POST", &format!("/_sim/gcp/{path}"), body);
        assert!((200..300).contains(&code), "admin {path}: {code} {text}");
    }

    fn state(&self) -> Value {
        let (code, text) = self.http("GET", "/_sim/gcp/state", "");
        assert_eq!(code, 200, "{text}");
        // Tolerate a chunked body: the JSON object spans from the first `{` to the last `}`.
        let start = text.find('{').unwrap_or(0);
        let end = text.rfind('}').map_or(text.len(), |e| e + 1);
        serde_json::from_str(&text[start..end]).expect("state JSON")
    }

    fn compute_count(&self) -> usize {
        self.state()["projects"][PROJECT]["compute"]
            .as_object()
            .map_or(0, |m| m.len())
    }
}

/// A fleet directory: the example fleet and a small stand-in for the Talos image.
fn fleet_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let fleet = dir.path().join("fleet.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.yaml"),
        &fleet,
    )
    .expect("copy fleet");
    let image = dir.path().join("talos.raw.tar.gz");
    std::fs::write(&image, vec![7u8; 4096]).expect("image");
    (dir, fleet, image)
}

fn setup(sim: &Sim, fleet: &Path, image: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["gcp", "setup", "-f"])
        .arg(fleet)
        .args(["--endpoint", &sim.gcp, "--image-source"])
        .arg(image)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run gcp setup")
}

fn json_steps(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["steps"].as_array().cloned().expect("steps")
}

fn actions(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .map(|s| s["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn first_run_creates_second_run_reports_only_unchanged() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    let started = Instant::now();
    let first = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let steps = json_steps(&first);
    // APIs, the account, its roles and key, the bucket, the image, the network, a subnet per
    // cluster and a router per region; firewall rules belong to CAPG (the GCPClusters).
    assert!(steps.len() > 15, "{steps:#?}");
    assert!(steps.iter().all(|s| s["kind"] != "firewall"), "{steps:#?}");
    assert!(actions(&steps).iter().all(|a| a == "create"), "{steps:#?}");
    for s in &steps {
        for k in ["kind", "name", "action", "status", "detail"] {
            assert!(s.get(k).is_some(), "{k} missing in {s}");
        }
        assert_eq!(s["status"], "done");
    }

    let second = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let again = json_steps(&second);
    assert_eq!(again.len(), steps.len());
    assert!(
        actions(&again).iter().all(|a| a == "unchanged"),
        "{again:#?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fast against the simulator"
    );

    // What Google now holds.
    let st = sim.state();
    let p = &st["projects"][PROJECT];
    let image_res = &p["compute"]["global/images/talos-v1-13-9-amd64"];
    let features: Vec<&str> = image_res["guestOsFeatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(features, ["VIRTIO_SCSI_MULTIQUEUE", "UEFI_COMPATIBLE"]);
    assert_eq!(image_res["architecture"], "X86_64");
    assert_eq!(
        p["compute"]["global/networks/meshfleet"]["routingConfig"]["routingMode"],
        "GLOBAL"
    );
    assert_eq!(
        p["compute"]["global/networks/meshfleet"]["autoCreateSubnetworks"],
        false
    );
    assert_eq!(
        st["buckets"][BUCKET]["meta"]["iamConfiguration"]["publicAccessPrevention"],
        "enforced"
    );
    let keys = p["keys"]["capg-controller@my-project.iam.gserviceaccount.com"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(keys, 1, "one key, reused by the second run");

    // The key: beside the fleet, 0600, never on stdout or stderr.
    let key = dir
        .path()
        .join(".meshfleet/gcp/my-project-capg-controller.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let secret: Value =
        serde_json::from_str(&std::fs::read_to_string(&key).expect("key")).expect("key JSON");
    let private = secret["private_key"].as_str().expect("private_key");
    for out in [&first, &second] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(private));
        assert!(!stderr(out).contains(private));
    }
}

#[test]
fn dry_run_changes_nothing_and_the_table_is_for_people() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    let dry = setup(&sim, &fleet, &image, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let table = String::from_utf8_lossy(&dry.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["KIND", "NAME", "ACTION", "STATUS", "DETAIL"]);
    assert!(
        lines.all(|l| l.contains(" create ") && l.contains(" planned")),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "NO_COLOR honoured");
    assert_eq!(sim.compute_count(), 0, "dry run created nothing");
    assert!(
        sim.state()["buckets"]
            .as_object()
            .is_none_or(|b| b.is_empty())
    );
    assert!(!dir.path().join(".meshfleet/gcp").exists());

    assert_eq!(setup(&sim, &fleet, &image, &[]).status.code(), Some(0));
    let dry = setup(&sim, &fleet, &image, &["--dry-run", "-o", "json"]);
    assert!(actions(&json_steps(&dry)).iter().all(|a| a == "unchanged"));
}

#[test]
fn killed_mid_way_a_rerun_finishes_the_job() {
    let (dir, fleet, image) = fleet_dir();
    // Speed 1: each Compute operation takes about 300 ms, so the kill lands mid-way.
    let sim = Sim::start(dir.path(), "1");
    let mut child = Command::new(BIN)
        .args(["gcp", "setup", "-f"])
        .arg(&fleet)
        .args(["--endpoint", &sim.gcp, "--image-source"])
        .arg(&image)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "setup ended before the network step"
        );
        assert!(Instant::now() < deadline);
        if line.trim_start().starts_with("network") {
            break;
        }
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let partial = sim.compute_count();
    assert!(partial >= 2, "image and network exist ({partial})");

    let resumed = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let acts = actions(&json_steps(&resumed));
    assert!(acts.iter().any(|a| a == "create"), "the rest was created");
    assert!(
        acts.iter().filter(|a| *a == "unchanged").count() >= 12,
        "{acts:?}"
    );
    let last = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert!(actions(&json_steps(&last)).iter().all(|a| a == "unchanged"));
}

#[test]
fn injected_429_5xx_and_stale_etags_are_retried() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    let faults = [
        (
            r#""GET","pathPrefix":"/v1/projects/my-project/services""#,
            503,
        ),
        (
            r#""POST","pathPrefix":"/v1/projects/my-project/serviceAccounts""#,
            500,
        ),
        (
            r#""POST","pathPrefix":"/v3/projects/my-project:setIamPolicy""#,
            409,
        ),
        (
            r#""GET","pathPrefix":"/storage/v1/b/talos-images-01-7f3a""#,
            429,
        ),
        (
            r#""POST","pathPrefix":"/compute/v1/projects/my-project/global/networks""#,
            429,
        ),
        (
            r#""POST","pathPrefix":"/compute/v1/projects/my-project/regions/us-east1/subnetworks""#,
            502,
        ),
    ];
    for (m, status) in faults {
        sim.admin(
            "faults",
            &format!(r#"{{"method":{m},"status":{status},"count":2}}"#),
        );
    }
    let out = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(actions(&json_steps(&out)).iter().all(|a| a == "create"));
    let again = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert!(
        actions(&json_steps(&again))
            .iter()
            .all(|a| a == "unchanged")
    );
}

#[test]
fn a_failed_operation_is_surfaced_with_its_message() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    // The upload answers 412 (as if the object were there) without storing it, so the image
    // operation fails on its missing raw disk.
    sim.admin(
        "faults",
        r#"{"method":"POST","pathPrefix":"/upload/storage/v1/b/talos-images-01-7f3a","status":412,"count":1}"#,
    );
    let out = setup(&sim, &fleet, &image, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("image `talos-v1-13-9-amd64`"), "{err}");
    assert!(
        err.contains("operation") && err.contains("was not found"),
        "{err}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().last().unwrap_or_default().contains("failed"),
        "{table}"
    );
}

fn fails_with(sim: &Sim, fleet: &Path, image: &Path, code: i32, needles: &[&str]) {
    let out = setup(sim, fleet, image, &[]);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    let err = stderr(&out);
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

#[test]
fn billing_disabled_gives_the_fix() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    sim.admin(&format!("projects/{PROJECT}"), r#"{"billing":false}"#);
    fails_with(
        &sim,
        &fleet,
        &image,
        1,
        &[
            "billing is not enabled",
            "gcloud billing projects link my-project",
        ],
    );
}

#[test]
fn a_bucket_owned_by_someone_else_gives_the_fix() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    sim.admin(&format!("foreign-buckets/{BUCKET}"), "{}");
    fails_with(
        &sim,
        &fleet,
        &image,
        1,
        &[
            "belongs to someone else",
            "pick another `spec.providers.gcp.imageBucket`",
        ],
    );
}

#[test]
fn blocked_key_creation_gives_the_fix() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    sim.admin(
        &format!("projects/{PROJECT}"),
        r#"{"keyCreationBlocked":true}"#,
    );
    fails_with(
        &sim,
        &fleet,
        &image,
        1,
        &["iam.disableServiceAccountKeyCreation", "Workload Identity"],
    );
}

#[test]
fn missing_permission_names_the_role() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    sim.admin(
        "faults",
        r#"{"pathPrefix":"/v1/projects/my-project/services","status":403,"count":100}"#,
    );
    fails_with(
        &sim,
        &fleet,
        &image,
        1,
        &["permission denied", "roles/serviceusage.serviceUsageAdmin"],
    );
}

#[test]
fn unusable_input_exits_2() {
    let (dir, fleet, _image) = fleet_dir();
    let out = Command::new(BIN)
        .args(["gcp", "setup", "-f"])
        .arg(&fleet)
        .args([
            "--endpoint",
            "http://127.0.0.1:9",
            "--image-source",
            "/nonexistent.raw.tar.gz",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--image-source"));

    let text = std::fs::read_to_string(&fleet).expect("fleet");
    std::fs::write(
        &fleet,
        text.replace(", imageBucket: talos-images-01-7f3a", ""),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["gcp", "setup", "-f"])
        .arg(&fleet)
        .args(["--endpoint", "http://127.0.0.1:9"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("imageBucket"), "{}", stderr(&out));
    drop(dir);
}

#[test]
fn drift_in_owned_fields_is_patched_through_the_api() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "20");
    assert_eq!(setup(&sim, &fleet, &image, &[]).status.code(), Some(0));
    let base = "/compute/v1/projects/my-project";
    let (c, t) = sim.http(
        "POST",
        &format!(
            "{base}/regions/europe-west1/subnetworks/meshfleet-gcp-euw1/setPrivateIpGoogleAccess"
        ),
        r#"{"privateIpGoogleAccess":false}"#,
    );
    assert!(c < 300, "{c} {t}");
    let (c, t) = sim.http(
        "PATCH",
        &format!("{base}/regions/us-east1/routers/meshfleet-us-east1"),
        r#"{"nats":[]}"#,
    );
    assert!(c < 300, "{c} {t}");
    // Let the simulated operations finish.
    std::thread::sleep(Duration::from_millis(200));

    let out = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut updated: Vec<(String, String)> = json_steps(&out)
        .iter()
        .filter(|s| s["action"] == "update")
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_owned(),
                s["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    updated.sort();
    assert_eq!(
        updated,
        [
            ("router".to_owned(), "meshfleet-us-east1".to_owned()),
            ("subnetwork".to_owned(), "meshfleet-gcp-euw1".to_owned()),
        ]
    );
    let again = setup(&sim, &fleet, &image, &["-o", "json"]);
    assert!(
        actions(&json_steps(&again))
            .iter()
            .all(|a| a == "unchanged")
    );
}

#[test]
fn a_fleet_without_gcp_clusters_has_nothing_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let fleet = dir.path().join("fleet.yaml");
    std::fs::write(
        &fleet,
        "apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: { name: awsonly }
spec:
  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }
  network:
    pods:     { pool: 10.64.0.0/10,  prefixLength: 16 }
    services: { pool: 10.128.0.0/12, prefixLength: 20 }
    nodes:    { pool: 10.0.0.0/14,   prefixLength: 20 }
  management: { egressCIDRs: [203.0.113.10/32] }
  providers:
    aws: { sshKeyName: ops }
  clusters:
    - name: aws-euw1
      provider: aws
      region: eu-west-1
      zones: [eu-west-1a, eu-west-1b, eu-west-1c]
      controlPlane: { replicas: 3, machineType: m6i.large }
      workerPools:
        - { name: general, replicas: 3, machineType: m6i.xlarge }
",
    )
    .expect("fleet");
    // No endpoint and no credentials needed: nothing is called.
    let out = Command::new(BIN)
        .args(["gcp", "setup", "-o", "json", "-f"])
        .arg(&fleet)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
    assert!(json_steps(&out).is_empty());
}

#[test]
fn kubeconfig_hands_the_key_to_capg_once() {
    let (dir, fleet, image) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    let kc = sim._process.kubeconfig.clone();
    let with_kc = |extra: &[&str]| {
        let mut args = vec!["-o", "json", "--kubeconfig", kc.to_str().unwrap()];
        args.extend_from_slice(extra);
        setup(&sim, &fleet, &image, &args)
    };
    let last = |out: &Output| {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        json_steps(out).last().cloned().expect("a step")
    };
    let planned = last(&with_kc(&["--dry-run"]));
    assert_eq!(planned["kind"], "credentials", "{planned}");
    assert_eq!(
        planned["name"],
        "capg-system/capg-manager-bootstrap-credentials"
    );
    assert_eq!(
        (planned["action"].as_str(), planned["status"].as_str()),
        (Some("create"), Some("planned"))
    );
    let created = last(&with_kc(&[]));
    assert_eq!(
        (created["action"].as_str(), created["status"].as_str()),
        (Some("create"), Some("done")),
        "{created}"
    );
    let again = with_kc(&[]);
    assert!(
        actions(&json_steps(&again))
            .iter()
            .all(|a| a == "unchanged")
    );
    // The Secret holds the key file, byte for byte, and the key is never printed.
    let key = std::fs::read_to_string(
        dir.path()
            .join(".meshfleet/gcp")
            .join(format!("{PROJECT}-capg-controller.json")),
    )
    .expect("key file");
    let private: Value = serde_json::from_str(&key).unwrap();
    let private = private["private_key"].as_str().unwrap().to_owned();
    assert!(!String::from_utf8_lossy(&again.stdout).contains(&private));
    assert!(!stderr(&again).contains(&private));
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args([
                "-n",
                "capg-system",
                "get",
                "secret",
                "capg-manager-bootstrap-credentials",
                "-o",
                "jsonpath={.data.credentials\\.json}",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        use base64::Engine as _;
        let held = base64::engine::general_purpose::STANDARD
            .decode(out.stdout.trim_ascii())
            .unwrap();
        assert_eq!(held, key.as_bytes());
    } else {
        assert_ne!(
            std::env::var("MESHFLEET_REQUIRE_KUBECTL").as_deref(),
            Ok("1"),
            "kubectl is required but missing"
        );
        eprintln!("!!! SKIPPING the kubectl part: `kubectl` not found on PATH");
    }
}
