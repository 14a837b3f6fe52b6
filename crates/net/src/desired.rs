//! Every request the fleet's links need, in the order the two clouds require. Pure.
//!
//! GCP ↔ AWS (`haVpn`), per AWS region with clusters: an HA VPN gateway and a Cloud Router with
//! its own ASN in one GCP region (the fleet's network routes globally, so one gateway reaches
//! every GCP region's subnets and the router advertises them all); a Transit Gateway with ECMP
//! and default route-table association and propagation (so VPN and VPC attachments propagate
//! without further calls); an attachment of every AWS cluster's VPC; two customer gateways (the
//! HA gateway's two interfaces, the router's ASN); two VPN connections with BGP and one IKEv2
//! transform set per phase (Google asks peers to propose a single cipher per role:
//! cloud.google.com/network-connectivity/docs/vpn/concepts/supported-ike-ciphers); then the
//! external VPN gateway with AWS's four tunnel addresses, four tunnels (HA interface 0 → peer
//! interfaces 0 and 1, interface 1 → 2 and 3), the router's four interfaces and BGP peers; last,
//! the route to the GCP node CIDRs in each VPC (the fleet's node pool, see `through_tgw`).
//! AWS ↔ AWS: `transitGateway` attaches every VPC to its region's Transit Gateway, peers the
//! regions' gateways (requested from the region first in name order, accepted in the other)
//! with static routes both ways (peering attachments do not propagate), and routes the fleet's
//! node pool from each VPC to its gateway (one route per VPC, see `through_tgw`); `vpcPeering`
//! peers every pair of VPCs and routes both ways. `existing` and `publicAddresses` links need
//! no step.
//!
//! Firewalls need no step either: the plan's fleet-wide rules already admit every meshed
//! cluster's node CIDR (never 0.0.0.0/0) on the GCP network and in each AWSCluster's security
//! groups.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnet::IpNet;
use meshfleet_plan::{InterconnectNeed, LinkKind, Plan};
use meshfleet_spec::{Fleet, Provider};
use serde::Serialize;
use serde_json::{Value, json};

use crate::NetError;
use crate::secrets::Secrets;

/// The Cloud Routers' BGP ASN (private range; differs from AWS's).
pub const GCP_ASN: u32 = 65010;
/// The Transit Gateways' `AmazonSideAsn` (AWS's default).
pub const AWS_ASN: u32 = 64512;

/// The cloud a step calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Google Compute Engine.
    Gcp,
    /// Amazon EC2.
    Aws,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Unique id; later steps refer to its results as `${id.field}`.
    pub id: String,
    /// The cloud.
    pub cloud: Cloud,
    /// The region it is made in.
    pub region: String,
    /// The API method (`vpnGateways.insert`) or EC2 action (`CreateVpnConnection`).
    pub action: &'static str,
    /// The links it serves.
    pub links: Vec<String>,
    /// The request: Compute's JSON body, or EC2's query parameters.
    pub body: Value,
}

/// Where the HA VPN gateway for an AWS region goes: a GCP region with clusters on the same
/// continent when there is one (by the regions' name prefixes), else the first in name order.
pub fn gcp_region_for(aws_region: &str, gcp_regions: &BTreeSet<String>) -> Option<String> {
    let want: &[&str] = match aws_region.split('-').next().unwrap_or("") {
        "eu" => &["europe-"],
        "us" => &["us-"],
        "ca" => &["northamerica-", "us-"],
        "sa" => &["southamerica-"],
        "ap" => &["asia-", "australia-"],
        "me" => &["me-"],
        "af" => &["africa-"],
        _ => &[],
    };
    gcp_regions
        .iter()
        .find(|g| want.iter().any(|w| g.starts_with(w)))
        .or_else(|| gcp_regions.iter().next())
        .cloned()
}

fn name(fleet: &str, rest: &str) -> Result<String, NetError> {
    let n = format!("mf-{fleet}-{rest}");
    if n.len() > 63 {
        return Err(NetError::NameTooLong { name: n });
    }
    Ok(n)
}

