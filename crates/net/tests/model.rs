//! The steps against the simulator's network model: apply every request of a fleet's links to
//! cloud state the way the two APIs answer them (ids and addresses assigned, a TGW VPN
//! connection attached and propagating by the gateway's defaults, peerings pending until
//! accepted), then ask `meshfleet_sim::network` whether the networks reach each other. A
//! complete plan of steps joins them; leaving any step out, or configuring a tunnel on one side
//! only, takes the link down with the cause named.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use meshfleet_net::desired::{Step, steps, tunnel_names};
use meshfleet_net::secrets::Secrets;
use meshfleet_sim::aws::ec2net::{
    Attached, CustomerGateway, Ec2Net, Route, TgwAttachment, TransitGateway, Vpc, VpcPeering,
    VpnConnection, VpnTunnel,
};
use meshfleet_sim::network::Paths;
use meshfleet_spec::{Fleet, Provider};
use serde_json::{Value, json};

/// Cloud state built by applying steps.
#[derive(Default)]
struct Clouds {
    ec2: Ec2Net,
    gcp: BTreeMap<String, Value>,
    outputs: HashMap<String, Value>,
    n: u32,
}

impl Clouds {
    /// CAPA's VPCs: one per AWS cluster, as the simulated CAPA registers them.
    fn with_capa(fleet: &Fleet, plan: &meshfleet_plan::Plan) -> Self {
        let mut c = Clouds::default();
        for p in plan.clusters.iter().filter(|p| p.provider == Provider::Aws) {
            c.ec2.vpcs.insert(
                format!("vpc-{}", p.name),
                Vpc {
                    region: p.region.clone(),
                    cidr: p.network.nodes.to_string(),
                    cluster: format!("ns/{}", p.name),
                    routes: vec![],
                },
            );
        }
        let _ = fleet;
        c
    }

