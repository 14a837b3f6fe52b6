//! `meshfleet sim serve` as a process: port 0, the address on stderr, a 0600 kubeconfig, a
//! SIGTERM stop with exit 0, a restart with `--state` that loses nothing, and usage errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshfleet"))
}

/// Start the simulator and return it with the address it printed.
fn serve(kubeconfig: &Path, state: &Path) -> (Child, String) {
    let _ = std::fs::remove_file(kubeconfig);
    let mut child = bin()
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--speed", "20"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--state")
        .arg(state)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("listening on https://127.0.0.1:"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "kubeconfig not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, line)
}

fn stop(mut child: Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "simulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kubectl() -> bool {
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
        eprintln!("!!! SKIPPING the kubectl part: `kubectl` not found on PATH");
    }
    ok
}

#[test]
fn serve_stop_and_restart_with_state() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let state = dir.path().join("state");
    let (child, _) = serve(&kc, &state);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains("certificate-authority-data:") && text.contains("token:"));
    let has_kubectl = kubectl();
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: default\ndata:\n  k: v\n").unwrap();
    if has_kubectl {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kc)
            .args(["apply", "--server-side", "-f"])
            .arg(&cm)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop(child);
    let (child, _) = serve(&kc, &state);
    if has_kubectl {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kc)
            .args(["get", "configmap", "kept", "-o", "jsonpath={.data.k}"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "v");
    }
    stop(child);
}

#[test]
fn invalid_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    for args in [
        vec!["--faults", "2"],
        vec!["--speed", "0"],
        vec!["--crds", "/definitely/not/here"],
    ] {
        let out = bin()
            .args(["sim", "serve", "--kubeconfig"])
            .arg(&kc)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains('`') && err.contains("hint"), "{err}");
        assert!(!kc.exists());
    }
}
