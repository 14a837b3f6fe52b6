//! Tests of the network model: a consistent HA VPN and each way of breaking it; VPC peering
//! and Transit Gateway paths between AWS VPCs; outages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use serde_json::{Value, json};

use super::*;
use crate::aws::ec2net::{
    Attached, CustomerGateway, Ec2Net, Route, TgwAttachment, TransitGateway, Vpc, VpcPeering,
    VpnConnection, VpnTunnel,
};

const L: &str = "https://www.googleapis.com/compute/v1/projects/p/";

fn gcp_infra() -> Value {
    json!({"kind": "GCPCluster", "metadata": {"namespace": "ns", "name": "gcp-euw1"},
        "spec": {"project": "p", "network": {"name": "meshfleet"}}})
}

fn aws_infra(name: &str, region: &str) -> Value {
    json!({"kind": "AWSCluster", "metadata": {"namespace": "ns", "name": name},
        "spec": {"region": region}})
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

const GCIDR: &str = "10.0.0.0/20";
const ACIDR: &str = "10.0.32.0/20";

/// GCP's half of a consistent HA VPN to AWS: gateway, external gateway, router with four
/// interfaces and BGP peers, four tunnels.
fn gcp_side() -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    m.insert(
        "regions/europe-west1/vpnGateways/gw".into(),
        json!({"name": "gw", "network": format!("{L}global/networks/meshfleet"),
            "vpnInterfaces": [{"id": 0, "ipAddress": "35.242.0.1"}, {"id": 1, "ipAddress": "35.243.0.1"}]}),
    );
    m.insert(
        "global/externalVpnGateways/aws".into(),
        json!({"name": "aws", "redundancyType": "FOUR_IPS_REDUNDANCY", "interfaces": [
            {"id": 0, "ipAddress": "52.0.0.1"}, {"id": 1, "ipAddress": "52.0.0.2"},
            {"id": 2, "ipAddress": "52.0.0.3"}, {"id": 3, "ipAddress": "52.0.0.4"}]}),
    );
    let mut ifaces = Vec::new();
    let mut peers = Vec::new();
    for i in 0..4 {
        let t = format!("regions/europe-west1/vpnTunnels/t{i}");
        m.insert(
            t.clone(),
            json!({"name": format!("t{i}"), "vpnGateway": format!("{L}regions/europe-west1/vpnGateways/gw"),
                "vpnGatewayInterface": i / 2, "peerExternalGateway": format!("{L}global/externalVpnGateways/aws"),
                "peerExternalGatewayInterface": i, "sharedSecret": format!("psk{i}"), "ikeVersion": 2,
                "router": format!("{L}regions/europe-west1/routers/r")}),
        );
        ifaces.push(
            json!({"name": format!("if-{i}"), "linkedVpnTunnel": format!("{L}{t}"),
            "ipRange": format!("169.254.1{i}.2/30")}),
        );
        peers.push(
            json!({"name": format!("peer-{i}"), "interfaceName": format!("if-{i}"),
            "peerIpAddress": format!("169.254.1{i}.1"), "peerAsn": 64512}),
        );
    }
    m.insert(
        "regions/europe-west1/routers/r".into(),
        json!({"name": "r", "network": format!("{L}global/networks/meshfleet"),
            "bgp": {"asn": 65010}, "interfaces": ifaces, "bgpPeers": peers}),
    );
    m
}

fn vpc(cluster: &str, region: &str, cidr: &str, routes: &[(&str, &str)]) -> Vpc {
    Vpc {
        region: region.into(),
        cidr: cidr.into(),
        cluster: format!("ns/{cluster}"),
        routes: routes
            .iter()
            .map(|(d, t)| Route {
                destination: (*d).into(),
                target: (*t).into(),
            })
            .collect(),
    }
}

fn tgw(region: &str, props: &[&str]) -> TransitGateway {
    TransitGateway {
        region: region.into(),
        state: "available".into(),
        amazon_side_asn: 64512,
        static_routes: vec![],
        propagations: props.iter().map(|p| (*p).to_string()).collect(),
        ..Default::default()
    }
}

fn att(tgw: &str, attached: Attached, state: &str) -> TgwAttachment {
    TgwAttachment {
        transit_gateway: tgw.into(),
        attached,
        state: state.into(),
        ..Default::default()
    }
}

