//! Fleet upgrades in waves, end to end against `meshfleet sim serve`: a 4-cluster fleet with
//! `maxParallel: 1` and a staging wave. A staging cluster whose new machines never boot (the
//! simulator's `machinesNeverBoot` fault) halts the rollout before any other cluster's version
//! changes and `up` exits 1 naming it; once the fault is cleared, a re-run upgrades staging
//! first and then the others, never two at once, as `kubectl get machines` shows.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{Sim, show};

/// Simulated-time factor: slow enough that `kubectl get machines`, sampled every few hundred
/// milliseconds, sees each cluster mid-rollout.
const SPEED: &str = "25";
const OLD: &str = "v1.35.4";
const NEW: &str = "v1.36.3";
const CLUSTERS: [&str; 4] = ["stage-euw1", "prod-euw1", "prod-use1", "prod-euw4"];

fn fleet(k8s: &str) -> String {
    format!(
        r#"apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: {{ name: waves }}
spec:
  versions: {{ kubernetes: {k8s}, talos: v1.13.9, cilium: 1.19.5 }}
  management: {{ egressCIDRs: [203.0.113.10/32] }}
  providers:
    gcp: {{ project: waves-project, network: meshfleet, imageBucket: waves-talos-images }}
  rollout:
    maxParallel: 1
    healthTimeout: 15s
    waves:
      - matchLabels: {{ env: staging }}
      - {{}}
  clusters:
    - {{ name: prod-euw1, provider: gcp, region: europe-west1, zones: [europe-west1-b], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: general, replicas: 1, machineType: n2-standard-2 }}] }}
    - {{ name: stage-euw1, provider: gcp, region: europe-west1, zones: [europe-west1-c], labels: {{ env: staging }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: general, replicas: 1, machineType: n2-standard-2 }}] }}
    - {{ name: prod-use1, provider: gcp, region: us-east1, zones: [us-east1-b], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: general, replicas: 1, machineType: n2-standard-2 }}] }}
    - {{ name: prod-euw4, provider: gcp, region: europe-west4, zones: [europe-west4-a], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: general, replicas: 1, machineType: n2-standard-2 }}] }}
"#
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kubectl_present() -> bool {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("MESHFLEET_REQUIRE_KUBECTL").as_deref() == Ok("1") {
            panic!("kubectl is required (MESHFLEET_REQUIRE_KUBECTL=1) but was not found on PATH");
        }
        eprintln!("!!! SKIPPING the rollout test: `kubectl` not found on PATH");
    }
    found
}

