//! The EC2 actions that join VPCs, on the query protocol: CAPA's subnets and route tables
//! (`DescribeSubnets`, `DescribeRouteTables`), routes (`CreateRoute`, `ReplaceRoute`), Transit
//! Gateway VPC attachments (`Create…`, `Describe…`, `Modify…` for subnets), peering
//! attachments (`Create…`, `Describe…`, `Accept…`: `pendingAcceptance` until the accepter's
//! region accepts), static routes in a Transit Gateway's table (`CreateTransitGatewayRoute`,
//! `ReplaceTransitGatewayRoute`, `SearchTransitGatewayRoutes`) and VPC peering connections
//! (`Create…`, `Describe…`, `Accept…`: `pending-acceptance` until accepted in the accepter's
//! region). Element names follow the aws-sdk-ec2 1.274 deserializers
//! (`transitGatewayVpcAttachments`, `requesterTgwInfo`, `routeSet.item.transitGatewayAttachments`,
//! `vpcPeeringConnectionSet.item.status.code`, `routeTableSet.item.associationSet`).
//!
//! The state these write is what [`crate::network`] reads, so what the executor makes here
//! decides which node networks reach which.

use std::collections::BTreeMap;

use super::ec2net::{
    Attached, Route, TgwAttachment, VpcPeering, private_subnet_of, route_table_of,
};
use super::query::{Params, QueryError, el};
use super::{ACCOUNT, Aws};

type Result<T> = std::result::Result<T, QueryError>;

/// CAPA's subnet role tag (cluster-api-provider-aws:`api/v1beta2/tags.go`@v2.11.1,
/// `NameAWSClusterAPIRole`, value `PrivateRoleTagValue`).
const ROLE_TAG: &str = "sigs.k8s.io/cluster-api-provider-aws/role";

/// `Filter.N.Name` → values.
fn filters(p: &Params) -> Vec<(String, Vec<String>)> {
    (1..)
        .map_while(|n| {
            p.get(&format!("Filter.{n}.Name")).map(|name| {
                (
                    name.to_owned(),
                    p.list(&format!("Filter.{n}.Value"))
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                )
            })
        })
        .collect()
}

/// Does a resource pass the filters (`tag:K` on its tags, others by `attr`)? Unknown filter
/// names pass (the seam filters again).
fn passes(
    f: &[(String, Vec<String>)],
    tags: &BTreeMap<String, String>,
    attr: impl Fn(&str) -> Option<String>,
) -> bool {
    f.iter().all(|(name, values)| {
        let have = match name.strip_prefix("tag:") {
            Some(k) => tags.get(k).cloned(),
            None => match attr(name) {
                Some(v) => Some(v),
                None => return true,
            },
        };
        have.is_some_and(|h| values.contains(&h))
    })
}

/// The tags of a create: `TagSpecification.1.Tag.N.{Key,Value}`, or `TagSpecifications.1…`
/// (the plural is what `CreateTransitGatewayVpcAttachment` takes, per the EC2 API reference
/// and the aws-sdk-ec2 serializer).
fn tags_of(p: &Params) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    for prefix in ["TagSpecification", "TagSpecifications"] {
        for n in 1.. {
            let Some(k) = p.get(&format!("{prefix}.1.Tag.{n}.Key")) else {
                break;
            };
            let v = p.get(&format!("{prefix}.1.Tag.{n}.Value")).unwrap_or("");
            t.insert(k.to_owned(), v.to_owned());
        }
    }
    t
}

fn tag_set(tags: &BTreeMap<String, String>) -> String {
    let items: String = tags
        .iter()
        .map(|(k, v)| format!("<item>{}{}</item>", el("key", k), el("value", v)))
        .collect();
    format!("<tagSet>{items}</tagSet>")
}

fn items(v: &[String]) -> String {
    v.iter().map(|x| el("item", x)).collect()
}

fn bad(code: &str, msg: impl Into<String>) -> QueryError {
    QueryError::new(400, code, msg)
}

fn required<'p>(p: &'p Params, k: &str) -> Result<&'p str> {
    p.get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
        bad(
            "MissingParameter",
            format!("The request must contain the parameter {k}"),
        )
    })
}

