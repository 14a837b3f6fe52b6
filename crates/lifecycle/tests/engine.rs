//! The engine against an in-memory fake of its `Api`: ordering (mesh CA before Cilium, the
//! proxy before the Cluster on the way down), resumption (a second run creates nothing), the
//! failure of one cluster (the others converge and mesh), and a missing provider (nothing
//! written).

// Each test binary uses its own part of the shared fake and fixture.
#[allow(dead_code)]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use fake::Fake;
use fake::fixture::{self, Setup, recorder};
use meshfleet_lifecycle::down::{self, DownOptions};

use meshfleet_lifecycle::{Api, Error, Event, ObjectRef, Progress};

fn fleet_text(mesh: bool) -> String {
    format!(
        r#"apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: {{ name: acme }}
spec:
  versions: {{ kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }}
  network:
    pods:     {{ pool: 10.64.0.0/10,  prefixLength: 16 }}
    services: {{ pool: 10.128.0.0/12, prefixLength: 20 }}
    nodes:    {{ pool: 10.0.0.0/14,   prefixLength: 20 }}
  mesh: {{ enabled: {mesh} }}
  podSecurity: {{ enforce: baseline, exemptions: {{ namespaces: [kube-system] }} }}
  management: {{ egressCIDRs: [203.0.113.10/32] }}
  providers:
    gcp: {{ project: acme-prod, network: meshfleet, imageBucket: acme-talos-images }}
  clusters:
    - {{ name: a, provider: gcp, region: europe-west1, zones: [europe-west1-b],
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}
    - {{ name: b, provider: gcp, region: europe-west1, zones: [europe-west1-b],
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}
    - {{ name: c, provider: gcp, region: us-east1, zones: [us-east1-b],
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}
"#
    )
}

fn setup(mesh: bool) -> Setup {
    fixture::setup(&fleet_text(mesh), 2)
}

#[tokio::test]
async fn converges_every_cluster_with_the_mesh_ca_before_cilium() {
    let s = setup(true);
    let mgmt = Fake::new();
    let (progress, events) = recorder();
    let report = s.up(&mgmt, s.opts.clone(), progress).await.unwrap();
    assert!(report.ok(), "{report:?}");

    {
        let w = mgmt.w();
        for c in ["a", "b", "c"] {
            // Each cluster's objects, then the CA into its workload cluster, then Cilium.
            let cluster = w.positions("mgmt", "apply", &format!("Cluster/{c}"))[0];
            let ca = w.positions(c, "apply", "Secret/cilium-ca")[0];
            let proxy = format!("HelmChartProxy/{}", meshfleet_render::proxy_name(c));
            let cilium = w.positions("mgmt", "apply", &proxy)[0];
            // The Cluster is applied twice: rendered, then labelled once its CA is there.
            let label = w.positions("mgmt", "apply", &format!("Cluster/{c}"))[1];
            assert!(
                cluster < ca && ca < label && label < cilium,
                "{c}: {cluster} {ca} {label} {cilium}"
            );
        }
        // The fleet's CA is made once and the same certificate goes everywhere.
        let created = w.positions("mgmt", "create", "Secret/acme-mesh-ca");
        assert_eq!(created.len(), 1);
    }
    let mut certs = Vec::new();
    for c in ["a", "b", "c"] {
        let wl = mgmt
            .open(&format!("fake://{c}"), c, Default::default())
            .await
            .unwrap();
        certs.push(
            wl.secret_value("kube-system", "cilium-ca", "ca.crt")
                .await
                .unwrap()
                .expect("CA delivered"),
        );
    }
    assert!(certs.windows(2).all(|p| p[0] == p[1]));

    let finished: Vec<(String, bool)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Finished { cluster, ok, .. } => Some((cluster.clone(), *ok)),
            _ => None,
        })
        .collect();
    let mut names: Vec<&str> = finished.iter().map(|(c, _)| c.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(finished.iter().all(|(_, ok)| *ok));
}

#[tokio::test]
async fn a_second_run_creates_nothing_and_writes_the_same_objects() {
    let s = setup(true);
    let mgmt = Fake::new();
    s.up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap();
    let first = mgmt.w().calls.len();
    let proxy = ObjectRef::new(
        "addons.cluster.x-k8s.io/v1alpha1",
        "HelmChartProxy",
        Some("acme"),
        &meshfleet_render::proxy_name("a"),
    );
    let before = mgmt.get(&proxy).await.unwrap().unwrap();
    let report = s
        .up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    {
        let w = mgmt.w();
        let again = &w.calls[first..];
        assert!(
            again.iter().all(|c| c.verb == "apply"),
            "a re-run only applies: {again:?}"
        );
    }
    let after = mgmt.get(&proxy).await.unwrap().unwrap();
    let cluster = mgmt
        .get(&ObjectRef::new(
            "cluster.x-k8s.io/v1beta2",
            "Cluster",
            Some("acme"),
            "a",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cluster["metadata"]["labels"]["meshfleet.io/mesh-ca"], "delivered",
        "re-applying the rendered Cluster keeps the mesh-CA label"
    );
    assert_eq!(
        before["spec"]["valuesTemplate"], after["spec"]["valuesTemplate"],
        "the peers' addresses are carried over"
    );
}

#[tokio::test]
async fn one_failing_cluster_leaves_the_others_converged_and_meshed() {
    let s = setup(true);
    let mgmt = Fake::new();
    mgmt.w().refuse.insert("b".into());
    let report = s
        .up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap();
    assert_eq!(report.failures.keys().collect::<Vec<_>>(), ["b"]);
    assert!(report.failures["b"].contains("refused by the test"));
    assert!(
        report.mesh_problems.is_empty(),
        "a and c mesh with each other: {:?}",
        report.mesh_problems
    );
    // Nothing of b's Cilium was installed.
    assert!(
        mgmt.w()
            .positions(
                "mgmt",
                "apply",
                &format!("HelmChartProxy/{}", meshfleet_render::proxy_name("b"))
            )
            .is_empty()
    );
}

#[tokio::test]
async fn a_stuck_cluster_times_out_with_its_reason_and_the_rest_finish() {
    let s = setup(false);
    let mgmt = Fake::new();
    mgmt.w().stuck.insert("c".into());
    let mut opts = s.opts.clone();
    opts.timeout = Duration::from_millis(400);
    let report = s
        .up(&mgmt, opts, Arc::new(Progress::silent()))
        .await
        .unwrap();
    assert_eq!(report.failures.keys().collect::<Vec<_>>(), ["c"]);
    assert!(
        report.failures["c"].starts_with("stuck waiting for the control plane after"),
        "{}",
        report.failures["c"]
    );
}

#[tokio::test]
async fn missing_providers_stop_before_anything_is_written() {
    let s = setup(true);
    let mgmt = Fake::new();
    mgmt.w().not_served.insert("TalosControlPlane".into());
    let err = s
        .up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap_err();
    match &err {
        Error::ProvidersMissing { hint, missing, .. } => {
            assert_eq!(missing.len(), 1);
            assert!(hint.contains("--control-plane talos"), "{hint}");
        }
        other => panic!("expected ProvidersMissing, got {other}"),
    }
    assert!(mgmt.w().calls.is_empty());
}

#[tokio::test]
async fn down_removes_cilium_before_the_cluster_and_only_what_the_fleet_owns() {
    let s = setup(true);
    let mgmt = Fake::new();
    s.up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap();
    // Someone else's Secret in the fleet's namespace, named like the IPsec keys.
    mgmt.apply(&serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "acme-ipsec-keys", "namespace": "acme"}}))
        .await
        .unwrap();
    let opts = DownOptions {
        fleet: "acme".into(),
        cluster: None,
        timeout: Duration::from_secs(2),
    };
    let report = down::run(&mgmt, &s.rendered, &opts, Arc::new(Progress::silent()))
        .await
        .unwrap();
    assert_eq!(report.deleted, ["a", "b", "c"]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains("refusing to delete Secret `acme/acme-ipsec-keys`"));
    let w = mgmt.w();
    for c in ["a", "b", "c"] {
        let proxy = w.positions(
            "mgmt",
            "delete",
            &format!("HelmChartProxy/{}", meshfleet_render::proxy_name(c)),
        )[0];
        let cluster = w.positions("mgmt", "delete", &format!("Cluster/{c}"))[0];
        assert!(proxy < cluster, "{c}");
    }
    assert_eq!(w.count("mgmt", "Cluster"), 0);
    assert_eq!(w.count("mgmt", "HelmChartProxy"), 0);
}

