//! The simulated CAPG's use of the Google Cloud API fake's state, routers/subnets/firewalls
//! patched through operations, and random faults, driven by the official SDK clients.

mod common;

use common::gcp::*;
use std::time::Duration;

use common::*;
use google_cloud_compute_v1::client::{Firewalls, Networks, Subnetworks};
use google_cloud_compute_v1::model;
use google_cloud_lro::Poller;
use serde_json::{Value, json};

/// The simulated CAPG: without the network and subnet in the project the GCPCluster stays not
/// ready with a precise message; once `gcp setup`'s calls created them, the cluster proceeds;
/// a tcp/50000 rule may come from the project's firewalls instead of the GCPCluster's own.
#[tokio::test]
async fn capg_needs_the_network_and_subnet_and_reads_project_firewalls() {
    let crds = crds_dir();
    let (mut sim, url) = start(|c| {
        c.crds_dir = crds.clone();
        c.egress_ip = Some("203.0.113.10".parse().unwrap());
        c.speed = 50.0;
    })
    .await;
    let client = sim.client().await;
    for f in ["namespace.yaml", "gcp-a.yaml", "gcp-blocked.yaml"] {
        apply_file(&client, &fixtures().join(f)).await.unwrap();
    }
    let stuck = eventually("gcp-a stuck on its network", 30, || async {
        cluster(&client, "gcp-a").await.filter(|c| {
            condition(c, "InfrastructureReady").is_some_and(|x| {
                x["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("network `demo-net` not found in project `demo-project`")
            })
        })
    })
    .await;
    let msg = condition(&stuck, "InfrastructureReady").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("meshfleet gcp setup"), "{msg}");
    // Stays stuck (well past the provisioning delay at speed 50).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = cluster(&client, "gcp-a").await.unwrap();
    assert_ne!(
        condition(&c, "InfrastructureReady").unwrap()["status"],
        "True"
    );

    // The calls `gcp setup` makes: enable Compute, network, then the subnet.
    enable_in(&url, "demo-project", &["compute.googleapis.com"]).await;
    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    for n in ["demo-net", "blocked-net"] {
        nets.insert()
            .set_project("demo-project")
            .set_body(network(n))
            .poller()
            .until_done()
            .await
            .unwrap();
    }
    eventually("gcp-a waits for its subnet", 30, || async {
        cluster(&client, "gcp-a").await.filter(|c| {
            condition(c, "InfrastructureReady").is_some_and(|x| {
                x["message"].as_str().unwrap_or("").contains(
                    "subnetwork `gcp-a` in region `europe-west1` of network `demo-net` not found",
                )
            })
        })
    })
    .await;
    let subs = Subnetworks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    for (name, net, cidr) in [
        ("gcp-a", "demo-net", "10.0.0.0/20"),
        ("gcp-blocked", "blocked-net", "10.2.0.0/20"),
    ] {
        subs.insert()
            .set_project("demo-project")
            .set_region("europe-west1")
            .set_body(
                model::Subnetwork::new()
                    .set_name(name)
                    .set_network(format!("global/networks/{net}"))
                    .set_ip_cidr_range(cidr),
            )
            .poller()
            .until_done()
            .await
            .unwrap();
    }
    eventually("gcp-a Available", 60, || async {
        cluster(&client, "gcp-a")
            .await
            .filter(|c| condition(c, "Available").is_some_and(|x| x["status"] == "True"))
    })
    .await;
    // gcp-blocked's own rules do not admit the egress: stuck on tcp/50000 ...
    eventually("gcp-blocked stuck on 50000", 60, || async {
        cluster(&client, "gcp-blocked").await.filter(|c| {
            condition(c, "ControlPlaneInitialized")
                .is_some_and(|x| x["message"].as_str().unwrap_or("").contains("50000"))
        })
    })
    .await;
    // ... until the project's firewall on its network does.
    let fws = Firewalls::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    fws.insert()
        .set_project("demo-project")
        .set_body(
            model::Firewall::new()
                .set_name("blocked-net-talos-apid")
                .set_network("global/networks/blocked-net")
                .set_source_ranges(["203.0.113.10/32"])
                .set_allowed([model::firewall::Allowed::new()
                    .set_ip_protocol("tcp")
                    .set_ports(["50000"])]),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    eventually("gcp-blocked initialized", 60, || async {
        cluster(&client, "gcp-blocked").await.filter(|c| {
            condition(c, "ControlPlaneInitialized").is_some_and(|x| x["status"] == "True")
        })
    })
    .await;
    sim.stop().await;
}

/// Changes after creation: a router's NAT (PATCH), Private Google Access on a subnet, a
/// firewall's source ranges; and the blocking `operations/{op}/wait`.
#[tokio::test]
async fn routers_subnets_and_firewalls_are_patched_through_operations() {
    use google_cloud_compute_v1::client::Routers;
    use google_cloud_compute_v1::model::router_nat::{
        NatIpAllocateOption, SourceSubnetworkIpRangesToNat,
    };
    let (mut sim, url) = start(|_| {}).await;
    admin(
        &url,
        "seed",
        json!({"project": P, "networks": [{"name": "meshfleet"}],
            "subnetworks": [{"name": "gcp-a", "region": "europe-west1", "network": "meshfleet", "ipCidrRange": "10.0.0.0/20"}]}),
    )
    .await;
    let routers = Routers::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let nat = |name: &str| {
        model::RouterNat::new()
            .set_name(name)
            .set_nat_ip_allocate_option(NatIpAllocateOption::AutoOnly)
            .set_source_subnetwork_ip_ranges_to_nat(
                SourceSubnetworkIpRangesToNat::AllSubnetworksAllIpRanges,
            )
    };
    routers
        .insert()
        .set_project(P)
        .set_region("europe-west1")
        .set_body(
            model::Router::new()
                .set_name("meshfleet-router")
                .set_network(format!(
                    "https://www.googleapis.com/compute/v1/projects/{P}/global/networks/meshfleet"
                ))
                .set_bgp(model::RouterBgp::new().set_asn(64514_u32))
                .set_nats([nat("meshfleet-nat")]),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    let op = routers
        .patch()
        .set_project(P)
        .set_region("europe-west1")
        .set_router("meshfleet-router")
        .set_body(model::Router::new().set_nats([nat("meshfleet-nat-2")]))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert!(op.error.is_none());
    let r = routers
        .get()
        .set_project(P)
        .set_region("europe-west1")
        .set_router("meshfleet-router")
        .send()
        .await
        .unwrap();
    assert_eq!(r.nats.len(), 1);
    assert_eq!(r.nats[0].name.as_deref(), Some("meshfleet-nat-2"));
    assert_eq!(
        r.bgp.and_then(|b| b.asn),
        Some(64514),
        "PATCH keeps what it does not name"
    );

    let subs = Subnetworks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    subs.set_private_ip_google_access()
        .set_project(P)
        .set_region("europe-west1")
        .set_subnetwork("gcp-a")
        .set_body(
            model::SubnetworksSetPrivateIpGoogleAccessRequest::new()
                .set_private_ip_google_access(true),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    let s = subs
        .get()
        .set_project(P)
        .set_region("europe-west1")
        .set_subnetwork("gcp-a")
        .send()
        .await
        .unwrap();
    assert_eq!(s.private_ip_google_access, Some(true));

    // Firewall PATCH through plain HTTP, waiting with `operations/{op}/wait`.
    let c = http();
    let op: Value = c
        .post(format!("{url}/compute/v1/projects/{P}/global/firewalls"))
        .json(&json!({"name": "fw", "network": "global/networks/meshfleet",
            "sourceRanges": ["10.0.0.0/8"], "allowed": [{"IPProtocol": "tcp", "ports": ["50000"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["status"], "RUNNING");
    let name = op["name"].as_str().unwrap();
    let done: Value = c
        .post(format!(
            "{url}/compute/v1/projects/{P}/global/operations/{name}/wait"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["progress"], 100);
    let op: Value = c
        .patch(format!("{url}/compute/v1/projects/{P}/global/firewalls/fw"))
        .json(&json!({"sourceRanges": ["203.0.113.10/32"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["operationType"], "patch");
    let name = op["name"].as_str().unwrap();
    c.post(format!(
        "{url}/compute/v1/projects/{P}/global/operations/{name}/wait"
    ))
    .send()
    .await
    .unwrap();
    let fw: Value = c
        .get(format!("{url}/compute/v1/projects/{P}/global/firewalls/fw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fw["sourceRanges"], json!(["203.0.113.10/32"]));
    assert_eq!(fw["allowed"][0]["ports"], json!(["50000"]));
    // A patch of something that does not exist is a 404 in Compute's words.
    let r = c
        .patch(format!(
            "{url}/compute/v1/projects/{P}/global/firewalls/nope"
        ))
        .json(&json!({"sourceRanges": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "The resource 'projects/acme-prod/global/firewalls/nope' was not found"
    );
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    sim.stop().await;
}

/// `--faults 1`: every Google API call fails with a retryable status in Google's error JSON;
/// the admin endpoints keep working. Disabled APIs answer 403 on every service.
#[tokio::test]
async fn random_faults_and_disabled_apis() {
    let (mut sim, url) = start(|c| c.faults = 1.0).await;
    let c = http();
    for _ in 0..5 {
        let r = c
            .get(format!("{url}/compute/v1/projects/{P}/global/networks/n"))
            .send()
            .await
            .unwrap();
        assert!(
            [429, 500, 503].contains(&r.status().as_u16()),
            "{}",
            r.status()
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["status"].is_string(), "{v}");
    }
    assert!(state(&url).await["projects"].is_object());
    sim.stop().await;

    let (mut sim, url) = start(|_| {}).await;
    for (path, service) in [
        (
            format!("/v1/projects/{P}/serviceAccounts/x@{P}.iam.gserviceaccount.com"),
            "iam.googleapis.com",
        ),
        (
            format!("/storage/v1/b?project={P}"),
            "storage.googleapis.com",
        ),
    ] {
        let r = c.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["details"][0]["reason"], "SERVICE_DISABLED",
            "{v}"
        );
        assert_eq!(v["error"]["details"][0]["metadata"]["service"], service);
    }
    sim.stop().await;
}