/// AWS's half: the VPC on a Transit Gateway with two VPN connections, everything propagating.
fn aws_side() -> Ec2Net {
    let mut e = Ec2Net::default();
    e.vpcs.insert(
        "vpc-a".into(),
        vpc("aws-euw1", "eu-west-1", ACIDR, &[("10.0.0.0/19", "tgw-1")]),
    );
    e.transit_gateways.insert(
        "tgw-1".into(),
        tgw("eu-west-1", &["att-vpc", "att-vpn-a", "att-vpn-b"]),
    );
    e.tgw_attachments.insert(
        "att-vpc".into(),
        att(
            "tgw-1",
            Attached::Vpc {
                vpc: "vpc-a".into(),
            },
            "available",
        ),
    );
    for x in ["a", "b"] {
        e.tgw_attachments.insert(
            format!("att-vpn-{x}"),
            att(
                "tgw-1",
                Attached::Vpn {
                    vpn: format!("vpn-{x}"),
                },
                "available",
            ),
        );
    }
    for (x, ip) in [("a", "35.242.0.1"), ("b", "35.243.0.1")] {
        e.customer_gateways.insert(
            format!("cgw-{x}"),
            CustomerGateway {
                region: "eu-west-1".into(),
                ip: ip.into(),
                bgp_asn: 65010,
                state: "available".into(),
                ..Default::default()
            },
        );
    }
    let tunnel = |i: usize| VpnTunnel {
        outside_ip: format!("52.0.0.{}", i + 1),
        inside_cidr: format!("169.254.1{i}.0/30"),
        psk: format!("psk{i}"),
        ike_versions: vec!["ikev2".into()],
    };
    for (x, first) in [("a", 0), ("b", 2)] {
        e.vpn_connections.insert(
            format!("vpn-{x}"),
            VpnConnection {
                region: "eu-west-1".into(),
                customer_gateway: format!("cgw-{x}"),
                transit_gateway: "tgw-1".into(),
                state: "available".into(),
                tunnels: vec![tunnel(first), tunnel(first + 1)],
                ..Default::default()
            },
        );
    }
    e
}

fn paths(separate: bool, ec2: Ec2Net, gcp: BTreeMap<String, Value>) -> Paths {
    let mut g = HashMap::new();
    g.insert("p".to_string(), gcp);
    Paths::new(separate, ec2, g, BTreeSet::new())
}

fn gcp_aws(p: &Paths) -> Result<(), String> {
    let r = p.reach(
        &gcp_infra(),
        &net(GCIDR),
        &aws_infra("aws-euw1", "eu-west-1"),
        &net(ACIDR),
    );
    // Either direction gives the same verdict.
    let back = p.reach(
        &aws_infra("aws-euw1", "eu-west-1"),
        &net(ACIDR),
        &gcp_infra(),
        &net(GCIDR),
    );
    assert_eq!(r, back);
    r
}

fn err(r: Result<(), String>) -> String {
    r.expect_err("expected the link to be down")
}

#[test]
fn networks_reach_each_other_when_not_separate() {
    let p = paths(false, Ec2Net::default(), BTreeMap::new());
    assert_eq!(gcp_aws(&p), Ok(()));
}

#[test]
fn gcp_and_aws_are_separate_without_a_link() {
    let mut e = Ec2Net::default();
    e.vpcs
        .insert("vpc-a".into(), vpc("aws-euw1", "eu-west-1", ACIDR, &[]));
    let why = err(gcp_aws(&paths(true, e, BTreeMap::new())));
    assert!(
        why.contains("no link between `gcp:p/meshfleet` and `aws:eu-west-1/aws-euw1`"),
        "{why}"
    );
    // Before CAPA made the VPC there is nothing to join.
    let why = err(gcp_aws(&paths(true, Ec2Net::default(), BTreeMap::new())));
    assert!(why.contains("has no VPC yet"), "{why}");
}

#[test]
fn a_consistent_ha_vpn_joins_gcp_and_aws() {
    assert_eq!(gcp_aws(&paths(true, aws_side(), gcp_side())), Ok(()));
}

#[test]
fn one_side_only_says_which_side_is_missing() {
    let why = err(gcp_aws(&paths(true, aws_side(), BTreeMap::new())));
    assert!(why.contains("missing its GCP side"), "{why}");
    let mut e = aws_side();
    e.vpn_connections.clear();
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(
        why.contains("missing its AWS side") && why.contains("no VPN connection"),
        "{why}"
    );
    let mut e = aws_side();
    e.tgw_attachments.remove("att-vpc");
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(why.contains("attached to no Transit Gateway"), "{why}");
}