fn vpc_att_xml(id: &str, a: &TgwAttachment) -> String {
    let vpc = match &a.attached {
        Attached::Vpc { vpc } => vpc.as_str(),
        _ => "",
    };
    format!(
        "{}{}{}{}{}<subnetIds>{}</subnetIds>{}",
        el("transitGatewayAttachmentId", id),
        el("transitGatewayId", &a.transit_gateway),
        el("vpcId", vpc),
        el("vpcOwnerId", ACCOUNT),
        el("state", &a.state),
        items(&a.subnets),
        tag_set(&a.tags),
    )
}

fn peering_att_xml(id: &str, a: &TgwAttachment) -> String {
    let peer = match &a.attached {
        Attached::Peering {
            peer_transit_gateway,
        } => peer_transit_gateway.as_str(),
        _ => "",
    };
    let info = |tgw: &str, region: &str| {
        format!(
            "{}{}{}",
            el("transitGatewayId", tgw),
            el("ownerId", ACCOUNT),
            el("region", region)
        )
    };
    format!(
        "{}<requesterTgwInfo>{}</requesterTgwInfo><accepterTgwInfo>{}</accepterTgwInfo>{}{}",
        el("transitGatewayAttachmentId", id),
        info(&a.transit_gateway, &a.region),
        info(peer, &a.peer_region),
        el("state", &a.state),
        tag_set(&a.tags),
    )
}

fn pcx_xml(id: &str, p: &VpcPeering, cidr: impl Fn(&str) -> String) -> String {
    let info = |vpc: &str, region: &str| {
        format!(
            "{}{}{}{}",
            el("ownerId", ACCOUNT),
            el("vpcId", vpc),
            el("region", region),
            el("cidrBlock", &cidr(vpc))
        )
    };
    format!(
        "{}<requesterVpcInfo>{}</requesterVpcInfo><accepterVpcInfo>{}</accepterVpcInfo><status>{}{}</status>{}",
        el("vpcPeeringConnectionId", id),
        info(&p.requester_vpc, &p.region),
        info(&p.accepter_vpc, &p.peer_region),
        el("code", &p.status),
        el("message", &p.status),
        tag_set(&p.tags),
    )
}

fn route_xml(r: &Route) -> String {
    let target = if r.target.starts_with("pcx-") {
        el("vpcPeeringConnectionId", &r.target)
    } else {
        el("transitGatewayId", &r.target)
    };
    format!(
        "<item>{}{target}{}{}</item>",
        el("destinationCidrBlock", &r.destination),
        el("origin", "CreateRoute"),
        el("state", "active")
    )
}

fn tgw_route_xml(r: &Route) -> String {
    format!(
        "{}<transitGatewayAttachments><item>{}{}</item></transitGatewayAttachments>{}{}",
        el("destinationCidrBlock", &r.destination),
        el("transitGatewayAttachmentId", &r.target),
        el("resourceType", "peering"),
        el("type", "static"),
        el("state", "active")
    )
}

/// A Transit Gateway's default route table id is its id with `-rtb` (see `tgw_xml`).
fn tgw_of_table(table: &str) -> &str {
    table.trim_end_matches("-rtb")
}

