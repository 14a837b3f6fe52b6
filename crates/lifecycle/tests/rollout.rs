//! `up` rolling a version change through the fleet on the in-memory fake: new clusters and
//! label-only changes apply at once; a version change rolls wave by wave, one cluster at a
//! time, each behind its health gate; a cluster that cannot finish halts the rollout before
//! any other cluster is touched; a re-run resumes; an invalid jump writes nothing.

#[allow(dead_code)]
mod fake;

use fake::Fake;
use fake::fixture::{self, Setup};
use meshfleet_lifecycle::up::UpReport;
use meshfleet_lifecycle::{Error, Event};

fn fleet_text(k8s: &str, staging_label: &str) -> String {
    format!(
        r#"apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: {{ name: acme }}
spec:
  versions: {{ kubernetes: {k8s}, talos: v1.13.9, cilium: 1.19.5 }}
  mesh: {{ enabled: true }}
  management: {{ egressCIDRs: [203.0.113.10/32] }}
  providers:
    gcp: {{ project: acme-prod, network: meshfleet, imageBucket: acme-talos-images }}
  rollout:
    maxParallel: 1
    healthTimeout: 2s
    waves: [{{ matchLabels: {{ env: staging }} }}, {{}}]
  clusters:
    - {{ name: p1, provider: gcp, region: europe-west1, zones: [europe-west1-b], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: w, replicas: 2, machineType: n2-standard-2 }}] }}
    - {{ name: st, provider: gcp, region: europe-west1, zones: [europe-west1-b], labels: {{ env: {staging_label} }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }},
        workerPools: [{{ name: w, replicas: 2, machineType: n2-standard-2 }}] }}
    - {{ name: p2, provider: gcp, region: us-east1, zones: [us-east1-b], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}
    - {{ name: p3, provider: gcp, region: us-east1, zones: [us-east1-b], labels: {{ env: prod }},
        controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}
"#
    )
}

fn setup(text: &str) -> Setup {
    fixture::setup(text, 4)
}

async fn up(s: &Setup, mgmt: &Fake) -> (Result<UpReport, Error>, Vec<Event>) {
    s.up_recorded(mgmt).await
}

