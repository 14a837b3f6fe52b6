//! Failure rehearsal: outages of whole clusters, of every cluster of a region, and partitions
//! between two clusters' networks.
//!
//! An outage is an object of the simulator's own kind `Outage` (`sim.meshfleet.io/v1alpha1`,
//! cluster-scoped) in the management API: `meshfleet sim fail` creates one and `sim heal`
//! deletes it, through the same API server every other client uses, and it is kept with the
//! rest of the state (a kept simulator resumes with its outages). No real cluster serves that
//! kind, so `sim fail` against a real management cluster fails on discovery instead of doing
//! anything. The spec names exactly one of:
//!
//! - `cluster: NAME`: the Cluster API `Cluster` of that name (any namespace);
//! - `region: REGION`: every cluster whose infrastructure (`GCPCluster`/`AWSCluster`
//!   `spec.region`) is in that region;
//! - `link: [A, B]`: the networks of clusters A and B stop reaching each other; both keep
//!   running.
//!
//! What a cluster outage looks like from outside, as the simulator applies it:
//! - its API server drops every connection ([`workload_api_down`], checked by the listener
//!   before a request is read), so `status` and `mesh status` find it unreachable;
//! - its nodes and Cilium agents stop answering: the mesh links of every other cluster to it go
//!   down ([`link_blocked`], checked where [`crate::mesh`] decides links), so survivors' agents
//!   report it not ready and, once `clustermesh.cacheTTL` has passed, drop its global-service
//!   backends ([`crate::workloads`]);
//! - traffic to its pods times out ([`crate::echo`]).
//!
//! Deleting the Outage restores all of it; the next controller passes bring the links (and so
//! the global services) back without anyone running `up`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::controllers::{CAPI, cluster_infra, list, name_of, ns_of, s};
use crate::{Api, World};

/// API group of [`KIND`].
pub const GROUP: &str = "sim.meshfleet.io";
/// API version of [`KIND`].
pub const VERSION: &str = "v1alpha1";
/// The kind `sim fail` creates.
pub const KIND: &str = "Outage";

/// The outages in force, resolved to workload-cluster keys (`<namespace>/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outages {
    /// Clusters whose machines stopped answering.
    pub down: BTreeSet<String>,
    /// Partitions between two clusters' networks (by key, ordered pair, smaller first).
    pub partitions: BTreeSet<(String, String)>,
}

impl Outages {
    /// Whether the cluster with key `key` is down.
    pub fn is_down(&self, key: &str) -> bool {
        self.down.contains(key)
    }

    /// Whether `a` and `b` (keys) cannot reach each other: either is down, or a partition
    /// separates them.
    pub fn separated(&self, a: &str, b: &str) -> bool {
        if a == b {
            return self.is_down(a);
        }
        self.is_down(a) || self.is_down(b) || self.partitions.contains(&ordered(a, b))
    }

    /// Why `a` cannot reach `b`, for the simulator's logs.
    pub fn why(&self, a: &str, b: &str) -> Option<String> {
        if self.is_down(b) {
            Some(format!("cluster `{b}` is down (simulated outage)"))
        } else if self.is_down(a) {
            Some(format!("cluster `{a}` is down (simulated outage)"))
        // Asked for every mesh link on every pass: no allocation when nothing is partitioned.
        } else if a != b && !self.partitions.is_empty() && self.partitions.contains(&ordered(a, b)) {
            Some(format!(
                "the networks of `{a}` and `{b}` are partitioned (simulated outage)"
            ))
        } else {
            None
        }
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// The Cluster API Clusters of the management cluster: (key, name, region).
fn clusters(m: &Api) -> Vec<(String, String, String)> {
    list(m, CAPI, "Cluster", None)
        .iter()
        .map(|c| {
            let region = cluster_infra(m, c)
                .map(|(_, infra)| s(&infra, "/spec/region").to_string())
                .unwrap_or_default();
            (
                format!("{}/{}", ns_of(c), name_of(c)),
                name_of(c).to_string(),
                region,
            )
        })
        .collect()
}

/// The Outage objects of the management cluster.
pub fn objects(m: &Api) -> Vec<Value> {
    list(m, GROUP, KIND, None)
}

/// Resolve every Outage object against the clusters the management cluster holds now (a
/// region outage also takes a cluster created in that region afterwards).
pub fn current(world: &World) -> Outages {
    let m = &world.management;
    let objs = objects(m);
    if objs.is_empty() {
        return Outages::default();
    }
    let all = clusters(m);
    let key_of = |name: &str| -> Vec<String> {
        all.iter()
            .filter(|(k, n, _)| n == name || k == name)
            .map(|(k, _, _)| k.clone())
            .collect()
    };
    let mut out = Outages::default();
    for o in &objs {
        let spec = o.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(c) = spec.get("cluster").and_then(Value::as_str) {
            out.down.extend(key_of(c));
        }
        if let Some(r) = spec.get("region").and_then(Value::as_str) {
            out.down.extend(
                all.iter()
                    .filter(|(_, _, region)| region == r)
                    .map(|(k, _, _)| k.clone()),
            );
        }
        if let Some([a, b]) = spec
            .get("link")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            for ka in key_of(a.as_str().unwrap_or_default()) {
                for kb in key_of(b.as_str().unwrap_or_default()) {
                    if ka != kb {
                        out.partitions.insert(ordered(&ka, &kb));
                    }
                }
            }
        }
    }
    out
}

/// Whether a request for `path` goes to a workload cluster that is down: its API server does
/// not answer (the listener drops the connection, as a dead address does).
pub fn workload_api_down(world: &World, path: &str) -> bool {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    if segs.next() != Some("workload") {
        return false;
    }
    let (Some(ns), Some(name)) = (segs.next(), segs.next()) else {
        return false;
    };
    // Cheap when there is no outage at all (the usual case): one listing of an empty kind.
    if objects(&world.management).is_empty() {
        return false;
    }
    current(world).is_down(&format!("{ns}/{name}"))
}

/// Why the mesh link from cluster `a` to cluster `b` (keys) cannot be up, if an outage
/// blocks it.
pub fn link_blocked(o: &Outages, a: &str, b: &str) -> Option<String> {
    o.why(a, b)
}

/// The error the listener returns for a request to a cluster that is down: hyper then closes
/// the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("simulated outage: the cluster does not answer")]
pub struct Unreachable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separation() {
        let mut o = Outages::default();
        assert!(!o.separated("f/a", "f/b"));
        o.partitions.insert(ordered("f/b", "f/a"));
        assert!(o.separated("f/a", "f/b") && o.separated("f/b", "f/a"));
        assert!(!o.separated("f/a", "f/c"));
        assert!(!o.is_down("f/a"));
        o.down.insert("f/c".into());
        assert!(o.separated("f/a", "f/c") && o.separated("f/c", "f/c"));
        assert!(o.why("f/a", "f/c").unwrap().contains("`f/c` is down"));
        assert!(o.why("f/a", "f/b").unwrap().contains("partitioned"));
        assert_eq!(o.why("f/a", "f/a"), None);
    }
}
