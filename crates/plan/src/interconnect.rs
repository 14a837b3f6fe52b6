//! The network links a mesh needs between node networks (DESIGN.md §3).
//!
//! ClusterMesh needs every meshed node to reach every other. GCP clusters share one global VPC,
//! so they need nothing among themselves. Every AWS cluster is its own VPC (CAPA creates one per
//! AWSCluster when `vpc.id` is unset, as render leaves it), so every pair of AWS clusters needs
//! a link — across regions and within one — and the GCP network needs one to every AWS VPC.

use ipnet::IpNet;
use meshfleet_spec::{AwsCrossRegion, Diagnostic, Fleet, GcpToAws, Provider, Report};

use crate::model::{ClusterPlan, InterconnectNeed, LinkEnd, LinkKind};

fn aws_cross_region(v: AwsCrossRegion) -> &'static str {
    match v {
        AwsCrossRegion::VpcPeering => "vpcPeering",
        AwsCrossRegion::TransitGateway => "transitGateway",
        AwsCrossRegion::Existing => "existing",
    }
}

fn gcp_to_aws(v: GcpToAws) -> &'static str {
    match v {
        GcpToAws::HaVpn => "haVpn",
        GcpToAws::PublicAddresses => "publicAddresses",
        GcpToAws::Existing => "existing",
    }
}

/// At most four items of a long list, quoted, and how many more: a message that names every
/// peer or link of a 511-cluster fleet is hundreds of kilobytes, once per cluster.
pub fn some(items: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// One AWS VPC: its region, cluster and node CIDR.
struct Vpc<'a> {
    region: &'a str,
    cluster: &'a str,
    nodes: Option<IpNet>,
}

impl Vpc<'_> {
    fn end(&self) -> LinkEnd {
        LinkEnd {
            provider: Provider::Aws,
            network: format!("aws:{}/{}", self.region, self.cluster),
            region: Some(self.region.to_owned()),
            clusters: vec![self.cluster.to_owned()],
            nodes: self.nodes.into_iter().collect(),
        }
    }
}

/// The links a meshed fleet needs — AWS ↔ AWS pairs first (by region, then cluster), then
/// GCP ↔ each AWS VPC — and a warning for each kind the fleet leaves unset.
pub(crate) fn needs(fleet: &Fleet, plans: &[ClusterPlan], r: &mut Report) -> Vec<InterconnectNeed> {
    let spec = &fleet.spec;
    let mut out = Vec::new();
    if !spec.mesh.enabled {
        return out;
    }
    let nodes_of = |name: &str| {
        plans
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.network.nodes)
    };
    let mut vpcs: Vec<Vpc<'_>> = spec
        .clusters
        .iter()
        .filter(|c| c.provider == Provider::Aws)
        .map(|c| Vpc {
            region: &c.region,
            cluster: &c.name,
            nodes: nodes_of(&c.name),
        })
        .collect();
    vpcs.sort_by(|a, b| (a.region, a.cluster).cmp(&(b.region, b.cluster)));
    let gcp: Vec<&str> = {
        let mut g: Vec<&str> = spec
            .clusters
            .iter()
            .filter(|c| c.provider == Provider::Gcp)
            .map(|c| c.name.as_str())
            .collect();
        g.sort_unstable();
        g
    };

    let via = spec.interconnect.aws_cross_region.map(aws_cross_region);
    for (i, a) in vpcs.iter().enumerate() {
        for b in &vpcs[i + 1..] {
            let (ea, eb) = (a.end(), b.end());
            out.push(InterconnectNeed {
                name: format!("{}--{}", a.cluster, b.cluster),
                kind: if a.region == b.region {
                    LinkKind::AwsSameRegion
                } else {
                    LinkKind::AwsCrossRegion
                },
                between: [ea.network.clone(), eb.network.clone()],
                ends: [ea, eb],
                via: via.map(str::to_owned),
            });
        }
    }
    // Every VPC peers every other and routes each one: EC2's default quotas are 50 active
    // peerings per VPC and 50 non-propagated routes per route table, one of which CAPA's NAT
    // route takes (Amazon VPC quotas). A Transit Gateway needs one route per VPC instead.
    const PEERING_ROUTES: usize = 49;
    if via == Some("vpcPeering") && vpcs.len() > PEERING_ROUTES + 1 {
        r.push(
            Diagnostic::warning(
                "spec.interconnect.awsCrossRegion",
                format!(
                    "vpcPeering between {} AWS VPCs needs {} peerings and as many routes in each VPC, beyond EC2's default quotas of 50 peerings per VPC and 50 routes per route table",
                    vpcs.len(),
                    vpcs.len() - 1
                ),
            )
            .with_hint("use `transitGateway` (one route per VPC, whatever the fleet's size), or raise both quotas first; `net setup` stops at `RouteLimitExceeded` otherwise"),
        );
    }
    if vpcs.len() > 1 && via.is_none() {
        let names: Vec<String> = vpcs
            .iter()
            .map(|v| format!("{} ({})", v.cluster, v.region))
            .collect();
        r.push(
            Diagnostic::warning(
                "spec.interconnect",
                format!(
                    "AWS clusters {} each have their own VPC and need links between them for the mesh, and the fleet does not say how",
                    some(&names)
                ),
            )
            .with_hint("set `spec.interconnect.awsCrossRegion` to `vpcPeering`, `transitGateway` or `existing` (a network team provides the links); until then their mesh links stay down"),
        );
    }

    if !gcp.is_empty() && !vpcs.is_empty() {
        let via = spec.interconnect.gcp_to_aws.map(gcp_to_aws);
        let network = spec
            .providers
            .gcp
            .as_ref()
            .map(|g| g.network.clone())
            .unwrap_or_else(|| "default".to_owned());
        let mut gnodes: Vec<IpNet> = gcp.iter().filter_map(|c| nodes_of(c)).collect();
        gnodes.sort_unstable();
        let gend = LinkEnd {
            provider: Provider::Gcp,
            network: format!("gcp:{network}"),
            region: None,
            clusters: gcp.iter().map(|c| (*c).to_owned()).collect(),
            nodes: gnodes,
        };
        for v in &vpcs {
            let e = v.end();
            out.push(InterconnectNeed {
                name: format!("{network}--{}", v.cluster),
                kind: LinkKind::GcpToAws,
                between: [gend.network.clone(), e.network.clone()],
                ends: [gend.clone(), e],
                via: via.map(str::to_owned),
            });
        }
        if via.is_none() {
            let names: Vec<String> = vpcs
                .iter()
                .map(|v| format!("{} ({})", v.cluster, v.region))
                .collect();
            r.push(
                Diagnostic::warning(
                    "spec.interconnect",
                    format!(
                        "GCP clusters and AWS clusters {} need a link for the mesh, and the fleet does not say how",
                        some(&names)
                    ),
                )
                .with_hint("set `spec.interconnect.gcpToAws` to `haVpn`, `publicAddresses` or `existing` (a network team provides the link); until then their mesh links stay down"),
            );
        }
    }
    out
}
