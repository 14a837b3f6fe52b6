//! `meshfleet aws setup` as a process against the simulator's AWS endpoint: create then
//! unchanged, dry run, kill -9 mid-way and resume, a missing AMI or key pair (exit 1), bad
//! input (exit 2).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::BIN;

const STACK: &str = "cluster-api-provider-aws-sigs-k8s-io";
const AMI: &str = "talos-v1.13.9-eu-west-1-amd64";

/// A simulator process (killed on drop) with its AWS base URL.
struct Sim {
    process: common::Sim,
    aws: String,
}

impl Sim {
    fn start(dir: &Path, speed: &str) -> Self {
        let process = common::Sim::spawn(dir, speed, &[]);
        let mut p = process.kubeconfig.clone().into_os_string();
        p.push(".endpoints.json");
        let text = std::fs::read_to_string(PathBuf::from(p)).expect("endpoints file");
        let v: Value = serde_json::from_str(&text).expect("endpoints JSON");
        let aws = v["aws"].as_str().expect("aws endpoint").to_owned();
        Sim { process, aws }
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        common::http(&self.aws, method, path, body)
    }

    fn seed(&self, images: bool, key: bool) {
        let body = serde_json::json!({
            "images": if images { serde_json::json!([{"region": "eu-west-1", "name": AMI}]) } else { serde_json::json!([]) },
            "keyPairs": if key { serde_json::json!([{"region": "eu-west-1", "name": "ops"}]) } else { serde_json::json!([]) },
        });
        let (code, text) = self.http("POST", "/_sim/aws/seed", &body.to_string());
        assert_eq!(code, 200, "{text}");
    }

    fn state(&self) -> Value {
        let (code, text) = self.http("GET", "/_sim/aws/state", "");
        assert_eq!(code, 200, "{text}");
        let start = text.find('{').unwrap_or(0);
        let end = text.rfind('}').map_or(text.len(), |e| e + 1);
        serde_json::from_str(&text[start..end]).expect("state JSON")
    }

    fn stack_status(&self) -> Option<String> {
        self.state()["stacks"][format!("eu-west-1/{STACK}")]["status"]
            .as_str()
            .map(str::to_owned)
    }
}

fn fleet_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let fleet = dir.path().join("fleet.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.yaml"),
        &fleet,
    )
    .expect("copy fleet");
    (dir, fleet)
}

fn setup_cmd(sim: &Sim, fleet: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["aws", "setup", "-f"])
        .arg(fleet)
        .args(["--endpoint", &sim.aws])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID");
    c
}

fn setup(sim: &Sim, fleet: &Path, extra: &[&str]) -> Output {
    setup_cmd(sim, fleet, extra)
        .output()
        .expect("run aws setup")
}

