//! The planner's rules, one test (or a few) per rule of issue 3 and DESIGN.md §3.

mod common;

use common::{cluster_yaml, example, fleet, fleet_text, renamed};
use ipnet::IpNet;
use meshfleet_plan::{ChangeKind, Lock, Plan, Protocol, Purpose, Role, plan};
use meshfleet_spec::{Fleet, Report, Severity};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ok(f: &Fleet, lock: Option<&Lock>) -> Plan {
    match plan(f, lock) {
        Ok(p) => p,
        Err(r) => panic!("plan failed: {:#?}", r.errors),
    }
}

fn err(f: &Fleet, lock: Option<&Lock>) -> Report {
    match plan(f, lock) {
        Ok(p) => panic!("plan unexpectedly succeeded: {:#?}", p.clusters),
        Err(r) => {
            assert!(!r.errors.is_empty());
            for d in &r.errors {
                assert!(!d.message.ends_with('.'), "trailing period: {}", d.message);
                assert!(d.hint.is_some(), "no hint: {}", d.message);
            }
            r
        }
    }
}

fn parsed(text: &str) -> Fleet {
    match meshfleet_spec::parse(text) {
        Ok(l) => l.fleet,
        Err(r) => panic!("invalid: {:#?}\n{text}", r.errors),
    }
}

const THREE: &[(&str, &str, &str)] = &[
    ("a", "gcp", "europe-west1"),
    ("b", "gcp", "us-east1"),
    ("c", "aws", "eu-west-1"),
];

// ---------------------------------------------------------------- snapshots

#[test]
fn example_fleet_json_snapshot() {
    let p = ok(&example(), None);
    let json = serde_json::to_string_pretty(&p).unwrap();
    insta::assert_snapshot!("example_plan_json", json);
    let lock = p.lock.to_yaml().unwrap();
    insta::assert_snapshot!("example_lock", lock);
}

#[test]
fn json_shape_is_what_programs_read() {
    let p = ok(&example(), None);
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["fleet"], "hackathon");
    let c = &v["clusters"][0];
    for k in ["name", "provider", "region", "meshId", "network"] {
        assert!(c.get(k).is_some(), "cluster lacks {k}");
    }
    assert!(c["network"]["pods"].is_string());
    let r = &v["firewall"][0];
    assert!(r["ports"][0].is_u64(), "ports are numbers");
    assert!(r["sources"][0].is_string(), "CIDRs are strings");
    assert!(r["targets"][0].is_string());
    assert!(r["purpose"].is_string());
    assert!(v["meshPeers"]["gcp-euw1"].is_array());
}

// ---------------------------------------------------------------- allocation

#[test]
fn first_plan_allocates_first_fit_in_fleet_order() {
    let p = ok(&fleet("", THREE), None);
    let got: Vec<(u16, IpNet, IpNet, IpNet)> = p
        .clusters
        .iter()
        .map(|c| {
            (
                c.mesh_id,
                c.network.pods,
                c.network.services,
                c.network.nodes,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                net("10.64.0.0/16"),
                net("10.128.0.0/20"),
                net("10.0.0.0/20")
            ),
            (
                2,
                net("10.65.0.0/16"),
                net("10.128.16.0/20"),
                net("10.0.16.0/20")
            ),
            (
                3,
                net("10.66.0.0/16"),
                net("10.128.32.0/20"),
                net("10.0.32.0/20")
            ),
        ]
    );
    assert!(p.changes.iter().all(|c| c.kind == ChangeKind::Added));
    assert_eq!(p.changes.len(), 3);
    assert_eq!(p.lock.fleet, "demo");
    assert_eq!(p.lock.clusters.len(), 3);
}

#[test]
fn same_fleet_and_lock_give_identical_bytes() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let again = ok(&f, Some(&first.lock));
    let twice = ok(&f, Some(&first.lock));
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.lock, first.lock);
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&twice).unwrap()
    );
    assert_eq!(again.lock.to_yaml().unwrap(), first.lock.to_yaml().unwrap());
    assert_eq!(again.clusters, first.clusters);
    assert_eq!(again.firewall, first.firewall);
}

