//! The SDK seam's AWS half against the simulator's EC2 fake, inside a full executor run of the
//! example fleet's HA VPN steps: Transit Gateway, customer gateways and VPN connections go
//! through `aws-sdk-ec2` to the fake; the steps the SDK seam does not serve yet (GCP, VPC
//! attachments, routes) and CAPA's VPC (the fake has no `DescribeSubnets`) come from a small
//! in-memory stand-in. A second run finds everything by `Name` tag and changes nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use meshfleet_net::aws::Ec2;
use meshfleet_net::desired::{Step, steps, tunnel_names};
use meshfleet_net::exec::{self, Action, ApiError, CapaVpc, NetApi, Options};
use meshfleet_net::secrets::Secrets;
use meshfleet_sim::aws::{Aws, serve};
use serde_json::{Value, json};

const SDK: [&str; 3] = [
    "CreateTransitGateway",
    "CreateCustomerGateway",
    "CreateVpnConnection",
];

struct Mixed {
    ec2: Ec2,
    rest: RefCell<BTreeMap<String, Value>>,
}

fn key(step: &Step, body: &Value) -> String {
    match step.action {
        "routers.patch" => step.id.trim_end_matches("/bgp").to_string(),
        "CreateRoute" => format!("{}{}", step.id, body["RouteTableId"]),
        _ => step.id.clone(),
    }
}

impl NetApi for Mixed {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        if SDK.contains(&step.action) {
            return self.ec2.read(step, body).await;
        }
        let mut v = self.rest.borrow().get(&key(step, body)).cloned();
        if let (Some(v), "routers.patch") = (v.as_mut(), step.action) {
            for f in ["interfaces", "bgpPeers"] {
                if v.get(f).is_none() {
                    v[f] = json!([]);
                }
            }
        }
        Ok(v)
    }
    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        if SDK.contains(&step.action) {
            return self.ec2.create(step, body).await;
        }
        let mut v = body.clone();
        match step.action {
            "vpnGateways.insert" => {
                v["vpnInterfaces"] = json!([{"id": 0, "ipAddress": "35.242.0.1"},
                    {"id": 1, "ipAddress": "35.243.0.1"}]);
            }
            "CreateTransitGatewayVpcAttachment" => {
                v["transitGatewayAttachmentId"] = json!("tgw-attach-1");
            }
            _ => {}
        }
        self.rest.borrow_mut().insert(key(step, body), v.clone());
        Ok(v)
    }
    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        if SDK.contains(&step.action) {
            return self.ec2.update(step, body, current, fields).await;
        }
        let mut v = current.clone();
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.rest.borrow_mut().insert(key(step, body), v.clone());
        Ok(v)
    }
    async fn capa_vpc(&self, _region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        Ok(Some(CapaVpc {
            vpc_id: format!("vpc-{cluster}"),
            private_subnet_ids: vec![format!("subnet-{cluster}")],
            route_table_ids: vec![format!("rtb-{cluster}")],
        }))
    }
    async fn account_id(&self) -> Result<String, ApiError> {
        Ok("123456789012".into())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tgw_customer_gateways_and_vpns_through_the_sdk_are_created_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let aws = Arc::new(Aws::open(None, url.clone(), 50.0).unwrap());
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(aws.clone(), listener, rx));
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
    let ec2 = Ec2::new(conf);
    assert_eq!(ec2.account_id().await.unwrap(), "123456789012");
    let api = Mixed {
        ec2,
        rest: RefCell::default(),
    };

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .unwrap();
    let fleet = meshfleet_spec::parse(&text).unwrap().fleet;
    let plan = meshfleet_plan::plan(&fleet, None).unwrap();
    let mut secrets = Secrets::default();
    secrets
        .ensure(&tunnel_names(&fleet, &plan).unwrap())
        .unwrap();
    let s = steps(&fleet, &plan, &secrets).unwrap();
    let opts = Options {
        attempts: 3,
        backoff: std::time::Duration::from_millis(10),
        ..Options::default()
    };

    let first = exec::run(&api, &s, &secrets, &opts).await.unwrap();
    let sdk_rows: Vec<_> = first
        .steps
        .iter()
        .zip(&s)
        .filter(|(_, st)| SDK.contains(&st.action))
        .collect();
    assert_eq!(
        sdk_rows.len(),
        5,
        "one TGW, two customer gateways, two VPNs"
    );
    assert!(sdk_rows.iter().all(|(r, _)| r.action == Action::Create));

    // What reached the fake: the customer gateways carry the HA gateway's addresses, the VPN
    // tunnels the fleet's keys and inside ranges; the external VPN gateway got AWS's addresses.
    aws.read(|st| {
        let e = &st.ec2;
        assert_eq!(e.transit_gateways.len(), 1);
        let mut ips: Vec<&str> = e
            .customer_gateways
            .values()
            .map(|c| c.ip.as_str())
            .collect();
        ips.sort();
        assert_eq!(ips, ["35.242.0.1", "35.243.0.1"]);
        assert_eq!(e.vpn_connections.len(), 2);
        let keys: Vec<&str> = secrets.tunnels.values().map(|t| t.psk.as_str()).collect();
        for v in e.vpn_connections.values() {
            for t in &v.tunnels {
                assert!(keys.contains(&t.psk.as_str()));
                assert!(
                    secrets
                        .tunnels
                        .values()
                        .any(|x| x.inside_cidr.to_string() == t.inside_cidr)
                );
            }
        }
    });
    let ext = api
        .rest
        .borrow()
        .iter()
        .find(|(k, _)| k.contains("externalVpnGateways"))
        .map(|(_, v)| v.clone())
        .unwrap();
    let outside: Vec<&str> = ext["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ipAddress"].as_str().unwrap())
        .collect();
    assert_eq!(outside.len(), 4);
    assert!(
        outside.iter().all(|ip| ip.starts_with("203.0.113.")),
        "{outside:?}"
    );

    let second = exec::run(&api, &s, &secrets, &opts).await.unwrap();
    assert!(second.all_unchanged(), "{second:#?}");
    aws.read(|st| {
        assert_eq!(st.ec2.transit_gateways.len(), 1);
        assert_eq!(st.ec2.customer_gateways.len(), 2);
        assert_eq!(st.ec2.vpn_connections.len(), 2);
    });
}
