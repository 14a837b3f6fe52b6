//! `meshfleet aws setup` as a process against the simulator's AWS endpoint: create then
//! unchanged, dry run, kill -9 mid-way and resume, a missing AMI or key pair (exit 1), bad
//! input (exit 2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
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
        let hostport = self.aws.trim_start_matches("http://");
        let mut s = TcpStream::connect(hostport).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let code = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        (code, body.to_owned())
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

#[test]
fn doctor_is_ready_only_after_gcp_and_aws_setup() {
    let (dir, fleet) = fleet_dir();
    let sim = Sim::start(dir.path(), "50");
    sim.seed(true, true);
    let gcp = sim.process.gcp_url();
    let doctor = |extra: &[&str]| {
        Command::new(BIN)
            .args(["doctor", "-f"])
            .arg(&fleet)
            .args(["--gcp-endpoint", &gcp, "--aws-endpoint", &sim.aws])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .output()
            .expect("run doctor")
    };
    let before = doctor(&["-o", "json"]);
    assert_eq!(before.status.code(), Some(1), "{}", stderr(&before));
    let v: Value = serde_json::from_slice(&before.stdout).expect("JSON");
    assert_eq!(v["ready"], false);
    let clouds: Vec<&str> = v["clouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cloud"].as_str().unwrap())
        .collect();
    assert_eq!(clouds, ["gcp", "aws"]);
    assert!(
        stderr(&before).contains("run `meshfleet aws setup"),
        "{}",
        stderr(&before)
    );
    assert_eq!(sim.stack_status(), None, "doctor wrote");
    sim.process.gcp_setup();
    let out = setup(&sim, &fleet, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = doctor(&[]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&after),
        String::from_utf8_lossy(&after.stdout)
    );
    assert!(stderr(&after).contains("gcp: ready") && stderr(&after).contains("aws: ready"));
}