#[test]
fn adding_a_cluster_anywhere_moves_nothing() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let mut g = f.clone();
    let newcomer = renamed(&g.spec.clusters[2], "d");
    g.spec.clusters.insert(0, newcomer);
    let second = ok(&g, Some(&first.lock));
    for c in &first.clusters {
        assert_eq!(second.cluster(&c.name), Some(c), "{} moved", c.name);
    }
    let d = second.cluster("d").unwrap();
    assert_eq!(d.mesh_id, 4);
    assert_eq!(d.network.pods, net("10.67.0.0/16"));
    assert_eq!(second.changes.len(), 1);
    assert_eq!(second.changes[0].kind, ChangeKind::Added);
    assert_eq!(second.changes[0].cluster, "d");
}

#[test]
fn removing_a_cluster_retires_it_with_its_id_and_blocks_until_seen_deleted() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let b_before = first.cluster("b").unwrap().clone();
    let mut g = f.clone();
    let b = g.spec.clusters.remove(1);
    let second = ok(&g, Some(&first.lock));
    assert!(!second.lock.clusters.contains_key("b"));
    let held = second
        .lock
        .retired
        .get("b")
        .expect("b is retired, not forgotten");
    assert_eq!(held.mesh_id, 2);
    assert_eq!(held.network, b_before.network);
    let removed: Vec<_> = second
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].cluster, "b");
    assert!(
        removed[0].detail.contains("retired: keeps meshId `2`"),
        "{}",
        removed[0].detail
    );

    // Removed and a newcomer added in the same edit: the newcomer gets neither b's ID nor its
    // blocks, since b may still be running and meshed.
    let mut same_edit = f.clone();
    same_edit.spec.clusters.remove(1);
    same_edit.spec.clusters.push(renamed(&b, "e"));
    let at_once = ok(&same_edit, Some(&first.lock));
    let e = at_once.cluster("e").unwrap();
    assert_ne!(e.mesh_id, 2);
    assert_ne!(e.network.pods, b_before.network.pods);
    assert_ne!(e.network.nodes, b_before.network.nodes);

    // A later newcomer neither.
    g.spec.clusters.push(renamed(&b, "e"));
    let third = ok(&g, Some(&second.lock));
    let e = third.cluster("e").unwrap();
    assert_eq!(e.mesh_id, 4, "the retired ID 2 is not reused");
    assert_ne!(
        e.network.pods, b_before.network.pods,
        "b's blocks stay held"
    );
    assert!(third.lock.retired.contains_key("b"));

    // Once meshfleet has seen b deleted, its blocks are free again; its ID stays retired.
    let mut seen = third.lock.clone();
    assert!(seen.seen_deleted("b"));
    assert!(!seen.seen_deleted("b"), "only once");
    assert_eq!(seen.retired_mesh_ids.get("b"), Some(&2));
    g.spec.clusters.push(renamed(&b, "f"));
    let fourth = ok(&g, Some(&seen));
    let fcl = fourth.cluster("f").unwrap();
    assert_eq!(
        fcl.network.pods, b_before.network.pods,
        "freed block reused"
    );
    assert_ne!(fcl.mesh_id, 2, "the ID is never reused");

    // Put back under its name, b gets its old ID back.
    let mut h = g.clone();
    h.spec.clusters.pop();
    h.spec.clusters.push(b.clone());
    let fifth = ok(&h, Some(&seen));
    assert_eq!(fifth.cluster("b").unwrap().mesh_id, 2);
    assert!(!fifth.lock.retired_mesh_ids.contains_key("b"));
    let added = fifth.changes.iter().find(|c| c.cluster == "b").unwrap();
    assert!(
        added.detail.contains("before it was removed"),
        "{}",
        added.detail
    );

    // Put back while still retired, it gets its whole allocation back.
    let mut k = f.clone();
    k.spec.clusters[1] = b;
    let back = ok(&k, Some(&second.lock));
    assert_eq!(back.cluster("b").unwrap().network, b_before.network);
    assert_eq!(back.cluster("b").unwrap().mesh_id, 2);
    assert!(back.lock.retired.is_empty());
}

