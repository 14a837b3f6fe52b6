//! The executor against an in-memory fake of the seam: resources found by name or tag the way
//! the clouds find them, ids and addresses assigned on create, failures injected after a write
//! has happened (the answer lost, as when the process is killed mid-call).

use std::cell::RefCell;
use std::collections::BTreeMap;

use meshfleet_net::desired::{Cloud, Step, steps, tunnel_names};
use meshfleet_net::exec::{self, Action, ApiError, CapaVpc, NetApi, Options, Status};
use meshfleet_net::secrets::Secrets;
use meshfleet_spec::Provider;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    /// By identity (see [`identity`]).
    res: BTreeMap<String, Value>,
    n: u32,
    /// Successful writes so far.
    writes: u32,
    /// After this many writes, every write still happens but answers with this error.
    fail_at: Option<(u32, ApiError)>,
    capa: BTreeMap<String, CapaVpc>,
    calls: Vec<String>,
}

#[derive(Default)]
struct Fake(RefCell<Inner>);

/// How each cloud finds a step's resource: GCP by collection, region and name; AWS by the
/// `Name` tag; routes by table and destination; acceptances by the attachment.
fn identity(step: &Step, body: &Value) -> String {
    let s = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body[k].to_string())
    };
    match (step.cloud, step.action) {
        (Cloud::Gcp, "routers.patch") => format!("gcp/{}/routers/{}", step.region, s("name")),
        (Cloud::Gcp, a) => format!(
            "gcp/{}/{}/{}",
            step.region,
            a.trim_end_matches(".insert"),
            s("name")
        ),
        (_, "CreateRoute") => format!("route/{}/{}", s("RouteTableId"), s("DestinationCidrBlock")),
        (_, "CreateTransitGatewayRoute") => format!(
            "tgw-route/{}/{}",
            s("TransitGatewayRouteTableId"),
            s("DestinationCidrBlock")
        ),
        (_, "AcceptTransitGatewayPeeringAttachment") => {
            format!("accept/{}", s("TransitGatewayAttachmentId"))
        }
        (_, "AcceptVpcPeeringConnection") => format!("accept/{}", s("VpcPeeringConnectionId")),
        (_, a) => format!("{a}/{}", s("TagSpecification.1.Tag.1.Value")),
    }
}

impl Fake {
    fn with_capa(plan: &meshfleet_plan::Plan) -> Self {
        let f = Fake::default();
        for c in plan.clusters.iter().filter(|c| c.provider == Provider::Aws) {
            f.0.borrow_mut().capa.insert(
                c.name.clone(),
                CapaVpc {
                    vpc_id: format!("vpc-{}", c.name),
                    private_subnet_ids: vec![format!("subnet-{}-a", c.name)],
                    route_table_ids: vec![format!("rtb-{}-a", c.name)],
                },
            );
        }
        f
    }

    fn write(&self, what: String) -> Result<(), ApiError> {
        let mut i = self.0.borrow_mut();
        i.writes += 1;
        i.calls.push(what);
        match &i.fail_at {
            Some((n, e)) if i.writes >= *n => {
                let e = e.clone();
                i.fail_at = None;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    fn count(&self) -> usize {
        self.0.borrow().res.len()
    }
}

impl NetApi for Fake {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        let i = self.0.borrow();
        let Some(mut v) = i.res.get(&identity(step, body)).cloned() else {
            return Ok(None);
        };
        if step.action == "routers.patch" {
            // A router without BGP reports empty lists.
            for f in ["interfaces", "bgpPeers"] {
                if v.get(f).is_none() {
                    v[f] = json!([]);
                }
            }
        }
        if step.action == "vpnTunnels.insert" {
            // GCP never reports a tunnel's shared secret.
            v.as_object_mut().unwrap().remove("sharedSecret");
        }
        Ok(Some(v))
    }

    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        let key = identity(step, body);
        let out = {
            let mut i = self.0.borrow_mut();
            if step.action == "routers.patch" {
                return Err(ApiError::Refused(format!("404: {key} not found")));
            }
            i.n += 1;
            let n = i.n;
            let mut v = body.clone();
            let o = v.as_object_mut().unwrap();
            match step.action {
                "vpnGateways.insert" => {
                    o.insert(
                        "vpnInterfaces".into(),
                        json!([{"id": 0, "ipAddress": format!("35.242.0.{n}")},
                            {"id": 1, "ipAddress": format!("35.243.0.{n}")}]),
                    );
                }
                "CreateTransitGateway" => {
                    o.insert("transitGatewayId".into(), json!(format!("tgw-{n}")));
                    o.insert(
                        "associationDefaultRouteTableId".into(),
                        json!(format!("tgw-rtb-{n}")),
                    );
                }
                "CreateTransitGatewayVpcAttachment" | "CreateTransitGatewayPeeringAttachment" => {
                    o.insert(
                        "transitGatewayAttachmentId".into(),
                        json!(format!("tgw-attach-{n}")),
                    );
                }
                "CreateCustomerGateway" => {
                    o.insert("customerGatewayId".into(), json!(format!("cgw-{n}")));
                }
                "CreateVpnConnection" => {
                    o.insert("vpnConnectionId".into(), json!(format!("vpn-{n}")));
                    o.insert(
                        "tunnels".into(),
                        json!([{"outsideIpAddress": format!("52.0.{n}.1")},
                            {"outsideIpAddress": format!("52.0.{n}.2")}]),
                    );
                }
                "CreateVpcPeeringConnection" => {
                    o.insert("vpcPeeringConnectionId".into(), json!(format!("pcx-{n}")));
                }
                _ => {}
            }
            i.res.insert(key.clone(), v.clone());
            v
        };
        self.write(format!("create {key}"))?;
        Ok(out)
    }

    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        _fields: &[String],
    ) -> Result<Value, ApiError> {
        let key = identity(step, body);
        let mut v = current.clone();
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.0.borrow_mut().res.insert(key.clone(), v.clone());
        self.write(format!("update {key}"))?;
        Ok(v)
    }

