//! The client against a real Kubernetes API surface: the simulator, started in-process.
//! (The simulator is only a test dependency: the client knows nothing about it.)

use meshfleet_kube::{Kube, KubeError, ObjectRef};
use serde_json::json;

async fn sim() -> (meshfleet_sim::Simulator, Kube, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let cfg = meshfleet_sim::SimConfig::new("127.0.0.1:0".parse().unwrap(), kc.clone());
    let sim = meshfleet_sim::start(cfg).await.unwrap();
    let kube = Kube::from_path(Some(&kc)).await.unwrap();
    (sim, kube, dir)
}

fn cm(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"meshfleet.io/fleet": "t"}},
        "data": {"k": value}})
}

#[tokio::test]
async fn discovery_apply_get_list_delete() {
    let (sim, k, _dir) = sim().await;

    let missing = k
        .missing_kinds([
            ("v1", "ConfigMap"),
            ("cluster.x-k8s.io/v1beta2", "Cluster"),
            ("cluster.x-k8s.io/v1alpha4", "MachineHealthCheck"),
            ("example.com/v1", "Nope"),
        ])
        .await
        .unwrap();
    assert_eq!(
        missing,
        [
            (
                "cluster.x-k8s.io/v1alpha4".to_string(),
                "MachineHealthCheck".to_string()
            ),
            ("example.com/v1".to_string(), "Nope".to_string())
        ]
    );

    // Server-side apply is idempotent: the second identical apply changes nothing.
    let a = k.apply(&cm("x", "1")).await.unwrap();
    let b = k.apply(&cm("x", "1")).await.unwrap();
    assert_eq!(
        a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"],
        "an unchanged apply is a no-op"
    );
    let r = ObjectRef::of(&cm("x", "1")).unwrap();
    assert_eq!(k.get(&r).await.unwrap().unwrap()["data"]["k"], "1");
    let listed = k
        .list("v1", "ConfigMap", Some("default"), "meshfleet.io/fleet=t")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        k.list("v1", "ConfigMap", Some("default"), "meshfleet.io/fleet=u")
            .await
            .unwrap()
            .is_empty()
    );

    let (seen, ok) = k
        .wait(
            &r,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(10),
            |o| o.is_some_and(|o| o["data"]["k"] == "1"),
        )
        .await
        .unwrap();
    assert!(ok && seen.is_some());
    let (_, ok) = k
        .wait(
            &r,
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(10),
            |o| o.is_none(),
        )
        .await
        .unwrap();
    assert!(!ok, "times out while the object exists");
    assert!(k.delete(&r).await.unwrap());
    assert!(
        !k.delete(&r).await.unwrap(),
        "deleting what is gone is not an error"
    );
    assert!(k.get(&r).await.unwrap().is_none());
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn conflicts_are_reported_never_forced() {
    let (sim, k, dir) = sim().await;
    k.apply(&cm("y", "ours")).await.unwrap();
    // Another manager forces the field over.
    let other = {
        let kc = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig")).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    };
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(other, "default");
    api.patch(
        "y",
        &kube::api::PatchParams::apply("someone-else").force(),
        &kube::api::Patch::Apply(&cm("y", "theirs")),
    )
    .await
    .unwrap();
    match k.apply(&cm("y", "ours")).await {
        Err(KubeError::Conflict { object, message }) => {
            assert_eq!(object, "ConfigMap `default/y`");
            assert!(message.contains("someone-else"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let r = ObjectRef::of(&cm("y", "")).unwrap();
    assert_eq!(
        k.get(&r).await.unwrap().unwrap()["data"]["k"],
        "theirs",
        "not forced"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_if_absent_creates_once_and_secrets_read_back() {
    let (sim, k, _dir) = sim().await;
    let secret = |v: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca", "namespace": "default"},
            "data": {"ca.crt": v}})
    };
    // "first" and "second" base64-encoded.
    let (_, created) = k.create_if_absent(&secret("Zmlyc3Q=")).await.unwrap();
    assert!(created);
    let (_, created) = k.create_if_absent(&secret("c2Vjb25k")).await.unwrap();
    assert!(!created, "the second run reads the first one's object");
    assert_eq!(
        k.secret_value("default", "ca", "ca.crt")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(k.secret_value("default", "ca", "nope").await.unwrap(), None);
    assert_eq!(
        k.secret_value("default", "absent", "ca.crt").await.unwrap(),
        None
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreachable_servers_are_transient_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let cfg = meshfleet_sim::SimConfig::new("127.0.0.1:0".parse().unwrap(), kc.clone());
    let sim = meshfleet_sim::start(cfg).await.unwrap();
    let k = Kube::from_path(Some(&kc))
        .await
        .unwrap()
        .with_retry(meshfleet_kube::Retry {
            attempts: 2,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(20),
        });
    sim.shutdown().await.unwrap();
    let e = k.apply(&cm("z", "1")).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}

/// The pod proxy: a Cilium agent's metrics port answers (this Pod's cluster has no mesh, so the
/// page has no ClusterMesh series); a port nothing serves and a missing Pod are API errors.
#[tokio::test]
async fn pod_proxy_reads_an_agent_and_reports_what_fails() {
    let (sim, k, _dir) = sim().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cilium-abcde", "namespace": "kube-system", "labels": {"k8s-app": "cilium"}},
        "spec": {"nodeName": "meshfleet-sim", "hostNetwork": true, "containers": [{"name": "cilium-agent", "image": "cilium"}]},
        "status": {"phase": "Running", "podIP": "10.255.0.1"}});
    k.apply(&pod).await.unwrap();
    let t0 = std::time::Instant::now();
    let text = k
        .pod_proxy_get("kube-system", "cilium-abcde", 9962, "metrics")
        .await
        .unwrap();
    assert!(!text.contains("cilium_clustermesh"), "{text}");
    match k
        .pod_proxy_get("kube-system", "cilium-abcde", 9090, "metrics")
        .await
    {
        Err(KubeError::Api {
            code: 503, message, ..
        }) => {
            assert!(
                message.contains(":9090: connect: connection refused"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    match k
        .pod_proxy_get("kube-system", "nope", 9962, "metrics")
        .await
    {
        Err(KubeError::Api { code: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "a 503 from the pod proxy is not retried: {:?}",
        t0.elapsed()
    );
    sim.shutdown().await.unwrap();
}