#[test]
fn one_broken_tunnel_of_four_keeps_the_link_up_all_broken_take_it_down() {
    let mut g = gcp_side();
    g.get_mut("regions/europe-west1/vpnTunnels/t0").unwrap()["sharedSecret"] = json!("wrong");
    assert_eq!(gcp_aws(&paths(true, aws_side(), g.clone())), Ok(()));
    for i in 1..4 {
        g.get_mut(&format!("regions/europe-west1/vpnTunnels/t{i}"))
            .unwrap()["sharedSecret"] = json!("wrong");
    }
    let why = err(gcp_aws(&paths(true, aws_side(), g)));
    assert!(why.contains("pre-shared keys differ"), "{why}");
}

/// Apply `f` to every tunnel-related piece so that no tunnel survives, and return the cause.
fn break_gcp(f: impl Fn(&mut BTreeMap<String, Value>)) -> String {
    let mut g = gcp_side();
    f(&mut g);
    err(gcp_aws(&paths(true, aws_side(), g)))
}

#[test]
fn inconsistent_gcp_settings_are_named() {
    let router = "regions/europe-west1/routers/r";
    let why = break_gcp(|g| g.get_mut(router).unwrap()["bgp"]["asn"] = json!(65999));
    assert!(why.contains("ASN 65999") && why.contains("65010"), "{why}");
    let why = break_gcp(|g| g.get_mut(router).unwrap()["bgpPeers"] = json!([]));
    assert!(why.contains("no BGP peer on interface"), "{why}");
    let why = break_gcp(|g| {
        for p in g.get_mut(router).unwrap()["bgpPeers"]
            .as_array_mut()
            .unwrap()
        {
            p["peerAsn"] = json!(64999);
        }
    });
    assert!(why.contains("expects ASN 64999"), "{why}");
    let why = break_gcp(|g| {
        for i in g.get_mut(router).unwrap()["interfaces"]
            .as_array_mut()
            .unwrap()
        {
            i["ipRange"] = json!("169.254.99.2/30");
        }
    });
    assert!(why.contains("inside CIDR"), "{why}");
    let why = break_gcp(|g| {
        for p in g.get_mut(router).unwrap()["bgpPeers"]
            .as_array_mut()
            .unwrap()
        {
            p["peerIpAddress"] = json!("169.254.99.1");
        }
    });
    assert!(why.contains("dials 169.254.99.1"), "{why}");
    let why = break_gcp(|g| g.get_mut(router).unwrap()["interfaces"] = json!([]));
    assert!(why.contains("no interface for tunnel"), "{why}");
    let why = break_gcp(|g| {
        for i in 0..4 {
            g.get_mut(&format!("regions/europe-west1/vpnTunnels/t{i}"))
                .unwrap()["ikeVersion"] = json!(1);
        }
    });
    assert!(why.contains("IKEv2"), "{why}");
    // Peer addresses: the external gateway points at addresses AWS does not have.
    let why = break_gcp(|g| {
        for i in g.get_mut("global/externalVpnGateways/aws").unwrap()["interfaces"]
            .as_array_mut()
            .unwrap()
        {
            i["ipAddress"] = json!("52.9.9.9");
        }
    });
    assert!(why.contains("has no GCP tunnel"), "{why}");
}

#[test]
fn inconsistent_aws_settings_are_named() {
    let mut e = aws_side();
    for c in e.customer_gateways.values_mut() {
        c.ip = "198.51.100.7".into();
    }
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(why.contains("customer gateway says 198.51.100.7"), "{why}");

    let mut e = aws_side();
    e.transit_gateways
        .get_mut("tgw-1")
        .unwrap()
        .propagations
        .remove("att-vpn-a");
    e.transit_gateways
        .get_mut("tgw-1")
        .unwrap()
        .propagations
        .remove("att-vpn-b");
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(
        why.contains("does not propagate into Transit Gateway tgw-1"),
        "{why}"
    );

    let mut e = aws_side();
    e.transit_gateways
        .get_mut("tgw-1")
        .unwrap()
        .propagations
        .remove("att-vpc");
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(why.contains("does not route"), "{why}");

    let mut e = aws_side();
    e.vpcs.get_mut("vpc-a").unwrap().routes.clear();
    let why = err(gcp_aws(&paths(true, e, gcp_side())));
    assert!(
        why.contains("has no route to `gcp:p/meshfleet` nodes (10.0.0.0/20)"),
        "{why}"
    );
}