/// The names of the fleet's links that `net setup` makes (`haVpn`, `transitGateway`,
/// `vpcPeering`; not `existing` or `publicAddresses`).
pub fn made_links(plan: &Plan) -> Vec<String> {
    plan.interconnects
        .iter()
        .filter(|n| {
            matches!(
                n.via.as_deref(),
                Some("haVpn" | "transitGateway" | "vpcPeering")
            )
        })
        .map(|n| n.name.clone())
        .collect()
}

/// The names of the VPN tunnels the fleet's `haVpn` links need (for [`Secrets::ensure`]).
pub fn tunnel_names(fleet: &Fleet, plan: &Plan) -> Result<Vec<String>, NetError> {
    let mut out = Vec::new();
    for region in ha_vpn_regions(plan) {
        for i in 0..4 {
            out.push(name(&fleet.metadata.name, &format!("{region}-t{i}"))?);
        }
    }
    Ok(out)
}

fn ha_vpn_regions(plan: &Plan) -> BTreeSet<String> {
    plan.interconnects
        .iter()
        .filter(|n| n.kind == LinkKind::GcpToAws && n.via.as_deref() == Some("haVpn"))
        .filter_map(|n| n.ends[1].region.clone())
        .collect()
}

fn tags(fleet: &str, name: &str, resource: &str) -> Value {
    json!({
        "TagSpecification.1.ResourceType": resource,
        "TagSpecification.1.Tag.1.Key": "Name",
        "TagSpecification.1.Tag.1.Value": name,
        "TagSpecification.1.Tag.2.Key": "meshfleet.io/fleet",
        "TagSpecification.1.Tag.2.Value": fleet,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The steps, deduplicated by id, in order. Shared steps (a region's Transit Gateway) serve
/// thousands of links at fleet scale, so which links a step already lists is a set lookup, not
/// a scan of its list.
#[derive(Default)]
struct Steps {
    out: Vec<Step>,
    seen: HashMap<String, usize>,
    served: HashSet<(usize, String)>,
}

impl Steps {
    fn push(
        &mut self,
        id: String,
        cloud: Cloud,
        region: &str,
        action: &'static str,
        link: &str,
        body: Value,
    ) -> String {
        if let Some(&i) = self.seen.get(&id) {
            if self.served.insert((i, link.to_owned())) {
                self.out[i].links.push(link.to_owned());
            }
            return id;
        }
        self.served.insert((self.out.len(), link.to_owned()));
        self.seen.insert(id.clone(), self.out.len());
        self.out.push(Step {
            id: id.clone(),
            cloud,
            region: region.to_owned(),
            action,
            links: vec![link.to_owned()],
            body,
        });
        id
    }
}

/// The destinations a VPC routes to its Transit Gateway for peer node networks `to`: the fleet's
/// node pool once for every peer inside it, and a pinned CIDR outside the pool as itself.
///
/// One route per VPC, however large the fleet: a route per peer would be 254 routes in each of
/// 255 VPCs, beyond EC2's default of 50 non-propagated routes per route table (Amazon VPC
/// quotas, "Routes per route table"). The pool also covers the VPC's own CIDR, which is fine:
/// the `local` route is more specific and EC2 picks the longest prefix that matches (Amazon VPC
/// User Guide, "Route priority"); a summary route to the Transit Gateway is AWS's own pattern
/// for hub-and-spoke networks.
fn through_tgw(pool: Option<IpNet>, to: &[IpNet]) -> Vec<IpNet> {
    // The firewall matrix summarises its mesh sources the same way.
    meshfleet_plan::summarise(pool, to)
}

/// The phase of an action: the order the clouds require between kinds of resources, and what
/// the executor runs side by side. A step refers only to steps of earlier phases, by `${…}` or
/// by a resource URL (a tunnel names its gateways and router; the router's BGP patch names the
/// tunnels), or needs one to have settled (a VPC route to a Transit Gateway needs the VPC's
/// attachment `available`; a static route through a peering needs the peering accepted).
pub fn phase(action: &str) -> u8 {
    match action {
        "vpnGateways.insert" | "routers.insert" | "CreateTransitGateway" => 0,
        "CreateTransitGatewayVpcAttachment" | "CreateCustomerGateway" => 1,
        "CreateVpnConnection" => 2,
        "externalVpnGateways.insert" => 3,
        "vpnTunnels.insert" => 4,
        "routers.patch" => 5,
        "CreateTransitGatewayPeeringAttachment" | "CreateVpcPeeringConnection" => 6,
        "AcceptTransitGatewayPeeringAttachment" | "AcceptVpcPeeringConnection" => 7,
        "CreateTransitGatewayRoute" => 8,
        _ => 9,
    }
}

/// An AWS cluster's VPC and its CIDR, from a link end.
fn vpc_of(n: &InterconnectNeed, end: usize) -> (String, String, Vec<IpNet>) {
    let e = &n.ends[end];
    (
        e.clusters.first().cloned().unwrap_or_default(),
        e.region.clone().unwrap_or_default(),
        e.nodes.clone(),
    )
}

/// Every request the fleet's links need, in [`phase`] order. A VPC of CAPA's is referenced as
/// `${capa:<cluster>.<field>}` in the step's region, or `${capa:<cluster>@<region>.<field>}`
/// in another (a VPC peering's accepter). `secrets` must hold every tunnel of
/// [`tunnel_names`] (see [`Secrets::ensure`]); keys are referenced, never copied.
pub fn steps(fleet: &Fleet, plan: &Plan, secrets: &Secrets) -> Result<Vec<Step>, NetError> {
    let f = fleet.metadata.name.as_str();
    let mut s = Steps::default();
    let gcp = fleet.spec.providers.gcp.as_ref();
    let gcp_regions: BTreeSet<String> = plan
        .clusters
        .iter()
        .filter(|c| c.provider == Provider::Gcp)
        .map(|c| c.region.clone())
        .collect();

    // A Transit Gateway per region and the attachment of a VPC to it, shared by every link
    // that needs them.
    let tgw = |s: &mut Steps, region: &str, link: &str| -> Result<String, NetError> {
        let n = name(f, region)?;
        Ok(s.push(
            format!("aws/{region}/tgw/{n}"),
            Cloud::Aws,
            region,
            "CreateTransitGateway",
            link,
            merge(
                json!({
                    "Description": format!("meshfleet fleet {f}, {region}"),
                    "Options.AmazonSideAsn": AWS_ASN,
                    "Options.DefaultRouteTableAssociation": "enable",
                    "Options.DefaultRouteTablePropagation": "enable",
                    "Options.VpnEcmpSupport": "enable",
                    "Options.DnsSupport": "enable",
                }),
                tags(f, &n, "transit-gateway"),
            ),
        ))
    };
    let attach = |s: &mut Steps, tgw: &str, region: &str, cluster: &str, link: &str| {
        s.push(
            format!("aws/{region}/tgw-attach/{cluster}"),
            Cloud::Aws,
            region,
            "CreateTransitGatewayVpcAttachment",
            link,
            merge(
                json!({
                    "TransitGatewayId": format!("${{{tgw}.transitGatewayId}}"),
                    "VpcId": format!("${{capa:{cluster}.vpcId}}"),
                    "SubnetIds": format!("${{capa:{cluster}.privateSubnetIds}}"),
                }),
                tags(
                    f,
                    &format!("mf-{f}-{cluster}"),
                    "transit-gateway-attachment",
                ),
            ),
        )
    };
    let pool: Option<IpNet> = fleet.spec.network.nodes.pool.parse().ok();
    let vpc_route =
        |s: &mut Steps, region: &str, cluster: &str, to: &IpNet, via: Value, link: &str| {
            let mut body = json!({
                "RouteTableId": format!("${{capa:{cluster}.routeTableIds}}"),
                "DestinationCidrBlock": to.to_string(),
            });
            if let (Some(b), Value::Object(v)) = (body.as_object_mut(), via) {
                b.extend(v);
            }
            s.push(
                format!("aws/{region}/route/{cluster}/{to}"),
                Cloud::Aws,
                region,
                "CreateRoute",
                link,
                body,
            );
        };

    // GCP ↔ AWS over HA VPN, one set per AWS region.
    let by_region: BTreeMap<String, Vec<&InterconnectNeed>> = {
        let mut m: BTreeMap<String, Vec<&InterconnectNeed>> = BTreeMap::new();
        for n in plan
            .interconnects
            .iter()
            .filter(|n| n.kind == LinkKind::GcpToAws && n.via.as_deref() == Some("haVpn"))
        {
            m.entry(n.ends[1].region.clone().unwrap_or_default())
                .or_default()
                .push(n);
        }
        m
    };
    if let (Some(gcp), false) = (gcp, by_region.is_empty()) {
        let project = &gcp.project;
        let net_link = format!(
            "https://www.googleapis.com/compute/v1/projects/{project}/global/networks/{}",
            gcp.network
        );
        for (aws_region, links) in &by_region {
            let Some(g) = gcp_region_for(aws_region, &gcp_regions) else {
                continue;
            };
            let link = links[0].name.as_str();
            let base = name(f, aws_region)?;
            let compute = format!("https://www.googleapis.com/compute/v1/projects/{project}");
            let gw = s.push(
                format!("gcp/{g}/vpnGateways/{base}"),
                Cloud::Gcp,
                &g,
                "vpnGateways.insert",
                link,
                json!({"name": base, "network": net_link, "stackType": "IPV4_ONLY",
                    "description": format!("meshfleet fleet {f}: HA VPN to AWS {aws_region}")}),
            );
            s.push(
                format!("gcp/{g}/routers/{base}"),
                Cloud::Gcp,
                &g,
                "routers.insert",
                link,
                json!({"name": base, "network": net_link,
                    "bgp": {"asn": GCP_ASN, "advertiseMode": "DEFAULT"},
                    "description": format!("meshfleet fleet {f}: BGP with AWS {aws_region}")}),
            );
            let t = tgw(&mut s, aws_region, link)?;
            for n in links {
                let (cluster, region, _) = vpc_of(n, 1);
                attach(&mut s, &t, &region, &cluster, &n.name);
            }
            let mut vpns = Vec::new();
            for (i, half) in ["a", "b"].iter().enumerate() {
                let cgw_name = name(f, &format!("{aws_region}-gcp-{i}"))?;
                let cgw = s.push(
                    format!("aws/{aws_region}/cgw/{cgw_name}"),
                    Cloud::Aws,
                    aws_region,
                    "CreateCustomerGateway",
                    link,
                    merge(
                        json!({"Type": "ipsec.1", "BgpAsn": GCP_ASN,
                            "IpAddress": format!("${{{gw}.vpnInterfaces[{i}].ipAddress}}")}),
                        tags(f, &cgw_name, "customer-gateway"),
                    ),
                );
                let vpn_name = name(f, &format!("{aws_region}-{half}"))?;
                let mut body = json!({
                    "Type": "ipsec.1",
                    "CustomerGatewayId": format!("${{{cgw}.customerGatewayId}}"),
                    "TransitGatewayId": format!("${{{t}.transitGatewayId}}"),
                    "Options.StaticRoutesOnly": false,
                });
                for k in 0..2 {
                    let tunnel = name(f, &format!("{aws_region}-t{}", 2 * i + k))?;
                    let inside = secrets
                        .tunnels
                        .get(&tunnel)
                        .map(|t| t.inside_cidr.to_string())
                        .unwrap_or_default();
                    let p = format!("Options.TunnelOptions.{}", k + 1);
                    let b = body.as_object_mut().expect("object");
                    b.insert(format!("{p}.TunnelInsideCidr"), json!(inside));
                    b.insert(
                        format!("{p}.PreSharedKey"),
                        json!(format!("${{secret:{tunnel}}}")),
                    );
                    b.insert(format!("{p}.IKEVersion.1.Value"), json!("ikev2"));
                    for phase in [1, 2] {
                        b.insert(
                            format!("{p}.Phase{phase}EncryptionAlgorithm.1.Value"),
                            json!("AES256"),
                        );
                        b.insert(
                            format!("{p}.Phase{phase}IntegrityAlgorithm.1.Value"),
                            json!("SHA2-256"),
                        );
                        b.insert(format!("{p}.Phase{phase}DHGroupNumber.1.Value"), json!(14));
                    }
                }
                vpns.push(s.push(
                    format!("aws/{aws_region}/vpn/{vpn_name}"),
                    Cloud::Aws,
                    aws_region,
                    "CreateVpnConnection",
                    link,
                    merge(body, tags(f, &vpn_name, "vpn-connection")),
                ));
            }
            let ext_name = name(f, &format!("aws-{aws_region}"))?;
            let interfaces: Vec<Value> = (0..4)
                .map(|i| {
                    json!({"id": i, "ipAddress": format!("${{{}.tunnels[{}].outsideIpAddress}}", vpns[i / 2], i % 2)})
                })
                .collect();
            s.push(
                format!("gcp/global/externalVpnGateways/{ext_name}"),
                Cloud::Gcp,
                "global",
                "externalVpnGateways.insert",
                link,
                json!({"name": ext_name, "redundancyType": "FOUR_IPS_REDUNDANCY", "interfaces": interfaces,
                    "description": format!("meshfleet fleet {f}: AWS {aws_region} VPN tunnels")}),
            );
            let mut ifaces = Vec::new();
            let mut peers = Vec::new();
            for i in 0..4 {
                let tunnel = name(f, &format!("{aws_region}-t{i}"))?;
                s.push(
                    format!("gcp/{g}/vpnTunnels/{tunnel}"),
                    Cloud::Gcp,
                    &g,
                    "vpnTunnels.insert",
                    link,
                    json!({"name": tunnel,
                        "vpnGateway": format!("{compute}/regions/{g}/vpnGateways/{base}"),
                        "vpnGatewayInterface": i / 2,
                        "peerExternalGateway": format!("{compute}/global/externalVpnGateways/{ext_name}"),
                        "peerExternalGatewayInterface": i,
                        "sharedSecret": format!("${{secret:{tunnel}}}"),
                        "ikeVersion": 2,
                        "router": format!("{compute}/regions/{g}/routers/{base}")}),
                );
                let inside = secrets.tunnels.get(&tunnel).map(|t| t.inside_cidr);
                let (aws_ip, gcp_ip) = inside
                    .map(|n| {
                        let b = u32::from(n.network());
                        (
                            std::net::Ipv4Addr::from(b + 1).to_string(),
                            std::net::Ipv4Addr::from(b + 2).to_string(),
                        )
                    })
                    .unwrap_or_default();
                ifaces.push(
                    json!({"name": format!("{tunnel}-if"), "ipRange": format!("{gcp_ip}/30"),
                    "linkedVpnTunnel": format!("{compute}/regions/{g}/vpnTunnels/{tunnel}")}),
                );
                peers.push(
                    json!({"name": format!("{tunnel}-bgp"), "interfaceName": format!("{tunnel}-if"),
                    "ipAddress": gcp_ip, "peerIpAddress": aws_ip, "peerAsn": AWS_ASN}),
                );
            }
            s.push(
                format!("gcp/{g}/routers/{base}/bgp"),
                Cloud::Gcp,
                &g,
                "routers.patch",
                link,
                json!({"name": base, "interfaces": ifaces, "bgpPeers": peers}),
            );
            for n in links {
                let (cluster, region, _) = vpc_of(n, 1);
                for c in through_tgw(pool, &n.ends[0].nodes) {
                    vpc_route(
                        &mut s,
                        &region,
                        &cluster,
                        &c,
                        json!({"TransitGatewayId": format!("${{{t}.transitGatewayId}}")}),
                        &n.name,
                    );
                }
            }
        }
    }

    // AWS ↔ AWS.
    for n in plan
        .interconnects
        .iter()
        .filter(|n| n.kind != LinkKind::GcpToAws)
    {
        let (ca, ra, na) = vpc_of(n, 0);
        let (cb, rb, nb) = vpc_of(n, 1);
        match n.via.as_deref() {
            Some("transitGateway") => {
                let ta = tgw(&mut s, &ra, &n.name)?;
                let tb = tgw(&mut s, &rb, &n.name)?;
                attach(&mut s, &ta, &ra, &ca, &n.name);
                attach(&mut s, &tb, &rb, &cb, &n.name);
                if ra != rb {
                    // Requested from the region first in name order (ends are sorted so).
                    let peer = s.push(
                        format!("aws/{ra}/tgw-peering/{rb}"),
                        Cloud::Aws,
                        &ra,
                        "CreateTransitGatewayPeeringAttachment",
                        &n.name,
                        merge(
                            json!({"TransitGatewayId": format!("${{{ta}.transitGatewayId}}"),
                                "PeerTransitGatewayId": format!("${{{tb}.transitGatewayId}}"),
                                "PeerRegion": rb, "PeerAccountId": "${account}"}),
                            tags(
                                f,
                                &format!("mf-{f}-{ra}-{rb}"),
                                "transit-gateway-attachment",
                            ),
                        ),
                    );
                    s.push(
                        format!("aws/{rb}/tgw-peering-accept/{ra}"),
                        Cloud::Aws,
                        &rb,
                        "AcceptTransitGatewayPeeringAttachment",
                        &n.name,
                        json!({"TransitGatewayAttachmentId": format!("${{{peer}.transitGatewayAttachmentId}}")}),
                    );
                    for (t, region, to) in [(&ta, &ra, &nb), (&tb, &rb, &na)] {
                        for c in to.iter() {
                            s.push(
                                format!("aws/{region}/tgw-route/{c}"),
                                Cloud::Aws,
                                region,
                                "CreateTransitGatewayRoute",
                                &n.name,
                                json!({"TransitGatewayRouteTableId": format!("${{{t}.associationDefaultRouteTableId}}"),
                                    "DestinationCidrBlock": c.to_string(),
                                    "TransitGatewayAttachmentId": format!("${{{peer}.transitGatewayAttachmentId}}")}),
                            );
                        }
                    }
                }
                for (t, region, cluster, to) in [(&ta, &ra, &ca, &nb), (&tb, &rb, &cb, &na)] {
                    for c in through_tgw(pool, to) {
                        vpc_route(
                            &mut s,
                            region,
                            cluster,
                            &c,
                            json!({"TransitGatewayId": format!("${{{t}.transitGatewayId}}")}),
                            &n.name,
                        );
                    }
                }
            }
            Some("vpcPeering") => {
                let pcx = s.push(
                    format!("aws/{ra}/pcx/{ca}--{cb}"),
                    Cloud::Aws,
                    &ra,
                    "CreateVpcPeeringConnection",
                    &n.name,
                    merge(
                        json!({"VpcId": format!("${{capa:{ca}.vpcId}}"),
                            "PeerVpcId": format!("${{capa:{cb}@{rb}.vpcId}}"), "PeerRegion": rb}),
                        tags(f, &format!("mf-{f}-{ca}--{cb}"), "vpc-peering-connection"),
                    ),
                );
                s.push(
                    format!("aws/{rb}/pcx-accept/{ca}--{cb}"),
                    Cloud::Aws,
                    &rb,
                    "AcceptVpcPeeringConnection",
                    &n.name,
                    json!({"VpcPeeringConnectionId": format!("${{{pcx}.vpcPeeringConnectionId}}")}),
                );
                for (region, cluster, to) in [(&ra, &ca, &nb), (&rb, &cb, &na)] {
                    for c in to.iter() {
                        vpc_route(
                            &mut s,
                            region,
                            cluster,
                            c,
                            json!({"VpcPeeringConnectionId": format!("${{{pcx}.vpcPeeringConnectionId}}")}),
                            &n.name,
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // Stable: within a phase, the order the links were met in (region, then cluster).
    let mut out = s.out;
    out.sort_by_key(|x| phase(x.action));
    Ok(out)
}