/// The Kubernetes versions of a cluster's running machines in the fake.
fn machine_versions(mgmt: &Fake, cluster: &str) -> Vec<String> {
    use meshfleet_lifecycle::Api as _;
    let sel = format!("cluster.x-k8s.io/cluster-name={cluster}");
    let ms = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(mgmt.list(
            "cluster.x-k8s.io/v1beta2",
            "Machine",
            Some("acme"),
            &sel,
        ))
    })
    .unwrap();
    let mut v: Vec<String> = ms
        .iter()
        .filter(|m| m["status"]["phase"] == "Running")
        .map(|m| m["spec"]["version"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// (cluster, start, end) of every rolled cluster, as indexes into the events.
fn rolled_spans(events: &[Event]) -> Vec<(String, usize, usize)> {
    let mut spans: Vec<(String, usize, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (c, m) = match e {
            Event::Step { cluster, message } => (cluster, message.as_str()),
            Event::Finished {
                cluster, message, ..
            } => (cluster, message.as_str()),
            _ => continue,
        };
        if m.starts_with("rolling (") && !spans.iter().any(|(n, ..)| n == c) {
            spans.push((c.clone(), i, usize::MAX));
        }
        if (m.starts_with("rolled (") || matches!(e, Event::Finished { ok: false, .. }))
            && let Some(s) = spans.iter_mut().find(|(n, ..)| n == c)
        {
            s.2 = s.2.min(i);
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_change_rolls_staging_first_one_cluster_at_a_time() {
    let mgmt = Fake::new();
    let first = setup(&fleet_text("v1.35.4", "staging"));
    let (r, events) = up(&first, &mgmt).await;
    assert!(r.unwrap().ok());
    // A new fleet is created at once: nothing rolls.
    assert!(rolled_spans(&events).is_empty(), "{events:?}");
    assert_eq!(machine_versions(&mgmt, "p1"), ["v1.35.4"]);

    let next = setup(&fleet_text("v1.36.3", "staging"));
    let (r, events) = up(&next, &mgmt).await;
    let report = r.unwrap();
    assert!(report.ok(), "{report:?}");
    let spans = rolled_spans(&events);
    let order: Vec<&str> = spans.iter().map(|(c, ..)| c.as_str()).collect();
    assert_eq!(order[0], "st", "staging first: {spans:?}");
    assert_eq!(order.len(), 4, "{spans:?}");
    for w in spans.windows(2) {
        assert!(w[0].2 < w[1].1, "two clusters in flight at once: {spans:?}");
    }
    // The waves are announced.
    let infos: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Info(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(
        infos
            .iter()
            .any(|m| m.starts_with("rollout wave 1/2 (env=staging): st")),
        "{infos:?}"
    );
    assert!(
        infos
            .iter()
            .any(|m| m.starts_with("rollout wave 2/2 ({}): p1, p2, p3")),
        "{infos:?}"
    );
    for c in ["p1", "st", "p2", "p3"] {
        assert_eq!(machine_versions(&mgmt, c), ["v1.36.3"], "{c}");
    }
    // The second TalosControlPlane apply of each cluster (the upgrade) is in rollout order.
    let w = mgmt.w();
    let at = |c: &str| {
        w.positions(
            "mgmt",
            "apply",
            &format!("TalosControlPlane/{c}-control-plane"),
        )[1]
    };
    assert!(at("st") < at("p1") && at("p1") < at("p2") && at("p2") < at("p3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_staging_cluster_halts_before_any_other_cluster_changes_and_a_rerun_resumes() {
    let mgmt = Fake::new();
    let (r, _) = up(&setup(&fleet_text("v1.35.4", "staging")), &mgmt).await;
    assert!(r.unwrap().ok());
    mgmt.w().held.insert("st".into());
    let next = setup(&fleet_text("v1.36.3", "staging"));
    let applies_before = mgmt.w().calls.len();
    let (r, events) = up(&next, &mgmt).await;
    let report = r.unwrap();
    assert!(!report.ok());
    assert_eq!(report.halted.as_deref(), Some("st"));
    assert_eq!(report.not_rolled, ["p1", "p2", "p3"]);
    let why = &report.failures["st"];
    assert!(why.contains("not healthy after 2s (2s)"), "{why}");
    assert!(why.contains("still run the old version"), "{why}");
    assert!(why.contains("the instance does not boot"), "{why}");
    assert!(
        why.contains("run `meshfleet up` again to resume from `st`"),
        "{why}"
    );
    assert!(why.contains("kubernetes: v1.35.4"), "{why}");
    // Nothing of the other clusters was written in this run.
    {
        let w = mgmt.w();
        for c in &w.calls[applies_before..] {
            for other in ["p1", "p2", "p3"] {
                assert!(
                    !c.what.contains(&format!("/{other}")),
                    "touched {other}: {c:?}"
                );
            }
        }
    }
    for c in ["p1", "p2", "p3"] {
        assert_eq!(machine_versions(&mgmt, c), ["v1.35.4"], "{c}");
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning(m) if m.contains("rollout halted at `st`")))
    );

    // `status` shows staging between versions and the others still to go.
    let expected = meshfleet_lifecycle::status::expected(&next.fleet, &next.plan.mesh_peers);
    let st = meshfleet_lifecycle::status::collect(&mgmt, "acme", &expected, true).await;
    let of = |n: &str| {
        st.clusters
            .iter()
            .find(|c| c.name == n)
            .and_then(|c| c.versions.clone())
            .unwrap()
    };
    assert_eq!(of("st").kubernetes.current, ["v1.35.4", "v1.36.3"]);
    assert_eq!(of("p1").kubernetes.current, ["v1.35.4"]);
    assert_eq!(of("p1").kubernetes.desired, "v1.36.3");
    assert!(of("p1").rolling() && of("st").rolling());
    // `diff` names the wave each cluster rolls in.
    let d = meshfleet_lifecycle::diff::run(&mgmt, &next.fleet, &next.plan, &next.rendered)
        .await
        .unwrap();
    let slot = |n: &str| {
        d.clusters
            .iter()
            .find(|c| c.name == n)
            .and_then(|c| c.rollout.clone())
            .map(|r| (r.wave, r.waves, r.selector, r.position))
    };
    assert_eq!(slot("st"), Some((1, 2, "env=staging".to_string(), 1)));
    assert_eq!(slot("p1"), Some((2, 2, "{}".to_string(), 1)));
    assert_eq!(slot("p3"), Some((2, 2, "{}".to_string(), 3)));
    let p1 = d.clusters.iter().find(|c| c.name == "p1").unwrap();
    assert!(
        p1.effects
            .iter()
            .any(|e| e.starts_with("rolls in wave 2/2 ({})")),
        "{:?}",
        p1.effects
    );

    // Healed: the same file again finishes staging, then the rest.
    mgmt.w().held.clear();
    let (r, events) = up(&next, &mgmt).await;
    let report = r.unwrap();
    assert!(report.ok(), "{report:?}");
    let order: Vec<String> = rolled_spans(&events).into_iter().map(|(c, ..)| c).collect();
    assert_eq!(order, ["st", "p1", "p2", "p3"]);
    for c in ["p1", "st", "p2", "p3"] {
        assert_eq!(machine_versions(&mgmt, c), ["v1.36.3"], "{c}");
    }
    let st = meshfleet_lifecycle::status::collect(&mgmt, "acme", &expected, true).await;
    assert!(
        st.clusters
            .iter()
            .all(|c| !c.versions.as_ref().unwrap().rolling())
    );
    let d = meshfleet_lifecycle::diff::run(&mgmt, &next.fleet, &next.plan, &next.rendered)
        .await
        .unwrap();
    assert!(d.clusters.iter().all(|c| c.rollout.is_none()), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_minor_is_refused_before_anything_is_written() {
    let mgmt = Fake::new();
    let (r, _) = up(&setup(&fleet_text("v1.34.8", "staging")), &mgmt).await;
    assert!(r.unwrap().ok());
    let before = mgmt.w().calls.len();
    let (r, _) = up(&setup(&fleet_text("v1.36.3", "staging")), &mgmt).await;
    match r {
        Err(Error::UpgradePath(ds)) => {
            assert_eq!(ds.len(), 1, "one for the whole fleet: {ds:?}");
            assert_eq!(ds[0].path, "spec.versions.kubernetes");
            assert_eq!(
                ds[0].message,
                "clusters `p1`, `st`, `p2`, `p3` run Kubernetes `v1.34.8`; `v1.36.3` skips `1.35` (control-plane machines may be at most one minor apart while they are replaced)"
            );
            assert!(
                ds[0]
                    .hint
                    .as_deref()
                    .unwrap()
                    .contains("Kubernetes `v1.35.4`")
            );
        }
        other => panic!("expected an upgrade-path error, got {other:?}"),
    }
    assert_eq!(mgmt.w().calls.len(), before, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_change_applies_at_once_without_rolling() {
    let mgmt = Fake::new();
    let (r, _) = up(&setup(&fleet_text("v1.35.4", "staging")), &mgmt).await;
    assert!(r.unwrap().ok());
    let (r, events) = up(&setup(&fleet_text("v1.35.4", "qa")), &mgmt).await;
    assert!(r.unwrap().ok());
    assert!(rolled_spans(&events).is_empty(), "{events:?}");
    assert_eq!(machine_versions(&mgmt, "st"), ["v1.35.4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_version_back_in_the_file_rolls_the_halted_cluster_back_only() {
    let mgmt = Fake::new();
    let old = setup(&fleet_text("v1.35.4", "staging"));
    let (r, _) = up(&old, &mgmt).await;
    assert!(r.unwrap().ok());
    mgmt.w().held.insert("st".into());
    let (r, _) = up(&setup(&fleet_text("v1.36.3", "staging")), &mgmt).await;
    assert_eq!(r.unwrap().halted.as_deref(), Some("st"));
    mgmt.w().held.clear();
    // Rolling back: only the halted cluster has anything to undo.
    let (r, events) = up(&old, &mgmt).await;
    let report = r.unwrap();
    assert!(report.ok(), "{report:?}");
    let order: Vec<String> = rolled_spans(&events).into_iter().map(|(c, ..)| c).collect();
    assert_eq!(order, ["st"]);
    for c in ["p1", "st", "p2", "p3"] {
        assert_eq!(machine_versions(&mgmt, c), ["v1.35.4"], "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cilium_upgrade_rolls_in_waves_too() {
    let mgmt = Fake::new();
    let (r, _) = up(
        &setup(&fleet_text("v1.35.4", "staging").replace("cilium: 1.19.5", "cilium: 1.18.6")),
        &mgmt,
    )
    .await;
    assert!(r.unwrap().ok());
    let (r, events) = up(&setup(&fleet_text("v1.35.4", "staging")), &mgmt).await;
    assert!(r.unwrap().ok());
    let order: Vec<String> = rolled_spans(&events).into_iter().map(|(c, ..)| c).collect();
    assert_eq!(order, ["st", "p1", "p2", "p3"]);
}