fn aws_aws(p: &Paths, a: (&str, &str, &str), b: (&str, &str, &str)) -> Result<(), String> {
    let r = p.reach(
        &aws_infra(a.0, a.1),
        &net(a.2),
        &aws_infra(b.0, b.1),
        &net(b.2),
    );
    let back = p.reach(
        &aws_infra(b.0, b.1),
        &net(b.2),
        &aws_infra(a.0, a.1),
        &net(a.2),
    );
    assert_eq!(r, back);
    r
}

const EU: (&str, &str, &str) = ("eu", "eu-west-1", "10.0.32.0/20");
const US: (&str, &str, &str) = ("us", "us-east-1", "10.0.48.0/20");
const EU2: (&str, &str, &str) = ("eu2", "eu-west-1", "10.0.64.0/20");

#[test]
fn vpc_peering_must_be_active_and_routed_both_ways() {
    let mut e = Ec2Net::default();
    e.vpcs
        .insert("vpc-eu".into(), vpc("eu", EU.1, EU.2, &[(US.2, "pcx-1")]));
    e.vpcs.insert("vpc-us".into(), vpc("us", US.1, US.2, &[]));
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(
        why.contains("no VPC peering") && why.contains("no Transit Gateway"),
        "{why}"
    );
    e.vpc_peerings.insert(
        "pcx-1".into(),
        VpcPeering {
            requester_vpc: "vpc-eu".into(),
            accepter_vpc: "vpc-us".into(),
            status: "pending-acceptance".into(),
            ..Default::default()
        },
    );
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(why.contains("`pending-acceptance`, not active"), "{why}");
    e.vpc_peerings.get_mut("pcx-1").unwrap().status = "active".into();
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(
        why.contains("VPC vpc-us of `aws:us-east-1/us` has no route"),
        "{why}"
    );
    e.vpcs.get_mut("vpc-us").unwrap().routes.push(Route {
        destination: EU.2.into(),
        target: "pcx-1".into(),
    });
    assert_eq!(aws_aws(&paths(true, e, BTreeMap::new()), EU, US), Ok(()));
}

#[test]
fn one_transit_gateway_joins_two_vpcs_of_a_region() {
    let mut e = Ec2Net::default();
    e.vpcs
        .insert("vpc-eu".into(), vpc("eu", EU.1, EU.2, &[(EU2.2, "tgw-eu")]));
    e.vpcs.insert(
        "vpc-eu2".into(),
        vpc("eu2", EU2.1, EU2.2, &[("10.0.0.0/14", "tgw-eu")]),
    );
    e.transit_gateways
        .insert("tgw-eu".into(), tgw(EU.1, &["att-eu"]));
    e.tgw_attachments.insert(
        "att-eu".into(),
        att(
            "tgw-eu",
            Attached::Vpc {
                vpc: "vpc-eu".into(),
            },
            "available",
        ),
    );
    e.tgw_attachments.insert(
        "att-eu2".into(),
        att(
            "tgw-eu",
            Attached::Vpc {
                vpc: "vpc-eu2".into(),
            },
            "available",
        ),
    );
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, EU2));
    assert!(why.contains("no route to `aws:eu-west-1/eu2`"), "{why}");
    e.transit_gateways
        .get_mut("tgw-eu")
        .unwrap()
        .propagations
        .insert("att-eu2".into());
    assert_eq!(aws_aws(&paths(true, e, BTreeMap::new()), EU, EU2), Ok(()));
}

