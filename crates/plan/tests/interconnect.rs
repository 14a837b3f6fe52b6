//! Planning the links between node networks for mixed fleets (issue #15): GCP only, GCP + AWS in
//! one region, AWS in three regions, two AWS VPCs in one region; `existing` links.

mod common;

use common::fleet;
use meshfleet_plan::{InterconnectNeed, LinkKind, Plan, plan};
use meshfleet_spec::{Fleet, Provider};

fn ok(f: &Fleet) -> Plan {
    plan(f, None).unwrap_or_else(|r| panic!("plan failed: {:#?}", r.errors))
}

fn summary(p: &Plan) -> Vec<(String, LinkKind, [String; 2], Option<String>)> {
    p.interconnects
        .iter()
        .map(|n| (n.name.clone(), n.kind, n.between.clone(), n.via.clone()))
        .collect()
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[test]
fn gcp_only_needs_no_link_and_no_warning() {
    let p = ok(&fleet(
        "",
        &[
            ("a", "gcp", "europe-west1"),
            ("b", "gcp", "us-east1"),
            ("c", "gcp", "asia-east1"),
        ],
    ));
    assert!(p.interconnects.is_empty());
    assert!(p.warnings.is_empty());
    // The plan's JSON for a GCP-only fleet keeps its shape: an empty list.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["interconnects"], serde_json::json!([]));
}

#[test]
fn gcp_and_aws_in_one_region_need_one_vpn_link_per_aws_vpc() {
    let p = ok(&fleet(
        "  interconnect: { gcpToAws: haVpn }\n",
        &[
            ("g1", "gcp", "europe-west1"),
            ("g2", "gcp", "us-east1"),
            ("a1", "aws", "eu-west-1"),
        ],
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        summary(&p),
        [(
            s("meshfleet--a1"),
            LinkKind::GcpToAws,
            [s("gcp:meshfleet"), s("aws:eu-west-1/a1")],
            Some(s("haVpn"))
        )]
    );
    let n = &p.interconnects[0];
    // The GCP end carries every GCP cluster and their node CIDRs, the AWS end its VPC's.
    assert_eq!(n.ends[0].provider, Provider::Gcp);
    assert_eq!(n.ends[0].clusters, [s("g1"), s("g2")]);
    assert_eq!(
        n.ends[0].nodes,
        [
            p.cluster("g1").unwrap().network.nodes,
            p.cluster("g2").unwrap().network.nodes
        ]
    );
    assert_eq!(n.ends[1].region.as_deref(), Some("eu-west-1"));
    assert_eq!(n.ends[1].nodes, [p.cluster("a1").unwrap().network.nodes]);
    assert!(n.joins("g2", "a1") && n.joins("a1", "g1"));
    assert!(!n.joins("g1", "g2"));
}

#[test]
fn aws_in_three_regions_needs_every_pair() {
    let p = ok(&fleet(
        "  interconnect: { awsCrossRegion: vpcPeering }\n",
        &[
            ("use1", "aws", "us-east-1"),
            ("euw1", "aws", "eu-west-1"),
            ("aps1", "aws", "ap-south-1"),
        ],
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let via = Some(s("vpcPeering"));
    assert_eq!(
        summary(&p),
        [
            (
                s("aps1--euw1"),
                LinkKind::AwsCrossRegion,
                [s("aws:ap-south-1/aps1"), s("aws:eu-west-1/euw1")],
                via.clone()
            ),
            (
                s("aps1--use1"),
                LinkKind::AwsCrossRegion,
                [s("aws:ap-south-1/aps1"), s("aws:us-east-1/use1")],
                via.clone()
            ),
            (
                s("euw1--use1"),
                LinkKind::AwsCrossRegion,
                [s("aws:eu-west-1/euw1"), s("aws:us-east-1/use1")],
                via
            ),
        ]
    );
}

#[test]
fn two_aws_vpcs_in_one_region_need_a_link_and_warn_when_unset() {
    let f = fleet("", &[("b", "aws", "eu-west-1"), ("a", "aws", "eu-west-1")]);
    let p = ok(&f);
    assert_eq!(
        summary(&p),
        [(
            s("a--b"),
            LinkKind::AwsSameRegion,
            [s("aws:eu-west-1/a"), s("aws:eu-west-1/b")],
            None
        )]
    );
    assert_eq!(p.warnings.len(), 1);
    let w = &p.warnings[0];
    assert_eq!(w.path, "spec.interconnect");
    assert!(w.message.contains("`a (eu-west-1)`"), "{}", w.message);
    assert!(w.hint.as_deref().unwrap().contains("awsCrossRegion"));
    assert_eq!(
        LinkKind::AwsSameRegion.field(),
        "spec.interconnect.awsCrossRegion"
    );
}

#[test]
fn existing_links_are_planned_without_warnings() {
    let p = ok(&fleet(
        "  interconnect: { gcpToAws: existing, awsCrossRegion: existing }\n",
        &[
            ("g", "gcp", "europe-west1"),
            ("a", "aws", "eu-west-1"),
            ("b", "aws", "us-east-1"),
        ],
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.interconnects.len(), 3);
    assert!(
        p.interconnects
            .iter()
            .all(|n: &InterconnectNeed| n.via.as_deref() == Some("existing"))
    );
}

#[test]
fn an_unmeshed_fleet_needs_no_links() {
    let p = ok(&fleet(
        "  mesh: { enabled: false }\n",
        &[("g", "gcp", "europe-west1"), ("a", "aws", "eu-west-1")],
    ));
    assert!(p.interconnects.is_empty());
    assert!(p.warnings.is_empty());
}

#[test]
fn unset_links_make_the_mesh_partial_and_say_between_whom() {
    let clusters = [
        ("g1", "gcp", "europe-west1"),
        ("g2", "gcp", "us-east1"),
        ("a1", "aws", "eu-west-1"),
    ];
    let p = ok(&fleet("", &clusters));
    let m = p.partial_mesh().expect("partial");
    assert!(m.starts_with("the mesh will be partial: 1 link"), "{m}");
    assert!(
        m.contains(
            "`g1`, `g2` ↔ `a1` (`gcp:meshfleet` ↔ `aws:eu-west-1/a1`, spec.interconnect.gcpToAws)"
        ),
        "{m}"
    );
    let p = ok(&fleet(
        "  interconnect: { gcpToAws: existing }\n",
        &clusters,
    ));
    assert_eq!(p.partial_mesh(), None);
}

#[test]
fn vpc_peering_past_ec2s_default_quotas_warns_and_transit_gateways_do_not() {
    let names: Vec<String> = (0..51).map(|i| format!("a{i}")).collect();
    let clusters: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "aws", "eu-west-1"))
        .collect();
    let peering = ok(&fleet(
        "  interconnect: { awsCrossRegion: vpcPeering }\n",
        &clusters,
    ));
    let w: Vec<&str> = peering
        .warnings
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        w.iter()
            .any(|m| m.contains("vpcPeering between 51 AWS VPCs") && m.contains("50 routes")),
        "{w:?}"
    );
    let tgw = ok(&fleet(
        "  interconnect: { awsCrossRegion: transitGateway }\n",
        &clusters,
    ));
    assert!(
        !tgw.warnings.iter().any(|d| d.message.contains("quota")),
        "{:?}",
        tgw.warnings
    );
    // Fifty VPCs peer 49 others each: inside the quotas, no warning.
    let fifty = ok(&fleet(
        "  interconnect: { awsCrossRegion: vpcPeering }\n",
        &clusters[..50],
    ));
    assert!(!fifty.warnings.iter().any(|d| d.message.contains("quota")));
}
