//! The API server through kube-rs: discovery, CRUD, selectors, watch, status, SSA, finalizers,
//! strict validation, errors, persistence and fault injection.

mod common;

use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"a": "1"}}))
    .unwrap()
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_crud_selectors_and_errors() {
    let mut sim = Sim::start(|_| {}).await;
    let client = sim.client().await;
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    for (g, v, k) in [
        ("cluster.x-k8s.io", "v1beta2", "Cluster"),
        ("cluster.x-k8s.io", "v1beta2", "MachineDeployment"),
        ("infrastructure.cluster.x-k8s.io", "v1beta1", "GCPCluster"),
        ("infrastructure.cluster.x-k8s.io", "v1beta2", "AWSCluster"),
        (
            "controlplane.cluster.x-k8s.io",
            "v1alpha3",
            "TalosControlPlane",
        ),
        (
            "bootstrap.cluster.x-k8s.io",
            "v1alpha3",
            "TalosConfigTemplate",
        ),
        ("addons.cluster.x-k8s.io", "v1alpha1", "HelmChartProxy"),
        ("", "v1", "Secret"),
        ("", "v1", "Node"),
    ] {
        let gvk = kube::core::GroupVersionKind::gvk(g, v, k);
        let (ar, caps) = d
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{gvk:?} not discovered"));
        assert_eq!(
            caps.scope == kube::discovery::Scope::Namespaced,
            !matches!(k, "Node"),
            "{k}"
        );
        assert!(!ar.plural.is_empty());
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("one", json!({"app": "x"})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("two", json!({"app": "y"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let e = cms
        .create(&PostParams::default(), &cm("one", json!({})))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    let l = cms
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let l = cms
        .list(&ListParams::default().labels("app in (x,y)"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 2);
    let l = cms
        .list(&ListParams::default().fields("metadata.name=two"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let mut stale = created.clone();
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("c".to_string(), "3".to_string())].into());
    assert_eq!(
        code(
            &cms.replace("one", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    let got = cms.get("one").await.unwrap();
    assert_eq!(got.data.unwrap().get("b").map(String::as_str), Some("2"));
    // JSON patch.
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::<()>::Json(
            serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "p"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["j"], "p");
    // 404 and 422, Kubernetes-shaped.
    match cms.get("nope").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "configmaps \"nope\" not found");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        code(
            &cms.create(&PostParams::default(), &cm("Bad_Name", json!({})))
                .await
                .unwrap_err()
        ),
        422
    );
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "missing-ns");
    assert_eq!(
        code(
            &other
                .create(&PostParams::default(), &cm("x", json!({})))
                .await
                .unwrap_err()
        ),
        404
    );
    cms.delete("two", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(&cms.get("two").await.unwrap_err()), 404);
    sim.stop().await;
}

#[tokio::test]
async fn watch_delivers_events_and_resumes() {
    let mut sim = Sim::start(|_| {}).await;
    let client = sim.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("w=1")).boxed();
    cms.create(&PostParams::default(), &cm("w1", json!({"w": "1"})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("ignored", json!({"w": "2"})))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(&"w1".to_string()) {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                seen.push(o.metadata.name.unwrap())
            }
            _ => {}
        }
    }
    assert!(!seen.contains(&"ignored".to_string()));
    // Streaming lists (sendInitialEvents): initial objects, then the end-of-initial bookmark.
    let mut streaming = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut init_names = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, streaming.next())
            .await
            .expect("streaming event")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::InitApply(o) => init_names.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    init_names.sort();
    assert_eq!(init_names, vec!["ignored".to_string(), "w1".to_string()]);
    // Raw watch from a resourceVersion: replays later changes, including deletes.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut raw = cms
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), raw.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, kube::api::WatchEvent::Deleted(ref o) if o.metadata.name.as_deref() == Some("w1")),
        "{ev:?}"
    );
    // Leaving and re-entering a label selection: DELETED, then ADDED.
    cms.create(&PostParams::default(), &cm("moving", json!({"w": "1"})))
        .await
        .unwrap();
    let rv = cms
        .get("moving")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut sel = cms
        .watch(&kube::api::WatchParams::default().labels("w=1"), &rv)
        .await
        .unwrap()
        .boxed();
    let relabel = |v: &'static str| {
        let cms = cms.clone();
        async move {
            cms.patch(
                "moving",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"w": v}}})),
            )
            .await
            .unwrap();
        }
    };
    relabel("2").await;
    relabel("1").await;
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), sel.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            kube::api::WatchEvent::Added(_) => kinds.push("ADDED"),
            kube::api::WatchEvent::Deleted(_) => kinds.push("DELETED"),
            kube::api::WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            _ => {}
        }
    }
    assert_eq!(kinds, vec!["DELETED", "ADDED"]);
    sim.stop().await;
}