    fn id(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}-{:04}", self.n)
    }

    /// Resolve `${…}` references in a string.
    fn resolve(&self, v: &str, secrets: &Secrets) -> String {
        let Some(inner) = v.strip_prefix("${").and_then(|x| x.strip_suffix('}')) else {
            return v.to_string();
        };
        if let Some(t) = inner.strip_prefix("secret:") {
            return secrets.tunnels[t].psk.clone();
        }
        if let Some(rest) = inner.strip_prefix("capa:") {
            let (cluster, field) = rest.split_once('.').unwrap();
            let cluster = cluster.split('@').next().unwrap();
            return match field {
                "vpcId" => format!("vpc-{cluster}"),
                other => format!("{other}-of-{cluster}"),
            };
        }
        if inner == "account" {
            return "123456789012".into();
        }
        // `step-id.path`: referenced steps' ids end in a name without dots.
        let slash = inner.rfind('/').unwrap_or(0);
        let cut = slash + inner[slash..].find('.').unwrap();
        let (id, path) = (&inner[..cut], &inner[cut + 1..]);
        let out = self
            .outputs
            .get(id)
            .unwrap_or_else(|| panic!("no output of `{id}` yet"));
        let mut cur = out;
        for part in path.split('.') {
            let (key, idx) = match part.split_once('[') {
                Some((k, i)) => (k, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
                None => (part, None),
            };
            cur = &cur[key];
            if let Some(i) = idx {
                cur = &cur[i];
            }
        }
        cur.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| cur.to_string())
    }

    fn resolved(&self, body: &Value, secrets: &Secrets) -> Value {
        match body {
            Value::String(s) => Value::String(self.resolve(s, secrets)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.resolved(x, secrets)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.resolved(v, secrets)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn apply(&mut self, s: &Step, secrets: &Secrets) {
        let b = self.resolved(&s.body, secrets);
        let g = |k: &str| b[k].as_str().unwrap_or_default().to_string();
        let r = s.region.clone();
        let out = match s.action {
            "vpnGateways.insert" => {
                let n = self.n + 1;
                self.n = n;
                let mut gw = b.clone();
                gw["vpnInterfaces"] = json!([{"id": 0, "ipAddress": format!("35.242.0.{n}")},
                    {"id": 1, "ipAddress": format!("35.243.0.{n}")}]);
                self.gcp
                    .insert(format!("regions/{r}/vpnGateways/{}", g("name")), gw.clone());
                gw
            }
            "routers.insert" | "vpnTunnels.insert" => {
                let coll = if s.action.starts_with("routers") {
                    "routers"
                } else {
                    "vpnTunnels"
                };
                self.gcp
                    .insert(format!("regions/{r}/{coll}/{}", g("name")), b.clone());
                b.clone()
            }
            "externalVpnGateways.insert" => {
                self.gcp.insert(
                    format!("global/externalVpnGateways/{}", g("name")),
                    b.clone(),
                );
                b.clone()
            }
            "routers.patch" => {
                let key = format!("regions/{r}/routers/{}", g("name"));
                // Patching a router that does not exist fails (404): nothing changes.
                let Some(router) = self.gcp.get_mut(&key) else {
                    return;
                };
                for f in ["interfaces", "bgpPeers"] {
                    router[f] = b[f].clone();
                }
                router.clone()
            }
            "CreateTransitGateway" => {
                let id = self.id("tgw");
                self.ec2.transit_gateways.insert(
                    id.clone(),
                    TransitGateway {
                        region: r,
                        state: "available".into(),
                        amazon_side_asn: b["Options.AmazonSideAsn"].as_u64().unwrap() as u32,
                        static_routes: vec![],
                        propagations: BTreeSet::new(),
                        ..Default::default()
                    },
                );
                json!({"transitGatewayId": id, "associationDefaultRouteTableId": format!("rt-{id}")})
            }
            "CreateTransitGatewayVpcAttachment" => {
                let id = self.id("tgw-attach");
                let tgw = g("TransitGatewayId");
                self.ec2.tgw_attachments.insert(
                    id.clone(),
                    TgwAttachment {
                        transit_gateway: tgw.clone(),
                        attached: Attached::Vpc { vpc: g("VpcId") },
                        state: "available".into(),
                        ..Default::default()
                    },
                );
                // DefaultRouteTablePropagation=enable.
                self.ec2
                    .transit_gateways
                    .get_mut(&tgw)
                    .unwrap()
                    .propagations
                    .insert(id.clone());
                json!({"transitGatewayAttachmentId": id})
            }
            "CreateCustomerGateway" => {
                let id = self.id("cgw");
                self.ec2.customer_gateways.insert(
                    id.clone(),
                    CustomerGateway {
                        region: r,
                        ip: g("IpAddress"),
                        bgp_asn: b["BgpAsn"].as_u64().unwrap() as u32,
                        state: "available".into(),
                        ..Default::default()
                    },
                );
                json!({"customerGatewayId": id})
            }
            "CreateVpnConnection" => {
                let id = self.id("vpn");
                let tgw = g("TransitGatewayId");
                let mut tunnels = Vec::new();
                for k in 1..=2 {
                    let p = format!("Options.TunnelOptions.{k}");
                    self.n += 1;
                    tunnels.push(VpnTunnel {
                        outside_ip: format!("52.0.0.{}", self.n),
                        inside_cidr: g(&format!("{p}.TunnelInsideCidr")),
                        psk: g(&format!("{p}.PreSharedKey")),
                        ike_versions: vec![g(&format!("{p}.IKEVersion.1.Value"))],
                    });
                }
                let out = json!({"vpnConnectionId": id, "tunnels": tunnels.iter()
                    .map(|t| json!({"outsideIpAddress": t.outside_ip})).collect::<Vec<_>>()});
                self.ec2.vpn_connections.insert(
                    id.clone(),
                    VpnConnection {
                        region: r,
                        customer_gateway: g("CustomerGatewayId"),
                        transit_gateway: tgw.clone(),
                        state: "available".into(),
                        tunnels,
                        ..Default::default()
                    },
                );
                // A VPN on a Transit Gateway gets its attachment, propagating by default.
                let att = self.id("tgw-attach");
                self.ec2.tgw_attachments.insert(
                    att.clone(),
                    TgwAttachment {
                        transit_gateway: tgw.clone(),
                        attached: Attached::Vpn { vpn: id },
                        state: "available".into(),
                        ..Default::default()
                    },
                );
                self.ec2
                    .transit_gateways
                    .get_mut(&tgw)
                    .unwrap()
                    .propagations
                    .insert(att);
                out
            }
            "CreateRoute" => {
                let cluster = g("RouteTableId")
                    .trim_start_matches("routeTableIds-of-")
                    .to_string();
                let vpc = format!("vpc-{cluster}");
                let target = if b.get("TransitGatewayId").is_some() {
                    g("TransitGatewayId")
                } else {
                    g("VpcPeeringConnectionId")
                };
                self.ec2.vpcs.get_mut(&vpc).unwrap().routes.push(Route {
                    destination: g("DestinationCidrBlock"),
                    target,
                });
                json!({})
            }
            "CreateTransitGatewayPeeringAttachment" => {
                let id = self.id("tgw-attach");
                self.ec2.tgw_attachments.insert(
                    id.clone(),
                    TgwAttachment {
                        transit_gateway: g("TransitGatewayId"),
                        attached: Attached::Peering {
                            peer_transit_gateway: g("PeerTransitGatewayId"),
                        },
                        state: "pendingAcceptance".into(),
                        ..Default::default()
                    },
                );
                json!({"transitGatewayAttachmentId": id})
            }
            "AcceptTransitGatewayPeeringAttachment" => {
                let a = self
                    .ec2
                    .tgw_attachments
                    .get_mut(&g("TransitGatewayAttachmentId"))
                    .unwrap();
                a.state = "available".into();
                json!({})
            }
            "CreateTransitGatewayRoute" => {
                let tgw = g("TransitGatewayRouteTableId")
                    .trim_start_matches("rt-")
                    .to_string();
                self.ec2
                    .transit_gateways
                    .get_mut(&tgw)
                    .unwrap()
                    .static_routes
                    .push(Route {
                        destination: g("DestinationCidrBlock"),
                        target: g("TransitGatewayAttachmentId"),
                    });
                json!({})
            }
            "CreateVpcPeeringConnection" => {
                let id = self.id("pcx");
                self.ec2.vpc_peerings.insert(
                    id.clone(),
                    VpcPeering {
                        requester_vpc: g("VpcId"),
                        accepter_vpc: g("PeerVpcId"),
                        status: "pending-acceptance".into(),
                        ..Default::default()
                    },
                );
                json!({"vpcPeeringConnectionId": id})
            }
            "AcceptVpcPeeringConnection" => {
                self.ec2
                    .vpc_peerings
                    .get_mut(&g("VpcPeeringConnectionId"))
                    .unwrap()
                    .status = "active".into();
                json!({})
            }
            other => panic!("no model of `{other}`"),
        };
        self.outputs.insert(s.id.clone(), out);
    }

    fn paths(&self, project: &str) -> Paths {
        let mut g = HashMap::new();
        g.insert(project.to_string(), self.gcp.clone());
        Paths::new(true, self.ec2.clone(), g, BTreeSet::new())
    }
}

fn infra(p: &meshfleet_plan::ClusterPlan, fleet: &Fleet) -> (Value, IpNet) {
    let v = if p.provider == Provider::Gcp {
        let g = fleet.spec.providers.gcp.as_ref().unwrap();
        json!({"kind": "GCPCluster", "metadata": {"namespace": "ns", "name": p.name},
            "spec": {"project": g.project, "network": {"name": g.network}}})
    } else {
        json!({"kind": "AWSCluster", "metadata": {"namespace": "ns", "name": p.name},
            "spec": {"region": p.region}})
    };
    (v, p.network.nodes)
}

/// Every pair of clusters: `Ok` or the model's cause.
fn verdicts(
    fleet: &Fleet,
    plan: &meshfleet_plan::Plan,
    paths: &Paths,
) -> Vec<(String, String, Result<(), String>)> {
    let mut out = Vec::new();
    for (i, a) in plan.clusters.iter().enumerate() {
        for b in &plan.clusters[i + 1..] {
            let (ia, ca) = infra(a, fleet);
            let (ib, cb) = infra(b, fleet);
            out.push((
                a.name.clone(),
                b.name.clone(),
                paths.reach(&ia, &ca, &ib, &cb),
            ));
        }
    }
    out
}

fn setup(text: &str) -> (Fleet, meshfleet_plan::Plan, Vec<Step>, Secrets) {
    let fleet = meshfleet_spec::parse(text).unwrap().fleet;
    let plan = meshfleet_plan::plan(&fleet, None).unwrap();
    let mut secrets = Secrets::default();
    secrets
        .ensure(&tunnel_names(&fleet, &plan).unwrap())
        .unwrap();
    let s = steps(&fleet, &plan, &secrets).unwrap();
    (fleet, plan, s, secrets)
}

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .unwrap()
}

fn all_ok(v: &[(String, String, Result<(), String>)]) {
    for (a, b, r) in v {
        assert_eq!(r, &Ok(()), "{a} ↔ {b}");
    }
}

#[test]
fn the_example_fleets_ha_vpn_steps_join_gcp_and_aws() {
    let (fleet, plan, s, secrets) = setup(&example());
    let mut c = Clouds::with_capa(&fleet, &plan);
    // Before any step GCP and AWS are apart.
    let before = verdicts(&fleet, &plan, &c.paths("my-project"));
    assert!(before.iter().any(|(_, _, r)| r.is_err()));
    for st in &s {
        c.apply(st, &secrets);
    }
    all_ok(&verdicts(&fleet, &plan, &c.paths("my-project")));
}

#[test]
fn every_step_left_out_takes_the_link_down_with_a_cause_unless_ha_covers_it() {
    let (fleet, plan, s, secrets) = setup(&example());
    for skip in 0..s.len() {
        // Only the last route matters to one GCP cluster; the others must each break the link.
        let mut c = Clouds::with_capa(&fleet, &plan);
        let mut missing_output = false;
        let mut skipped = vec![s[skip].id.clone()];
        for (i, st) in s.iter().enumerate() {
            if i == skip {
                continue;
            }
            // A step whose input is missing cannot be made (the executor stops there), nor
            // anything that needs it.
            let refs = serde_json::to_string(&st.body).unwrap();
            if skipped.iter().any(|id| refs.contains(&format!("${{{id}."))) {
                missing_output = true;
                skipped.push(st.id.clone());
                continue;
            }
            c.apply(st, &secrets);
        }
        let v = verdicts(&fleet, &plan, &c.paths("my-project"));
        let down: Vec<&String> = v.iter().filter_map(|(_, _, r)| r.as_ref().err()).collect();
        // HA VPN: one of the four tunnels missing still leaves a path (an AWS half cannot be
        // left out alone: the external gateway needs all four of its addresses).
        let redundant = s[skip].action == "vpnTunnels.insert";
        if redundant {
            assert!(down.is_empty(), "without `{}`: {down:?}", s[skip].id);
            continue;
        }
        assert!(
            !down.is_empty(),
            "leaving out `{}` (dependants skipped: {missing_output}) left every link up",
            s[skip].id
        );
        for why in down {
            assert!(
                why.contains("`gcp:my-project/meshfleet`") || why.contains("aws"),
                "{why}"
            );
        }
    }
}

#[test]
fn a_tunnel_configured_on_one_side_only_is_reported_and_a_re_run_repairs_it() {
    let (fleet, plan, s, secrets) = setup(&example());
    let mut c = Clouds::with_capa(&fleet, &plan);
    for st in &s {
        c.apply(st, &secrets);
    }
    // Someone rotates every key on the AWS side only.
    let saved = c.ec2.vpn_connections.clone();
    for v in c.ec2.vpn_connections.values_mut() {
        for t in &mut v.tunnels {
            t.psk = "rotatedOnOneSide".into();
        }
    }
    let v = verdicts(&fleet, &plan, &c.paths("my-project"));
    let why = v
        .iter()
        .find_map(|(_, _, r)| r.clone().err())
        .expect("down");
    assert!(why.contains("pre-shared keys differ"), "{why}");
    // The steps name the same keys again (kept in meshfleet.net.json): converging restores them.
    c.ec2.vpn_connections = saved;
    all_ok(&verdicts(&fleet, &plan, &c.paths("my-project")));
}

const AWS3: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: tri }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { awsCrossRegion: VIA }\n  providers: { aws: {} }\n  clusters:\n    - { name: use1, provider: aws, region: us-east-1, zones: [us-east-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1, provider: aws, region: eu-west-1, zones: [eu-west-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1b, provider: aws, region: eu-west-1, zones: [eu-west-1b], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: aps1, provider: aws, region: ap-south-1, zones: [ap-south-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n";

#[test]
fn transit_gateway_and_vpc_peering_steps_join_every_aws_vpc() {
    for via in ["transitGateway", "vpcPeering"] {
        let (fleet, plan, s, secrets) = setup(&AWS3.replace("VIA", via));
        let mut c = Clouds::with_capa(&fleet, &plan);
        assert!(
            verdicts(&fleet, &plan, &c.paths("p"))
                .iter()
                .all(|(_, _, r)| r.is_err())
        );
        for st in &s {
            c.apply(st, &secrets);
        }
        let v = verdicts(&fleet, &plan, &c.paths("p"));
        assert_eq!(v.len(), 6);
        all_ok(&v);
    }
}

/// Twelve clusters over five AWS regions and seven GCP regions (the large case).
fn twelve() -> String {
    let mut s = String::from(
        "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: dozen }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { gcpToAws: haVpn, awsCrossRegion: transitGateway }\n  providers: { gcp: { project: dozen-project, network: meshfleet }, aws: {} }\n  clusters:\n",
    );
    for (i, r) in [
        "us-east-1",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-south-1",
    ]
    .iter()
    .enumerate()
    {
        s.push_str(&format!("    - {{ name: aws{i}, provider: aws, region: {r}, zones: [{r}a], controlPlane: {{ replicas: 1, machineType: m6i.large }} }}\n"));
    }
    for (i, r) in [
        "us-east1",
        "us-west1",
        "europe-west1",
        "europe-west4",
        "asia-south1",
        "asia-east1",
        "southamerica-east1",
    ]
    .iter()
    .enumerate()
    {
        s.push_str(&format!("    - {{ name: gcp{i}, provider: gcp, region: {r}, zones: [{r}-b], controlPlane: {{ replicas: 1, machineType: n2-standard-2 }} }}\n"));
    }
    s
}

#[test]
fn twelve_clusters_over_five_aws_and_seven_gcp_regions_are_fully_joined() {
    let (fleet, plan, s, secrets) = setup(&twelve());
    assert_eq!(plan.clusters.len(), 12);
    // 10 AWS pairs + 5 GCP ↔ VPC links.
    assert_eq!(plan.interconnects.len(), 15);
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "vpnGateways.insert")
            .count(),
        5
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateTransitGateway")
            .count(),
        5
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.action == "CreateTransitGatewayPeeringAttachment")
            .count(),
        10
    );
    // Each AWS region's HA VPN gateway sits on its continent.
    let gw: Vec<(&str, &str)> = s
        .iter()
        .filter(|x| x.action == "vpnGateways.insert")
        .map(|x| {
            (
                x.region.as_str(),
                x.id.rsplit('-').take(3).last().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        gw.iter()
            .any(|(r, _)| *r == "asia-east1" || *r == "asia-south1"),
        "{gw:?}"
    );
    let mut c = Clouds::with_capa(&fleet, &plan);
    for st in &s {
        c.apply(st, &secrets);
    }
    let v = verdicts(&fleet, &plan, &c.paths("dozen-project"));
    assert_eq!(v.len(), 66);
    all_ok(&v);
}
