//! Workloads, global services, MCS-API, the echo model and outages, driven pass by pass on a
//! world with no controllers running (the mesh links are set by hand, as `mesh::reconcile`
//! would leave them).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::World;
use crate::mesh::{Link, Links};
use crate::store::Change;

const NS: &str = "echo";

fn put(api: &Api, key: &Key, v: Value) {
    api.store.mutate(key, |_| Ok(Change::Put(v))).unwrap();
}

/// Three meshed clusters `a`, `b`, `c` (keys `f/a`…), each with a Ready node, Cilium, the
/// namespace, one echo Pod and a global echo Service (affinity per cluster from `affinity`).
fn world(ttl: &str, mcs: bool, speed: f64) -> Arc<World> {
    let w = World::for_tests(speed);
    let m = &w.management;
    let ct = ty(m, CAPI, "Cluster").unwrap().key();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        put(
            m,
            &Key::new(&ct, "f", n),
            json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
            "metadata": {"name": n, "namespace": "f"},
            "spec": {"clusterNetwork": {"pods": {"cidrBlocks": [format!("10.{}.0.0/16", 64 + i)]},
                "services": {"cidrBlocks": [format!("10.128.{}.0/20", 16 * i)]}}}}),
        );
        let api = w.ensure_workload(&format!("f/{n}")).unwrap();
        put(
            &api,
            &Key::new("/nodes", "", "n1"),
            crate::workload::node_json("n1", &format!("10.0.{i}.5"), true, &[], "v1.35.0"),
        );
        put(
            &api,
            &Key::new("/configmaps", "kube-system", "cilium-config"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cilium-config", "namespace": "kube-system"},
            "data": {"cluster-name": n, "clustermesh-cache-ttl": ttl, "clustermesh-enable-mcs-api": mcs.to_string()}}),
        );
        put(
            &api,
            &Key::new("/namespaces", "", NS),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        );
        put(
            &api,
            &Key::new("/pods", NS, &format!("echo-{n}")),
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("echo-{n}"), "namespace": NS, "uid": format!("uid-{n}"), "labels": {"app": "echo"}},
            "spec": {"containers": [{"name": "echo", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
                "args": ["netexec", "--http-port=8080"], "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        );
        put(
            &api,
            &Key::new("/services", NS, "echo"),
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "echo", "namespace": NS, "uid": format!("svc-{n}"), "annotations": {GLOBAL: "true"}},
            "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        );
    }
    links(&w, &[("a", "b"), ("a", "c"), ("b", "c")], &[]);
    reconcile(&w);
    w
}

/// Set every cluster's mesh links: `up` pairs both ways, `down` pairs both ways.
fn links(w: &World, up: &[(&str, &str)], down: &[(&str, &str)]) {
    let mut state = w.mesh.lock().unwrap();
    state.clear();
    for me in ["a", "b", "c"] {
        let mut l = Links {
            cluster: me.into(),
            links: Vec::new(),
        };
        for (pairs, ready) in [(up, true), (down, false)] {
            for (x, y) in pairs {
                let peer = if *x == me {
                    y
                } else if *y == me {
                    x
                } else {
                    continue;
                };
                l.links.push(Link {
                    peer: peer.to_string(),
                    ready,
                    failures: 0,
                    reason: None,
                });
            }
        }
        state.insert(format!("f/{me}"), l);
    }
}

fn annotate(w: &World, cluster: &str, k: &str, v: &str) {
    let api = w.workload(&format!("f/{cluster}")).unwrap();
    crate::controllers::update(&api, &Key::new("/services", NS, "echo"), |s| {
        s["metadata"]["annotations"][k] = json!(v)
    });
}

fn served_by(w: &World, from: &str) -> Vec<String> {
    let mut v: Vec<String> = service_backends(w, &format!("f/{from}"), NS, "echo")
        .unwrap()
        .into_iter()
        .map(|b| b.cluster_name)
        .collect();
    v.sort();
    v
}

#[test]
fn pods_services_and_slices() {
    let w = world("0s", false, 1.0);
    let a = w.workload("f/a").unwrap();
    let p = a.store.get(&Key::new("/pods", NS, "echo-a")).unwrap();
    let ip: std::net::Ipv4Addr = s(&p, "/status/podIP").parse().unwrap();
    assert!(
        "10.64.0.0/16".parse::<Ipv4Net>().unwrap().contains(&ip),
        "{ip}"
    );
    assert!(pod_ready(&p));
    assert_eq!(s(&p, "/spec/nodeName"), "n1");
    let svc = a.store.get(&Key::new("/services", NS, "echo")).unwrap();
    let cip: std::net::Ipv4Addr = s(&svc, "/spec/clusterIP").parse().unwrap();
    assert!(
        "10.128.0.0/20".parse::<Ipv4Net>().unwrap().contains(&cip),
        "{cip}"
    );
    let local = local_backends(&a, "a", NS, "echo");
    // The named target port resolves to the container port.
    assert_eq!(local.len(), 1);
    assert_eq!(
        (local[0].ip.as_str(), local[0].port),
        (ip.to_string().as_str(), 8080)
    );
}

#[test]
fn global_service_affinity() {
    let w = world("0s", false, 1.0);
    assert_eq!(served_by(&w, "a"), ["a", "b", "c"]);
    annotate(&w, "a", AFFINITY, "local");
    assert_eq!(served_by(&w, "a"), ["a"]);
    annotate(&w, "a", AFFINITY, "remote");
    assert_eq!(served_by(&w, "a"), ["b", "c"]);
    annotate(&w, "a", AFFINITY, "none");
    // A cluster that does not share its endpoints keeps them out of the others' view…
    annotate(&w, "b", SHARED, "false");
    assert_eq!(served_by(&w, "a"), ["a", "c"]);
    // …but still uses the others'.
    assert_eq!(served_by(&w, "b"), ["a", "b", "c"]);
    // A cluster whose Service is not global contributes nothing.
    annotate(&w, "c", GLOBAL, "false");
    assert_eq!(served_by(&w, "a"), ["a"]);
    assert_eq!(served_by(&w, "c"), ["c"]);
}

#[test]
fn local_affinity_fails_over_to_remote_when_no_local_endpoint_is_ready() {
    let w = world("0s", false, 1.0);
    annotate(&w, "a", AFFINITY, "local");
    let a = w.workload("f/a").unwrap();
    crate::controllers::delete(&a, &Key::new("/pods", NS, "echo-a"));
    reconcile(&w);
    assert_eq!(served_by(&w, "a"), ["b", "c"]);
}

#[test]
fn a_lost_cluster_is_dropped_after_the_cache_ttl() {
    // 1s of simulated time at speed 100: 10 ms.
    let w = world("1s", false, 100.0);
    links(&w, &[("a", "b")], &[("a", "c"), ("b", "c")]);
    reconcile(&w);
    // Down, but within the TTL: the stale backends are still used.
    assert_eq!(served_by(&w, "a"), ["a", "b", "c"]);
    std::thread::sleep(std::time::Duration::from_millis(30));
    reconcile(&w);
    assert_eq!(served_by(&w, "a"), ["a", "b"]);
    // Back up: delivered again at once.
    links(&w, &[("a", "b"), ("a", "c"), ("b", "c")], &[]);
    reconcile(&w);
    assert_eq!(served_by(&w, "a"), ["a", "b", "c"]);
}

#[test]
fn cache_ttl_zero_keeps_a_lost_cluster_forever() {
    let w = world("0s", false, 1000.0);
    links(&w, &[("a", "b")], &[("a", "c"), ("b", "c")]);
    reconcile(&w);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(served_by(&w, "a"), ["a", "b", "c"]);
}

#[test]
fn mcs_export_and_import() {
    let w = world("0s", true, 1.0);
    let (a, b) = (w.workload("f/a").unwrap(), w.workload("f/b").unwrap());
    let et = ty(&b, MCS_GROUP, "ServiceExport").unwrap().key();
    let it = ty(&a, MCS_GROUP, "ServiceImport").unwrap().key();
    put(
        &b,
        &Key::new(&et, NS, "echo"),
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "echo", "namespace": NS}}),
    );
    reconcile(&w);
    let e = b.store.get(&Key::new(&et, NS, "echo")).unwrap();
    assert_eq!(s(&e, "/status/conditions/0/status"), "True", "{e}");
    for api in [&a, &b] {
        let i = api.store.get(&Key::new(&it, NS, "echo")).expect("import");
        assert_eq!(i["status"]["clusters"], json!([{"cluster": "b"}]), "{i}");
        assert_eq!(i["spec"]["type"], "ClusterSetIP");
        assert_eq!(i["spec"]["ports"][0]["port"], 80);
    }
    let got: Vec<String> = import_backends(&w, "f/a", NS, "echo")
        .unwrap()
        .into_iter()
        .map(|b| b.pod.1)
        .collect();
    assert_eq!(got, ["echo-b"]);
    // An export without a Service is not valid.
    put(
        &b,
        &Key::new(&et, NS, "nothing"),
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "nothing", "namespace": NS}}),
    );
    reconcile(&w);
    let e = b.store.get(&Key::new(&et, NS, "nothing")).unwrap();
    assert_eq!(s(&e, "/status/conditions/0/status"), "False");
    assert!(a.store.get(&Key::new(&it, NS, "nothing")).is_none());
    // Unexported: every import goes.
    crate::controllers::delete(&b, &Key::new(&et, NS, "echo"));
    reconcile(&w);
    assert!(a.store.get(&Key::new(&it, NS, "echo")).is_none());
}

