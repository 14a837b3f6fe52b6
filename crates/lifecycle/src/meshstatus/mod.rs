//! `mesh status`: the mesh of a running fleet, read the same way from the simulator and from
//! real clusters — the management cluster (Cluster objects, Cilium's HelmChartProxy values, the
//! `<cluster>-kubeconfig` Secrets) and, through those kubeconfigs, each workload cluster's own
//! Cilium (`cilium-config`, `cilium-clustermesh`, `cilium-ca`, the clustermesh-apiserver
//! Service and Cilium's mesh view).
//!
//! Collecting ([`collect`]) is I/O; judging ([`evaluate`]) is pure, so the checks are tested
//! without a cluster. The CA's private key is never read: only `ca.crt` is fetched, for its
//! fingerprint and expiry.

mod collect;
mod evaluate;
mod firewall;
mod interconnect;

use ipnet::IpNet;
use meshfleet_mesh::MeshProblem;
pub use meshfleet_mesh::Severity;
use meshfleet_mesh::time::OffsetDateTime;
use serde::Serialize;
use serde_json::Value;

use crate::mesh;

pub use collect::{collect, proxy_peers};
pub use evaluate::evaluate;
pub use interconnect::explain_interconnects;

/// One problem, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `error` or `warning`.
    pub severity: Severity,
    /// What is wrong, values in backticks.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Problem {
    /// An error with its hint.
    pub fn error(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A warning with its hint.
    pub fn warning(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// From a mesh-crate check, whose message carries its hint after `\n  hint: `.
    pub(crate) fn from_mesh(p: &MeshProblem) -> Self {
        let text = p.message();
        let (message, hint) = match text.split_once("\n  hint: ") {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (text, None),
        };
        Self {
            severity: p.severity(),
            message,
            hint,
        }
    }
}

/// One peer as seen from a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// Peer name.
    pub name: String,
    /// The plan makes it a peer.
    pub expected: bool,
    /// The cluster's Cilium is configured to dial it.
    pub configured: bool,
    /// Cilium reports it connected.
    pub connected: bool,
    /// Why not, as Cilium says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The mesh CA a cluster holds (`kube-system/cilium-ca`, `ca.crt` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

/// One meshed cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// Name in the fleet file.
    pub name: String,
    /// Cilium's `cluster-id` (from `cilium-config`), when read.
    pub cluster_id: Option<u32>,
    /// Cilium's `cluster-name`, when read.
    pub cilium_name: Option<String>,
    /// Peers the plan gives it: every other meshed cluster.
    pub expected_peers: Vec<String>,
    /// Peers its Cilium is configured with.
    pub configured_peers: Vec<String>,
    /// Peers Cilium reports connected.
    pub connected_peers: Vec<String>,
    /// Its clustermesh-apiserver endpoints (`https://ip:port`) that peers dial.
    pub endpoints: Vec<String>,
    /// Each peer in detail.
    pub peers: Vec<PeerState>,
    /// Its mesh CA.
    pub ca: Option<CaSummary>,
    /// Its pod CIDRs, as configured.
    pub pod_cidrs: Vec<String>,
    /// Its problems, errors first.
    pub problems: Vec<Problem>,
}

/// The mesh of the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    /// Fleet name.
    pub fleet: String,
    /// Meshed clusters, in fleet-file order.
    pub clusters: Vec<ClusterReport>,
    /// Problems between clusters (collisions, CA mismatch, overlaps), errors first.
    pub problems: Vec<Problem>,
}

impl MeshReport {
    /// Is any problem an error?
    pub fn has_error(&self) -> bool {
        self.problems
            .iter()
            .chain(self.clusters.iter().flat_map(|c| c.problems.iter()))
            .any(|p| p.severity == Severity::Error)
    }
}

/// What was read about one cluster. `problems` holds what reading itself found wrong.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Name in the fleet file.
    pub name: String,
    /// The Cluster object exists.
    pub exists: bool,
    /// The workload API answered.
    pub reachable: bool,
    /// `cilium-config`: `cluster-name`, `cluster-id`, `max-connected-clusters`.
    pub cilium: Option<(String, Option<u32>, u32)>,
    /// Peers in the workload's `cilium-clustermesh` Secret (None when it is absent).
    pub secret_peers: Option<Vec<String>>,
    /// Peers in the HelmChartProxy values (None when there is no proxy).
    pub proxy_peers: Option<Vec<String>>,
    /// Cilium's view.
    pub view: Option<mesh::MeshView>,
    /// Endpoints.
    pub endpoints: Option<mesh::Endpoints>,
    /// `ca.crt` of `cilium-ca`: summary and expiry.
    pub ca: Option<(CaSummary, OffsetDateTime)>,
    /// Pod CIDRs (Cluster object, and Cilium's cluster-pool when it says).
    pub pod_cidrs: Vec<IpNet>,
    /// The Cluster's infrastructure object (GCPCluster, AWSCluster): node CIDR and firewall.
    pub infra: Option<Value>,
    /// Problems found while reading.
    pub problems: Vec<Problem>,
}

/// What the plan says about one cluster.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Name.
    pub name: String,
    /// Mesh ID in the plan (meshfleet.lock).
    pub mesh_id: u32,
    /// Peers.
    pub peers: Vec<String>,
}
