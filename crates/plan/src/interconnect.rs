//! The network links a mesh needs between node networks (DESIGN.md §3).
//!
//! ClusterMesh needs every meshed node to reach every other. GCP clusters share one global VPC,
//! so they need nothing among themselves; each AWS region is its own VPC, so two AWS regions
//! need peering or a Transit Gateway, and GCP ↔ AWS needs a VPN or public node addresses.

use std::collections::BTreeSet;

use meshfleet_spec::{AwsCrossRegion, Diagnostic, Fleet, GcpToAws, Provider, Report};

use crate::model::InterconnectNeed;

fn aws_cross_region(v: AwsCrossRegion) -> &'static str {
    match v {
        AwsCrossRegion::VpcPeering => "vpcPeering",
        AwsCrossRegion::TransitGateway => "transitGateway",
    }
}

fn gcp_to_aws(v: GcpToAws) -> &'static str {
    match v {
        GcpToAws::HaVpn => "haVpn",
        GcpToAws::PublicAddresses => "publicAddresses",
    }
}

/// Show at most a few items of a long list in a message.
fn some(items: &[String]) -> String {
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

/// The links a meshed fleet needs, sorted; a warning for each kind the fleet leaves unset.
pub(crate) fn needs(fleet: &Fleet, r: &mut Report) -> Vec<InterconnectNeed> {
    let spec = &fleet.spec;
    let mut out = Vec::new();
    if !spec.mesh.enabled {
        return out;
    }
    let aws: BTreeSet<&str> = spec
        .clusters
        .iter()
        .filter(|c| c.provider == Provider::Aws)
        .map(|c| c.region.as_str())
        .collect();
    let gcp = spec.clusters.iter().any(|c| c.provider == Provider::Gcp);
    let aws: Vec<&str> = aws.into_iter().collect();

    let via = spec.interconnect.aws_cross_region.map(aws_cross_region);
    for (i, a) in aws.iter().enumerate() {
        for b in &aws[i + 1..] {
            out.push(InterconnectNeed {
                between: [format!("aws:{a}"), format!("aws:{b}")],
                via: via.map(str::to_owned),
            });
        }
    }
    if aws.len() > 1 && via.is_none() {
        let regions: Vec<String> = aws.iter().map(|s| (*s).to_owned()).collect();
        r.push(
            Diagnostic::warning(
                "spec.interconnect",
                format!(
                    "AWS clusters in regions {} need cross-region links for the mesh, and the fleet does not say how",
                    some(&regions)
                ),
            )
            .with_hint("set `spec.interconnect.awsCrossRegion` to `vpcPeering` or `transitGateway`"),
        );
    }

    if gcp && !aws.is_empty() {
        let via = spec.interconnect.gcp_to_aws.map(gcp_to_aws);
        for a in &aws {
            out.push(InterconnectNeed {
                between: ["gcp".to_owned(), format!("aws:{a}")],
                via: via.map(str::to_owned),
            });
        }
        if via.is_none() {
            let regions: Vec<String> = aws.iter().map(|s| (*s).to_owned()).collect();
            r.push(
                Diagnostic::warning(
                    "spec.interconnect",
                    format!(
                        "GCP clusters and AWS clusters in {} need a link for the mesh, and the fleet does not say how",
                        some(&regions)
                    ),
                )
                .with_hint("set `spec.interconnect.gcpToAws` to `haVpn` or `publicAddresses`"),
            );
        }
    }
    out
}
