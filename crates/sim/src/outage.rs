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
//! - the management cluster sees it as Cluster API does ([`Probes`]): the Cluster's
//!   `RemoteConnectionProbe` turns False once the probe has failed for longer than the
//!   remote-connection grace period (so the Cluster is no longer `Available`), and the Machines'
//!   `NodeReady`/`NodeHealthy` keep their last known status until the remote-conditions grace
//!   period has passed, then turn Unknown with reason `NodeConnectionDown`;
//! - nothing is remediated: Cluster API's MachineHealthCheck cannot read the cluster's Nodes
//!   through the ClusterCache while it is disconnected and stops with an error before looking
//!   at any Machine (`core/reconcilers/machinehealthcheck/machinehealthcheck_controller.go`
//!   @v1.14.0, `ClusterCache.GetClient`), so a lost region is never replaced machine by machine
//!   (and the simulator runs no MachineHealthCheck remediation at all). The node lifecycle
//!   controller, which would mark Nodes `Ready: Unknown`, runs in the cluster's own control
//!   plane, which is part of the outage, so the Nodes keep what they last said.
//!
//! Deleting the Outage restores all of it; the next controller passes bring the links (and so
//! the global services) and the management-side conditions back without anyone running `up`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
        } else if a != b && !self.partitions.is_empty() && self.partitions.contains(&ordered(a, b))
        {
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
        .into_iter()
        .map(|o| (*o).clone())
        .collect()
}

/// Resolve every Outage object against the clusters the management cluster holds now (a
/// region outage also takes a cluster created in that region afterwards).
pub fn current(world: &World) -> Outages {
    let m = &world.management;
    let objs = objects(m);
    if objs.is_empty() {
        return Outages::default();
    }
    resolve(&clusters(m), &objs)
}

/// Resolve Outage objects `objs` against the clusters `all` (key, name, region).
fn resolve(all: &[(String, String, String)], objs: &[Value]) -> Outages {
    let key_of = |name: &str| -> Vec<String> {
        all.iter()
            .filter(|(k, n, _)| n == name || k == name)
            .map(|(k, _, _)| k.clone())
            .collect()
    };
    let mut out = Outages::default();
    for o in objs {
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

/// Cluster API's `--remote-connection-grace-period` default: how long after the last
/// successful health probe of a workload cluster the Cluster's `RemoteConnectionProbe` turns
/// False (kubernetes-sigs/cluster-api:`core/main.go`@v1.14.0, 50 s; the condition is set by
/// `setRemoteConnectionProbeCondition` in `core/reconcilers/cluster/cluster_controller_status.go`).
/// The ClusterCache probes every 10 s with a 5 s timeout and disconnects after 5 failures
/// (`controllers/clustercache/cluster_cache.go`@v1.14.0); the simulator counts the grace
/// period from the outage itself (the Outage's creation time). Scaled by `--speed`.
pub const REMOTE_CONNECTION_GRACE: Duration = Duration::from_secs(50);

/// Cluster API's `--remote-conditions-grace-period` default: how long after the last
/// successful probe the Machines' `NodeReady`/`NodeHealthy` are overwritten with Unknown,
/// reason `NodeConnectionDown` (`core/main.go`@v1.14.0, 5 min;
/// `setNodeHealthyAndReadyConditions` in `core/reconcilers/machine/machine_controller_status.go`).
/// Until then they keep the last status read. Scaled by `--speed`.
pub const REMOTE_CONDITIONS_GRACE: Duration = Duration::from_secs(300);

/// A workload cluster the management cluster has lost contact with.
#[derive(Debug, Clone)]
pub struct Lost {
    /// When the outage began (the Outage object's creation, Unix milliseconds): the last
    /// moment a probe could have succeeded. Kept in the object, so a simulator served again
    /// from kept state (`--sim`) continues the grace periods instead of restarting them.
    pub since_ms: i64,
    /// The same time as Cluster API prints it (RFC 3339).
    pub last_success: String,
}

impl Lost {
    /// Whether `grace` (scaled by `--speed`) has passed since contact was lost.
    pub fn past(&self, world: &World, grace: Duration) -> bool {
        let now = jiff::Timestamp::now().as_millisecond();
        now - self.since_ms >= world.scaled(grace).as_millis() as i64
    }
}

/// What Cluster API's ClusterCache knows of each workload cluster's health probe: the clusters
/// (keys) it cannot reach, since when. Refreshed once per controller pass ([`track`]).
#[derive(Debug, Default)]
pub struct Probes(BTreeMap<String, Lost>);

/// Bring [`World::probes`] up to date with the outages in force (once per controller pass),
/// and return them.
pub(crate) fn track(world: &World) -> Outages {
    let m = &world.management;
    let objs = objects(m);
    let mut lost: BTreeMap<String, Lost> = BTreeMap::new();
    let mut all = Outages::default();
    if !objs.is_empty() {
        let cl = clusters(m);
        for o in &objs {
            let one = resolve(&cl, std::slice::from_ref(o));
            let created = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ts = created
                .parse::<jiff::Timestamp>()
                .unwrap_or_else(|_| jiff::Timestamp::now());
            for k in &one.down {
                let l = Lost {
                    since_ms: ts.as_millisecond(),
                    last_success: ts.to_string(),
                };
                // Several outages of one cluster: contact was lost at the first.
                let e = lost.entry(k.clone()).or_insert_with(|| l.clone());
                if l.since_ms < e.since_ms {
                    *e = l;
                }
            }
            all.down.extend(one.down);
            all.partitions.extend(one.partitions);
        }
    }
    *world.probes.lock().unwrap_or_else(|e| e.into_inner()) = Probes(lost);
    all
}

/// Whether (and since when) the management cluster has lost contact with workload cluster
/// `key`.
pub fn lost(world: &World, key: &str) -> Option<Lost> {
    world
        .probes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .get(key)
        .cloned()
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
