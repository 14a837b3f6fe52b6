//! The plan's data: what every later stage (render, up, gcp setup, status) reads.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use meshfleet_spec::{Diagnostic, Provider};
use serde::{Deserialize, Serialize};

use crate::lock::Lock;

/// Everything the planner decided for a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `metadata.name` of the fleet.
    pub fleet: String,
    /// One entry per cluster, in fleet-file order.
    pub clusters: Vec<ClusterPlan>,
    /// Who must reach whom on which port (DESIGN.md §3).
    pub firewall: Vec<FirewallRule>,
    /// Meshed cluster name → the names of its peers (every other meshed cluster), sorted.
    pub mesh_peers: BTreeMap<String, Vec<String>>,
    /// Network links between clouds or regions that the mesh needs.
    pub interconnects: Vec<InterconnectNeed>,
    /// Differences against the lock the plan started from.
    pub changes: Vec<Change>,
    /// Warnings (e.g. an interconnect the fleet does not say how to provide).
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
    /// The lock to write back: the previous lock plus this plan's allocations.
    #[serde(skip)]
    pub lock: Lock,
}

impl Plan {
    /// The plan of the cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterPlan> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The rules that open something on `cluster`'s machines (fleet-wide rules included), in
    /// matrix order.
    pub fn rules_for<'a>(
        &'a self,
        cluster: &'a str,
    ) -> impl Iterator<Item = &'a FirewallRule> + 'a {
        self.firewall
            .iter()
            .filter(move |r| r.targets.iter().any(|t| t.cluster == cluster))
    }
}

impl FirewallRule {
    /// The roles this rule opens on `cluster`'s machines (empty if it does not target it).
    pub fn roles_in<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = Role> + 'a {
        self.targets
            .iter()
            .filter(move |t| t.cluster == cluster)
            .map(|t| t.role)
    }

    /// `tcp/50000`, `udp/8472`, `icmp`, `esp`: protocol and ports as people write them.
    pub fn port_label(&self) -> String {
        if self.ports.is_empty() {
            self.protocol.as_str().to_owned()
        } else {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            format!("{}/{}", self.protocol.as_str(), ports.join(","))
        }
    }
}

impl Purpose {
    /// The stable kebab-case identifier (as serialised), e.g. `talos-api-management`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TalosApiManagement => "talos-api-management",
            Self::TalosApiNodes => "talos-api-nodes",
            Self::TalosTrustd => "talos-trustd",
            Self::KubeApiserver => "kube-apiserver",
            Self::CiliumTunnel => "cilium-tunnel",
            Self::CiliumHealth => "cilium-health",
            Self::CiliumWireguard => "cilium-wireguard",
            Self::CiliumIpsec => "cilium-ipsec",
            Self::ClustermeshApiserver => "clustermesh-apiserver",
            Self::Hubble => "hubble",
            Self::CiliumNativeRouting => "cilium-native-routing",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cluster's allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    /// Cluster name (also Cilium's `cluster.name`).
    pub name: String,
    /// Cloud.
    pub provider: Provider,
    /// Region.
    pub region: String,
    /// Cilium `cluster.id`, 1..=maxConnectedClusters.
    pub mesh_id: u16,
    /// The cluster's CIDRs.
    pub network: ClusterCidrs,
}

/// A cluster's three CIDRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCidrs {
    /// Pod CIDR (Talos `podSubnets`, Cilium's pod range via Kubernetes IPAM).
    pub pods: IpNet,
    /// Service CIDR (Talos `serviceSubnets`).
    pub services: IpNet,
    /// Node subnet (GCP subnetwork / AWS VPC CIDR).
    pub nodes: IpNet,
}

/// IP protocol of a firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo (cilium-health).
    Icmp,
    /// IPsec ESP, IP protocol 50.
    Esp,
}

impl Protocol {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Esp => "esp",
        }
    }
}

/// Which machines of a cluster a rule opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Control-plane machines only.
    ControlPlane,
    /// Every machine of the cluster (control plane and workers).
    Nodes,
}

/// A rule's target: a role in one cluster. Serialised as `CLUSTER/control-plane` or
/// `CLUSTER/nodes` so the JSON stays flat for programs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Cluster name.
    pub cluster: String,
    /// Which machines.
    pub role: Role,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::ControlPlane => "control-plane",
            Role::Nodes => "nodes",
        };
        write!(f, "{}/{role}", self.cluster)
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a rule exists; stable identifiers used by renderers to name cloud rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// tcp/50000 from the management egress: Talos apid, used to bootstrap etcd.
    TalosApiManagement,
    /// tcp/50000 between a cluster's nodes.
    TalosApiNodes,
    /// tcp/50001 from a cluster's nodes to its control plane: Talos trustd.
    TalosTrustd,
    /// tcp/6443 to the control plane from its nodes and the management egress.
    KubeApiserver,
    /// Tunnel (udp/8472 VXLAN or udp/6081 Geneve) between every meshed node.
    CiliumTunnel,
    /// tcp/4240 and ICMP echo between every meshed node: cilium-health.
    CiliumHealth,
    /// udp/51871 between every meshed node.
    CiliumWireguard,
    /// ESP between every meshed node.
    CiliumIpsec,
    /// tcp/2379 (LoadBalancer) or tcp/32379 (NodePort) to each clustermesh-apiserver.
    ClustermeshApiserver,
    /// tcp/4244 from hubble-relay to a cluster's nodes.
    Hubble,
    /// With `routing: native`, pod-to-pod packets travel unencapsulated, so every meshed node
    /// must accept TCP, UDP and ICMP from every meshed pod CIDR.
    CiliumNativeRouting,
}