#[tokio::test]
async fn diff_is_empty_after_up_and_names_exactly_what_an_edit_changes() {
    use meshfleet_lifecycle::diff::{self, Action};
    let s = setup(true);
    let mgmt = Fake::new();
    let before = diff::run(&mgmt, &s.fleet, &s.plan, &s.rendered)
        .await
        .unwrap();
    assert!(before.clusters.iter().all(|c| c.action == Action::Create));

    s.up(&mgmt, s.opts.clone(), Arc::new(Progress::silent()))
        .await
        .unwrap();
    let after = diff::run(&mgmt, &s.fleet, &s.plan, &s.rendered)
        .await
        .unwrap();
    assert!(
        !after.changed(),
        "{:#?}",
        after
            .clusters
            .iter()
            .flat_map(|c| &c.changes)
            .collect::<Vec<_>>()
    );

    // Three control-plane machines for `b` instead of one: that field, on that cluster.
    let mut fleet = s.fleet.clone();
    fleet.spec.clusters[1].control_plane.replicas = 3;
    let rendered = meshfleet_render::render(&fleet, &s.plan).unwrap();
    let d = diff::run(&mgmt, &fleet, &s.plan, &rendered).await.unwrap();
    let changed: Vec<_> = d
        .clusters
        .iter()
        .filter(|c| c.action != Action::Unchanged)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0].name, "b");
    assert_eq!(changed[0].action, Action::Update);
    let fields: Vec<(&str, &str)> = changed[0]
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.field.as_str()))
        .collect();
    assert_eq!(fields, [("TalosControlPlane", "spec.replicas")]);
    assert_eq!(changed[0].changes[0].from, 1);
    assert_eq!(changed[0].changes[0].to, 3);
    assert_eq!(
        changed[0].effects,
        ["the control plane scales from 1 to 3 machines"]
    );

    // `c` removed from the file: it is `delete`, the others unchanged.
    let mut fleet = s.fleet.clone();
    fleet.spec.clusters.truncate(2);
    let plan = meshfleet_plan::plan(&fleet, Some(&s.plan.lock)).unwrap();
    let rendered = meshfleet_render::render(&fleet, &plan).unwrap();
    let d = diff::run(&mgmt, &fleet, &plan, &rendered).await.unwrap();
    let actions: Vec<(&str, Action)> = d
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.action))
        .collect();
    assert_eq!(actions[2], ("c", Action::Delete));
}
