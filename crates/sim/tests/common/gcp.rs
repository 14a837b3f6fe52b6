//! Helpers for the tests that drive the Google Cloud API fake with the official SDK clients.

use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_auth::credentials::{Credentials, anonymous};
use google_cloud_compute_v1::model;
use google_cloud_lro::Poller;
use serde_json::{Value, json};

use super::*;

pub const P: &str = "acme-prod";

pub fn creds() -> Credentials {
    anonymous::Builder::new().build()
}

pub async fn start(f: impl FnOnce(&mut meshfleet_sim::SimConfig)) -> (Sim, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(|c| {
        c.speed = 10.0;
        f(c)
    })
    .await;
    let url = sim.sim.as_ref().unwrap().gcp_url().to_string();
    (sim, url)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn admin(url: &str, path: &str, body: Value) {
    let r = http()
        .post(format!("{url}/_sim/gcp/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

pub async fn state(url: &str) -> Value {
    http()
        .get(format!("{url}/_sim/gcp/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn enable(url: &str, services: &[&str]) {
    enable_in(url, P, services).await
}

pub async fn enable_in(url: &str, project: &str, services: &[&str]) {
    let su = ServiceUsage::builder()
        .with_endpoint(url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let resp = su
        .batch_enable_services()
        .set_parent(format!("projects/{project}"))
        .set_service_ids(services.iter().map(|s| s.to_string()))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(resp.services.len(), services.len());
}

pub async fn cluster(client: &kube::Client, name: &str) -> Option<Value> {
    let probe = json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "fleet"}});
    dyn_api(client, &probe)
        .await
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

pub fn network(name: &str) -> model::Network {
    model::Network::new().set_name(name)
}