#[test]
fn pins_are_honoured_and_never_handed_to_others() {
    let mut text = fleet_text("", &[]);
    text.push_str(&cluster_yaml("a", "gcp", "europe-west1", ""));
    text.push_str(&cluster_yaml(
        "b",
        "gcp",
        "us-east1",
        "meshId: 1, network: { pods: 10.64.0.0/16, nodes: 10.0.0.0/20 }",
    ));
    text.push_str(&cluster_yaml("c", "aws", "eu-west-1", ""));
    let p = ok(&parsed(&text), None);
    let b = p.cluster("b").unwrap();
    assert_eq!(b.mesh_id, 1);
    assert_eq!(b.network.pods, net("10.64.0.0/16"));
    assert_eq!(b.network.nodes, net("10.0.0.0/20"));
    assert_eq!(b.network.services, net("10.128.16.0/20"));
    let a = p.cluster("a").unwrap();
    assert_eq!(a.mesh_id, 2);
    assert_eq!(a.network.pods, net("10.65.0.0/16"));
    assert_eq!(a.network.nodes, net("10.0.16.0/20"));
    assert_eq!(a.network.services, net("10.128.0.0/20"));
    let c = p.cluster("c").unwrap();
    assert_eq!(c.mesh_id, 3);
    assert_eq!(c.network.pods, net("10.66.0.0/16"));
}

#[test]
fn a_small_pin_blocks_the_whole_pool_block_around_it() {
    let mut text = fleet_text("", &[]);
    text.push_str(&cluster_yaml(
        "a",
        "gcp",
        "europe-west1",
        "network: { pods: 10.64.128.0/24 }",
    ));
    text.push_str(&cluster_yaml("b", "gcp", "us-east1", ""));
    let p = ok(&parsed(&text), None);
    assert_eq!(p.cluster("b").unwrap().network.pods, net("10.65.0.0/16"));
}

#[test]
fn a_pin_that_differs_from_the_lock_is_a_change() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let mut g = f.clone();
    g.spec.clusters[0].network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some("10.100.0.0/16".into()),
        ..Default::default()
    });
    g.spec.clusters[0].mesh_id = Some(9);
    let second = ok(&g, Some(&first.lock));
    assert_eq!(second.changes.len(), 1);
    let c = &second.changes[0];
    assert_eq!(c.kind, ChangeKind::Changed);
    assert_eq!(c.cluster, "a");
    assert!(c.detail.contains("meshId `1` → `9`"), "{}", c.detail);
    assert!(
        c.detail.contains("pods `10.64.0.0/16` → `10.100.0.0/16`"),
        "{}",
        c.detail
    );
    assert_eq!(second.lock.clusters["a"].network.pods, net("10.100.0.0/16"));
    // The freed block is available again.
    g.spec.clusters.push(renamed(&g.spec.clusters[1], "d"));
    let third = ok(&g, Some(&second.lock));
    assert_eq!(
        third.cluster("d").unwrap().network.pods,
        net("10.64.0.0/16")
    );
}

#[test]
fn a_pin_on_a_retired_clusters_block_is_an_error_until_it_is_seen_deleted() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let b_pods = first.cluster("b").unwrap().network.pods;
    let mut g = f.clone();
    let b = g.spec.clusters.remove(1);
    let mut e = renamed(&b, "e");
    e.network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some(b_pods.to_string()),
        ..Default::default()
    });
    g.spec.clusters.push(e);
    let r = err(&g, Some(&first.lock));
    let d = &r.errors[0];
    assert_eq!(d.path, "spec.clusters[2].network.pods");
    assert!(
        d.message
            .contains("of retired cluster `b`, which may still run"),
        "{}",
        d.message
    );
    assert!(
        d.hint
            .as_ref()
            .unwrap()
            .contains("meshfleet down --cluster b")
    );

    // Once meshfleet has seen `b` deleted, the block is free for a pin.
    let mut g2 = f.clone();
    g2.spec.clusters.remove(1);
    let second = ok(&g2, Some(&first.lock));
    let mut seen = second.lock.clone();
    assert!(seen.seen_deleted("b"));
    let p = ok(&g, Some(&seen));
    assert_eq!(p.cluster("e").unwrap().network.pods, b_pods);
}