/// Handle `action` if it is one of these; `None` otherwise.
pub(super) fn handle(aws: &Aws, region: &str, action: &str, p: &Params) -> Option<Result<String>> {
    Some(match action {
        "DescribeSubnets" => {
            let f = filters(p);
            let items: String = aws.read(|st| {
                st.ec2
                    .vpcs
                    .iter()
                    .filter(|(_, v)| v.region == region)
                    .map(|(id, v)| {
                        let mut t = BTreeMap::new();
                        t.insert(ROLE_TAG.to_owned(), "private".to_owned());
                        (id, v, t)
                    })
                    .filter(|(id, _, t)| {
                        passes(&f, t, |n| match n {
                            "vpc-id" => Some((*id).clone()),
                            _ => None,
                        })
                    })
                    .map(|(id, v, t)| {
                        format!(
                            "<item>{}{}{}{}{}</item>",
                            el("subnetId", &private_subnet_of(id)),
                            el("vpcId", id),
                            el("state", "available"),
                            el("cidrBlock", &v.cidr),
                            tag_set(&t)
                        )
                    })
                    .collect()
            });
            Ok(format!("<subnetSet>{items}</subnetSet>"))
        }
        "DescribeRouteTables" => {
            let f = filters(p);
            let ids = p.list("RouteTableId");
            let items: String = aws.read(|st| {
                st.ec2
                    .vpcs
                    .iter()
                    .filter(|(_, v)| v.region == region)
                    .filter(|(id, _)| ids.is_empty() || ids.contains(&route_table_of(id).as_str()))
                    .filter(|(id, _)| {
                        passes(&f, &BTreeMap::new(), |n| match n {
                            "vpc-id" => Some((*id).clone()),
                            _ => None,
                        })
                    })
                    .map(|(id, v)| {
                        let rtb = route_table_of(id);
                        let local = format!(
                            "<item>{}{}{}{}</item>",
                            el("destinationCidrBlock", &v.cidr),
                            el("gatewayId", "local"),
                            el("origin", "CreateRouteTable"),
                            el("state", "active")
                        );
                        let routes: String = v.routes.iter().map(route_xml).collect();
                        format!(
                            "<item>{}{}<routeSet>{local}{routes}</routeSet><associationSet><item>{}{}{}{}</item></associationSet><tagSet/></item>",
                            el("routeTableId", &rtb),
                            el("vpcId", id),
                            el("routeTableAssociationId", &format!("rtbassoc-{}", id.trim_start_matches("vpc-"))),
                            el("routeTableId", &rtb),
                            el("subnetId", &private_subnet_of(id)),
                            el("main", "false"),
                        )
                    })
                    .collect()
            });
            Ok(format!("<routeTableSet>{items}</routeTableSet>"))
        }
        "CreateRoute" | "ReplaceRoute" => route(aws, action, p),
        "CreateTransitGatewayVpcAttachment" => {
            let (tgw, vpc) = match (required(p, "TransitGatewayId"), required(p, "VpcId")) {
                (Ok(t), Ok(v)) => (t.to_owned(), v.to_owned()),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            };
            let subnets: Vec<String> = p.list("SubnetIds").into_iter().map(str::to_owned).collect();
            let tags = tags_of(p);
            aws.with_state(|st| {
                if !st
                    .ec2
                    .transit_gateways
                    .get(&tgw)
                    .is_some_and(|t| t.region == region)
                {
                    return Err(bad(
                        "InvalidTransitGatewayID.NotFound",
                        format!("Transit Gateway {tgw} was deleted or does not exist."),
                    ));
                }
                if !st.ec2.vpcs.get(&vpc).is_some_and(|v| v.region == region) {
                    return Err(bad(
                        "InvalidVpcID.NotFound",
                        format!("The vpc ID '{vpc}' does not exist"),
                    ));
                }
                if let Some(s) = subnets.iter().find(|s| **s != private_subnet_of(&vpc)) {
                    return Err(bad(
                        "InvalidSubnetID.NotFound",
                        format!("The subnet ID '{s}' does not exist in {vpc}"),
                    ));
                }
                if subnets.is_empty() {
                    return Err(bad(
                        "MissingParameter",
                        "The request must contain the parameter SubnetIds",
                    ));
                }
                let id = format!("tgw-attach-{:017x}", 0x7e0_0000 + st.id());
                let a = TgwAttachment {
                    transit_gateway: tgw.clone(),
                    attached: Attached::Vpc { vpc },
                    state: "available".to_owned(),
                    region: region.to_owned(),
                    subnets,
                    tags,
                    ..Default::default()
                };
                let xml = vpc_att_xml(&id, &a);
                if let Some(t) = st.ec2.transit_gateways.get_mut(&tgw)
                    && t.default_propagation
                {
                    t.propagations.insert(id.clone());
                }
                st.ec2.tgw_attachments.insert(id, a);
                Ok(format!(
                    "<transitGatewayVpcAttachment>{xml}</transitGatewayVpcAttachment>"
                ))
            })
        }
        "DescribeTransitGatewayVpcAttachments" => {
            let f = filters(p);
            let ids = p.list("TransitGatewayAttachmentIds");
            let items: String = aws.read(|st| {
                st.ec2
                    .tgw_attachments
                    .iter()
                    .filter(|(_, a)| {
                        a.region == region && matches!(a.attached, Attached::Vpc { .. })
                    })
                    .filter(|(id, _)| ids.is_empty() || ids.contains(&id.as_str()))
                    .filter(|(_, a)| {
                        passes(&f, &a.tags, |n| (n == "state").then(|| a.state.clone()))
                    })
                    .map(|(id, a)| format!("<item>{}</item>", vpc_att_xml(id, a)))
                    .collect()
            });
            Ok(format!(
                "<transitGatewayVpcAttachments>{items}</transitGatewayVpcAttachments>"
            ))
        }
        "ModifyTransitGatewayVpcAttachment" => {
            let id = p
                .get("TransitGatewayAttachmentId")
                .unwrap_or_default()
                .to_owned();
            let add: Vec<String> = p
                .list("AddSubnetIds")
                .into_iter()
                .map(str::to_owned)
                .collect();
            let remove: Vec<String> = p
                .list("RemoveSubnetIds")
                .into_iter()
                .map(str::to_owned)
                .collect();
            aws.with_state(|st| {
                let Some(a) = st.ec2.tgw_attachments.get_mut(&id) else {
                    return Err(bad(
                        "InvalidTransitGatewayAttachmentID.NotFound",
                        format!("Transit Gateway Attachment {id} was deleted or does not exist."),
                    ));
                };
                a.subnets.retain(|s| !remove.contains(s));
                for s in add {
                    if !a.subnets.contains(&s) {
                        a.subnets.push(s);
                    }
                }
                Ok(format!(
                    "<transitGatewayVpcAttachment>{}</transitGatewayVpcAttachment>",
                    vpc_att_xml(&id, a)
                ))
            })
        }
        "CreateTransitGatewayPeeringAttachment" => {
            let (tgw, peer, peer_region) = match (
                required(p, "TransitGatewayId"),
                required(p, "PeerTransitGatewayId"),
                required(p, "PeerRegion"),
            ) {
                (Ok(a), Ok(b), Ok(c)) => (a.to_owned(), b.to_owned(), c.to_owned()),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
            };
            if p.get("PeerAccountId").is_some_and(|a| a != ACCOUNT) {
                return Some(Err(bad(
                    "InvalidParameterValue",
                    "the simulator has one account; PeerAccountId must be it",
                )));
            }
            let tags = tags_of(p);
            aws.with_state(|st| {
                for (t, r) in [(&tgw, region), (&peer, peer_region.as_str())] {
                    if !st
                        .ec2
                        .transit_gateways
                        .get(t)
                        .is_some_and(|g| g.region == r)
                    {
                        return Err(bad(
                            "InvalidTransitGatewayID.NotFound",
                            format!("Transit Gateway {t} was deleted or does not exist in {r}."),
                        ));
                    }
                }
                let id = format!("tgw-attach-{:017x}", 0x7e0_0000 + st.id());
                let a = TgwAttachment {
                    transit_gateway: tgw,
                    attached: Attached::Peering {
                        peer_transit_gateway: peer,
                    },
                    state: "pendingAcceptance".to_owned(),
                    region: region.to_owned(),
                    peer_region,
                    tags,
                    ..Default::default()
                };
                let xml = peering_att_xml(&id, &a);
                st.ec2.tgw_attachments.insert(id, a);
                Ok(format!(
                    "<transitGatewayPeeringAttachment>{xml}</transitGatewayPeeringAttachment>"
                ))
            })
        }
        "DescribeTransitGatewayPeeringAttachments" => {
            let f = filters(p);
            let ids = p.list("TransitGatewayAttachmentIds");
            let items: String = aws.read(|st| {
                st.ec2
                    .tgw_attachments
                    .iter()
                    .filter(|(_, a)| matches!(a.attached, Attached::Peering { .. }))
                    // Visible in both regions; the tags are the requester region's.
                    .filter(|(_, a)| a.region == region || a.peer_region == region)
                    .filter(|(id, _)| ids.is_empty() || ids.contains(&id.as_str()))
                    .map(|(id, a)| {
                        let mut a = a.clone();
                        if a.region != region {
                            a.tags.clear();
                        }
                        (id, a)
                    })
                    .filter(|(id, a)| {
                        passes(&f, &a.tags, |n| match n {
                            "state" => Some(a.state.clone()),
                            "transit-gateway-attachment-id" => Some((*id).clone()),
                            _ => None,
                        })
                    })
                    .map(|(id, a)| format!("<item>{}</item>", peering_att_xml(id, &a)))
                    .collect()
            });
            Ok(format!(
                "<transitGatewayPeeringAttachments>{items}</transitGatewayPeeringAttachments>"
            ))
        }
        "AcceptTransitGatewayPeeringAttachment" => {
            let id = p
                .get("TransitGatewayAttachmentId")
                .unwrap_or_default()
                .to_owned();
            aws.with_state(|st| {
                let Some(a) = st
                    .ec2
                    .tgw_attachments
                    .get_mut(&id)
                    .filter(|a| matches!(a.attached, Attached::Peering { .. }))
                else {
                    return Err(bad(
                        "InvalidTransitGatewayAttachmentID.NotFound",
                        format!("Transit Gateway Attachment {id} was deleted or does not exist."),
                    ));
                };
                // Only the accepter's region accepts.
                if a.peer_region != region {
                    return Err(bad(
                        "InvalidParameterValue",
                        format!(
                            "Cannot accept {id}: accept it in the accepter's region {}",
                            a.peer_region
                        ),
                    ));
                }
                if a.state != "pendingAcceptance" {
                    return Err(bad(
                        "IncorrectState",
                        format!("{id} is in state {}, not pendingAcceptance", a.state),
                    ));
                }
                a.state = "available".to_owned();
                let mut shown = a.clone();
                shown.tags.clear();
                Ok(format!(
                    "<transitGatewayPeeringAttachment>{}</transitGatewayPeeringAttachment>",
                    peering_att_xml(&id, &shown)
                ))
            })
        }
        "CreateTransitGatewayRoute" | "ReplaceTransitGatewayRoute" => {
            let (table, dest, att) = match (
                required(p, "TransitGatewayRouteTableId"),
                required(p, "DestinationCidrBlock"),
                required(p, "TransitGatewayAttachmentId"),
            ) {
                (Ok(a), Ok(b), Ok(c)) => (a.to_owned(), b.to_owned(), c.to_owned()),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
            };
            let replace = action == "ReplaceTransitGatewayRoute";
            aws.with_state(|st| {
                let tgw = tgw_of_table(&table).to_owned();
                if !st.ec2.tgw_attachments.get(&att).is_some_and(|a| {
                    a.transit_gateway == tgw
                        || a.attached == (Attached::Peering { peer_transit_gateway: tgw.clone() })
                }) {
                    return Err(bad("InvalidTransitGatewayAttachmentID.NotFound", format!("Transit Gateway Attachment {att} does not exist on {tgw}.")));
                }
                let Some(t) = st.ec2.transit_gateways.get_mut(&tgw).filter(|t| t.region == region) else {
                    return Err(bad("InvalidRouteTableID.NotFound", format!("Transit Gateway Route Table {table} does not exist.")));
                };
                let at = t.static_routes.iter().position(|r| r.destination == dest);
                let r = Route { destination: dest.clone(), target: att };
                match (at, replace) {
                    (Some(_), false) => return Err(bad("RouteAlreadyExists", format!("Route {dest} already exists in Transit Gateway Route Table {table}."))),
                    (None, true) => return Err(bad("InvalidRoute.NotFound", format!("No route to {dest} in {table}."))),
                    (Some(i), true) => t.static_routes[i] = r.clone(),
                    (None, false) => t.static_routes.push(r.clone()),
                }
                Ok(format!("<route>{}</route>", tgw_route_xml(&r)))
            })
        }
        "SearchTransitGatewayRoutes" => {
            let table = p.get("TransitGatewayRouteTableId").unwrap_or_default();
            let f = filters(p);
            let items: String = aws.read(|st| {
                st.ec2
                    .transit_gateways
                    .get(tgw_of_table(table))
                    .filter(|t| t.region == region)
                    .map(|t| {
                        t.static_routes
                            .iter()
                            .filter(|r| {
                                passes(&f, &BTreeMap::new(), |n| match n {
                                    "route-search.exact-match" => Some(r.destination.clone()),
                                    "type" => Some("static".to_owned()),
                                    "state" => Some("active".to_owned()),
                                    _ => None,
                                })
                            })
                            .map(|r| format!("<item>{}</item>", tgw_route_xml(r)))
                            .collect()
                    })
                    .unwrap_or_default()
            });
            Ok(format!(
                "<routeSet>{items}</routeSet>{}",
                el("additionalRoutesAvailable", "false")
            ))
        }
        "CreateVpcPeeringConnection" => {
            let vpc = match required(p, "VpcId") {
                Ok(v) => v.to_owned(),
                Err(e) => return Some(Err(e)),
            };
            let peer = match required(p, "PeerVpcId") {
                Ok(v) => v.to_owned(),
                Err(e) => return Some(Err(e)),
            };
            let peer_region = p.get("PeerRegion").unwrap_or(region).to_owned();
            let tags = tags_of(p);
            aws.with_state(|st| {
                for (v, r) in [(&vpc, region), (&peer, peer_region.as_str())] {
                    if !st.ec2.vpcs.get(v).is_some_and(|x| x.region == r) {
                        return Err(bad(
                            "InvalidVpcID.NotFound",
                            format!("The vpc ID '{v}' does not exist in {r}"),
                        ));
                    }
                }
                let id = format!("pcx-{:017x}", 0x7f0_0000 + st.id());
                let pcx = VpcPeering {
                    requester_vpc: vpc,
                    accepter_vpc: peer,
                    status: "pending-acceptance".to_owned(),
                    region: region.to_owned(),
                    peer_region,
                    tags,
                };
                let vpcs = &st.ec2.vpcs;
                let xml = pcx_xml(&id, &pcx, |v| {
                    vpcs.get(v).map(|x| x.cidr.clone()).unwrap_or_default()
                });
                st.ec2.vpc_peerings.insert(id, pcx);
                Ok(format!(
                    "<vpcPeeringConnection>{xml}</vpcPeeringConnection>"
                ))
            })
        }
        "DescribeVpcPeeringConnections" => {
            let f = filters(p);
            let ids = p.list("VpcPeeringConnectionId");
            let items: String = aws.read(|st| {
                let vpcs = &st.ec2.vpcs;
                st.ec2
                    .vpc_peerings
                    .iter()
                    .filter(|(_, x)| x.region == region || x.peer_region == region)
                    .filter(|(id, _)| ids.is_empty() || ids.contains(&id.as_str()))
                    .map(|(id, x)| {
                        let mut x = x.clone();
                        if x.region != region {
                            x.tags.clear();
                        }
                        (id, x)
                    })
                    .filter(|(id, x)| {
                        passes(&f, &x.tags, |n| match n {
                            "status-code" => Some(x.status.clone()),
                            "vpc-peering-connection-id" => Some((*id).clone()),
                            _ => None,
                        })
                    })
                    .map(|(id, x)| {
                        format!(
                            "<item>{}</item>",
                            pcx_xml(id, &x, |v| vpcs
                                .get(v)
                                .map(|x| x.cidr.clone())
                                .unwrap_or_default())
                        )
                    })
                    .collect()
            });
            Ok(format!(
                "<vpcPeeringConnectionSet>{items}</vpcPeeringConnectionSet>"
            ))
        }
        "AcceptVpcPeeringConnection" => {
            let id = p
                .get("VpcPeeringConnectionId")
                .unwrap_or_default()
                .to_owned();
            aws.with_state(|st| {
                let Some(x) = st.ec2.vpc_peerings.get_mut(&id) else {
                    return Err(bad(
                        "InvalidVpcPeeringConnectionID.NotFound",
                        format!("The vpcPeeringConnection ID '{id}' does not exist"),
                    ));
                };
                if x.peer_region != region {
                    return Err(bad(
                        "OperationNotPermitted",
                        format!(
                            "Cannot accept {id} in {region}: accept it in the accepter's region {}",
                            x.peer_region
                        ),
                    ));
                }
                if x.status != "pending-acceptance" {
                    return Err(bad(
                        "InvalidStateTransition",
                        format!("{id} is {}, not pending-acceptance", x.status),
                    ));
                }
                x.status = "active".to_owned();
                let mut shown = x.clone();
                shown.tags.clear();
                let vpcs = &st.ec2.vpcs;
                Ok(format!(
                    "<vpcPeeringConnection>{}</vpcPeeringConnection>",
                    pcx_xml(&id, &shown, |v| vpcs
                        .get(v)
                        .map(|x| x.cidr.clone())
                        .unwrap_or_default())
                ))
            })
        }
        _ => return None,
    })
}

