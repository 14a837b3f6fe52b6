//! The `meshfleet sim serve` harness the end-to-end tests share: a simulator process on
//! 127.0.0.1:0, killed when dropped, whose simulated GCP project is prepared with the real
//! `meshfleet gcp setup` when the test directory holds a fleet, as a user would before `up`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_meshfleet");

/// `--crds DIR` with the upstream CRDs when they are there: the simulator then validates every
/// object `up` applies strictly against the real schemas.
pub fn crds_args() -> Vec<String> {
    let dir = std::env::var_os("MESHFLEET_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/schemas"))
        .join("crds");
    if dir.is_dir() {
        vec!["--crds".into(), dir.display().to_string()]
    } else {
        eprintln!(
            "!!! upstream CRDs not found at `{}`: the simulator validates with its built-in kinds only (set MESHFLEET_SCHEMA_DIR)",
            dir.display()
        );
        Vec::new()
    }
}

/// A running `meshfleet sim serve`.
pub struct Sim {
    /// The process.
    pub child: Child,
    /// Its management kubeconfig.
    pub kubeconfig: PathBuf,
    /// The test directory.
    pub dir: PathBuf,
}

impl Sim {
    /// Start a simulator in `dir` (log in `dir/sim.log`) and, when `dir/fleet.yaml` exists,
    /// prepare its GCP project with `meshfleet gcp setup`.
    pub fn start_at(dir: &Path, speed: &str, extra: &[&str]) -> Self {
        let sim = Self::spawn(dir, speed, extra);
        if dir.join("fleet.yaml").exists() {
            sim.gcp_setup();
            sim.aws_setup();
        }
        sim
    }

    /// Start a simulator without touching its GCP project.
    pub fn spawn(dir: &Path, speed: &str, extra: &[&str]) -> Self {
        Self::spawn_with(dir, speed, extra, true)
    }

    /// [`Sim::spawn`] without `--crds`: the benchmarks measure `up`, not schema validation.
    pub fn spawn_unvalidated(dir: &Path, speed: &str, extra: &[&str]) -> Self {
        Self::spawn_with(dir, speed, extra, false)
    }