#[test]
fn a_pin_that_takes_another_clusters_locked_block_is_an_error() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let mut g = f.clone();
    g.spec.clusters[2].network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some("10.64.0.0/16".into()),
        ..Default::default()
    });
    let r = err(&g, Some(&first.lock));
    let d = &r.errors[0];
    assert_eq!(d.path, "spec.clusters[2].network.pods");
    assert!(d.message.contains("`10.64.0.0/16`"), "{}", d.message);
    assert!(d.message.contains("cluster `a`"), "{}", d.message);
    assert!(
        d.hint
            .as_ref()
            .unwrap()
            .contains("spec.clusters[0].network.pods")
    );

    // Moving `a` elsewhere with a pin of its own resolves it.
    g.spec.clusters[0].network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some("10.90.0.0/16".into()),
        ..Default::default()
    });
    let p = ok(&g, Some(&first.lock));
    assert_eq!(p.cluster("c").unwrap().network.pods, net("10.64.0.0/16"));
}

#[test]
fn a_pinned_mesh_id_held_by_the_lock_or_retired_is_an_error() {
    let f = fleet("", THREE);
    let first = ok(&f, None);
    let mut g = f.clone();
    g.spec.clusters[2].mesh_id = Some(1);
    let r = err(&g, Some(&first.lock));
    assert_eq!(r.errors[0].path, "spec.clusters[2].meshId");
    assert!(
        r.errors[0].message.contains("cluster `a`"),
        "{}",
        r.errors[0].message
    );

    let mut h = f.clone();
    h.spec.clusters.remove(0);
    let second = ok(&h, Some(&first.lock));
    h.spec.clusters[0].mesh_id = Some(1);
    let r = err(&h, Some(&second.lock));
    assert_eq!(r.errors[0].path, "spec.clusters[0].meshId");
    assert!(
        r.errors[0].message.contains("retired"),
        "{}",
        r.errors[0].message
    );
}

#[test]
fn a_lock_from_another_fleet_is_an_error() {
    let f = fleet("", THREE);
    let mut lock = ok(&f, None).lock;
    lock.fleet = "other".into();
    let r = err(&f, Some(&lock));
    assert_eq!(r.errors[0].path, "metadata.name");
    assert!(r.errors[0].message.contains("`other`"));
}

#[test]
fn a_hand_edited_lock_is_refused_not_trusted() {
    let f = fleet("", THREE);
    let good = ok(&f, None).lock;

    let mut dup = good.clone();
    dup.clusters.get_mut("b").unwrap().mesh_id = 1;
    let r = err(&f, Some(&dup));
    assert!(
        r.errors[0].message.contains("mesh ID `1`"),
        "{}",
        r.errors[0].message
    );

    let mut overlap = good.clone();
    overlap.clusters.get_mut("b").unwrap().network.pods = net("10.64.0.0/15");
    let r = err(&f, Some(&overlap));
    assert!(
        r.errors[0].message.contains("meshfleet.lock"),
        "{}",
        r.errors[0].message
    );

    let mut zero = good.clone();
    zero.clusters.get_mut("c").unwrap().mesh_id = 0;
    err(&f, Some(&zero));

    let mut host_bits = good;
    host_bits.clusters.get_mut("c").unwrap().network.nodes = net("10.0.32.7/20");
    let r = err(&f, Some(&host_bits));
    assert!(r.errors[0].message.contains("host bits"));
}

#[test]
fn lowering_max_connected_below_a_locked_id_is_an_error() {
    let mut f = fleet("  mesh: { maxConnectedClusters: 511 }\n", THREE);
    f.spec.clusters[2].mesh_id = Some(400);
    let first = ok(&f, None);
    f.spec.clusters[2].mesh_id = None;
    f.spec.mesh.max_connected_clusters = 255;
    let r = err(&f, Some(&first.lock));
    assert_eq!(r.errors[0].path, "spec.mesh.maxConnectedClusters");
    assert!(r.errors[0].message.contains("`400`"));
}

#[test]
fn pool_exhaustion_names_the_pool_and_the_shortfall() {
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let clusters: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "gcp", "europe-west1"))
        .collect();
    let f = fleet(
        "  network:\n    pods: { pool: 10.64.0.0/14, prefixLength: 16 }\n",
        &clusters,
    );
    let r = err(&f, None);
    assert_eq!(r.errors.len(), 1);
    let d = &r.errors[0];
    assert_eq!(d.path, "spec.network.pods.pool");
    assert!(d.message.contains("`10.64.0.0/14`"), "{}", d.message);
    assert!(d.message.contains("2 more /16 blocks"), "{}", d.message);
    assert!(
        d.hint.as_ref().unwrap().contains("4 blocks"),
        "{:?}",
        d.hint
    );
}