#[tokio::test]
async fn server_side_apply_managers_conflicts_and_force() {
    let mut sim = Sim::start(|_| {}).await;
    let client = sim.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let intent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "1"}});
    cms.patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&intent))
        .await
        .unwrap();
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}});
    let e = cms
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&other))
        .await
        .unwrap_err();
    match &e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("alice") && s.message.contains(".data.a"),
                "{}",
                s.message
            );
        }
        e => panic!("{e:?}"),
    }
    // Same value: shared ownership, no conflict.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "1"}});
    cms.patch("ssa", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .unwrap();
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "2");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"bob".into()) && managers.contains(&"alice".into()),
        "{managers:?}"
    );
    // alice stops applying `b`: carol still owns it, so it stays; alice drops `a`? she lost it.
    let less =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&less))
        .await
        .unwrap();
    assert_eq!(after.data.as_ref().unwrap()["b"], "1");
    assert_eq!(after.data.as_ref().unwrap()["a"], "2");
    // Apply creates when absent.
    let fresh = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fresh"}, "data": {"x": "y"}});
    cms.patch("fresh", &PatchParams::apply("alice"), &Patch::Apply(&fresh))
        .await
        .unwrap();
    assert!(cms.get("fresh").await.is_ok());
    sim.stop().await;
}

#[tokio::test]
async fn finalizers_status_subresource_and_strict_validation() {
    let crds = crds_dir();
    let mut sim = Sim::start(|c| c.crds_dir = crds.clone()).await;
    let client = sim.client().await;
    apply_file(&client, &fixtures().join("namespace.yaml"))
        .await
        .unwrap();
    // Graceful deletion with a finalizer.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fleet");
    let mut c = cm("fin", json!({}));
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &c).await.unwrap();
    cms.delete("fin", &DeleteParams::default()).await.unwrap();
    let held = cms.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(&cms.get("fin").await.unwrap_err()), 404);
    // Status only changes through the status subresource.
    let hcp = json!({"apiVersion": "addons.cluster.x-k8s.io/v1alpha1", "kind": "HelmChartProxy",
        "metadata": {"name": "h", "namespace": "fleet"},
        "spec": {"clusterSelector": {"matchLabels": {"none": "none"}}, "chartName": "c", "repoURL": "https://example.com"}});
    apply_value(&client, &hcp).await.unwrap();
    let api = dyn_api(&client, &hcp).await;
    // MachineHealthCheck: a kind with a status subresource that no simulated controller writes.
    let tc = json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineHealthCheck",
        "metadata": {"name": "t", "namespace": "fleet"},
        "spec": {"clusterName": "none", "selector": {"matchLabels": {"a": "b"}}}});
    apply_value(&client, &tc).await.unwrap();
    let tcs = dyn_api(&client, &tc).await;
    let gen1 = tcs.get("t").await.unwrap().metadata.generation;
    tcs.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"expectedMachines": 1}})),
    )
    .await
    .unwrap();
    assert!(
        tcs.get("t")
            .await
            .unwrap()
            .data
            .pointer("/status/expectedMachines")
            .is_none()
    );
    tcs.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"expectedMachines": 1}})),
    )
    .await
    .unwrap();
    let t = tcs.get("t").await.unwrap();
    assert_eq!(t.data.pointer("/status/expectedMachines"), Some(&json!(1)));
    assert_eq!(
        t.metadata.generation, gen1,
        "status writes do not bump generation"
    );
    tcs.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"a": "c"}}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        tcs.get("t").await.unwrap().metadata.generation,
        gen1.map(|g| g + 1)
    );
    if crds.is_some() {
        // Strict: an unknown field is rejected; without Strict it is pruned.
        let mut bad = hcp.clone();
        bad["spec"]["bogusField"] = json!(1);
        match apply_value(&client, &bad).await.unwrap_err() {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 400);
                assert!(s.message.contains("bogusField"), "{}", s.message);
            }
            e => panic!("{e:?}"),
        }
        let pruned = api
            .patch(
                "h",
                &PatchParams::apply("other").force(),
                &Patch::Apply(&bad),
            )
            .await
            .unwrap();
        assert!(pruned.data.pointer("/spec/bogusField").is_none());
        // Schema types: 422.
        let mut wrong = hcp.clone();
        wrong["metadata"]["name"] = json!("h2");
        wrong["spec"]["chartName"] = json!(5);
        let obj: kube::api::DynamicObject = serde_json::from_value(wrong).unwrap();
        let e = api.create(&PostParams::default(), &obj).await.unwrap_err();
        assert_eq!(code(&e), 422, "{e:?}");
    }
    // Namespace deletion removes its content, then the namespace.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("fleet", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", 10, || async {
        nss.get("fleet").await.err().map(|_| ())
    })
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn state_survives_restart() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let mut sim = Sim::start(|c| c.state_dir = Some(dir.clone())).await;
    let client = sim.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("kept", json!({})))
        .await
        .unwrap();
    let before = cms.get("kept").await.unwrap();
    let old_kubeconfig = std::fs::read_to_string(&sim.kubeconfig).unwrap();
    sim.stop().await;
    let mut sim2 = Sim::start(|c| c.state_dir = Some(dir.clone())).await;
    let client2 = sim2.client().await;
    let cms2: Api<ConfigMap> = Api::namespaced(client2, "default");
    let after = cms2.get("kept").await.unwrap();
    assert_eq!(before.metadata.uid, after.metadata.uid);
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    // Same CA and token: only the address may differ.
    let new_kubeconfig = std::fs::read_to_string(&sim2.kubeconfig).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("server:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&old_kubeconfig), strip(&new_kubeconfig));
    // New writes continue after the old resourceVersion.
    cms2.create(&PostParams::default(), &cm("later", json!({})))
        .await
        .unwrap();
    let later = cms2.get("later").await.unwrap();
    let rv = |c: &ConfigMap| {
        c.metadata
            .resource_version
            .clone()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(rv(&later) > rv(&after));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sim2.kubeconfig)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    sim2.stop().await;
}