    fn spawn_with(dir: &Path, speed: &str, extra: &[&str], crds: bool) -> Self {
        let kubeconfig = dir.join("mgmt.kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::File::create(dir.join("sim.log")).unwrap();
        let child = Command::new(BIN)
            .args(["sim", "serve", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--speed", speed])
            .args(if crds { crds_args() } else { Vec::new() })
            // Tests of the lifecycle run `up --kubeconfig`, which does not create the links
            // between node networks (`net setup` does, after CAPA has made the VPCs): they get
            // one shared network unless they ask for separate ones. The interconnect tests
            // (`net.rs`, `interconnect.rs`) pass `--separate-networks` or use `up --sim`.
            .args(if extra.contains(&"--separate-networks") {
                None
            } else {
                Some("--shared-networks")
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the simulator");
        let mut sim = Sim {
            child,
            kubeconfig,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while !sim.kubeconfig.exists() {
            if let Ok(Some(s)) = sim.child.try_wait() {
                panic!(
                    "simulator exited ({s}): {}",
                    std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "simulator never got ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file appears before it is complete only if written non-atomically; give it a beat.
        std::thread::sleep(Duration::from_millis(50));
        sim
    }

    /// The kubeconfig path as a string argument.
    pub fn kc(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    /// The simulated Google APIs' base URL, from `<kubeconfig>.endpoints.json`.
    pub fn gcp_url(&self) -> String {
        self.endpoint("gcp")
    }

    /// `meshfleet up` of `dir/fleet.yaml` against this simulator with `--timeout`.
    pub fn up(&self, timeout: &str) -> Output {
        Command::new(BIN)
            .args(["up", "-f", "fleet.yaml", "--kubeconfig", self.kc()])
            .args(["--timeout", timeout])
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("run meshfleet up")
    }

    /// `meshfleet gcp setup` of `dir/fleet.yaml` against this simulator; panics unless it
    /// succeeds.
    pub fn gcp_setup(&self) {
        let image = self.dir.join("talos-gcp.raw.tar.gz");
        std::fs::write(&image, b"test stand-in for the Talos GCP disk\n").unwrap();
        let url = self.gcp_url();
        let out = rerun_on_failure(|| {
            Command::new(BIN)
                .args([
                    "gcp",
                    "setup",
                    "-f",
                    "fleet.yaml",
                    "-o",
                    "json",
                    "--endpoint",
                ])
                .arg(&url)
                .arg("--image-source")
                .arg(&image)
                .current_dir(&self.dir)
                .env("NO_COLOR", "1")
                .output()
                .expect("run gcp setup")
        });
        assert_eq!(
            out.status.code(),
            Some(0),
            "gcp setup failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An endpoint of `<kubeconfig>.endpoints.json` (`gcp`, `aws`).
    pub fn endpoint(&self, which: &str) -> String {
        let mut p = self.kubeconfig.clone().into_os_string();
        p.push(".endpoints.json");
        let text = std::fs::read_to_string(PathBuf::from(p)).expect("endpoints file");
        let v: Value = serde_json::from_str(&text).expect("endpoints JSON");
        v[which].as_str().expect("endpoint").to_string()
    }

    /// When `dir/fleet.yaml` has AWS clusters: give the simulated account what a real one
    /// already has (Sidero's public Talos AMI in each region, the key pair the fleet names),
    /// then run `meshfleet aws setup` against it, as a user would before `up`.
    pub fn aws_setup(&self) {
        let out_dir = self.dir.join(".harness-render");
        let out = Command::new(BIN)
            .args(["render", "-f", "fleet.yaml", "--out"])
            .arg(&out_dir)
            .current_dir(&self.dir)
            .output()
            .expect("run render");
        assert_eq!(
            out.status.code(),
            Some(0),
            "render: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Ok(text) = std::fs::read_to_string(out_dir.join("prerequisites/aws.yaml")) else {
            let _ = std::fs::remove_dir_all(&out_dir);
            return;
        };
        let _ = std::fs::remove_dir_all(&out_dir);
        let prereq: Value = serde_saphyr::from_str(&text).expect("aws.yaml");
        let regions = prereq["regions"].as_array().cloned().unwrap_or_default();
        let images: Vec<Value> = regions
            .iter()
            .map(|r| {
                serde_json::json!({"region": r["region"], "name": r["ami"]["name"],
                    "owner": r["ami"]["owner"]})
            })
            .collect();
        let keys: Vec<Value> = match prereq["sshKeyName"].as_str() {
            Some(k) => regions
                .iter()
                .map(|r| serde_json::json!({"region": r["region"], "name": k}))
                .collect(),
            None => Vec::new(),
        };
        let url = self.endpoint("aws");
        let body = serde_json::json!({"images": images, "keyPairs": keys}).to_string();
        post(&url, "/_sim/aws/seed", &body);
        let out = rerun_on_failure(|| {
            Command::new(BIN)
                .args([
                    "aws",
                    "setup",
                    "-f",
                    "fleet.yaml",
                    "-o",
                    "json",
                    "--endpoint",
                ])
                .arg(&url)
                .current_dir(&self.dir)
                .env("NO_COLOR", "1")
                .output()
                .expect("run aws setup")
        });
        assert_eq!(
            out.status.code(),
            Some(0),
            "aws setup failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-HTTP POST to a local endpoint (`http://127.0.0.1:PORT`), panicking unless 2xx.
fn post(base: &str, path: &str, body: &str) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(
        reply.starts_with("HTTP/1.1 2") || reply.starts_with("HTTP/1.0 2"),
        "{path}: {reply}"
    );
}

/// Run a setup again when it failed at run time (exit 1), as a user does: setups are built to
/// be re-run, and a simulator started with `--faults` also injects faults into the cloud fakes
/// (a failed key creation is not retried within one run, since it is not idempotent). Invalid
/// input (exit 2) is not retried.
fn rerun_on_failure(mut run: impl FnMut() -> Output) -> Output {
    let mut out = run();
    for _ in 0..3 {
        if out.status.code() != Some(1) {
            break;
        }
        out = run();
    }
    out
}

/// One plain HTTP/1.1 request to a listener of the simulator (`base` is `http://host:port`):
/// the status code and the body. The cloud fakes speak plain HTTP, so no client crate is needed.
pub fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).expect("connect");
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