    async fn capa_vpc(&self, _region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        Ok(self.0.borrow().capa.get(cluster).cloned())
    }

    async fn account_id(&self) -> Result<String, ApiError> {
        Ok("123456789012".into())
    }
}

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .unwrap()
}

/// GCP in two regions, AWS in three (two VPCs in one): HA VPN, TGW peering, and same-region.
const MIXED: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: mix }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { gcpToAws: haVpn, awsCrossRegion: transitGateway }\n  providers: { gcp: { project: mix-project, network: meshfleet }, aws: {} }\n  clusters:\n    - { name: a0, provider: aws, region: eu-west-1, zones: [eu-west-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: a1, provider: aws, region: us-east-1, zones: [us-east-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: g0, provider: gcp, region: europe-west1, zones: [europe-west1-b], controlPlane: { replicas: 1, machineType: n2-standard-2 } }\n    - { name: g1, provider: gcp, region: us-east1, zones: [us-east1-b], controlPlane: { replicas: 1, machineType: n2-standard-2 } }\n";

fn setup(text: &str) -> (meshfleet_plan::Plan, Vec<Step>, Secrets) {
    let fleet = meshfleet_spec::parse(text)
        .unwrap_or_else(|r| panic!("{:#?}", r.errors))
        .fleet;
    let plan = meshfleet_plan::plan(&fleet, None).unwrap_or_else(|r| panic!("{:#?}", r.errors));
    let mut secrets = Secrets::default();
    secrets
        .ensure(&tunnel_names(&fleet, &plan).unwrap())
        .unwrap();
    let s = steps(&fleet, &plan, &secrets).unwrap();
    (plan, s, secrets)
}

fn opts(dry_run: bool) -> Options {
    Options {
        dry_run,
        attempts: 3,
        backoff: std::time::Duration::from_millis(1),
        ..Options::default()
    }
}

fn run(
    api: &Fake,
    s: &[Step],
    secrets: &Secrets,
    dry: bool,
) -> Result<exec::Report, exec::Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(exec::run(api, s, secrets, &opts(dry)))
}

#[test]
fn a_first_run_creates_everything_and_a_second_changes_nothing() {
    for text in [example(), MIXED.to_string()] {
        let (plan, s, secrets) = setup(&text);
        let api = Fake::with_capa(&plan);
        let first = run(&api, &s, &secrets, false).unwrap();
        assert_eq!(first.steps.len(), s.len());
        // Every step but the router patch makes a resource (the patch updates the router).
        assert!(first.steps.iter().all(|r| r.status == Status::Done));
        for (row, st) in first.steps.iter().zip(&s) {
            let want = if st.action == "routers.patch" {
                Action::Update
            } else {
                Action::Create
            };
            assert_eq!(row.action, want, "{}", st.id);
        }
        let made = api.count();
        // References were resolved from earlier results: the customer gateways carry the HA
        // gateway's addresses, the tunnels the keys.
        {
            let inner = api.0.borrow();
            let res = &inner.res;
            let cgw = res
                .iter()
                .find(|(k, _)| k.starts_with("CreateCustomerGateway/"))
                .unwrap()
                .1;
            assert!(
                cgw["IpAddress"].as_str().unwrap().starts_with("35.24"),
                "{cgw}"
            );
            let tunnel = res
                .iter()
                .find(|(k, _)| k.contains("/vpnTunnels/"))
                .map(|(k, v)| (k.rsplit('/').next().unwrap().to_string(), v))
                .unwrap();
            assert_eq!(
                tunnel.1["sharedSecret"].as_str().unwrap(),
                secrets.tunnels[&tunnel.0].psk
            );
            assert!(!res.values().any(|v| v.to_string().contains("${")));
            // No key in the report.
            let text = serde_json::to_string(&first).unwrap();
            assert!(secrets.tunnels.values().all(|t| !text.contains(&t.psk)));
        }

        let second = run(&api, &s, &secrets, false).unwrap();
        assert!(second.all_unchanged(), "{second:#?}");
        assert_eq!(api.count(), made);
    }
}

#[test]
fn a_dry_run_only_reads_and_says_what_it_waits_for() {
    let (plan, s, secrets) = setup(&example());
    let api = Fake::with_capa(&plan);
    let dry = run(&api, &s, &secrets, true).unwrap();
    assert_eq!(api.count(), 0);
    assert!(api.0.borrow().calls.is_empty());
    assert!(
        dry.steps
            .iter()
            .all(|r| r.status == Status::Planned && r.action == Action::Create)
    );
    let cgw = dry
        .steps
        .iter()
        .find(|r| r.kind == "customer-gateway")
        .unwrap();
    assert!(
        cgw.detail
            .starts_with("after gcp/europe-west1/vpnGateways/"),
        "{}",
        cgw.detail
    );
    // After a real run, a dry run plans nothing.
    run(&api, &s, &secrets, false).unwrap();
    assert!(run(&api, &s, &secrets, true).unwrap().all_unchanged());
}

#[test]
fn without_capas_vpcs_a_real_run_stops_with_a_hint_and_a_dry_run_names_them() {
    let (_, s, secrets) = setup(&example());
    let api = Fake::default();
    let dry = run(&api, &s, &secrets, true).unwrap();
    assert!(
        dry.steps
            .iter()
            .any(|r| r.detail.contains("after CAPA creates") && r.detail.contains("VPC"))
    );
    let e = run(&api, &s, &secrets, false).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("meshfleet up") && msg.contains("VPC"), "{msg}");
    // The steps of the failed step's phase ran beside it; its own row says it failed.
    let failed: Vec<_> = e
        .report
        .steps
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    assert!(!failed.is_empty());
    assert!(
        e.step.ends_with(&failed[0].name),
        "{} {:?}",
        e.step,
        failed[0]
    );
}

