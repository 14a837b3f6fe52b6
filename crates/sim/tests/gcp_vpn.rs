//! The GCP fake's HA VPN collections over plain HTTP (the Compute JSON API meshfleet's steps
//! call): an HA gateway gets two interface addresses, an external gateway and a tunnel are
//! stored as sent, a router patch adds interfaces and BGP peers; with separate networks the
//! simulator's model reads them.

mod common;

use common::gcp::*;
use serde_json::{Value, json};

async fn insert(url: &str, path: &str, body: Value) -> Value {
    let base = format!("{url}/compute/v1/projects/{}", P);
    let r = http()
        .post(format!("{base}/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    let op: Value = r.json().await.unwrap();
    let name = op["name"].as_str().unwrap().to_string();
    let scope = if path.starts_with("regions/") {
        path.splitn(3, '/').take(2).collect::<Vec<_>>().join("/")
    } else {
        "global".into()
    };
    let done: Value = http()
        .post(format!("{base}/{scope}/operations/{name}/wait"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "DONE", "{done}");
    done
}

async fn get(url: &str, path: &str) -> Value {
    http()
        .get(format!("{url}/compute/v1/projects/{}/{path}", P))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn ha_vpn_resources_are_served() {
    let (mut sim, url) = start(|c| c.separate_networks = true).await;
    enable(&url, &["compute.googleapis.com"]).await;
    insert(
        &url,
        "global/networks",
        json!({"name": "meshfleet", "autoCreateSubnetworks": false}),
    )
    .await;
    insert(
        &url,
        "regions/europe-west1/vpnGateways",
        json!({"name": "gw", "network": "global/networks/meshfleet"}),
    )
    .await;
    let gw = get(&url, "regions/europe-west1/vpnGateways/gw").await;
    let ifs = gw["vpnInterfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{gw}");
    assert_ne!(ifs[0]["ipAddress"], ifs[1]["ipAddress"]);
    assert!(
        gw["network"]
            .as_str()
            .unwrap()
            .ends_with("/global/networks/meshfleet")
    );

    insert(
        &url,
        "global/externalVpnGateways",
        json!({"name": "aws", "redundancyType": "FOUR_IPS_REDUNDANCY",
            "interfaces": [{"id": 0, "ipAddress": "203.0.113.1"}]}),
    )
    .await;
    insert(
        &url,
        "regions/europe-west1/routers",
        json!({"name": "r", "network": "global/networks/meshfleet", "bgp": {"asn": 65010}}),
    )
    .await;
    insert(
        &url,
        "regions/europe-west1/vpnTunnels",
        json!({"name": "t0", "vpnGateway": "regions/europe-west1/vpnGateways/gw",
            "vpnGatewayInterface": 0, "peerExternalGateway": "global/externalVpnGateways/aws",
            "peerExternalGatewayInterface": 0, "sharedSecret": "k", "ikeVersion": 2,
            "router": "regions/europe-west1/routers/r"}),
    )
    .await;
    let t = get(&url, "regions/europe-west1/vpnTunnels/t0").await;
    assert_eq!(t["kind"], "compute#vpnTunnel");
    let r = http()
        .patch(format!(
            "{url}/compute/v1/projects/{}/regions/europe-west1/routers/r",
            P
        ))
        .json(&json!({"interfaces": [{"name": "if0", "ipRange": "169.254.16.2/30",
            "linkedVpnTunnel": "regions/europe-west1/vpnTunnels/t0"}],
            "bgpPeers": [{"name": "p0", "interfaceName": "if0", "peerIpAddress": "169.254.16.1", "peerAsn": 64512}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    common::eventually("router patched", 10, || {
        let url = url.clone();
        async move {
            let r = get(&url, "regions/europe-west1/routers/r").await;
            (r["bgpPeers"].as_array().map(Vec::len) == Some(1)).then_some(())
        }
    })
    .await;
    sim.stop().await;
}
