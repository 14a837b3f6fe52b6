//! EC2 networking in the AWS fake: the VPC the simulated CAPA creates for every AWSCluster, and
//! what joins VPCs to each other and to GCP — Transit Gateways with their attachments and route
//! table, customer gateways, site-to-site VPN connections and VPC peering connections.
//!
//! The shapes follow the EC2 API reference (`TransitGateway.Options.AmazonSideAsn`,
//! `VpnConnection.Options.TunnelOptions[].{OutsideIpAddress,TunnelInsideCidr,PreSharedKey}`,
//! `VpcPeeringConnection.Status.Code`, `TransitGatewayAttachment.State`); one route table stands
//! for a VPC's route tables (CAPA associates every subnet with one it manages, and meshfleet's
//! routes go into each alike) and one for a Transit Gateway's default route table.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The EC2 networking state of the fake.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ec2Net {
    /// VPCs by id.
    pub vpcs: BTreeMap<String, Vpc>,
    /// Transit Gateways by id.
    pub transit_gateways: BTreeMap<String, TransitGateway>,
    /// Transit Gateway attachments (VPC, peering, VPN) by id.
    pub tgw_attachments: BTreeMap<String, TgwAttachment>,
    /// Customer gateways by id.
    pub customer_gateways: BTreeMap<String, CustomerGateway>,
    /// Site-to-site VPN connections by id.
    pub vpn_connections: BTreeMap<String, VpnConnection>,
    /// VPC peering connections by id.
    pub vpc_peerings: BTreeMap<String, VpcPeering>,
}

/// One VPC.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Vpc {
    /// Region.
    pub region: String,
    /// IPv4 CIDR.
    pub cidr: String,
    /// `namespace/name` of the AWSCluster whose VPC it is (CAPA's
    /// `sigs.k8s.io/cluster-api-provider-aws/cluster/<name>=owned` tag).
    pub cluster: String,
    /// Routes of its route tables.
    pub routes: Vec<Route>,
}

/// A route: destination CIDR → target (`tgw-…`, `pcx-…`, a `tgw-attach-…` in a Transit
/// Gateway's table).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    /// Destination CIDR.
    pub destination: String,
    /// Target id.
    pub target: String,
}

/// One Transit Gateway and its default route table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransitGateway {
    /// Region.
    pub region: String,
    /// `available`, `pending`, `deleted`, …
    pub state: String,
    /// Its BGP ASN (`Options.AmazonSideAsn`, 64512 by default).
    pub amazon_side_asn: u32,
    /// Static routes of the default route table (target: an attachment id).
    pub static_routes: Vec<Route>,
    /// Attachments whose routes propagate into the default route table (a VPC attachment's
    /// CIDR, the prefixes BGP learns over a VPN attachment).
    pub propagations: BTreeSet<String>,
    /// `Options.DefaultRouteTablePropagation=enable`: new attachments propagate by themselves.
    pub default_propagation: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// What a Transit Gateway attachment attaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Attached {
    /// A VPC.
    Vpc {
        /// VPC id.
        vpc: String,
    },
    /// A peering with another Transit Gateway (usually in another region).
    Peering {
        /// The peer Transit Gateway id.
        peer_transit_gateway: String,
    },
    /// A site-to-site VPN connection.
    Vpn {
        /// VPN connection id.
        vpn: String,
    },
}

impl Default for Attached {
    fn default() -> Self {
        Attached::Vpc { vpc: String::new() }
    }
}

/// One Transit Gateway attachment.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TgwAttachment {
    /// The Transit Gateway (for a peering, the requester's).
    pub transit_gateway: String,
    /// What it attaches.
    pub attached: Attached,
    /// `available`, `pendingAcceptance`, `pending`, `rejected`, …
    pub state: String,
    /// The region it was made in (the requester's, for a peering).
    #[serde(default)]
    pub region: String,
    /// A peering's accepter region.
    #[serde(default)]
    pub peer_region: String,
    /// A VPC attachment's subnets (one per availability zone it serves).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Tags (the requester's, for a peering).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One customer gateway: the far end of a VPN as AWS knows it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomerGateway {
    /// Region.
    pub region: String,
    /// The far end's public address (a GCP HA VPN gateway interface).
    pub ip: String,
    /// The far end's BGP ASN (the Cloud Router's).
    pub bgp_asn: u32,
    /// `available`, …
    pub state: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One site-to-site VPN connection (two tunnels).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VpnConnection {
    /// Region.
    pub region: String,
    /// The customer gateway id.
    pub customer_gateway: String,
    /// The Transit Gateway it terminates on.
    pub transit_gateway: String,
    /// `available`, `pending`, …
    pub state: String,
    /// Its tunnels.
    pub tunnels: Vec<VpnTunnel>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One tunnel of a VPN connection.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VpnTunnel {
    /// AWS's public endpoint of the tunnel (`OutsideIpAddress`).
    pub outside_ip: String,
    /// The /30 in 169.254.0.0/16 inside the tunnel (`TunnelInsideCidr`): AWS takes the first
    /// host address, the customer gateway the second.
    pub inside_cidr: String,
    /// The pre-shared key.
    pub psk: String,
    /// IKE versions accepted (`ikev2`).
    pub ike_versions: Vec<String>,
}

/// One VPC peering connection.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcPeering {
    /// Requester VPC id.
    pub requester_vpc: String,
    /// Accepter VPC id.
    pub accepter_vpc: String,
    /// `Status.Code`: `pending-acceptance`, `active`, `rejected`, …
    pub status: String,
    /// The requester's region.
    pub region: String,
    /// The accepter's region.
    pub peer_region: String,
    /// Tags (the requester's).
    pub tags: BTreeMap<String, String>,
}

impl Ec2Net {
    /// The VPC of an AWSCluster (`namespace/name`), if CAPA has created it.
    pub fn vpc_of(&self, cluster: &str) -> Option<(&String, &Vpc)> {
        self.vpcs.iter().find(|(_, v)| v.cluster == cluster)
    }

    /// The VPC whose route table (see [`route_table_of`]) is `rtb`.
    pub fn vpc_of_table(&self, rtb: &str) -> Option<(&String, &Vpc)> {
        self.vpcs.iter().find(|(id, _)| route_table_of(id) == rtb)
    }
}

/// The one route table standing for a VPC's private route tables: `rtb-` and the VPC id's
/// digits (CAPA makes one per private subnet; the fake has one subnet per VPC, see
/// [`private_subnet_of`]).
pub fn route_table_of(vpc: &str) -> String {
    format!("rtb-{}", vpc.trim_start_matches("vpc-"))
}

/// The private subnet of a VPC: `subnet-` and the VPC id's digits.
pub fn private_subnet_of(vpc: &str) -> String {
    format!("subnet-{}", vpc.trim_start_matches("vpc-"))
}
