//! The seam's Compute half against the simulator's GCP fake, through `google-cloud-compute-v1`,
//! inside a full executor run of the example fleet's HA VPN steps joined by [`Clouds`]: the
//! AWS steps go to a small in-memory stand-in (the EC2 half is tested against the AWS fake in
//! `aws_sim.rs`). A second run changes nothing; a tunnel deleted on GCP is made again; a
//! changed pre-shared key recreates the tunnel.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use meshfleet_net::Clouds;
use meshfleet_net::desired::{Cloud, Step, steps, tunnel_names};
use meshfleet_net::exec::{self, Action, ApiError, CapaVpc, NetApi, Options};
use meshfleet_net::gcp::{Compute, PSK_LABEL, psk_fingerprint};
use meshfleet_net::secrets::Secrets;
use meshfleet_sim::gcp::{Gcp, serve};
use serde_json::{Value, json};

const PROJECT: &str = "my-project";

/// Every AWS step in memory: made resources get ids, VPN connections two tunnel addresses.
#[derive(Default)]
struct MemAws {
    made: RefCell<BTreeMap<String, Value>>,
    n: RefCell<u32>,
}

fn key(step: &Step, body: &Value) -> String {
    match step.action {
        "CreateRoute" => format!("{}{}", step.id, body["RouteTableId"]),
        _ => step.id.clone(),
    }
}

impl NetApi for MemAws {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        assert_eq!(step.cloud, Cloud::Aws, "{}", step.id);
        Ok(self.made.borrow().get(&key(step, body)).cloned())
    }
    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        assert_eq!(step.cloud, Cloud::Aws, "{}", step.id);
        let mut v = body.clone();
        let mut n = self.n.borrow_mut();
        *n += 1;
        match step.action {
            "CreateTransitGateway" => {
                v["transitGatewayId"] = json!(format!("tgw-{n}"));
                v["associationDefaultRouteTableId"] = json!(format!("tgw-rtb-{n}"));
            }
            "CreateCustomerGateway" => v["customerGatewayId"] = json!(format!("cgw-{n}")),
            "CreateVpnConnection" => {
                v["vpnConnectionId"] = json!(format!("vpn-{n}"));
                v["tunnels"] = json!([{"outsideIpAddress": format!("203.0.113.{}", 2 * *n)},
                    {"outsideIpAddress": format!("203.0.113.{}", 2 * *n + 1)}]);
            }
            "CreateTransitGatewayVpcAttachment" => {
                v["transitGatewayAttachmentId"] = json!(format!("tgw-attach-{n}"));
            }
            _ => {}
        }
        self.made.borrow_mut().insert(key(step, body), v.clone());
        Ok(v)
    }
    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        _fields: &[String],
    ) -> Result<Value, ApiError> {
        let mut v = current.clone();
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.made.borrow_mut().insert(key(step, body), v.clone());
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

async fn fake() -> (Arc<Gcp>, String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let gcp = Arc::new(Gcp::open(None, url.clone(), 50.0, 0.0).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(gcp.clone(), listener, rx));
    // What `gcp setup` leaves: Compute enabled, the fleet's network.
    gcp.with_state(|st| {
        let p = st.projects.entry(PROJECT.into()).or_default();
        p.services.insert("compute.googleapis.com".into());
        p.compute.insert(
            "global/networks/meshfleet".into(),
            json!({"kind": "compute#network", "name": "meshfleet",
                "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/meshfleet")}),
        );
    });
    (gcp, url, stop)
}

fn compute_kinds(gcp: &Gcp) -> BTreeMap<String, usize> {
    gcp.read(|st| {
        let mut m = BTreeMap::new();
        for k in st.projects[PROJECT].compute.keys() {
            let coll = k.rsplit('/').nth(1).unwrap_or_default().to_string();
            *m.entry(coll).or_default() += 1;
        }
        m
    })
}

