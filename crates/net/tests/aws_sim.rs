//! The SDK seam's AWS half against the simulator's EC2 fake, inside full executor runs: every
//! AWS step (Transit Gateways, VPC and peering attachments and their acceptance, Transit
//! Gateway routes, customer gateways, VPN connections, VPC peering and its acceptance, routes
//! in CAPA's route tables) and CAPA's VPCs (`DescribeVpcs`/`DescribeSubnets`/
//! `DescribeRouteTables`) go through `aws-sdk-ec2` to the fake; the GCP steps come from a
//! small in-memory stand-in that keeps them as the network model reads them. After a run the
//! simulator's network model (`meshfleet_sim::network::Paths`, fed by the fake's state) must
//! join every pair of clusters; a second run changes nothing; a link broken on the AWS side
//! (a rotated key, a deleted route, a peering back to `pendingAcceptance`) is reported by the
//! model and repaired by a re-run.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use ipnet::IpNet;
use meshfleet_net::aws::Ec2;

use meshfleet_net::exec::{self, Action, NetApi};
use meshfleet_plan::Plan;
use meshfleet_sim::aws::{Aws, serve};
use meshfleet_sim::network::Paths;
use meshfleet_spec::{Fleet, Provider};
use serde_json::{Value, json};

mod common;
use common::{AWS3, Mixed, aws_rows, example, opts, setup};

