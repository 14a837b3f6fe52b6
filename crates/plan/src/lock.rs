//! `meshfleet.lock`: the allocations a fleet has been given, so re-planning never moves them.

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
    /// Mesh IDs of removed clusters, never handed out again while remembered here.
    #[serde(default)]
    pub retired_mesh_ids: BTreeMap<String, u16>,
}

/// One cluster's recorded allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedCluster {
    /// Cilium cluster ID.
    pub mesh_id: u16,
    /// CIDRs.
    #[serde(flatten)]
    pub network: ClusterCidrs,
}

/// A lock file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockError(String);

impl Lock {
    /// Parse a lock file's text.
    pub fn parse(text: &str) -> Result<Self, LockError> {
        serde_saphyr::from_str(text).map_err(|e| LockError(e.to_string()))
    }
}