#[test]
fn mesh_id_exhaustion_is_an_error() {
    let f = fleet("", THREE);
    let mut lock = ok(&f, None).lock;
    for i in 4..=255u16 {
        lock.retired_mesh_ids.insert(format!("gone-{i}"), i);
    }
    let mut g = f.clone();
    g.spec.clusters.push(renamed(&g.spec.clusters[0], "d"));
    let r = err(&g, Some(&lock));
    assert_eq!(r.errors[0].path, "spec.clusters[3].meshId");
    assert!(r.errors[0].message.contains("no free mesh ID"));
}

#[test]
fn invalid_input_the_spec_would_reject_is_an_error_not_a_panic() {
    let base = fleet("", THREE);
    let mut f = base.clone();
    f.spec.network.pods.pool = "not-a-cidr".into();
    let r = err(&f, None);
    assert_eq!(r.errors[0].path, "spec.network.pods.pool");

    let mut f = base.clone();
    f.spec.network.nodes.prefix_length = 8;
    let r = err(&f, None);
    assert_eq!(r.errors[0].path, "spec.network.nodes.prefixLength");

    let mut f = base.clone();
    f.spec.network.services.pool = "10.64.0.0/12".into();
    let r = err(&f, None);
    assert!(
        r.errors
            .iter()
            .any(|d| d.path == "spec.network.services.pool")
    );

    let mut f = base.clone();
    f.spec.clusters[1].network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some("10.64.0.1/16".into()),
        services: Some("bogus".into()),
        nodes: None,
    });
    let r = err(&f, None);
    let paths: Vec<&str> = r.errors.iter().map(|d| d.path.as_str()).collect();
    assert!(
        paths.contains(&"spec.clusters[1].network.pods"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"spec.clusters[1].network.services"),
        "{paths:?}"
    );

    let mut f = base.clone();
    f.spec.clusters[1].name = "a".into();
    let r = err(&f, None);
    assert_eq!(r.errors[0].path, "spec.clusters[1].name");

    let mut f = base.clone();
    f.spec.clusters[0].mesh_id = Some(0);
    f.spec.clusters[1].mesh_id = Some(3);
    f.spec.clusters[2].mesh_id = Some(3);
    let r = err(&f, None);
    let paths: Vec<&str> = r.errors.iter().map(|d| d.path.as_str()).collect();
    assert!(paths.contains(&"spec.clusters[0].meshId"), "{paths:?}");
    assert!(paths.contains(&"spec.clusters[2].meshId"), "{paths:?}");

    let mut f = base.clone();
    f.spec.clusters[0].network = Some(meshfleet_spec::ClusterNetwork {
        pods: Some("10.0.0.0/16".into()),
        services: None,
        nodes: Some("10.0.0.0/20".into()),
    });
    let r = err(&f, None);
    assert_eq!(r.errors[0].path, "spec.clusters[0].network.nodes");

    let mut f = base;
    f.spec.management.egress_cidrs = vec!["nowhere".into()];
    let r = err(&f, None);
    assert_eq!(r.errors[0].path, "spec.management.egressCIDRs[0]");
}

#[test]
fn ipv6_pools_work() {
    let f = fleet(
        "  network:\n    pods: { pool: 'fd00:10::/48', prefixLength: 56 }\n    services: { pool: 'fd00:20::/64', prefixLength: 112 }\n    nodes: { pool: 'fd00:30::/48', prefixLength: 64 }\n",
        THREE,
    );
    let p = ok(&f, None);
    let c = p.cluster("c").unwrap();
    assert_eq!(c.network.pods, net("fd00:10:0:200::/56"));
    assert_eq!(c.network.services, net("fd00:20::2:0/112"));
    assert_eq!(c.network.nodes, net("fd00:30:0:2::/64"));
    let tunnel = p
        .firewall
        .iter()
        .find(|r| r.purpose == Purpose::CiliumTunnel)
        .unwrap();
    // The fleet's node pool, not the blocks (see `summarise`).
    assert_eq!(tunnel.sources, vec![net("fd00:30::/48")]);
}

// ---------------------------------------------------------------- firewall

