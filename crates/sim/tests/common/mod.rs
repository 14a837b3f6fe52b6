//! Test helpers: start a simulator in-process, connect kube-rs, apply fixture files.
#![allow(dead_code)]

pub mod gcp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use meshfleet_sim::{SimConfig, Simulator};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The upstream CRD directory, or None (with a loud message) when the schemas are absent.
pub fn crds_dir() -> Option<PathBuf> {
    let base = std::env::var_os("MESHFLEET_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/schemas"));
    let d = base.join("crds");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!(
            "!!! SKIPPING schema-dependent checks: `{}` does not exist (set MESHFLEET_SCHEMA_DIR)",
            d.display()
        );
        None
    }
}

pub struct Sim {
    pub sim: Option<Simulator>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Sim {
    pub async fn start(f: impl FnOnce(&mut SimConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), kubeconfig.clone());
        cfg.speed = 50.0;
        f(&mut cfg);
        let sim = meshfleet_sim::start(cfg).await.unwrap();
        Self {
            sim: Some(sim),
            dir,
            kubeconfig,
        }
    }

    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.sim.take() {
            s.shutdown().await.unwrap();
        }
    }
}

pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    client_from_kubeconfig(kc).await
}

pub async fn client_from_kubeconfig(kc: Kubeconfig) -> Client {
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

pub async fn dyn_api(client: &Client, obj: &Value) -> Api<DynamicObject> {
    let av = obj["apiVersion"].as_str().unwrap();
    let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Server-side apply every document of a YAML file (strict field validation).
pub async fn apply_file(client: &Client, file: &Path) -> Result<(), kube::Error> {
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for d in docs.into_iter().filter(|d| d.is_object()) {
        apply_value(client, &d).await?;
    }
    Ok(())
}

pub async fn apply_value(client: &Client, d: &Value) -> Result<DynamicObject, kube::Error> {
    let api = dyn_api(client, d).await;
    let name = d["metadata"]["name"].as_str().unwrap();
    let pp = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("meshfleet-test")
    };
    api.patch(name, &pp, &Patch::Apply(d)).await
}

/// Poll `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `--timeout=` for `kubectl wait` and `kubectl delete` in these tests: generous, and
/// longer on a loaded machine. A wait returns as soon as its condition holds (about a second
/// here when the machine is idle), so a long limit costs nothing when things work; but under a
/// full `cargo test --workspace` on two cores the simulator's passes (CPU work over every
/// object, in a blocking thread) queue behind every other test binary, and a fixed 60 s was
/// exceeded once in CI by a cluster that comes up in 1.1 s alone. 120 s, times the load
/// average per core when above 1, at most 15 minutes.
pub fn wait_timeout() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(1.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let secs = (120.0 * (load / cores).max(1.0)).min(900.0);
    format!("--timeout={}s", secs.ceil() as u64)
}

pub fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

/// Create, in the simulated GCP project, the network and subnets of every GCPCluster in `file`
/// (what `meshfleet gcp setup` makes), so that the simulated CAPG can use them.
pub fn seed_gcp(sim: &Sim, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let world = sim.sim.as_ref().unwrap().world();
    for d in docs.iter().filter(|d| d["kind"] == "GCPCluster") {
        let net = d["spec"]["network"]["name"].as_str().unwrap_or("default");
        let subnets: Vec<Value> = d["spec"]["network"]["subnets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                serde_json::json!({"name": s["name"], "region": s["region"], "network": net,
                    "ipCidrRange": s["cidrBlock"]})
            })
            .collect();
        world
            .gcp
            .seed(
                &serde_json::json!({"project": d["spec"]["project"], "networks": [{"name": net}],
                "subnetworks": subnets}),
            )
            .unwrap();
    }
}
