//! `mesh test`, `sim fail` and `sim heal` end to end: the example fleet with `up --sim` (each
//! command serving the kept simulator state), and a fleet with two clusters in one region on a
//! running `meshfleet sim serve` (`--kubeconfig`), where the survivors' Cilium keeps a lost
//! cluster's backends for `cacheTTL` before the global service fails over.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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

/// `mesh test -o json` with `target` (`--sim` or `--kubeconfig K`): exit code and report.
fn mesh_test(dir: &Path, target: &[&str]) -> (Option<i32>, Value, Output) {
    let mut args = vec!["mesh", "test", "-f", "fleet.yaml", "-o", "json"];
    args.extend_from_slice(target);
    let out = meshfleet(dir, &args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    // Whatever passed or failed, the clusters that answer are cleaned up.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not removed"),
        "{}",
        show(&out)
    );
    (out.status.code(), v, out)
}

fn ok_pairs(v: &Value) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = v["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["ok"] == true)
        .map(|x| {
            (
                x["from"].as_str().unwrap().into(),
                x["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    p.sort();
    p
}

fn served_by(v: &Value, from: &str) -> (bool, Vec<String>) {
    served_by_name(v, from, ".svc.cluster.local")
}

/// The global service entry from `from` whose name ends with `suffix`.
fn served_by_name(v: &Value, from: &str, suffix: &str) -> (bool, Vec<String>) {
    let g = v["globalServices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["from"] == from && g["service"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no global service entry from {from}: {v}"));
    let by = g["servedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (g["ok"] == true, by)
}

/// Every ordered pair of `clusters` except those touching `down`.
fn pairs_without(clusters: &[&str], down: &[&str]) -> Vec<(String, String)> {
    let mut p = Vec::new();
    for a in clusters {
        for b in clusters {
            if a != b && !down.contains(a) && !down.contains(b) {
                p.push((a.to_string(), b.to_string()));
            }
        }
    }
    p.sort();
    p
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// No object of the test namespace is left in any kept workload cluster.
fn namespace_gone(state: &Path) {
    for f in std::fs::read_dir(state.join("workloads")).unwrap() {
        let p = f.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("meshfleet-mesh-test"),
            "`{}` still holds objects of the test namespace",
            p.display()
        );
    }
}

#[test]
fn the_example_green_then_a_cluster_outage_then_healed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet.yaml"),
        d.join("fleet.yaml"),
    )
    .unwrap();
    let out = meshfleet(d, &["up", "--sim", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let all = ["aws-euw1", "gcp-euw1", "gcp-use1"];
    let state = d.join(".meshfleet/sim/hackathon/state");

    let (code, v, out) = mesh_test(d, &["--sim"]);
    assert_eq!(code, Some(0), "{}", show(&out));
    assert_eq!(ok_pairs(&v), pairs_without(&all, &[]), "{v}");
    for c in all {
        assert_eq!(served_by(&v, c), (true, strings(&all)), "{v}");
    }
    namespace_gone(&state);

    // gcp-use1 goes down: exactly its pairs fail, and the others' global service is served by
    // the two survivors.
    let out = meshfleet(
        d,
        &[
            "sim",
            "fail",
            "--sim",
            "-f",
            "fleet.yaml",
            "--cluster",
            "gcp-use1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (code, v, out) = mesh_test(d, &["--sim"]);
    assert_eq!(code, Some(1), "{}", show(&out));
    assert_eq!(ok_pairs(&v), pairs_without(&all, &["gcp-use1"]), "{v}");
    for p in v["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
    {
        assert!(
            p["error"]
                .as_str()
                .unwrap()
                .contains("outage of the cluster or its region"),
            "{p}"
        );
    }
    for c in ["aws-euw1", "gcp-euw1"] {
        assert_eq!(
            served_by(&v, c),
            (true, strings(&["aws-euw1", "gcp-euw1"])),
            "{v}"
        );
    }
    assert!(!served_by(&v, "gcp-use1").0);
    // `mesh status` shows it too.
    let out = meshfleet(d, &["mesh", "status", "--sim", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("gcp-use1"), "{}", show(&out));

    // Healed: green again without `up`, and nothing is left behind (gcp-use1 kept the
    // namespace while it was down; this run removes it).
    let out = meshfleet(
        d,
        &[
            "sim",
            "heal",
            "--sim",
            "-f",
            "fleet.yaml",
            "--cluster",
            "gcp-use1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (code, v, out) = mesh_test(d, &["--sim"]);
    assert_eq!(code, Some(0), "{}", show(&out));
    assert_eq!(ok_pairs(&v), pairs_without(&all, &[]), "{v}");
    namespace_gone(&state);

    // A table for people, and a name that is no cluster is refused.
    let out = meshfleet(d, &["mesh", "test", "--sim", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("FROM \\ TO") && table.contains('✓'),
        "{table}"
    );
    let out = meshfleet(
        d,
        &[
            "sim",
            "fail",
            "--sim",
            "-f",
            "fleet.yaml",
            "--cluster",
            "nope",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

const TRIO: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: trio }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  network:\n    pods: { pool: 10.64.0.0/10, prefixLength: 16 }\n    services: { pool: 10.128.0.0/12, prefixLength: 20 }\n    nodes: { pool: 10.0.0.0/14, prefixLength: 20 }\n  mesh: { enabled: true, maxConnectedClusters: 255, services: { cacheTTL: 2m, mcsApi: true } }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  providers:\n    gcp: { project: my-project, network: meshfleet, imageBucket: talos-images-01-7f3a }\n  clusters:\n    - name: eu-a\n      provider: gcp\n      region: europe-west1\n      zones: [europe-west1-b]\n      controlPlane: { replicas: 1, machineType: n2-standard-2 }\n      workerPools:\n        - { name: general, replicas: 1, machineType: n2-standard-4 }\n    - name: eu-b\n      provider: gcp\n      region: europe-west1\n      zones: [europe-west1-c]\n      controlPlane: { replicas: 1, machineType: n2-standard-2 }\n      workerPools:\n        - { name: general, replicas: 1, machineType: n2-standard-4 }\n    - name: us\n      provider: gcp\n      region: us-east1\n      zones: [us-east1-b]\n      controlPlane: { replicas: 1, machineType: n2-standard-2 }\n      workerPools:\n        - { name: general, replicas: 1, machineType: n2-standard-4 }\n";

/// Run `mesh test` until `done` holds of its report (the simulator converges within a few
/// passes), or panic after `limit`.
fn mesh_test_until(d: &Path, kc: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, v, out) = mesh_test(d, &["--kubeconfig", kc]);
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < limit, "never converged: {}", show(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `status -o json` until `done` holds of it, or panic after `limit`.
fn status_until(d: &Path, kc: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let out = meshfleet(
            d,
            &[
                "status",
                "-f",
                "fleet.yaml",
                "-o",
                "json",
                "--kubeconfig",
                kc,
            ],
        );
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < limit, "status never got there: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cluster_status<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {st}"))
}

/// The Machines of cluster `name` of fleet `trio`.
fn machines(kc: &str, name: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kc,
            "-n",
            "trio",
            "get",
            "machines",
            "-o",
            "json",
            "-l",
        ])
        .arg(format!("cluster.x-k8s.io/cluster-name={name}"))
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, t: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_region_outage_fails_over_after_the_cache_ttl_and_a_partition_splits_two_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), TRIO).unwrap();
    let sim = Sim::start_at(d, "200", &["--egress-ip", "203.0.113.10"]);
    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let kc = sim.kc();
    let all = ["eu-a", "eu-b", "us"];
    let (code, v, out) = mesh_test(d, &["--kubeconfig", kc]);
    assert_eq!(code, Some(0), "{}", show(&out));
    assert_eq!(served_by(&v, "us"), (true, strings(&all)), "{v}");
    // With the MCS-API on, the exported echo is reached by its clusterset.local name too.
    assert_eq!(v["globalServices"].as_array().unwrap().len(), 6, "{v}");
    for c in all {
        assert_eq!(
            served_by_name(&v, c, ".svc.clusterset.local"),
            (true, strings(&all)),
            "{v}"
        );
    }

    // The whole region goes: both of its clusters, and `us` alone serves its global service
    // once its agents have dropped the lost backends (cacheTTL 2m at speed 200: 0.6 s).
    let out = meshfleet(
        d,
        &[
            "sim",
            "fail",
            "--kubeconfig",
            kc,
            "--region",
            "europe-west1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(show(&out).contains("eu-a, eu-b"), "{}", show(&out));
    let v = mesh_test_until(d, kc, Duration::from_secs(30), |v| {
        served_by(v, "us") == (true, strings(&["us"]))
            && served_by_name(v, "us", ".clusterset.local") == (true, strings(&["us"]))
    });
    assert_eq!(ok_pairs(&v), Vec::<(String, String)>::new(), "{v}");
    assert!(!served_by(&v, "eu-a").0 && !served_by(&v, "eu-b").0);
    // The management cluster sees it as Cluster API does: once the remote-connection grace
    // period (50 s, 0.25 s at speed 200) has passed, the Cluster's RemoteConnectionProbe is
    // False and `status` says why; after the remote-conditions grace period (5 min, 1.5 s) the
    // Machines' node conditions are Unknown. The survivor is untouched.
    let st = status_until(d, kc, Duration::from_secs(30), |st| {
        ["eu-a", "eu-b"].iter().all(|c| {
            let c = cluster_status(st, c);
            c["ready"] == false
                && c["problem"].as_str().is_some_and(|p| {
                    p.contains("Remote connection probe failed, probe last succeeded at")
                })
        })
    });
    assert_eq!(cluster_status(&st, "us")["ready"], true, "{st}");
    let start = Instant::now();
    loop {
        let ms = machines(kc, "eu-a");
        let down = ms.iter().all(|m| {
            let c = condition(m, "NodeHealthy");
            c["status"] == "Unknown"
                && c["reason"] == "NodeConnectionDown"
                && c["message"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Last successful probe at "))
        });
        if !ms.is_empty() && down {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "eu-a's Machines never lost their nodes: {ms:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        machines(kc, "us")
            .iter()
            .all(|m| condition(m, "NodeHealthy")["status"] == "True")
    );
    // No machine of the lost region was replaced (no remediation of an unreachable cluster).
    assert_eq!(machines(kc, "eu-a").len(), 2);
    let (_, v, _) = mesh_test(d, &["--kubeconfig", kc]);
    let from_eu = v["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == "eu-a")
        .unwrap();
    assert!(
        from_eu["error"]
            .as_str()
            .unwrap()
            .contains("Cluster API agrees: RemoteConnectionProbe is False"),
        "{from_eu}"
    );

    let out = meshfleet(
        d,
        &[
            "sim",
            "heal",
            "--kubeconfig",
            kc,
            "--region",
            "europe-west1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = mesh_test_until(d, kc, Duration::from_secs(30), |v| {
        v["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ok"] == true)
    });
    assert_eq!(ok_pairs(&v), pairs_without(&all, &[]));
    // Healed without `up`: Cluster API reaches the clusters again.
    status_until(d, kc, Duration::from_secs(30), |st| {
        all.iter().all(|c| cluster_status(st, c)["ready"] == true)
    });
    assert!(
        machines(kc, "eu-a")
            .iter()
            .all(|m| condition(m, "NodeHealthy")["status"] == "True")
    );

    // A partition between eu-a and us: both keep running; exactly the two pairs between them
    // fail, blamed on the mesh link, and each is still served by the clusters it reaches.
    let out = meshfleet(d, &["sim", "fail", "--kubeconfig", kc, "--link", "eu-a,us"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = mesh_test_until(d, kc, Duration::from_secs(30), |v| {
        served_by(v, "us") == (true, strings(&["eu-b", "us"]))
    });
    let mut want = pairs_without(&all, &[]);
    want.retain(|(a, b)| !matches!((a.as_str(), b.as_str()), ("eu-a", "us") | ("us", "eu-a")));
    assert_eq!(ok_pairs(&v), want, "{v}");
    for p in v["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
    {
        assert!(
            p["error"].as_str().unwrap().contains("mesh link down"),
            "{p}"
        );
    }
    let out = meshfleet(d, &["sim", "heal", "--kubeconfig", kc, "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    mesh_test_until(d, kc, Duration::from_secs(30), |v| {
        v["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ok"] == true)
            && served_by(v, "us") == (true, strings(&all))
    });
}

/// The kubeconfig of workload cluster `name` of fleet `fleet`, from its Secret in the
/// management cluster (what CACPPT writes and `mesh test` reads), written beside the test.
fn workload_kubeconfig(d: &Path, mgmt: &str, fleet: &str, name: &str) -> String {
    let out = Command::new("kubectl")
        .args(["--kubeconfig", mgmt, "-n", fleet, "get", "secret"])
        .arg(format!("{name}-kubeconfig"))
        .args(["-o", "jsonpath={.data.value}"])
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "{}", show(&out));
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim_ascii())
        .expect("base64 kubeconfig");
    let path = d.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `kubectl get` in a workload cluster: the names it lists (empty when there are none).
fn names(kc: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new("kubectl")
        .args(["--kubeconfig", kc, "get"])
        .args(args)
        .args(["-o", "name", "--ignore-not-found"])
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ctrl_c_stops_mesh_test_promptly_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), TRIO).unwrap();
    let sim = Sim::start_at(d, "200", &["--egress-ip", "203.0.113.10"]);
    let out = sim.up("60s");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let kc = sim.kc();
    let all = ["eu-a", "eu-b", "us"];
    let kcs: Vec<String> = all
        .iter()
        .map(|c| workload_kubeconfig(d, kc, "trio", c))
        .collect();
    // A partition keeps the run busy for its settle wait (the global service from `eu-a` waits
    // up to 10 s for `us`'s echo), so the interrupt lands while everything it made exists.
    let out = meshfleet(d, &["sim", "fail", "--kubeconfig", kc, "--link", "eu-a,us"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let mut child = Command::new(BIN)
        .args(["mesh", "test", "-f", "fleet.yaml", "--kubeconfig", kc])
        .current_dir(d)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start mesh test");
    // Every cluster has the namespace and its echo Pod before the interrupt.
    let start = Instant::now();
    loop {
        let up = kcs.iter().all(|k| {
            names(k, &["pods", "-n", "meshfleet-mesh-test"])
                .iter()
                .any(|p| p.starts_with("pod/echo-"))
        });
        if up {
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!("mesh test ended ({s}) before the interrupt: {}", show(&out));
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the test objects never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "still running at the interrupt"
    );
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    // Promptly: it neither finishes the settle wait nor hangs.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("mesh test still running 20 s after SIGINT: {}", show(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(
        !status.success(),
        "an interrupted run fails: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        show(&out)
    );
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}: {}",
        show(&out)
    );
    // Nothing of the run is left in any workload cluster: no namespace, and no object carrying
    // its label anywhere.
    for k in &kcs {
        assert_eq!(
            names(k, &["namespace", "meshfleet-mesh-test"]),
            Vec::<String>::new(),
            "{k}: {}",
            show(&out)
        );
        assert_eq!(
            names(
                k,
                &[
                    "pods,services,endpointslices",
                    "-A",
                    "-l",
                    "meshfleet.io/mesh-test"
                ]
            ),
            Vec::<String>::new(),
            "{k}"
        );
    }
}