/// The fake on a loopback port, CAPA's VPCs for the fleet's AWS clusters, and the seam.
async fn start(plan: &Plan) -> (Arc<Aws>, Mixed, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let aws = Arc::new(Aws::open(None, url.clone(), 50.0).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(aws.clone(), listener, rx));
    for c in plan.clusters.iter().filter(|c| c.provider == Provider::Aws) {
        aws.capa_vpc(
            &c.region,
            &format!("ns/{}", c.name),
            &c.network.nodes.to_string(),
        );
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let ec2 = Ec2::new(conf).with_settle(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(20),
    );
    let api = Mixed {
        ec2,
        gcp: RefCell::default(),
    };
    (aws, api, stop)
}

/// Every pair of clusters: `Ok` or the network model's cause.
fn verdicts(
    fleet: &Fleet,
    plan: &Plan,
    aws: &Aws,
    api: &Mixed,
) -> Vec<(String, String, Result<(), String>)> {
    let mut g = HashMap::new();
    if let Some(gcp) = &fleet.spec.providers.gcp {
        g.insert(gcp.project.clone(), api.gcp.borrow().clone());
    }
    let paths = Paths::new(true, aws.read(|st| st.ec2.clone()), g, BTreeSet::new());
    let infra = |p: &meshfleet_plan::ClusterPlan| -> (Value, IpNet) {
        let v = if p.provider == Provider::Gcp {
            let g = fleet.spec.providers.gcp.as_ref().unwrap();
            json!({"kind": "GCPCluster", "metadata": {"namespace": "ns", "name": p.name},
                "spec": {"project": g.project, "network": {"name": g.network}}})
        } else {
            json!({"kind": "AWSCluster", "metadata": {"namespace": "ns", "name": p.name},
                "spec": {"region": p.region}})
        };
        (v, p.network.nodes)
    };
    let mut out = Vec::new();
    for (i, a) in plan.clusters.iter().enumerate() {
        for b in &plan.clusters[i + 1..] {
            let (ia, ca) = infra(a);
            let (ib, cb) = infra(b);
            out.push((
                a.name.clone(),
                b.name.clone(),
                paths.reach(&ia, &ca, &ib, &cb),
            ));
        }
    }
    out
}

fn all_ok(v: &[(String, String, Result<(), String>)]) {
    for (a, b, r) in v {
        assert_eq!(r, &Ok(()), "{a} ↔ {b}");
    }
}

fn first_down(v: &[(String, String, Result<(), String>)]) -> String {
    v.iter()
        .find_map(|(_, _, r)| r.clone().err())
        .expect("a link down")
}

#[tokio::test(flavor = "current_thread")]
async fn the_example_fleets_aws_side_through_the_sdk_joins_gcp_and_aws_once() {
    let (fleet, plan, s, secrets) = setup(&example());
    let (aws, api, _stop) = start(&plan).await;
    assert_eq!(api.account_id().await.unwrap(), "123456789012");
    let before = verdicts(&fleet, &plan, &aws, &api);
    assert!(before.iter().any(|(_, _, r)| r.is_err()));

    let first = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
    let rows = aws_rows(&first, &s);
    assert!(
        rows.iter().all(|(_, a, _)| *a == Action::Create),
        "{rows:?}"
    );
    let count = |action: &str| rows.iter().filter(|(a, _, _)| *a == action).count();
    assert_eq!(count("CreateTransitGateway"), 1);
    assert_eq!(count("CreateCustomerGateway"), 2);
    assert_eq!(count("CreateVpnConnection"), 2);
    let aws_clusters = plan
        .clusters
        .iter()
        .filter(|c| c.provider == Provider::Aws)
        .count();
    assert_eq!(count("CreateTransitGatewayVpcAttachment"), aws_clusters);
    assert!(count("CreateRoute") >= aws_clusters);
    all_ok(&verdicts(&fleet, &plan, &aws, &api));

    // What reached the fake: the customer gateways carry the HA gateway's addresses, the VPN
    // tunnels the fleet's keys and inside ranges; the external VPN gateway got AWS's addresses.
    aws.read(|st| {
        let e = &st.ec2;
        let mut ips: Vec<&str> = e
            .customer_gateways
            .values()
            .map(|c| c.ip.as_str())
            .collect();
        ips.sort();
        assert_eq!(ips, ["35.242.0.1", "35.243.0.1"]);
        let keys: Vec<&str> = secrets.tunnels.values().map(|t| t.psk.as_str()).collect();
        for v in e.vpn_connections.values() {
            for t in &v.tunnels {
                assert!(keys.contains(&t.psk.as_str()));
            }
        }
        // Every VPC routes the GCP node CIDRs to the Transit Gateway it is attached to.
        for v in e.vpcs.values() {
            assert!(!v.routes.is_empty(), "{v:?}");
            assert!(v.routes.iter().all(|r| r.target.starts_with("tgw-")));
        }
    });
    let ext = api
        .gcp
        .borrow()
        .iter()
        .find(|(k, _)| k.contains("externalVpnGateways"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(ext["interfaces"].as_array().unwrap().len(), 4);

    let second = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
    assert!(second.all_unchanged(), "{second:#?}");
    let sizes = |st: &meshfleet_sim::aws::State| {
        (
            st.ec2.transit_gateways.len(),
            st.ec2.tgw_attachments.len(),
            st.ec2.customer_gateways.len(),
            st.ec2.vpn_connections.len(),
        )
    };
    assert_eq!(aws.read(sizes), (1, aws_clusters + 2, 2, 2));

    // A key rotated on the AWS side only: the model reports it, a re-run repairs it in place
    // (ModifyVpnTunnelOptions) without making anything new.
    aws.with_state(|st| {
        for v in st.ec2.vpn_connections.values_mut() {
            for t in &mut v.tunnels {
                t.psk = "rotatedOnOneSide".into();
            }
        }
    });
    let why = first_down(&verdicts(&fleet, &plan, &aws, &api));
    assert!(why.contains("pre-shared keys differ"), "{why}");
    // A route deleted by hand, too.
    let (vpc, lost) = aws.with_state(|st| {
        let (id, v) = st.ec2.vpcs.iter_mut().next().unwrap();
        (id.clone(), v.routes.remove(0))
    });
    let third = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
    let changed: Vec<_> = aws_rows(&third, &s)
        .into_iter()
        .filter(|(_, a, _)| *a != Action::Unchanged)
        .collect();
    assert!(
        changed.iter().all(
            |(a, x, _)| (*a, *x) == ("CreateVpnConnection", Action::Update)
                || (*a == "CreateRoute" && *x != Action::Unchanged)
        ),
        "{changed:?}"
    );
    assert_eq!(
        changed
            .iter()
            .filter(|(a, _, _)| *a == "CreateVpnConnection")
            .count(),
        2
    );
    assert_eq!(aws.read(sizes), (1, aws_clusters + 2, 2, 2));
    assert!(aws.read(|st| st.ec2.vpcs[&vpc].routes.contains(&lost)));
    all_ok(&verdicts(&fleet, &plan, &aws, &api));
    assert!(
        exec::run(&api, &s, &secrets, &opts())
            .await
            .unwrap()
            .all_unchanged()
    );

    // A field EC2 cannot change in place (a customer gateway's address): the run stops there
    // and says which field differs and what to delete.
    let cgw = aws.with_state(|st| {
        let (id, c) = st.ec2.customer_gateways.iter_mut().next().unwrap();
        c.ip = "198.51.100.7".into();
        id.clone()
    });
    let f = exec::run(&api, &s, &secrets, &opts())
        .await
        .expect_err("refused");
    assert!(f.step.contains("/cgw/"), "{}", f.step);
    assert!(
        f.why.contains("IpAddress") && f.why.contains(&format!("delete {cgw}")),
        "{}",
        f.why
    );
}

#[tokio::test(flavor = "current_thread")]
async fn transit_gateway_peering_and_vpc_peering_through_the_sdk_join_every_vpc_once() {
    for via in ["transitGateway", "vpcPeering"] {
        let (fleet, plan, s, secrets) = setup(&AWS3.replace("VIA", via));
        let (aws, api, _stop) = start(&plan).await;
        assert!(
            verdicts(&fleet, &plan, &aws, &api)
                .iter()
                .all(|(_, _, r)| r.is_err())
        );
        let first = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
        assert!(
            first.steps.iter().all(|r| r.action == Action::Create),
            "{via}: {first:#?}"
        );
        let v = verdicts(&fleet, &plan, &aws, &api);
        assert_eq!(v.len(), 6);
        all_ok(&v);
        let second = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
        assert!(second.all_unchanged(), "{via}: {second:#?}");

        // A peering back to waiting for acceptance (as if the run had stopped before the
        // accept): the model says so; a re-run accepts it and changes nothing else.
        let accept = if via == "transitGateway" {
            aws.with_state(|st| {
                let (_, a) = st
                    .ec2
                    .tgw_attachments
                    .iter_mut()
                    .find(|(_, a)| a.state == "available" && !a.peer_region.is_empty())
                    .unwrap();
                a.state = "pendingAcceptance".into();
            });
            "AcceptTransitGatewayPeeringAttachment"
        } else {
            aws.with_state(|st| {
                st.ec2.vpc_peerings.values_mut().next().unwrap().status =
                    "pending-acceptance".into();
            });
            "AcceptVpcPeeringConnection"
        };
        let why = first_down(&verdicts(&fleet, &plan, &aws, &api));
        assert!(why.contains("accept"), "{via}: {why}");
        let third = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
        let changed: Vec<_> = aws_rows(&third, &s)
            .into_iter()
            .filter(|(_, a, _)| *a != Action::Unchanged)
            .collect();
        assert_eq!(changed.len(), 1, "{via}: {changed:?}");
        assert_eq!((changed[0].0, changed[0].1), (accept, Action::Create));
        all_ok(&verdicts(&fleet, &plan, &aws, &api));

        // Routes repointed by hand (a VPC route to nowhere; for Transit Gateways also a static
        // route to the wrong attachment): reported, then put back in place (ReplaceRoute,
        // ReplaceTransitGatewayRoute) without making anything new.
        aws.with_state(|st| {
            let v = st.ec2.vpcs.values_mut().next().unwrap();
            v.routes[0].target = if via == "transitGateway" {
                "tgw-0000000000000dead".into()
            } else {
                "pcx-0000000000000dead".into()
            };
            if via == "transitGateway" {
                let t = st
                    .ec2
                    .transit_gateways
                    .values_mut()
                    .find(|t| !t.static_routes.is_empty())
                    .unwrap();
                t.static_routes[0].target = "tgw-attach-0000000000dead".into();
            }
        });
        first_down(&verdicts(&fleet, &plan, &aws, &api));
        let fourth = exec::run(&api, &s, &secrets, &opts()).await.unwrap();
        let changed: Vec<_> = aws_rows(&fourth, &s)
            .into_iter()
            .filter(|(_, a, _)| *a != Action::Unchanged)
            .collect();
        let want = if via == "transitGateway" { 2 } else { 1 };
        assert_eq!(changed.len(), want, "{via}: {changed:?}");
        assert!(
            changed.iter().all(|(a, x, _)| *x == Action::Update
                && matches!(*a, "CreateRoute" | "CreateTransitGatewayRoute")),
            "{via}: {changed:?}"
        );
        all_ok(&verdicts(&fleet, &plan, &aws, &api));
        assert!(
            exec::run(&api, &s, &secrets, &opts())
                .await
                .unwrap()
                .all_unchanged()
        );
    }
}
