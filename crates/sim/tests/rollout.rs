//! Rolling replacement: a version or template change makes the simulated CACPPT and
//! MachineDeployment controllers bring new machines up before the old ones go; the
//! `machinesNeverBoot` fault keeps a rollout from finishing until it is cleared.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

async fn machines(client: &kube::Client) -> Vec<Value> {
    let probe = json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
        "metadata": {"name": "x", "namespace": "fleet"}});
    let api = dyn_api(client, &probe).await;
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

fn role(m: &Value) -> &'static str {
    if m.pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
        .is_some()
    {
        "cp"
    } else {
        "worker"
    }
}

fn version(m: &Value) -> &str {
    m.pointer("/spec/version")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn running(m: &Value) -> bool {
    m.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && m.pointer("/metadata/deletionTimestamp").is_none()
}

/// Poll the machines until `done` holds, recording every (role, old live, new live) seen.
async fn watch_until(
    client: &kube::Client,
    secs: u64,
    old: &str,
    new: &str,
    seen: &mut Vec<(String, usize, usize)>,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let ms = machines(client).await;
        for r in ["cp", "worker"] {
            let of = |v: &str| {
                ms.iter()
                    .filter(|m| {
                        role(m) == r
                            && version(m) == v
                            && m.pointer("/metadata/deletionTimestamp").is_none()
                    })
                    .count()
            };
            seen.push((r.to_string(), of(old), of(new)));
        }
        if done(&ms) {
            return ms;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; machines: {:#?}",
            ms.iter()
                .map(|m| (
                    m["metadata"]["name"].clone(),
                    version(m).to_string(),
                    m["status"]["phase"].clone()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
}

fn fixture_objects() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("gcp-a.yaml")).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_change_replaces_machines_new_before_old_and_a_fault_holds_it() {
    let crds = crds_dir();
    let mut sim = Sim::start(|c| c.crds_dir = crds.clone()).await;
    let client = sim.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "fleet"}})).unwrap(),
    )
    .await
    .unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    let objs = fixture_objects();
    for o in &objs {
        apply_value(&client, o).await.unwrap();
    }
    let all_running = |v: &'static str| {
        move |ms: &[Value]| {
            let live: Vec<&Value> = ms
                .iter()
                .filter(|m| m.pointer("/metadata/deletionTimestamp").is_none())
                .collect();
            live.len() == 3 && live.iter().all(|m| running(m) && version(m) == v) && ms.len() == 3
        }
    };
    let mut seen = Vec::new();
    watch_until(
        &client,
        60,
        "v1.35.4",
        "v1.36.3",
        &mut seen,
        all_running("v1.35.4"),
    )
    .await;
    let before: Vec<String> = machines(&client)
        .await
        .iter()
        .map(|m| m["metadata"]["name"].as_str().unwrap().to_string())
        .collect();

    // Kubernetes v1.35.4 → v1.36.3 on the control plane and the workers.
    for o in &objs {
        let mut o = o.clone();
        match o["kind"].as_str() {
            Some("TalosControlPlane") => o["spec"]["version"] = json!("v1.36.3"),
            Some("MachineDeployment") => {
                o["spec"]["template"]["spec"]["version"] = json!("v1.36.3")
            }
            _ => continue,
        }
        apply_value(&client, &o).await.unwrap();
    }
    seen.clear();
    let after = watch_until(
        &client,
        90,
        "v1.35.4",
        "v1.36.3",
        &mut seen,
        all_running("v1.36.3"),
    )
    .await;
    // Every machine was replaced, none edited in place.
    assert!(
        after
            .iter()
            .all(|m| !before.contains(&m["metadata"]["name"].as_str().unwrap().to_string()))
    );
    // Surge: there was a moment with an old and a new control-plane machine side by side, and
    // never fewer than the wanted replicas (CP 1, workers 2) before the new ones took over.
    assert!(
        seen.iter().any(|(r, o, n)| r == "cp" && *o == 1 && *n == 1),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(r, o, n)| r == "worker" && *o >= 1 && *n >= 1),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|(r, ..)| r == "worker")
            .all(|(_, o, n)| o + n >= 2),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|(r, ..)| r == "cp")
            .all(|(_, o, n)| o + n <= 2),
        "{seen:?}"
    );

    // Nodes in the workload cluster carry the new kubelet version.
    let md = get_md(&client).await;
    assert_eq!(
        condition(&md, "MachinesUpToDate").unwrap()["status"],
        "True"
    );
    assert_eq!(md["status"]["upToDateReplicas"], 2);

    // A fault: new machines of gcp-a never boot. A template change then cannot finish.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fleet");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "metadata": {"name": "meshfleet-sim-faults"}, "data": {"machinesNeverBoot": "gcp-a"}}))
        .unwrap(),
    )
    .await
    .unwrap();
    for o in &objs {
        let mut o = o.clone();
        match o["kind"].as_str() {
            Some("TalosControlPlane") => o["spec"]["version"] = json!("v1.36.3"),
            Some("MachineDeployment") => {
                o["spec"]["template"]["spec"]["version"] = json!("v1.36.3");
                o["spec"]["template"]["spec"]["infrastructureRef"]["name"] =
                    json!("gcp-a-workers-2");
            }
            Some("GCPMachineTemplate") if o["metadata"]["name"] == "gcp-a-workers" => {
                o["metadata"]["name"] = json!("gcp-a-workers-2");
            }
            _ => continue,
        }
        apply_value(&client, &o).await.unwrap();
    }
    let stuck = eventually("a new worker stuck booting", 30, || async {
        let ms = machines(&client).await;
        ms.iter()
            .any(|m| {
                m["status"]["phase"] == "Provisioning"
                    && m["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-name"]
                        == "gcp-a-workers-2"
                    && condition(m, "InfrastructureReady").is_some_and(|c| {
                        c["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("simulated fault")
                    })
            })
            .then_some(ms)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let ms = machines(&client).await;
    let old_workers = ms
        .iter()
        .filter(|m| {
            role(m) == "worker"
                && running(m)
                && m["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-name"]
                    == "gcp-a-workers"
        })
        .count();
    assert_eq!(
        old_workers, 2,
        "no old worker goes while the new one cannot boot: {stuck:#?}"
    );
    let md = get_md(&client).await;
    assert_eq!(condition(&md, "RollingOut").unwrap()["status"], "True");
    assert_eq!(
        condition(&md, "Available").unwrap()["status"],
        "True",
        "maxUnavailable 0 keeps it available"
    );

    // Heal: the rollout finishes.
    cms.delete("meshfleet-sim-faults", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the workers on the new template", 60, || async {
        let ms = machines(&client).await;
        let w: Vec<&Value> = ms.iter().filter(|m| role(m) == "worker").collect();
        (w.len() == 2
            && w.iter().all(|m| {
                running(m)
                    && m["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-name"]
                        == "gcp-a-workers-2"
            }))
        .then_some(())
    })
    .await;
    sim.stop().await;
}

async fn get_md(client: &kube::Client) -> Value {
    let probe = json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
        "metadata": {"name": "gcp-a-workers", "namespace": "fleet"}});
    let api = dyn_api(client, &probe).await;
    serde_json::to_value(api.get("gcp-a-workers").await.unwrap()).unwrap()
}