/// One raw HTTPS GET (no client-side retries), returning the status line and headers.
async fn raw_get(addr: std::net::SocketAddr, ca_pem: &str, token: &str, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn faults_are_injected() {
    let mut sim = Sim::start(|c| c.faults = 1.0).await;
    let world = sim.sim.as_ref().unwrap().world().clone();
    let token = world.management.token.clone();
    let mut statuses = Vec::new();
    let mut slow = 0;
    for _ in 0..30 {
        let t = std::time::Instant::now();
        let resp = raw_get(
            world.addr,
            &world.ca_pem(),
            &token,
            "/api/v1/namespaces/default/configmaps",
        )
        .await;
        let status = resp.split_whitespace().nth(1).unwrap_or("").to_string();
        if status == "429" {
            assert!(
                resp.to_ascii_lowercase().contains("retry-after: 1"),
                "{resp}"
            );
        }
        if status == "200" && t.elapsed() >= std::time::Duration::from_millis(300) {
            slow += 1;
        }
        statuses.push(status);
    }
    assert!(statuses.iter().any(|s| s == "500"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "429"), "{statuses:?}");
    assert!(slow > 0, "no slow answer among {statuses:?}");
    // kube-rs retries 429 on its own and reaches the data through the faults eventually.
    let client = sim.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut ok = false;
    for _ in 0..20 {
        if cms.list(&ListParams::default()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    sim.stop().await;
}

#[tokio::test]
async fn unauthorized_without_token() {
    let mut sim = Sim::start(|_| {}).await;
    let mut kc = kube::config::Kubeconfig::read_from(&sim.kubeconfig).unwrap();
    for u in &mut kc.auth_infos {
        if let Some(a) = u.auth_info.as_mut() {
            a.token = Some("wrong".to_string().into());
        }
    }
    let client = client_from_kubeconfig(kc.clone()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(code(&cms.get_opt("x").await.unwrap_err()), 401);
    // A client certificate signed by the simulator's CA authenticates instead of the token.
    use base64::Engine;
    let (cert, key) = sim
        .sim
        .as_ref()
        .unwrap()
        .world()
        .issue_client_cert("tester")
        .unwrap();
    let mut kc = kc;
    for u in &mut kc.auth_infos {
        if let Some(a) = u.auth_info.as_mut() {
            a.token = None;
            a.client_certificate_data =
                Some(base64::engine::general_purpose::STANDARD.encode(cert.as_bytes()));
            a.client_key_data = Some(
                base64::engine::general_purpose::STANDARD
                    .encode(key.as_bytes())
                    .into(),
            );
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client_from_kubeconfig(kc).await, "default");
    assert!(cms.get_opt("x").await.unwrap().is_none());
    sim.stop().await;
}