fn json_steps(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    });
    v["steps"].as_array().cloned().expect("steps")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn actions(steps: &[Value]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_owned(),
                s["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn create_then_unchanged_with_the_capa_credentials_hint() {
    let (dir, fleet) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    sim.seed(true, true);
    let first = setup(&sim, &fleet, &["-o", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let steps = json_steps(&first);
    let want: Vec<(String, String)> = [
        ("account", "unchanged"),
        ("region", "unchanged"),
        ("ami", "unchanged"),
        ("key-pair", "unchanged"),
        ("iam-stack", "create"),
    ]
    .iter()
    .map(|(k, a)| ((*k).to_owned(), (*a).to_owned()))
    .collect();
    assert_eq!(actions(&steps), want, "{steps:#?}");
    for s in &steps {
        for k in ["kind", "name", "action", "status", "detail"] {
            assert!(s.get(k).is_some(), "{k} missing in {s}");
        }
    }
    let err = stderr(&first);
    assert!(
        err.contains("AWS_B64ENCODED_CREDENTIALS") && err.contains("encode-as-profile"),
        "{err}"
    );
    assert!(
        !err.contains("meshfleet-emulator"),
        "credentials printed: {err}"
    );
    assert_eq!(sim.stack_status().as_deref(), Some("CREATE_COMPLETE"));
    let second = setup(&sim, &fleet, &["-o", "json"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        actions(&json_steps(&second))
            .iter()
            .all(|(_, a)| a == "unchanged")
    );
    // The table goes to stdout too.
    let table = setup(&sim, &fleet, &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("KIND") && text.contains("iam-stack") && text.contains(STACK),
        "{text}"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let (dir, fleet) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    sim.seed(true, true);
    let out = setup(&sim, &fleet, &["--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let steps = json_steps(&out);
    let last = steps.last().unwrap();
    assert_eq!(last["status"], "planned");
    assert!(
        last["detail"].as_str().unwrap().starts_with("would create"),
        "{last}"
    );
    assert_eq!(sim.stack_status(), None);
}

#[test]
fn killed_mid_way_then_resumed() {
    let (dir, fleet) = fleet_dir();
    // 300 ms / 0.1: the stack stays in progress for 3 s.
    let sim = Sim::start(dir.path(), "0.1");
    sim.seed(true, true);
    let mut child = setup_cmd(&sim, &fleet, &["-o", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aws setup");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let start = Instant::now();
    loop {
        let line = lines
            .next()
            .expect("stderr closed before the stack step")
            .expect("read");
        if line.contains("waiting for CloudFormation") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never reached the stack step"
        );
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(sim.stack_status().as_deref(), Some("CREATE_IN_PROGRESS"));
    let out = setup(&sim, &fleet, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let steps = json_steps(&out);
    assert_eq!(
        actions(&steps).last().unwrap(),
        &("iam-stack".to_owned(), "unchanged".to_owned())
    );
    assert!(stderr(&out).contains("waiting for CloudFormation"));
    assert_eq!(sim.stack_status().as_deref(), Some("CREATE_COMPLETE"));
}

#[test]
fn missing_ami_then_missing_key_pair_fail_with_the_fix() {
    let (dir, fleet) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    let out = setup(&sim, &fleet, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for part in ["eu-west-1", "v1.13.9", AMI, "import-snapshot"] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    let steps = json_steps(&out);
    assert_eq!(steps.last().unwrap()["status"], "failed");
    sim.seed(true, false);
    let out = setup(&sim, &fleet, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("key pair `ops`") && stderr(&out).contains("import-key-pair"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sim.stack_status(), None, "a failed check wrote");
}

#[test]
fn bad_input_is_exit_2() {
    let (dir, fleet) = fleet_dir();
    let out = Command::new(BIN)
        .args(["aws", "setup", "-f"])
        .arg(&fleet)
        .args(["--endpoint", "localhost:5000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not an http(s) URL"));
    let out = Command::new(BIN)
        .args(["aws", "setup", "-f"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert_ne!(
            std::env::var("MESHFLEET_REQUIRE_KUBECTL").as_deref(),
            Ok("1"),
            "kubectl is required but missing"
        );
        eprintln!("!!! SKIPPING: `kubectl` not found on PATH");
    }
    ok
}

fn kubectl(sim: &Sim, args: &[&str]) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&sim.process.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
}

/// The checks of a `doctor -o json` run, by name.
fn checks(out: &Output) -> std::collections::BTreeMap<String, Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    });
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

#[test]
fn doctor_reports_each_missing_piece_with_its_fix_until_all_is_ok() {
    if !have_kubectl() {
        return;
    }
    let (dir, fleet) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    sim.seed(true, true);
    let gcp = sim.process.gcp_url();
    let doctor = |kubeconfig: &Path| {
        Command::new(BIN)
            .args(["doctor", "-o", "json", "-f"])
            .arg(&fleet)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--gcp-endpoint", &gcp, "--aws-endpoint", &sim.aws])
            .env("NO_COLOR", "1")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .output()
            .expect("run doctor")
    };
    let kc = sim.process.kubeconfig.clone();
    let capg = "credentials capg-system/capg-manager-bootstrap-credentials";
    let capa = "credentials capa-system/capa-manager-bootstrap-credentials";

    // Before any setup: the providers are there (the simulator is an initialised management
    // cluster), their credentials and both clouds' prerequisites are not; nothing is written.
    let before = doctor(&kc);
    assert_eq!(before.status.code(), Some(1), "{}", stderr(&before));
    let c = checks(&before);
    assert_eq!(c["fleet"]["status"], "ok");
    assert_eq!(c["management cluster"]["status"], "ok");
    for p in [
        "cluster-api",
        "bootstrap-talos",
        "control-plane-talos",
        "infrastructure-gcp",
        "infrastructure-aws",
        "addon-helm",
    ] {
        assert_eq!(c[&format!("provider {p}")]["status"], "ok", "{p}: {:?}", c);
    }
    assert_eq!(c[capg]["status"], "missing");
    assert_eq!(c[capa]["status"], "missing");
    assert!(
        c[capa]["fix"]
            .as_str()
            .unwrap()
            .contains("AWS_B64ENCODED_CREDENTIALS")
    );
    for cloud in ["gcp", "aws"] {
        let k = &c[&format!("{cloud} prerequisites")];
        assert_eq!(k["status"], "missing", "{k}");
        assert!(
            k["fix"]
                .as_str()
                .unwrap()
                .starts_with(&format!("meshfleet {cloud} setup -f ")),
            "{k}"
        );
    }
    assert!(stderr(&before).contains("not ready"), "{}", stderr(&before));
    assert_eq!(sim.stack_status(), None, "doctor wrote");

    // A provider older than meshfleet's objects need is wrong, with the upgrade line.
    let patch = |v: &str| {
        kubectl(
            &sim,
            &[
                "-n",
                "capa-system",
                "patch",
                "providers.clusterctl.cluster.x-k8s.io",
                "infrastructure-aws",
                "--type=merge",
                "-p",
                &format!("{{\"version\":\"{v}\"}}"),
            ],
        )
    };
    patch("v2.10.0");
    let c = checks(&doctor(&kc));
    let capa_provider = &c["provider infrastructure-aws"];
    assert_eq!(capa_provider["status"], "wrong", "{capa_provider}");
    assert_eq!(
        capa_provider["fix"],
        "clusterctl upgrade apply --infrastructure capa-system/aws:v2.11.1"
    );
    patch("v2.11.1");

    // The clouds, then the credentials: the GCP fix is run as printed (its first command: the
    // simulator runs no controller Deployments to restart), the AWS profile as
    // `clusterawsadm bootstrap credentials encode-as-profile` would print it.
    sim.process.gcp_setup();
    let out = setup(&sim, &fleet, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c = checks(&doctor(&kc));
    assert_eq!(c["gcp prerequisites"]["status"], "ok", "{:?}", c);
    assert_eq!(c["aws prerequisites"]["status"], "ok", "{:?}", c);
    let fix = c[capg]["fix"].as_str().unwrap().to_owned();
    let first = fix.split(" && ").next().unwrap();
    let out = Command::new("sh")
        .args(["-c", first])
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{first}: {}", stderr(&out));
    let profile = dir.path().join("profile");
    std::fs::write(
        &profile,
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = example\nregion = eu-west-1\n",
    )
    .unwrap();
    kubectl(
        &sim,
        &[
            "-n",
            "capa-system",
            "create",
            "secret",
            "generic",
            "capa-manager-bootstrap-credentials",
            &format!("--from-file=credentials={}", profile.display()),
        ],
    );
    let after = doctor(&kc);
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&after),
        String::from_utf8_lossy(&after.stdout)
    );
    let c = checks(&after);
    assert_eq!(c[capg]["status"], "ok");
    assert!(
        c[capg]["detail"]
            .as_str()
            .unwrap()
            .contains("capg-controller@")
    );
    assert!(!String::from_utf8_lossy(&after.stdout).contains("AKIDEXAMPLE"));
    assert!(
        stderr(&after).contains("doctor: ready"),
        "{}",
        stderr(&after)
    );

    // A management cluster that does not answer is one wrong line, not a crash.
    let dead = dir.path().join("dead-kubeconfig");
    let text = std::fs::read_to_string(&kc).unwrap();
    let at = text.find("https://127.0.0.1:").expect("server URL") + "https://127.0.0.1:".len();
    let port: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    std::fs::write(
        &dead,
        text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1"),
    )
    .unwrap();
    let out = doctor(&dead);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let c = checks(&out);
    assert_eq!(c["management cluster"]["status"], "wrong", "{:?}", c);
}
