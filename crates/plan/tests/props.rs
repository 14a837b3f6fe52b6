//! Properties of the planner over random histories of a fleet: clusters added anywhere in the
//! list (some with pinned mesh IDs or pod CIDRs, some re-added under an old name), clusters
//! removed, and the lock carried from each plan to the next.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use meshfleet_plan::{Lock, Plan, plan};
use meshfleet_spec::{Cluster, ClusterNetwork, Fleet};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Insert a cluster at `pos` (modulo the length); re-use a removed name when `reuse`.
    Add {
        pos: usize,
        reuse: bool,
        pin_id: Option<u16>,
        pin_pods: bool,
    },
    /// Remove the cluster at `pos` (modulo the length).
    Remove { pos: usize },
    /// meshfleet saw a retired cluster deleted (`down --cluster`).
    SeenDeleted { pos: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), any::<bool>(), prop::option::weighted(0.2, 1u16..=255), prop::bool::weighted(0.2))
            .prop_map(|(pos, reuse, pin_id, pin_pods)| Op::Add { pos, reuse, pin_id, pin_pods }),
        2 => any::<usize>().prop_map(|pos| Op::Remove { pos }),
        1 => any::<usize>().prop_map(|pos| Op::SeenDeleted { pos }),
    ]
}

/// Small pools so freed blocks are reused often: 16 pod blocks, 64 node and 256 service blocks.
fn base() -> Fleet {
    common::fleet(
        "  network:\n    pods: { pool: 10.64.0.0/12, prefixLength: 16 }\n    services: { pool: 10.128.0.0/12, prefixLength: 20 }\n    nodes: { pool: 10.0.0.0/14, prefixLength: 20 }\n",
        &[("seed", "aws", "eu-west-1")],
    )
}

const MAX_LIVE: usize = 12;