fn rules(p: &Plan, purpose: Purpose) -> Vec<&meshfleet_plan::FirewallRule> {
    p.firewall.iter().filter(|r| r.purpose == purpose).collect()
}

#[test]
fn talos_api_from_management_to_every_control_plane() {
    let p = ok(&fleet("", THREE), None);
    let r = rules(&p, Purpose::TalosApiManagement);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].protocol, r[0].ports.as_slice()),
        (Protocol::Tcp, &[50000][..])
    );
    assert_eq!(r[0].sources, vec![net("203.0.113.10/32")]);
    let targets: Vec<String> = r[0].targets.iter().map(ToString::to_string).collect();
    assert_eq!(
        targets,
        ["a/control-plane", "b/control-plane", "c/control-plane"]
    );
}

#[test]
fn intra_cluster_talos_rules() {
    let p = ok(&fleet("", THREE), None);
    let apid = rules(&p, Purpose::TalosApiNodes);
    let trustd = rules(&p, Purpose::TalosTrustd);
    assert_eq!((apid.len(), trustd.len()), (3, 3));
    for (i, c) in p.clusters.iter().enumerate() {
        assert_eq!(apid[i].ports, [50000]);
        assert_eq!(apid[i].sources, vec![c.network.nodes]);
        assert_eq!(apid[i].targets.len(), 1);
        assert_eq!(apid[i].targets[0].role, Role::Nodes);
        assert_eq!(apid[i].targets[0].cluster, c.name);
        assert_eq!(trustd[i].ports, [50001]);
        assert_eq!(trustd[i].protocol, Protocol::Tcp);
        assert_eq!(trustd[i].sources, vec![c.network.nodes]);
        assert_eq!(trustd[i].targets[0].role, Role::ControlPlane);
    }
}

#[test]
fn kube_apiserver_gets_gcp_health_checks_only_on_gcp() {
    let p = ok(&fleet("", THREE), None);
    let r = rules(&p, Purpose::KubeApiserver);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].ports, [6443]);
    assert_eq!(
        r[0].sources,
        vec![
            net("10.0.0.0/20"),
            net("35.191.0.0/16"),
            net("130.211.0.0/22"),
            net("203.0.113.10/32")
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        r[2].sources,
        vec![net("10.0.32.0/20"), net("203.0.113.10/32")]
    );
    assert_eq!(r[2].targets[0].role, Role::ControlPlane);
}

#[test]
fn mesh_sources_keep_a_pin_outside_the_pool_and_do_not_change_when_a_cluster_joins() {
    let mut text = fleet_text("", &[]);
    text.push_str(&cluster_yaml("a", "gcp", "europe-west1", ""));
    text.push_str(&cluster_yaml(
        "b",
        "aws",
        "eu-west-1",
        "network: { nodes: 192.168.16.0/20 }",
    ));
    let two = ok(&parsed(&text), None);
    let tunnel = |p: &Plan| rules(p, Purpose::CiliumTunnel)[0].sources.clone();
    assert_eq!(
        tunnel(&two),
        vec![net("10.0.0.0/14"), net("192.168.16.0/20")]
    );
    // A third cluster inside the pool leaves every fleet-wide rule's sources as they were, so
    // the other clusters' infrastructure objects do not change.
    text.push_str(&cluster_yaml("c", "gcp", "us-east1", ""));
    let three = ok(&parsed(&text), Some(&two.lock));
    for purpose in [
        Purpose::CiliumTunnel,
        Purpose::CiliumHealth,
        Purpose::ClustermeshApiserver,
    ] {
        let before: Vec<_> = rules(&two, purpose)
            .iter()
            .map(|r| r.sources.clone())
            .collect();
        let after: Vec<_> = rules(&three, purpose)
            .iter()
            .map(|r| r.sources.clone())
            .collect();
        assert_eq!(before, after, "{purpose}");
    }
}