#[test]
fn mcs_off_imports_nothing() {
    let w = world("0s", false, 1.0);
    let b = w.workload("f/b").unwrap();
    let et = ty(&b, MCS_GROUP, "ServiceExport").unwrap().key();
    put(
        &b,
        &Key::new(&et, NS, "echo"),
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "echo", "namespace": NS}}),
    );
    reconcile(&w);
    assert_eq!(import_backends(&w, "f/a", NS, "echo"), None);
}

fn dial(w: &World, from: &str, host: &str, port: u16, tries: u32) -> (u16, Value) {
    let api = w.workload(&format!("f/{from}")).unwrap();
    let pod = api
        .store
        .get(&Key::new("/pods", NS, &format!("echo-{from}")))
        .unwrap();
    let q: HashMap<String, String> = [
        ("host", host.to_string()),
        ("port", port.to_string()),
        ("request", "hostname".into()),
        ("protocol", "http".into()),
        ("tries", tries.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (code, body) =
        crate::echo::serve(w, &format!("f/{from}"), &pod, 8080, &["dial"], &q).unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn pod_ip(w: &World, c: &str) -> String {
    let api = w.workload(&format!("f/{c}")).unwrap();
    s(
        &api.store
            .get(&Key::new("/pods", NS, &format!("echo-{c}")))
            .unwrap(),
        "/status/podIP",
    )
    .to_string()
}

#[test]
fn echo_follows_links_and_outages() {
    let w = world("1s", false, 100.0);
    let (code, r) = dial(&w, "a", &pod_ip(&w, "b"), 8080, 1);
    assert_eq!((code, r.clone()), (200, json!({"responses": ["echo-b"]})));
    // The global service from a: every cluster answers over enough connections.
    let (_, r) = dial(&w, "a", "echo", 80, 6);
    let mut who: Vec<&str> = r["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    who.sort();
    who.dedup();
    assert_eq!(who, ["echo-a", "echo-b", "echo-c"], "{r}");
    // A name that does not resolve.
    let (code, r) = dial(&w, "a", "nope.echo.svc.cluster.local", 80, 1);
    assert_eq!(code, 400);
    assert!(r.as_str().unwrap().contains("no such host"), "{r}");
    // Cluster b goes down: its pods time out, the mesh links to it drop, and once the TTL has
    // passed the global service is served by the others only.
    let ot = ty(&w.management, crate::outage::GROUP, crate::outage::KIND)
        .unwrap()
        .key();
    put(
        &w.management,
        &Key::new(&ot, "", "cluster-b"),
        json!({"apiVersion": "sim.meshfleet.io/v1alpha1", "kind": "Outage",
        "metadata": {"name": "cluster-b"}, "spec": {"cluster": "b"}}),
    );
    let o = crate::outage::current(&w);
    assert!(o.is_down("f/b") && !o.is_down("f/a"));
    assert!(crate::outage::workload_api_down(
        &w,
        "/workload/f/b/api/v1/nodes"
    ));
    assert!(!crate::outage::workload_api_down(
        &w,
        "/workload/f/a/api/v1/nodes"
    ));
    let (_, r) = dial(&w, "a", &pod_ip(&w, "b"), 8080, 1);
    assert!(
        r["errors"][0]
            .as_str()
            .unwrap()
            .contains("deadline exceeded"),
        "{r}"
    );
    links(&w, &[("a", "c")], &[("a", "b"), ("b", "c")]);
    reconcile(&w);
    std::thread::sleep(std::time::Duration::from_millis(30));
    reconcile(&w);
    let (_, r) = dial(&w, "a", "echo", 80, 6);
    assert!(r.get("errors").is_none(), "{r}");
    let mut who: Vec<&str> = r["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    who.sort();
    who.dedup();
    assert_eq!(who, ["echo-a", "echo-c"], "{r}");
    // A partition between a and c (both up): their pods no longer reach each other.
    put(
        &w.management,
        &Key::new(&ot, "", "link-a-c"),
        json!({"apiVersion": "sim.meshfleet.io/v1alpha1", "kind": "Outage",
        "metadata": {"name": "link-a-c"}, "spec": {"link": ["a", "c"]}}),
    );
    let (_, r) = dial(&w, "a", &pod_ip(&w, "c"), 8080, 1);
    assert!(
        r["errors"][0]
            .as_str()
            .unwrap()
            .contains("deadline exceeded"),
        "{r}"
    );
    assert!(crate::outage::current(&w).separated("f/c", "f/a"));
}