/// Live and retired clusters together: none may share a mesh ID or overlap another's pod or
/// node CIDRs, since a retired cluster may still run and be meshed. Nor may anyone hold a mesh
/// ID retired for another name.
fn check_held(p: &Plan) -> Result<(), TestCaseError> {
    let mut all: Vec<(String, u16, IpNet, IpNet)> = p
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.mesh_id, c.network.pods, c.network.nodes))
        .collect();
    all.extend(
        p.lock
            .retired
            .iter()
            .map(|(n, c)| (n.clone(), c.mesh_id, c.network.pods, c.network.nodes)),
    );
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            prop_assert_ne!(a.1, b.1, "mesh ID of {} and {}", &a.0, &b.0);
            for (x, y) in [(a.2, b.2), (a.3, b.3), (a.2, b.3), (a.3, b.2)] {
                prop_assert!(!overlaps(&x, &y), "{} and {} overlap", &a.0, &b.0);
            }
        }
        for (name, id) in &p.lock.retired_mesh_ids {
            if *id == a.1 {
                prop_assert_eq!(name, &a.0, "retired ID {} held by {}", id, &a.0);
            }
        }
    }
    Ok(())
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_disjoint(p: &Plan) -> Result<(), TestCaseError> {
    let cs = &p.clusters;
    for (i, a) in cs.iter().enumerate() {
        let n = &a.network;
        prop_assert!(!overlaps(&n.pods, &n.services), "{} pods/services", a.name);
        prop_assert!(!overlaps(&n.pods, &n.nodes), "{} pods/nodes", a.name);
        prop_assert!(
            !overlaps(&n.services, &n.nodes),
            "{} services/nodes",
            a.name
        );
        for b in &cs[i + 1..] {
            let m = &b.network;
            prop_assert!(
                !overlaps(&n.pods, &m.pods),
                "pods of {} and {}",
                a.name,
                b.name
            );
            prop_assert!(
                !overlaps(&n.nodes, &m.nodes),
                "nodes of {} and {}",
                a.name,
                b.name
            );
            prop_assert!(
                !overlaps(&n.pods, &m.nodes),
                "pods of {} / nodes of {}",
                a.name,
                b.name
            );
            prop_assert!(
                !overlaps(&n.nodes, &m.pods),
                "nodes of {} / pods of {}",
                a.name,
                b.name
            );
            prop_assert!(
                !overlaps(&n.services, &m.services),
                "services of {} and {}",
                a.name,
                b.name
            );
            prop_assert_ne!(
                a.mesh_id,
                b.mesh_id,
                "mesh IDs of {} and {}",
                a.name,
                b.name
            );
        }
        prop_assert!((1..=255).contains(&a.mesh_id));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn allocations_stay_disjoint_and_stable(ops in prop::collection::vec(op(), 1..24)) {
        let mut fleet = base();
        let template: Cluster = fleet.spec.clusters[0].clone();
        let mut lock: Option<Lock> = None;
        let mut prev = plan(&fleet, None).map_err(|r| TestCaseError::fail(format!("{:?}", r.errors)))?;
        check_disjoint(&prev)?;
        lock = lock.or(Some(prev.lock.clone()));
        let mut counter = 0usize;
        let mut removed: Vec<String> = Vec::new();

        for op in ops {
            match op {
                Op::Add { pos, reuse, pin_id, pin_pods } => {
                    if fleet.spec.clusters.len() >= MAX_LIVE {
                        continue;
                    }
                    let name = if reuse && !removed.is_empty() {
                        removed.remove(pos % removed.len())
                    } else {
                        counter += 1;
                        format!("c{counter}")
                    };
                    let mut c = common::renamed(&template, &name);
                    let held: BTreeSet<u16> = prev.clusters.iter().map(|c| c.mesh_id).chain(
                        lock.iter().flat_map(|l| l.retired_mesh_ids.values().copied()))
                        .chain(lock.iter().flat_map(|l| l.retired.values().map(|c| c.mesh_id)))
                        .collect();
                    if let Some(id) = pin_id.filter(|id| !held.contains(id)) {
                        c.mesh_id = Some(id);
                    }
                    if pin_pods {
                        // Outside every pool and unique per name, as a person would pin.
                        let k = counter % 256;
                        let want: IpNet = format!("192.168.{k}.0/24").parse().unwrap();
                        // Nor a block a retired cluster still holds (the planner refuses that).
                        let taken = prev.clusters.iter().any(|p| p.network.pods == want)
                            || lock.iter().flat_map(|l| l.retired.values()).any(|r| r.network.pods == want);
                        if !taken {
                            c.network = Some(ClusterNetwork { pods: Some(format!("192.168.{k}.0/24")), ..Default::default() });
                        }
                    }
                    let at = pos % (fleet.spec.clusters.len() + 1);
                    fleet.spec.clusters.insert(at, c);
                }
                Op::Remove { pos } => {
                    if fleet.spec.clusters.len() <= 1 {
                        continue;
                    }
                    let c = fleet.spec.clusters.remove(pos % fleet.spec.clusters.len());
                    removed.push(c.name);
                }
                Op::SeenDeleted { pos } => {
                    let Some(l) = lock.as_mut() else { continue };
                    let names: Vec<String> = l.retired.keys().cloned().collect();
                    if names.is_empty() {
                        continue;
                    }
                    let name = &names[pos % names.len()];
                    prop_assert!(l.seen_deleted(name));
                }
            }

            let next = plan(&fleet, lock.as_ref()).map_err(|r| TestCaseError::fail(format!("{:?}", r.errors)))?;
            check_disjoint(&next)?;
            check_held(&next)?;

            // Existing clusters keep their blocks and IDs.
            for c in &next.clusters {
                if let Some(old) = prev.cluster(&c.name) {
                    prop_assert_eq!(old, c, "{} moved", &c.name);
                }
            }
            // Pins are honoured.
            for (spec, c) in fleet.spec.clusters.iter().zip(&next.clusters) {
                if let Some(id) = spec.mesh_id {
                    prop_assert_eq!(c.mesh_id, id);
                }
                if let Some(p) = spec.network.as_ref().and_then(|n| n.pods.as_ref()) {
                    prop_assert_eq!(&c.network.pods.to_string(), p);
                }
            }
            // Retired IDs are never handed to another name.
            let retired: BTreeMap<&String, &u16> = lock.iter().flat_map(|l| l.retired_mesh_ids.iter()).collect();
            for c in &next.clusters {
                for (name, id) in &retired {
                    if **id == c.mesh_id {
                        prop_assert_eq!(*name, &c.name, "retired ID {} reused", id);
                    }
                }
            }
            // Every removed cluster is retired with its whole allocation, until seen deleted.
            for (name, old) in lock.iter().flat_map(|l| l.clusters.iter()) {
                if next.cluster(name).is_none() {
                    prop_assert_eq!(next.lock.retired.get(name), Some(old));
                }
            }
            let retired_ids: BTreeMap<&String, &u16> = lock.iter().flat_map(|l| l.retired.iter().map(|(n, c)| (n, &c.mesh_id))).collect();
            for c in &next.clusters {
                for (name, id) in &retired_ids {
                    if **id == c.mesh_id {
                        prop_assert_eq!(*name, &c.name, "held ID {} reused", id);
                    }
                }
            }
            // Same input, same bytes.
            let again = plan(&fleet, lock.as_ref()).map_err(|r| TestCaseError::fail(format!("{:?}", r.errors)))?;
            prop_assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(&next).unwrap());
            prop_assert_eq!(again.lock.to_yaml().unwrap(), next.lock.to_yaml().unwrap());
            // The lock round-trips through its text.
            prop_assert_eq!(&Lock::parse(&next.lock.to_yaml().unwrap()).unwrap(), &next.lock);

            lock = Some(next.lock.clone());
            prev = next;
        }
    }
}
