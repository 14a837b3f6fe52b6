//! `meshfleet.lock`: the allocations a fleet has been given, so re-planning never moves them.
//!
//! The lock is data, not configuration: the planner reads it, keeps every allocation it records
//! for clusters still in the fleet, and hands back the updated lock in [`crate::Plan::lock`].
//! Its text form is YAML with a comment header so that a person reading a diff in review knows
//! what the file is and why it must be committed; [`Lock::to_yaml`] is deterministic (sorted maps,
//! fixed header), so the same lock always serialises to the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ClusterCidrs;

/// The lock file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lock {
    /// Fleet name the lock belongs to.
    pub fleet: String,
    /// Live allocations by cluster name.
    #[serde(default)]
    pub clusters: BTreeMap<String, LockedCluster>,
    /// Clusters removed from the fleet file that meshfleet has not yet seen deleted: they may
    /// still run and be meshed, so they keep their mesh ID and their CIDRs, and no other
    /// cluster can get either.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retired: BTreeMap<String, LockedCluster>,
    /// Mesh IDs of removed clusters seen deleted: their CIDRs are free again, but the IDs are
    /// never handed out again while remembered here (other clusters may still hold identities
    /// minted with them).
    #[serde(default)]
    pub retired_mesh_ids: BTreeMap<String, u16>,
}

/// One cluster's recorded allocation.
///
/// Written flat (`meshId`, `pods`, `services`, `nodes`) so the file reads like a table; the
/// serde representation goes through [`LockedClusterText`] because `flatten` and
/// `deny_unknown_fields` do not combine in serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LockedClusterText", into = "LockedClusterText")]
pub struct LockedCluster {
    /// Cilium cluster ID.
    pub mesh_id: u16,
    /// CIDRs.
    pub network: ClusterCidrs,
}

/// The on-disk shape of a [`LockedCluster`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LockedClusterText {
    mesh_id: u16,
    pods: ipnet::IpNet,
    services: ipnet::IpNet,
    nodes: ipnet::IpNet,
}

impl From<LockedClusterText> for LockedCluster {
    fn from(t: LockedClusterText) -> Self {
        Self {
            mesh_id: t.mesh_id,
            network: ClusterCidrs {
                pods: t.pods,
                services: t.services,
                nodes: t.nodes,
            },
        }
    }
}

impl From<LockedCluster> for LockedClusterText {
    fn from(c: LockedCluster) -> Self {
        Self {
            mesh_id: c.mesh_id,
            pods: c.network.pods,
            services: c.network.services,
            nodes: c.network.nodes,
        }
    }
}

/// A lock file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockError(String);

/// The comment every lock file starts with.
pub const LOCK_HEADER: &str = "\
# meshfleet.lock: the mesh IDs and pod, service and node CIDRs that `meshfleet plan` gave each
# cluster of this fleet, so that planning again never moves them.
# Written by `meshfleet plan`; do not edit it by hand. Commit it next to the fleet file.
";

impl Lock {
    /// meshfleet has seen the retired cluster `name` deleted: its CIDRs are freed, its mesh ID
    /// stays retired. Returns whether the lock changed.
    pub fn seen_deleted(&mut self, name: &str) -> bool {
        match self.retired.remove(name) {
            Some(c) => {
                self.retired_mesh_ids.insert(name.to_owned(), c.mesh_id);
                true
            }
            None => false,
        }
    }

    /// Parse a lock file's text.
    pub fn parse(text: &str) -> Result<Self, LockError> {
        serde_saphyr::from_str(text).map_err(|e| LockError(e.to_string()))
    }

    /// The lock file's text: the comment header, then the allocations as YAML.
    /// Deterministic: the same lock always gives the same bytes.
    pub fn to_yaml(&self) -> Result<String, LockError> {
        let body = serde_saphyr::to_string(self).map_err(|e| LockError(e.to_string()))?;
        let mut out = String::with_capacity(LOCK_HEADER.len() + body.len() + 1);
        out.push_str(LOCK_HEADER);
        out.push_str(&body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let mut l = Lock {
            fleet: "demo".into(),
            ..Lock::default()
        };
        l.clusters.insert(
            "b".into(),
            LockedCluster {
                mesh_id: 2,
                network: ClusterCidrs {
                    pods: "10.65.0.0/16".parse().unwrap(),
                    services: "10.128.16.0/20".parse().unwrap(),
                    nodes: "fd00:1::/64".parse().unwrap(),
                },
            },
        );
        l.clusters.insert(
            "a".into(),
            LockedCluster {
                mesh_id: 1,
                network: ClusterCidrs {
                    pods: "10.64.0.0/16".parse().unwrap(),
                    services: "10.128.0.0/20".parse().unwrap(),
                    nodes: "10.0.0.0/20".parse().unwrap(),
                },
            },
        );
        l.retired_mesh_ids.insert("old".into(), 7);
        l
    }

    #[test]
    fn round_trips_with_header() {
        let l = sample();
        let text = l.to_yaml().unwrap();
        assert!(text.starts_with(LOCK_HEADER));
        assert!(text.contains("meshId: 1"), "{text}");
        assert!(text.contains("pods: 10.64.0.0/16"), "{text}");
        assert!(text.contains("retiredMeshIds"), "{text}");
        // Sorted by cluster name whatever the insertion order.
        assert!(
            text.find("  a:").unwrap() < text.find("  b:").unwrap(),
            "{text}"
        );
        assert_eq!(Lock::parse(&text).unwrap(), l);
        assert_eq!(Lock::parse(&text).unwrap().to_yaml().unwrap(), text);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_cidrs() {
        let bad = "fleet: x\nclusters:\n  a: { meshId: 1, pods: 10.0.0.0/16, services: 10.1.0.0/20, nodes: 10.2.0.0/20, extra: 1 }\n";
        assert!(Lock::parse(bad).is_err());
        let bad = "fleet: x\nclusters:\n  a: { meshId: 1, pods: nope, services: 10.1.0.0/20, nodes: 10.2.0.0/20 }\n";
        assert!(Lock::parse(bad).is_err());
        let bad = "fleet: x\nsurprise: true\n";
        assert!(Lock::parse(bad).is_err());
    }
}