#[test]
fn mesh_rules_are_one_each_with_the_pool_as_source() {
    let p = ok(&fleet("", THREE), None);
    for (purpose, proto, ports) in [
        (Purpose::CiliumTunnel, Protocol::Udp, vec![8472]),
        (Purpose::ClustermeshApiserver, Protocol::Tcp, vec![32379]),
    ] {
        let r = rules(&p, purpose);
        assert_eq!(r.len(), 1, "{purpose}");
        assert_eq!((r[0].protocol, &r[0].ports), (proto, &ports));
        // The default node pool: every block is inside it.
        assert_eq!(r[0].sources, vec![net("10.0.0.0/14")]);
        assert_eq!(r[0].targets.len(), 3);
        assert!(r[0].targets.iter().all(|t| t.role == Role::Nodes));
    }
    let health = rules(&p, Purpose::CiliumHealth);
    assert_eq!(health.len(), 2);
    assert_eq!(
        (health[0].protocol, health[0].ports.as_slice()),
        (Protocol::Tcp, &[4240][..])
    );
    assert_eq!(
        (health[1].protocol, health[1].ports.as_slice()),
        (Protocol::Icmp, &[][..])
    );
    assert!(rules(&p, Purpose::CiliumWireguard).is_empty());
    assert!(rules(&p, Purpose::CiliumIpsec).is_empty());
}

#[test]
fn mesh_options_change_the_ports() {
    // LoadBalancer needs a cloud's CCM, which only AWS has (validation refuses it on GCP).
    let p = ok(
        &fleet(
            "  mesh: { tunnelProtocol: geneve, encryption: wireguard, apiserverService: LoadBalancer }\n",
            &[("c", "aws", "eu-west-1"), ("d", "aws", "us-east-1")],
        ),
        None,
    );
    assert_eq!(rules(&p, Purpose::CiliumTunnel)[0].ports, [6081]);
    assert_eq!(rules(&p, Purpose::CiliumWireguard)[0].ports, [51871]);
    assert_eq!(
        rules(&p, Purpose::CiliumWireguard)[0].protocol,
        Protocol::Udp
    );
    assert_eq!(rules(&p, Purpose::ClustermeshApiserver)[0].ports, [2379]);

    let p = ok(
        &fleet("  mesh: { routing: native, encryption: ipsec }\n", THREE),
        None,
    );
    assert!(
        rules(&p, Purpose::CiliumTunnel).is_empty(),
        "no tunnel with native routing"
    );
    let esp = rules(&p, Purpose::CiliumIpsec);
    assert_eq!(esp.len(), 1);
    assert_eq!((esp[0].protocol, esp[0].ports.len()), (Protocol::Esp, 0));
}

#[test]
fn hubble_inside_each_cluster() {
    let p = ok(&fleet("", THREE), None);
    let r = rules(&p, Purpose::Hubble);
    assert_eq!(r.len(), 3);
    assert_eq!(r[1].ports, [4244]);
    assert_eq!(r[1].targets[0].cluster, "b");
    assert!(r[1].sources.contains(&p.clusters[1].network.nodes));
}

#[test]
fn without_the_mesh_datapath_rules_stay_inside_each_cluster() {
    let p = ok(&fleet("  mesh: { enabled: false }\n", THREE), None);
    assert!(p.mesh_peers.is_empty());
    assert!(p.interconnects.is_empty());
    assert!(rules(&p, Purpose::ClustermeshApiserver).is_empty());
    let tunnel = rules(&p, Purpose::CiliumTunnel);
    assert_eq!(tunnel.len(), 3);
    for (r, c) in tunnel.iter().zip(&p.clusters) {
        assert_eq!(r.sources, vec![c.network.nodes]);
        assert_eq!(r.targets.len(), 1);
    }
}

#[test]
fn the_matrix_is_linear_in_clusters_and_ordered() {
    let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    let clusters: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "aws", "eu-west-1"))
        .collect();
    let p = ok(
        &fleet("  mesh: { encryption: wireguard }\n", &clusters),
        None,
    );
    // 1 management + tunnel, health tcp, health icmp, wireguard, clustermesh + 4 per cluster.
    assert_eq!(p.firewall.len(), 1 + 5 + 4 * 40);
    assert_eq!(p.firewall[0].purpose, Purpose::TalosApiManagement);
    // 40 consecutive /20s aggregate into few sources.
    let tunnel = rules(&p, Purpose::CiliumTunnel);
    assert!(tunnel[0].sources.len() <= 3, "{:?}", tunnel[0].sources);
}