#[test]
fn peered_transit_gateways_need_acceptance_and_static_routes() {
    let mut e = Ec2Net::default();
    e.vpcs
        .insert("vpc-eu".into(), vpc("eu", EU.1, EU.2, &[(US.2, "tgw-eu")]));
    e.vpcs
        .insert("vpc-us".into(), vpc("us", US.1, US.2, &[(EU.2, "tgw-us")]));
    e.transit_gateways
        .insert("tgw-eu".into(), tgw(EU.1, &["att-eu"]));
    e.transit_gateways
        .insert("tgw-us".into(), tgw(US.1, &["att-us"]));
    e.tgw_attachments.insert(
        "att-eu".into(),
        att(
            "tgw-eu",
            Attached::Vpc {
                vpc: "vpc-eu".into(),
            },
            "available",
        ),
    );
    e.tgw_attachments.insert(
        "att-us".into(),
        att(
            "tgw-us",
            Attached::Vpc {
                vpc: "vpc-us".into(),
            },
            "available",
        ),
    );
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(
        why.contains("no Transit Gateway peering attachment"),
        "{why}"
    );
    e.tgw_attachments.insert(
        "att-peer".into(),
        att(
            "tgw-eu",
            Attached::Peering {
                peer_transit_gateway: "tgw-us".into(),
            },
            "pendingAcceptance",
        ),
    );
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(why.contains("not accepted"), "{why}");
    e.tgw_attachments.get_mut("att-peer").unwrap().state = "available".into();
    let why = err(aws_aws(&paths(true, e.clone(), BTreeMap::new()), EU, US));
    assert!(
        why.contains("no static route") && why.contains("do not propagate"),
        "{why}"
    );
    for (t, cidr) in [("tgw-eu", US.2), ("tgw-us", EU.2)] {
        e.transit_gateways
            .get_mut(t)
            .unwrap()
            .static_routes
            .push(Route {
                destination: cidr.into(),
                target: "att-peer".into(),
            });
    }
    assert_eq!(aws_aws(&paths(true, e, BTreeMap::new()), EU, US), Ok(()));
}

#[test]
fn an_outage_takes_a_link_down_whatever_the_clouds_hold() {
    let mut down = BTreeSet::new();
    let a = NodeNet::of(&gcp_infra()).unwrap();
    let b = NodeNet::of(&aws_infra("aws-euw1", "eu-west-1")).unwrap();
    assert_eq!(b.id(), "aws:eu-west-1/aws-euw1");
    down.insert(pair(a, b));
    let mut g = HashMap::new();
    g.insert("p".to_string(), gcp_side());
    for separate in [false, true] {
        let p = Paths::new(separate, aws_side(), g.clone(), down.clone());
        let why = err(gcp_aws(&p));
        assert!(why.contains("simulated outage"), "{why}");
    }
}

#[test]
fn nodes_of_one_network_always_reach_each_other() {
    let p = paths(true, Ec2Net::default(), BTreeMap::new());
    let mut other = gcp_infra();
    other["metadata"]["name"] = json!("gcp-use1");
    assert_eq!(
        p.reach(&gcp_infra(), &net(GCIDR), &other, &net("10.0.16.0/20")),
        Ok(())
    );
    let mut elsewhere = gcp_infra();
    elsewhere["spec"]["network"]["name"] = json!("other");
    let why = err(p.reach(&gcp_infra(), &net(GCIDR), &elsewhere, &net("10.0.16.0/20")));
    assert!(why.contains("separate GCP networks"), "{why}");
}

#[test]
fn compute_links_become_relative_paths() {
    assert_eq!(
        rel(&format!("{L}regions/r/vpnTunnels/t")),
        "regions/r/vpnTunnels/t"
    );
    assert_eq!(
        rel("projects/p/global/externalVpnGateways/x"),
        "global/externalVpnGateways/x"
    );
    assert_eq!(rel("regions/r/routers/x"), "regions/r/routers/x");
}

#[test]
fn every_gcp_subnet_needs_its_own_route_into_the_vpc() {
    let p = paths(true, aws_side(), gcp_side());
    let aws = aws_infra("aws-euw1", "eu-west-1");
    // 10.0.0.0/19 covers both GCP subnets; a route for only the first leaves the second apart.
    assert_eq!(
        p.reach(&gcp_infra(), &net("10.0.16.0/20"), &aws, &net(ACIDR)),
        Ok(())
    );
    let mut e = aws_side();
    e.vpcs.get_mut("vpc-a").unwrap().routes = vec![Route {
        destination: GCIDR.into(),
        target: "tgw-1".into(),
    }];
    let p = paths(true, e, gcp_side());
    assert_eq!(
        p.reach(&gcp_infra(), &net(GCIDR), &aws, &net(ACIDR)),
        Ok(())
    );
    let why = err(p.reach(&gcp_infra(), &net("10.0.16.0/20"), &aws, &net(ACIDR)));
    assert!(why.contains("10.0.16.0/20"), "{why}");
}