#[tokio::test(flavor = "current_thread")]
async fn ha_vpn_gcp_side_through_the_sdk_created_once_and_repaired() {
    let (gcp, url, _stop) = fake().await;
    let api = Clouds {
        gcp: Compute::new(PROJECT, Some(&url)).await.unwrap(),
        aws: MemAws::default(),
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

    // A dry run first: reads only, everything planned.
    let dry = exec::run(
        &api,
        &s,
        &secrets,
        &Options {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert!(dry.steps.iter().all(|r| r.action == Action::Create));
    assert_eq!(compute_kinds(&gcp).get("vpnTunnels"), None);

    let first = exec::run(&api, &s, &secrets, &opts).await.unwrap();
    let gcp_rows: Vec<_> = first
        .steps
        .iter()
        .zip(&s)
        .filter(|(_, st)| st.cloud == Cloud::Gcp)
        .map(|(r, _)| (r.kind, r.action))
        .collect();
    assert_eq!(
        gcp_rows,
        [
            ("vpn-gateway", Action::Create),
            ("router", Action::Create),
            ("external-vpn-gateway", Action::Create),
            ("vpn-tunnel", Action::Create),
            ("vpn-tunnel", Action::Create),
            ("vpn-tunnel", Action::Create),
            ("vpn-tunnel", Action::Create),
            // The router exists (made above): its interfaces and peers are an update.
            ("router-bgp", Action::Update),
        ]
    );
    let kinds = compute_kinds(&gcp);
    assert_eq!(kinds["vpnGateways"], 1);
    assert_eq!(kinds["routers"], 1);
    assert_eq!(kinds["externalVpnGateways"], 1);
    assert_eq!(kinds["vpnTunnels"], 4);

    // What reached the fake: AWS's tunnel addresses on the external gateway, the keys on the
    // tunnels (stored; Compute answers with a hash), the router's four interfaces and peers,
    // and the HA gateway's addresses in AWS's customer gateways.
    let (ext, tunnels, router) = gcp.read(|st| {
        let c = &st.projects[PROJECT].compute;
        let ext = c
            .iter()
            .find(|(k, _)| k.contains("externalVpnGateways"))
            .unwrap()
            .1
            .clone();
        let tunnels: Vec<Value> = c
            .iter()
            .filter(|(k, _)| k.contains("/vpnTunnels/"))
            .map(|(_, v)| v.clone())
            .collect();
        let router = c
            .iter()
            .find(|(k, _)| k.contains("/routers/"))
            .unwrap()
            .1
            .clone();
        (ext, tunnels, router)
    });
    let outside: Vec<&str> = ext["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ipAddress"].as_str().unwrap())
        .collect();
    assert_eq!(outside.len(), 4, "{ext}");
    assert!(outside.iter().all(|ip| ip.starts_with("203.0.113.")));
    for t in &tunnels {
        let name = t["name"].as_str().unwrap();
        let psk = &secrets.tunnels[name].psk;
        assert_eq!(t["sharedSecret"].as_str(), Some(psk.as_str()));
        assert_eq!(
            t["labels"][PSK_LABEL].as_str(),
            Some(psk_fingerprint(name, psk).as_str())
        );
        assert_eq!(t["ikeVersion"], 2);
    }
    assert_eq!(router["interfaces"].as_array().unwrap().len(), 4);
    assert_eq!(router["bgpPeers"].as_array().unwrap().len(), 4);
    assert_eq!(router["bgp"]["asn"], 65010);
    let cgw_ips: Vec<String> = api
        .aws
        .made
        .borrow()
        .iter()
        .filter(|(k, _)| k.contains("/cgw/"))
        .map(|(_, v)| v["IpAddress"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cgw_ips.len(), 2);
    assert!(
        cgw_ips.iter().all(|ip| ip.starts_with("35.24")),
        "{cgw_ips:?}"
    );

    // The API never answers with a key.
    let r = reqwest::get(format!(
        "{url}/compute/v1/projects/{PROJECT}/regions/{}/vpnTunnels/{}",
        s.iter()
            .find(|x| x.action == "vpnTunnels.insert")
            .unwrap()
            .region,
        tunnels[0]["name"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(!r.contains("sharedSecret\""), "{r}");
    assert!(r.contains("sharedSecretHash"), "{r}");

    // Second run: all unchanged.
    let second = exec::run(&api, &s, &secrets, &opts).await.unwrap();
    assert!(
        second.all_unchanged(),
        "{:?}",
        second
            .steps
            .iter()
            .filter(|r| r.action != Action::Unchanged)
            .collect::<Vec<_>>()
    );

    // A tunnel deleted on GCP: the next run makes it again, nothing else changes.
    let victim = tunnels[1]["name"].as_str().unwrap().to_string();
    let region = s
        .iter()
        .find(|x| x.action == "vpnTunnels.insert")
        .unwrap()
        .region
        .clone();
    let del = reqwest::Client::new()
        .delete(format!(
            "{url}/compute/v1/projects/{PROJECT}/regions/{region}/vpnTunnels/{victim}"
        ))
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success(), "{}", del.status());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(compute_kinds(&gcp)["vpnTunnels"], 3);
    let third = exec::run(&api, &s, &secrets, &opts).await.unwrap();
    let changed: Vec<_> = third
        .steps
        .iter()
        .filter(|r| r.action != Action::Unchanged)
        .map(|r| (r.name.as_str(), r.action))
        .collect();
    assert_eq!(changed, [(victim.as_str(), Action::Create)]);
    assert_eq!(compute_kinds(&gcp)["vpnTunnels"], 4);

    // A new key for one tunnel (the secrets file changed): that tunnel is recreated with it;
    // the report names the field, never the key.
    let mut rotated = secrets.clone();
    let t0 = tunnels[0]["name"].as_str().unwrap().to_string();
    rotated.tunnels.get_mut(&t0).unwrap().psk = "Rotated0key0for0the0test0only0000000000x".into();
    let fourth = exec::run(&api, &s, &rotated, &opts).await.unwrap();
    let changed: Vec<_> = fourth
        .steps
        .iter()
        .filter(|r| r.action != Action::Unchanged)
        .map(|r| (r.kind, r.action, r.detail.clone()))
        .collect();
    assert_eq!(
        changed,
        [
            (
                "vpn-connection",
                Action::Update,
                "Options.TunnelOptions.1.PreSharedKey".to_string()
            ),
            ("vpn-tunnel", Action::Update, "sharedSecret".to_string()),
        ]
    );
    let report = serde_json::to_string(&fourth).unwrap();
    assert!(!report.contains("Rotated0key") && !report.contains(&secrets.tunnels[&t0].psk));
    let t = gcp.read(|st| {
        st.projects[PROJECT]
            .compute
            .iter()
            .find(|(k, _)| k.ends_with(&format!("/vpnTunnels/{t0}")))
            .unwrap()
            .1
            .clone()
    });
    assert_eq!(t["sharedSecret"], rotated.tunnels[&t0].psk);
    let again = exec::run(&api, &s, &rotated, &opts).await.unwrap();
    assert!(again.all_unchanged());
}