#[test]
fn rules_for_and_cluster_helpers() {
    let p = ok(&fleet("", THREE), None);
    let b: Vec<_> = p.rules_for("b").collect();
    // management, tunnel, health×2, clustermesh, then b's 4 own rules.
    assert_eq!(b.len(), 9);
    assert!(b.iter().all(|r| r.targets.iter().any(|t| t.cluster == "b")));
    assert_eq!(p.rules_for("nope").count(), 0);
    assert_eq!(p.cluster("c").unwrap().mesh_id, 3);
    assert!(p.cluster("nope").is_none());
}

// ---------------------------------------------------------------- peers, interconnects

#[test]
fn every_meshed_cluster_peers_with_every_other() {
    let p = ok(&fleet("", THREE), None);
    assert_eq!(p.mesh_peers.len(), 3);
    assert_eq!(p.mesh_peers["a"], ["b", "c"]);
    assert_eq!(p.mesh_peers["b"], ["a", "c"]);
    assert_eq!(p.mesh_peers["c"], ["a", "b"]);
}

#[test]
fn gcp_needs_nothing_among_itself() {
    let p = ok(
        &fleet(
            "",
            &[("a", "gcp", "europe-west1"), ("b", "gcp", "us-east1")],
        ),
        None,
    );
    assert!(p.interconnects.is_empty());
    assert!(p.warnings.is_empty());
}

#[test]
fn aws_cross_region_and_gcp_to_aws_needs_warn_when_unset() {
    let clusters = [
        ("gg", "gcp", "europe-west1"),
        ("xx", "aws", "us-east-1"),
        ("yy", "aws", "eu-west-1"),
        ("zz", "aws", "eu-west-1"),
    ];
    let p = ok(&fleet("", &clusters), None);
    let names: Vec<&str> = p.interconnects.iter().map(|n| n.name.as_str()).collect();
    // Every AWS cluster is its own VPC: yy and zz share a region but still need a link.
    assert_eq!(
        names,
        [
            "yy--zz",
            "yy--xx",
            "zz--xx",
            "meshfleet--yy",
            "meshfleet--zz",
            "meshfleet--xx"
        ]
    );
    assert!(p.interconnects.iter().all(|n| n.via.is_none()));
    assert_eq!(p.warnings.len(), 2);
    for w in &p.warnings {
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(w.path, "spec.interconnect");
    }
    let hint = |i: usize| p.warnings[i].hint.clone().unwrap();
    assert!(hint(0).contains("awsCrossRegion") && hint(0).contains("transitGateway"));
    assert!(hint(0).contains("existing"));
    assert!(hint(1).contains("gcpToAws") && hint(1).contains("haVpn"));

    let p = ok(
        &fleet(
            "  interconnect: { awsCrossRegion: transitGateway, gcpToAws: publicAddresses }\n",
            &clusters,
        ),
        None,
    );
    assert!(p.warnings.is_empty());
    assert_eq!(p.interconnects[0].via.as_deref(), Some("transitGateway"));
    assert_eq!(p.interconnects[5].via.as_deref(), Some("publicAddresses"));
}

#[test]
fn native_routing_opens_every_port_from_pod_cidrs_to_meshed_nodes() {
    let text = include_str!("../../../examples/fleet.yaml").replacen(
        "routing: tunnel ",
        "routing: native ",
        1,
    );
    let fleet = meshfleet_spec::parse(&text).expect("valid").fleet;
    let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
    let native: Vec<_> = plan
        .firewall
        .iter()
        .filter(|r| r.purpose == meshfleet_plan::Purpose::CiliumNativeRouting)
        .collect();
    let protocols: Vec<_> = native.iter().map(|r| r.protocol).collect();
    use meshfleet_plan::Protocol;
    assert_eq!(
        protocols,
        vec![Protocol::Tcp, Protocol::Udp, Protocol::Icmp]
    );
    for r in &native {
        assert!(r.ports.is_empty(), "every port");
        // The example's pod pool, which holds the three /16 pod blocks 10.64-10.66.
        let sources: Vec<String> = r.sources.iter().map(ToString::to_string).collect();
        assert_eq!(sources, vec!["10.64.0.0/10"]);
        assert_eq!(r.targets.len(), 3);
    }
    assert!(
        !plan
            .firewall
            .iter()
            .any(|r| r.purpose == meshfleet_plan::Purpose::CiliumTunnel),
        "no tunnel port without a tunnel"
    );
}