#[test]
fn a_run_interrupted_after_any_write_is_finished_by_a_re_run() {
    let (plan, s, secrets) = setup(&example());
    let clean = Fake::with_capa(&plan);
    run(&clean, &s, &secrets, false).unwrap();
    let writes = clean.0.borrow().writes;
    let want = clean.count();
    for k in 1..=writes {
        let api = Fake::with_capa(&plan);
        // The write happens; the answer never arrives (the process was killed).
        api.0.borrow_mut().fail_at = Some((k, ApiError::Refused("connection reset".into())));
        let e = run(&api, &s, &secrets, false).unwrap_err();
        assert!(e.to_string().contains("re-run"), "{e}");
        let again = run(&api, &s, &secrets, false).unwrap();
        assert!(
            again.steps.iter().all(|r| r.status == Status::Done),
            "after write {k}: {again:#?}"
        );
        assert_eq!(api.count(), want, "no duplicates after write {k}");
        assert!(run(&api, &s, &secrets, false).unwrap().all_unchanged());
    }
}

#[test]
fn a_lost_answer_is_retried_without_making_the_resource_twice() {
    let (plan, s, secrets) = setup(&example());
    let api = Fake::with_capa(&plan);
    api.0.borrow_mut().fail_at = Some((3, ApiError::Transient("503".into())));
    run(&api, &s, &secrets, false).unwrap();
    let clean = Fake::with_capa(&plan);
    run(&clean, &s, &secrets, false).unwrap();
    assert_eq!(api.count(), clean.count());
}

#[test]
fn a_tunnel_configured_on_one_side_only_is_repaired_on_a_re_run() {
    let (plan, s, secrets) = setup(&example());
    let api = Fake::with_capa(&plan);
    run(&api, &s, &secrets, false).unwrap();
    // Someone deleted one GCP tunnel and changed a key on the AWS side.
    {
        let mut i = api.0.borrow_mut();
        let gone = i
            .res
            .keys()
            .find(|k| k.contains("/vpnTunnels/"))
            .cloned()
            .unwrap();
        i.res.remove(&gone);
        let vpn = i
            .res
            .iter_mut()
            .find(|(k, _)| k.starts_with("CreateVpnConnection/"))
            .unwrap()
            .1;
        vpn["Options.TunnelOptions.1.PreSharedKey"] = json!("somethingElse1");
    }
    let dry = run(&api, &s, &secrets, true).unwrap();
    let changed: Vec<_> = dry
        .steps
        .iter()
        .filter(|r| r.action != Action::Unchanged)
        .collect();
    assert_eq!(changed.len(), 2, "{changed:#?}");
    assert!(
        changed
            .iter()
            .any(|r| r.kind == "vpn-tunnel" && r.action == Action::Create)
    );
    let upd = changed.iter().find(|r| r.kind == "vpn-connection").unwrap();
    assert_eq!(upd.action, Action::Update);
    assert_eq!(upd.detail, "Options.TunnelOptions.1.PreSharedKey");
    let fix = run(&api, &s, &secrets, false).unwrap();
    assert_eq!(
        fix.steps
            .iter()
            .filter(|r| r.action != Action::Unchanged)
            .count(),
        2
    );
    assert!(run(&api, &s, &secrets, false).unwrap().all_unchanged());
}
