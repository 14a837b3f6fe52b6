//! Goldens of the requests the links need, for mixed fleets, and the properties every plan of
//! steps keeps: order across clouds, no key in any body, one request per resource.

use meshfleet_net::desired::{Cloud, Step, steps, tunnel_names};
use meshfleet_net::secrets::Secrets;
use meshfleet_spec::Fleet;

fn fleet(text: &str) -> Fleet {
    meshfleet_spec::parse(text)
        .unwrap_or_else(|r| panic!("{:#?}", r.errors))
        .fleet
}

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .unwrap()
}

fn plan_steps(f: &Fleet) -> (Vec<Step>, Secrets) {
    let p = meshfleet_plan::plan(f, None).unwrap_or_else(|r| panic!("{:#?}", r.errors));
    let mut secrets = Secrets::default();
    secrets.ensure(&tunnel_names(f, &p).unwrap()).unwrap();
    (steps(f, &p, &secrets).unwrap(), secrets)
}

fn position(s: &[Step], prefix: &str) -> usize {
    s.iter()
        .position(|x| x.id.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix}"))
}

#[test]
fn example_fleet_ha_vpn_steps() {
    let f = fleet(&example());
    let (s, secrets) = plan_steps(&f);
    // GCP gateway → AWS side → GCP peer gateway, tunnels, BGP; routes last.
    let gw = position(&s, "gcp/europe-west1/vpnGateways/");
    let cgw = position(&s, "aws/eu-west-1/cgw/");
    let vpn = position(&s, "aws/eu-west-1/vpn/");
    let ext = position(&s, "gcp/global/externalVpnGateways/");
    let tun = position(&s, "gcp/europe-west1/vpnTunnels/");
    let bgp = s.iter().position(|x| x.id.ends_with("/bgp")).unwrap();
    let route = position(&s, "aws/eu-west-1/route/");
    assert!(gw < cgw && cgw < vpn && vpn < ext && ext < tun && tun < bgp && bgp < route);
    // The HA gateway for eu-west-1 is in Europe.
    assert_eq!(s[gw].region, "europe-west1");
    assert_eq!(
        s.iter().filter(|x| x.action == "vpnTunnels.insert").count(),
        4
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateVpnConnection")
            .count(),
        2
    );
    // Keys are referenced, never copied.
    let text = serde_json::to_string(&s).unwrap();
    for t in secrets.tunnels.values() {
        assert!(!text.contains(&t.psk));
    }
    insta::assert_yaml_snapshot!("example_ha_vpn", s);
}

const AWS3: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: tri }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { awsCrossRegion: VIA }\n  providers: { aws: {} }\n  clusters:\n    - { name: use1, provider: aws, region: us-east-1, zones: [us-east-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1, provider: aws, region: eu-west-1, zones: [eu-west-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1b, provider: aws, region: eu-west-1, zones: [eu-west-1b], controlPlane: { replicas: 1, machineType: m6i.large } }\n";

#[test]
fn transit_gateways_in_two_regions_with_two_vpcs_in_one() {
    let f = fleet(&AWS3.replace("VIA", "transitGateway"));
    let (s, _) = plan_steps(&f);
    assert!(s.iter().all(|x| x.cloud == Cloud::Aws));
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateTransitGateway")
            .count(),
        2
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateTransitGatewayVpcAttachment")
            .count(),
        3
    );
    // One peering between the two regions, requested from eu-west-1, accepted in us-east-1.
    let peer: Vec<&Step> = s
        .iter()
        .filter(|x| x.action.contains("PeeringAttachment"))
        .collect();
    assert_eq!(peer.len(), 2);
    assert_eq!(
        (peer[0].region.as_str(), peer[1].region.as_str()),
        ("eu-west-1", "us-east-1")
    );
    let mut ids: Vec<&str> = s.iter().map(|x| x.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), s.len(), "one request per resource");
    insta::assert_yaml_snapshot!("aws_transit_gateway", s);
}

#[test]
fn vpc_peering_for_every_pair() {
    let f = fleet(&AWS3.replace("VIA", "vpcPeering"));
    let (s, _) = plan_steps(&f);
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateVpcPeeringConnection")
            .count(),
        3
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "AcceptVpcPeeringConnection")
            .count(),
        3
    );
    assert_eq!(s.iter().filter(|x| x.action == "CreateRoute").count(), 6);
    insta::assert_yaml_snapshot!("aws_vpc_peering", s);
}

#[test]
fn existing_links_need_no_step() {
    let f = fleet(&AWS3.replace("VIA", "existing"));
    assert!(plan_steps(&f).0.is_empty());
    let f = fleet(&example().replace("gcpToAws: haVpn", "gcpToAws: existing"));
    assert!(plan_steps(&f).0.is_empty());
}