/// One rule of the firewall matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRule {
    /// IP protocol.
    pub protocol: Protocol,
    /// Destination ports (empty for ICMP and ESP).
    pub ports: Vec<u16>,
    /// Source CIDRs, aggregated and sorted.
    pub sources: Vec<IpNet>,
    /// Machines the rule opens.
    pub targets: Vec<Target>,
    /// Why.
    pub purpose: Purpose,
}

/// A network link the mesh needs between two node networks.
///
/// A node network is the fleet's GCP network (one global-routing VPC for every GCP cluster) or
/// one AWS cluster's VPC: render leaves `AWSCluster.spec.network.vpc.id` unset, so CAPA creates
/// a VPC per cluster (cluster-api-provider-aws:`pkg/cloud/services/network/vpc.go`@v2.11.1,
/// `reconcileVPC` → `createVPC`), and two AWS clusters in one region are two VPCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterconnectNeed {
    /// Unique name of the link, e.g. `meshfleet--aws-euw1` (GCP network `meshfleet` ↔ the VPC
    /// of AWS cluster `aws-euw1`) or `aws-euw1--aws-use1`.
    pub name: String,
    /// What joins the two networks.
    pub kind: LinkKind,
    /// The two networks: `gcp:<network>` or `aws:<region>/<cluster>`.
    pub between: [String; 2],
    /// The two ends in detail, in the order of `between`.
    pub ends: [LinkEnd; 2],
    /// How the fleet file says to provide it, if it does (`vpcPeering`, `transitGateway`,
    /// `haVpn`, `publicAddresses`, `existing`); `None` means a warning.
    pub via: Option<String>,
}

/// What a link joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LinkKind {
    /// The GCP network ↔ an AWS VPC (`spec.interconnect.gcpToAws`).
    GcpToAws,
    /// AWS VPCs in two regions (`spec.interconnect.awsCrossRegion`).
    AwsCrossRegion,
    /// Two AWS VPCs in one region (`spec.interconnect.awsCrossRegion` too).
    AwsSameRegion,
}

impl LinkKind {
    /// The `spec.interconnect` field that says how to provide links of this kind.
    pub fn field(self) -> &'static str {
        match self {
            LinkKind::GcpToAws => "spec.interconnect.gcpToAws",
            LinkKind::AwsCrossRegion | LinkKind::AwsSameRegion => {
                "spec.interconnect.awsCrossRegion"
            }
        }
    }
}

/// One end of a link: a node network and the clusters on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkEnd {
    /// The cloud.
    pub provider: Provider,
    /// `gcp:<network>` or `aws:<region>/<cluster>`.
    pub network: String,
    /// The AWS region (a GCP network spans every region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The clusters whose nodes are on this network, sorted.
    pub clusters: Vec<String>,
    /// Their node CIDRs (the routes and firewall sources of the other end), sorted.
    pub nodes: Vec<IpNet>,
}

impl Plan {
    /// When links the mesh needs are left unset in the fleet file, the sentence that says the
    /// mesh will be partial and between which clusters (one line per link, at most a few);
    /// `None` when every needed link says how it is provided.
    pub fn partial_mesh(&self) -> Option<String> {
        const SHOWN: usize = 6;
        let unset: Vec<&InterconnectNeed> = self
            .interconnects
            .iter()
            .filter(|n| n.via.is_none())
            .collect();
        if unset.is_empty() {
            return None;
        }
        let names = |e: &LinkEnd| {
            e.clusters
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "the mesh will be partial: {} link{} between node networks {} not set, so these clusters will not reach each other:",
            unset.len(),
            if unset.len() == 1 { "" } else { "s" },
            if unset.len() == 1 { "is" } else { "are" }
        );
        for n in unset.iter().take(SHOWN) {
            s.push_str(&format!(
                "\n  {} ↔ {} (`{}` ↔ `{}`, {})",
                names(&n.ends[0]),
                names(&n.ends[1]),
                n.between[0],
                n.between[1],
                n.kind.field()
            ));
        }
        if unset.len() > SHOWN {
            s.push_str(&format!("\n  … and {} more", unset.len() - SHOWN));
        }
        Some(s)
    }
}

impl InterconnectNeed {
    /// Whether this link carries traffic between clusters `a` and `b` (either way round).
    pub fn joins(&self, a: &str, b: &str) -> bool {
        let on = |end: &LinkEnd, c: &str| end.clusters.iter().any(|x| x == c);
        (on(&self.ends[0], a) && on(&self.ends[1], b))
            || (on(&self.ends[0], b) && on(&self.ends[1], a))
    }
}

/// A difference between the plan and the lock it started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `+` added, `~` changed, `-` removed.
    pub kind: ChangeKind,
    /// Cluster name.
    pub cluster: String,
    /// Human description, e.g. "pods `10.64.0.0/16` → `10.65.0.0/16`".
    pub detail: String,
}

/// Kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New cluster.
    Added,
    /// Allocation changed (only through an explicit pin).
    Changed,
    /// In the lock, no longer in the fleet: retired, it keeps its mesh ID and blocks until
    /// meshfleet sees it deleted; then the blocks are freed and the ID stays retired.
    Removed,
}

impl ChangeKind {
    /// `+`, `~` or `-`.
    pub fn sigil(self) -> char {
        match self {
            Self::Added => '+',
            Self::Changed => '~',
            Self::Removed => '-',
        }
    }
}