fn kubectl(kc: &str, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Per cluster, the Kubernetes versions of its Machines that are not being deleted, as
/// `kubectl get machines -o json` shows them.
fn machine_versions(kc: &str) -> BTreeMap<String, Vec<String>> {
    let out = kubectl(
        kc,
        &[
            "get",
            "machines.cluster.x-k8s.io",
            "-n",
            "waves",
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in v["items"].as_array().into_iter().flatten() {
        if m.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let c = m["spec"]["clusterName"].as_str().unwrap_or("").to_string();
        by.entry(c)
            .or_default()
            .push(m["spec"]["version"].as_str().unwrap_or("").to_string());
    }
    for vs in by.values_mut() {
        vs.sort();
    }
    by
}

/// Sample `kubectl get machines` until stopped.
fn watch(
    kc: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<BTreeMap<String, Vec<String>>>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            seen.push(machine_versions(&kc));
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    })
}

fn up(sim: &Sim) -> Output {
    sim.up("90s")
}

#[test]
fn staging_first_never_two_at_once_a_failure_halts_and_a_rerun_completes() {
    if !kubectl_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), fleet(OLD)).unwrap();
    let sim = Sim::start_at(d, SPEED, &["--egress-ip", "203.0.113.10"]);
    let kc = sim.kc().to_string();

    let out = up(&sim);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = machine_versions(&kc);
    for c in CLUSTERS {
        assert_eq!(v[c], [OLD, OLD], "{c}: {v:?}");
    }

    // Staging cannot finish: its new machines never boot.
    let cm = d.join("fault.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: meshfleet-sim-faults, namespace: waves }\ndata: { machinesNeverBoot: stage-euw1 }\n",
    )
    .unwrap();
    let o = kubectl(&kc, &["apply", "-f", cm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));

    std::fs::write(d.join("fleet.yaml"), fleet(NEW)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = watch(kc.clone(), stop.clone());
    let out = up(&sim);
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("cluster `stage-euw1`"), "{err}");
    assert!(err.contains("the rollout halted at `stage-euw1`"), "{err}");
    assert!(err.contains("does not finish booting"), "{err}");
    assert!(
        err.contains("run `meshfleet up` again to resume from `stage-euw1`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("kubernetes: {OLD}")),
        "the rollback hint names the old version: {err}"
    );
    // No other cluster's machines changed version at any moment.
    for s in seen.iter().chain([&machine_versions(&kc)]) {
        for c in ["prod-euw1", "prod-use1", "prod-euw4"] {
            if let Some(vs) = s.get(c) {
                assert!(
                    vs.iter().all(|v| v == OLD),
                    "{c} changed during a halted rollout: {s:?}"
                );
            }
        }
    }
    // Staging kept its old machines (a new one is stuck beside them).
    let v = machine_versions(&kc);
    assert!(
        v["stage-euw1"].iter().filter(|x| *x == OLD).count() >= 1,
        "{v:?}"
    );

    // The status table `up` printed shows each cluster's current and desired versions.
    let table = text(&out.stdout);
    let row = |c: &str| {
        table
            .lines()
            .find(|l| l.starts_with(c))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        row("prod-use1").contains(&format!("{OLD} → {NEW}")),
        "{table}"
    );
    assert!(
        row("stage-euw1").contains(&format!("{OLD}+{NEW} → {NEW}")),
        "{table}"
    );
    // `diff` says which clusters the change rolls and in which wave.
    let o = Command::new(common::BIN)
        .args([
            "diff",
            "-f",
            "fleet.yaml",
            "--kubeconfig",
            &kc,
            "-o",
            "json",
        ])
        .current_dir(d)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let diff: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    let slot = |c: &str| {
        diff["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == c)
            .map(|x| {
                (
                    x["rollout"]["wave"].clone(),
                    x["rollout"]["position"].clone(),
                )
            })
            .unwrap()
    };
    assert_eq!(slot("stage-euw1"), (1.into(), 1.into()), "{diff:#}");
    assert_eq!(slot("prod-euw1"), (2.into(), 1.into()), "{diff:#}");
    assert_eq!(slot("prod-euw4"), (2.into(), 3.into()), "{diff:#}");

    // Heal and re-run: staging finishes first, then the others, one at a time.
    let o = kubectl(&kc, &["delete", "-f", cm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = watch(kc.clone(), stop.clone());
    let out = up(&sim);
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = machine_versions(&kc);
    for c in CLUSTERS {
        assert_eq!(v[c], [NEW, NEW], "{c}: {v:?}");
    }
    // In every sample at most one cluster is mid-rollout (any machine at the new version while
    // not all are), and no prod cluster has a new machine before staging is done.
    let mid = |vs: &Vec<String>| {
        vs.iter().any(|x| x == NEW) && !(vs.iter().all(|x| x == NEW) && vs.len() == 2)
    };
    let done = |vs: Option<&Vec<String>>| {
        vs.is_some_and(|vs| vs.len() == 2 && vs.iter().all(|x| x == NEW))
    };
    let mut saw_mid = 0;
    for s in &seen {
        let in_flight: Vec<&String> = s.iter().filter(|(_, vs)| mid(vs)).map(|(c, _)| c).collect();
        assert!(in_flight.len() <= 1, "two clusters rolling at once: {s:?}");
        saw_mid += in_flight.len();
        let prod_started = ["prod-euw1", "prod-use1", "prod-euw4"]
            .iter()
            .any(|c| s.get(*c).is_some_and(|vs| vs.iter().any(|x| x == NEW)));
        if prod_started {
            assert!(
                done(s.get("stage-euw1")),
                "a prod cluster moved before staging was done: {s:?}"
            );
        }
    }
    assert!(
        saw_mid > 0,
        "the sampler never saw a cluster mid-rollout: {seen:?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("rollout wave 1/2 (env=staging): stage-euw1"),
        "{err}"
    );
    assert!(
        err.contains("rollout wave 2/2 ({}): prod-euw1, prod-use1, prod-euw4"),
        "{err}"
    );
}

#[test]
fn a_skipped_minor_is_a_located_error_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fleet.yaml"), fleet("v1.34.8")).unwrap();
    let sim = Sim::start_at(d, SPEED, &["--egress-ip", "203.0.113.10"]);
    let out = up(&sim);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    std::fs::write(d.join("fleet.yaml"), fleet(NEW)).unwrap();
    let out = up(&sim);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("fleet.yaml:5:"),
        "located at spec.versions.kubernetes: {err}"
    );
    assert!(
        err.contains("`prod-euw4` run Kubernetes `v1.34.8`; `v1.36.3` skips `1.35`"),
        "{err}"
    );
    assert!(err.contains("Kubernetes `v1.35.4`"), "{err}");
}
