//! The EC2 actions of the interconnects, on the query protocol: `DescribeVpcs` (CAPA's VPCs,
//! `Filter.N.Name=tag-key`), `CreateTransitGateway`, `DescribeTransitGateways`,
//! `CreateCustomerGateway`, `DescribeCustomerGateways`, `CreateVpnConnection` (on a Transit
//! Gateway: its attachment is made and, with default propagation, propagates; tunnel inside
//! CIDRs and keys as given, outside addresses assigned), `DescribeVpnConnections` (with
//! `options.tunnelOptionSet`, which moto does not fill). Response element names follow the
//! aws-sdk-ec2 deserializers (`transitGatewaySet`, `options.associationDefaultRouteTableId`,
//! `customerGatewaySet`, `vpnConnectionSet`, `tunnelOptionSet.item.outsideIpAddress`).

use std::collections::BTreeMap;

use super::ec2net::{
    Attached, CustomerGateway, TgwAttachment, TransitGateway, VpnConnection, VpnTunnel,
};
use super::query::{Params, QueryError, el};
use super::{ACCOUNT, Aws};

type Result<T> = std::result::Result<T, QueryError>;

/// `TagSpecification.1.Tag.N.{Key,Value}`.
fn tags_of(p: &Params) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    for n in 1.. {
        let Some(k) = p.get(&format!("TagSpecification.1.Tag.{n}.Key")) else {
            break;
        };
        let v = p
            .get(&format!("TagSpecification.1.Tag.{n}.Value"))
            .unwrap_or("");
        t.insert(k.to_owned(), v.to_owned());
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

fn tgw_xml(id: &str, t: &TransitGateway) -> String {
    let on = |b: bool| if b { "enable" } else { "disable" };
    format!(
        "{}{}{}{}<options>{}{}{}{}{}{}</options>{}",
        el("transitGatewayId", id),
        el(
            "transitGatewayArn",
            &format!("arn:aws:ec2:{}:{ACCOUNT}:transit-gateway/{id}", t.region)
        ),
        el("state", &t.state),
        el("ownerId", ACCOUNT),
        el("amazonSideAsn", &t.amazon_side_asn.to_string()),
        el("associationDefaultRouteTableId", &format!("{id}-rtb")),
        el("propagationDefaultRouteTableId", &format!("{id}-rtb")),
        el("defaultRouteTableAssociation", "enable"),
        el("defaultRouteTablePropagation", on(t.default_propagation)),
        el("vpnEcmpSupport", "enable"),
        tag_set(&t.tags),
    )
}

fn cgw_xml(id: &str, c: &CustomerGateway) -> String {
    format!(
        "{}{}{}{}{}{}",
        el("customerGatewayId", id),
        el("state", &c.state),
        el("type", "ipsec.1"),
        el("ipAddress", &c.ip),
        el("bgpAsn", &c.bgp_asn.to_string()),
        tag_set(&c.tags),
    )
}

fn vpn_xml(id: &str, v: &VpnConnection) -> String {
    let tunnels: String = v
        .tunnels
        .iter()
        .map(|t| {
            format!(
                "<item>{}{}{}</item>",
                el("outsideIpAddress", &t.outside_ip),
                el("tunnelInsideCidr", &t.inside_cidr),
                el("preSharedKey", &t.psk)
            )
        })
        .collect();
    format!(
        "{}{}{}{}{}<options>{}<tunnelOptionSet>{tunnels}</tunnelOptionSet></options>{}",
        el("vpnConnectionId", id),
        el("state", &v.state),
        el("customerGatewayId", &v.customer_gateway),
        el("type", "ipsec.1"),
        el("transitGatewayId", &v.transit_gateway),
        el("staticRoutesOnly", "false"),
        tag_set(&v.tags),
    )
}

fn not_found(code: &str, id: &str) -> QueryError {
    QueryError::new(400, code, format!("The ID '{id}' does not exist"))
}

/// Handle `action` if it is one of these; `None` otherwise.
pub(super) fn handle(aws: &Aws, region: &str, action: &str, p: &Params) -> Option<Result<String>> {
    Some(match action {
        "DescribeVpcs" => {
            let mut keys = Vec::new();
            for n in 1.. {
                let Some(name) = p.get(&format!("Filter.{n}.Name")) else {
                    break;
                };
                if name == "tag-key" {
                    keys.extend(
                        p.list(&format!("Filter.{n}.Value"))
                            .into_iter()
                            .map(str::to_owned),
                    );
                }
            }
            let items: String = aws.read(|st| {
                st.ec2
                    .vpcs
                    .iter()
                    .filter(|(_, v)| v.region == region)
                    .filter_map(|(id, v)| {
                        let name = v.cluster.rsplit('/').next().unwrap_or(&v.cluster);
                        let tag = format!("sigs.k8s.io/cluster-api-provider-aws/cluster/{name}");
                        (keys.is_empty() || keys.contains(&tag)).then(|| {
                            let mut t = BTreeMap::new();
                            t.insert(tag, "owned".to_owned());
                            format!(
                                "<item>{}{}{}{}</item>",
                                el("vpcId", id),
                                el("state", "available"),
                                el("cidrBlock", &v.cidr),
                                tag_set(&t)
                            )
                        })
                    })
                    .collect()
            });
            Ok(format!("<vpcSet>{items}</vpcSet>"))
        }
        "CreateTransitGateway" => {
            let asn = match p.get("Options.AmazonSideAsn").map(str::parse::<u32>) {
                None => 64512,
                Some(Ok(a)) => a,
                Some(Err(_)) => {
                    return Some(Err(QueryError::new(
                        400,
                        "InvalidParameterValue",
                        "Options.AmazonSideAsn is not a number",
                    )));
                }
            };
            let t = TransitGateway {
                region: region.to_owned(),
                state: "available".to_owned(),
                amazon_side_asn: asn,
                default_propagation: p.get("Options.DefaultRouteTablePropagation")
                    != Some("disable"),
                tags: tags_of(p),
                ..Default::default()
            };
            let xml = aws.with_state(|st| {
                let id = format!("tgw-{:017x}", 0x7a0_0000 + st.id());
                let xml = tgw_xml(&id, &t);
                st.ec2.transit_gateways.insert(id, t);
                xml
            });
            Ok(format!("<transitGateway>{xml}</transitGateway>"))
        }
        "DescribeTransitGateways" => {
            let ids = p.list("TransitGatewayIds");
            let items: String = aws.read(|st| {
                st.ec2
                    .transit_gateways
                    .iter()
                    .filter(|(id, t)| {
                        t.region == region && (ids.is_empty() || ids.contains(&id.as_str()))
                    })
                    .map(|(id, t)| format!("<item>{}</item>", tgw_xml(id, t)))
                    .collect()
            });
            Ok(format!("<transitGatewaySet>{items}</transitGatewaySet>"))
        }
        "CreateCustomerGateway" => {
            let (Some(ip), Some(asn)) = (
                p.get("IpAddress").or_else(|| p.get("PublicIp")),
                p.get("BgpAsn").and_then(|a| a.parse::<u32>().ok()),
            ) else {
                return Some(Err(QueryError::new(
                    400,
                    "MissingParameter",
                    "IpAddress and BgpAsn are required",
                )));
            };
            let c = CustomerGateway {
                region: region.to_owned(),
                ip: ip.to_owned(),
                bgp_asn: asn,
                state: "available".to_owned(),
                tags: tags_of(p),
            };
            let xml = aws.with_state(|st| {
                let id = format!("cgw-{:017x}", 0x7b0_0000 + st.id());
                let xml = cgw_xml(&id, &c);
                st.ec2.customer_gateways.insert(id, c);
                xml
            });
            Ok(format!("<customerGateway>{xml}</customerGateway>"))
        }
        "DescribeCustomerGateways" => {
            let ids = p.list("CustomerGatewayId");
            let items: String = aws.read(|st| {
                st.ec2
                    .customer_gateways
                    .iter()
                    .filter(|(id, c)| {
                        c.region == region && (ids.is_empty() || ids.contains(&id.as_str()))
                    })
                    .map(|(id, c)| format!("<item>{}</item>", cgw_xml(id, c)))
                    .collect()
            });
            Ok(format!("<customerGatewaySet>{items}</customerGatewaySet>"))
        }
        "CreateVpnConnection" => {
            let cgw = p.get("CustomerGatewayId").unwrap_or("").to_owned();
            let tgw = p.get("TransitGatewayId").unwrap_or("").to_owned();
            let tags = tags_of(p);
            let given: Vec<(String, String)> = (1..=2)
                .map(|k| {
                    let o = format!("Options.TunnelOptions.{k}");
                    (
                        p.get(&format!("{o}.TunnelInsideCidr"))
                            .unwrap_or("")
                            .to_owned(),
                        p.get(&format!("{o}.PreSharedKey")).unwrap_or("").to_owned(),
                    )
                })
                .collect();
            aws.with_state(|st| {
                if !st.ec2.customer_gateways.contains_key(&cgw) {
                    return Err(not_found("InvalidCustomerGatewayID.NotFound", &cgw));
                }
                if !st.ec2.transit_gateways.contains_key(&tgw) {
                    return Err(not_found("InvalidTransitGatewayID.NotFound", &tgw));
                }
                let n = st.id();
                let id = format!("vpn-{:017x}", 0x7d0_0000 + n);
                let tunnels: Vec<VpnTunnel> = given
                    .iter()
                    .enumerate()
                    .map(|(k, (inside, psk))| VpnTunnel {
                        // AWS's endpoints: public addresses it picks (documentation range here).
                        outside_ip: format!("203.0.113.{}", (2 * n + k as u64) % 250 + 1),
                        // AWS picks an inside /30 and a key when none is given.
                        inside_cidr: if inside.is_empty() {
                            format!("169.254.{}.{}/30", 100 + n % 100, 4 * k)
                        } else {
                            inside.clone()
                        },
                        psk: if psk.is_empty() {
                            format!("awsgenerated{n}x{k}")
                        } else {
                            psk.clone()
                        },
                        ike_versions: vec!["ikev2".to_owned()],
                    })
                    .collect();
                let v = VpnConnection {
                    region: region.to_owned(),
                    customer_gateway: cgw.clone(),
                    transit_gateway: tgw.clone(),
                    state: "available".to_owned(),
                    tunnels,
                    tags,
                };
                let xml = vpn_xml(&id, &v);
                let att = format!("tgw-attach-{:017x}", 0x7e0_0000 + st.id());
                st.ec2.tgw_attachments.insert(
                    att.clone(),
                    TgwAttachment {
                        transit_gateway: tgw.clone(),
                        attached: Attached::Vpn { vpn: id.clone() },
                        state: "available".to_owned(),
                        region: region.to_owned(),
                        ..Default::default()
                    },
                );
                if let Some(t) = st.ec2.transit_gateways.get_mut(&tgw)
                    && t.default_propagation
                {
                    t.propagations.insert(att);
                }
                st.ec2.vpn_connections.insert(id, v);
                Ok(format!("<vpnConnection>{xml}</vpnConnection>"))
            })
        }
        "DescribeVpnConnections" => {
            let ids = p.list("VpnConnectionId");
            let items: String = aws.read(|st| {
                st.ec2
                    .vpn_connections
                    .iter()
                    .filter(|(id, v)| {
                        v.region == region && (ids.is_empty() || ids.contains(&id.as_str()))
                    })
                    .map(|(id, v)| format!("<item>{}</item>", vpn_xml(id, v)))
                    .collect()
            });
            Ok(format!("<vpnConnectionSet>{items}</vpnConnectionSet>"))
        }
        "ModifyVpnTunnelOptions" => {
            // The tunnel is named by its outside address; only the options given change.
            let id = p.get("VpnConnectionId").unwrap_or("").to_owned();
            let outside = p.get("VpnTunnelOutsideIpAddress").unwrap_or("").to_owned();
            let psk = p.get("TunnelOptions.PreSharedKey").map(str::to_owned);
            let inside = p.get("TunnelOptions.TunnelInsideCidr").map(str::to_owned);
            aws.with_state(|st| {
                let Some(v) = st.ec2.vpn_connections.get_mut(&id) else {
                    return Err(not_found("InvalidVpnConnectionID.NotFound", &id));
                };
                let Some(t) = v.tunnels.iter_mut().find(|t| t.outside_ip == outside) else {
                    return Err(QueryError::new(
                        400,
                        "InvalidParameterValue",
                        format!("VPN connection {id} has no tunnel with outside address {outside}"),
                    ));
                };
                if let Some(k) = psk {
                    t.psk = k;
                }
                if let Some(c) = inside {
                    t.inside_cidr = c;
                }
                Ok(format!(
                    "<vpnConnection>{}</vpnConnection>",
                    vpn_xml(&id, v)
                ))
            })
        }
        _ => return None,
    })
}