/// EC2's default quota of non-propagated routes in one route table (Amazon VPC quotas,
/// docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html).
const ROUTES_PER_TABLE: usize = 50;
/// The routes CAPA puts in a private subnet's table besides ours: `0.0.0.0/0` to the zone's NAT
/// gateway (kubernetes-sigs/cluster-api-provider-aws@v2.11.1,
/// `pkg/cloud/services/network/routetables.go`, `getNatGatewayPrivateRoute`); the `local` route
/// does not count against the quota.
const CAPA_ROUTES: usize = 1;

/// `CreateRoute` / `ReplaceRoute` in a VPC's route table, to a Transit Gateway (which must be
/// attached to that VPC, `available`) or a VPC peering connection of that VPC.
fn route(aws: &Aws, action: &str, p: &Params) -> Result<String> {
    let table = required(p, "RouteTableId")?.to_owned();
    let dest = required(p, "DestinationCidrBlock")?.to_owned();
    let target = p
        .get("TransitGatewayId")
        .or_else(|| p.get("VpcPeeringConnectionId"))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            bad(
                "MissingParameter",
                "a route needs a target: TransitGatewayId or VpcPeeringConnectionId",
            )
        })?
        .to_owned();
    let replace = action == "ReplaceRoute";
    aws.with_state(|st| {
        let Some((vpc, _)) = st.ec2.vpc_of_table(&table) else {
            return Err(bad("InvalidRouteTableID.NotFound", format!("The routeTable ID '{table}' does not exist")));
        };
        let vpc = vpc.clone();
        if target.starts_with("pcx-") {
            let ok = st.ec2.vpc_peerings.get(&target).is_some_and(|x| {
                (x.requester_vpc == vpc || x.accepter_vpc == vpc) && x.status != "rejected" && x.status != "deleted"
            });
            if !ok {
                return Err(bad("InvalidVpcPeeringConnectionID.NotFound", format!("The vpcPeeringConnection ID '{target}' does not exist for {vpc}")));
            }
        } else {
            let attached = st.ec2.tgw_attachments.values().any(|a| {
                a.transit_gateway == target && a.state == "available" && a.attached == (Attached::Vpc { vpc: vpc.clone() })
            });
            if !attached {
                return Err(bad("InvalidTransitGatewayID.NotFound", format!("The transitGateway ID '{target}' does not exist or is not attached to {vpc}")));
            }
        }
        let v = st.ec2.vpcs.get_mut(&vpc).expect("found above");
        let at = v.routes.iter().position(|r| r.destination == dest);
        // EC2's default quota: 50 non-propagated routes per route table (Amazon VPC quotas,
        // "Routes per route table"), refused with `RouteLimitExceeded`. CAPA's own routes (the
        // local route, the default route to the NAT gateway) are not kept here, so they are
        // counted apart.
        if at.is_none() && !replace && v.routes.len() + CAPA_ROUTES >= ROUTES_PER_TABLE {
            return Err(bad("RouteLimitExceeded", format!("The maximum number of routes ({ROUTES_PER_TABLE}) has been reached for route table {table}.")));
        }
        let r = Route { destination: dest.clone(), target };
        match (at, replace) {
            (Some(_), false) => return Err(bad("RouteAlreadyExists", format!("The route identified by {dest} already exists."))),
            (None, true) => return Err(bad("InvalidRoute.NotFound", format!("no route with destination-cidr-block {dest} in route table {table}"))),
            (Some(i), true) => v.routes[i] = r,
            (None, false) => v.routes.push(r),
        }
        Ok(el("return", "true"))
    })
}
