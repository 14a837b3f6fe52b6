//! What the SDK-seam tests share: a [`NetApi`] that sends AWS steps through the real
//! [`Ec2`] seam and keeps GCP steps in memory (keyed as the simulator's network model reads the
//! Compute fake), the fleets, and helpers over reports.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use meshfleet_net::aws::Ec2;
use meshfleet_net::desired::{Cloud, Step, steps, tunnel_names};
use meshfleet_net::exec::{Action, ApiError, CapaVpc, NetApi, Options, Report};
use meshfleet_net::secrets::Secrets;
use meshfleet_plan::Plan;
use meshfleet_spec::Fleet;
use serde_json::{Value, json};

/// AWS through the SDK; GCP in memory, keyed as the network model reads the Compute fake.
pub struct Mixed {
    /// The seam under test.
    pub ec2: Ec2,
    /// GCP resources by `regions/<r>/<collection>/<name>` or `global/…`.
    pub gcp: RefCell<BTreeMap<String, Value>>,
}

fn gcp_key(step: &Step, body: &Value) -> String {
    let name = body["name"].as_str().unwrap_or_default();
    let r = &step.region;
    match step.action {
        "vpnGateways.insert" => format!("regions/{r}/vpnGateways/{name}"),
        "routers.insert" | "routers.patch" => format!("regions/{r}/routers/{name}"),
        "vpnTunnels.insert" => format!("regions/{r}/vpnTunnels/{name}"),
        _ => format!("global/externalVpnGateways/{name}"),
    }
}

impl NetApi for Mixed {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        if step.cloud == Cloud::Aws {
            return self.ec2.read(step, body).await;
        }
        let mut v = self.gcp.borrow().get(&gcp_key(step, body)).cloned();
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
        if step.cloud == Cloud::Aws {
            return self.ec2.create(step, body).await;
        }
        let mut v = body.clone();
        if step.action == "vpnGateways.insert" {
            v["vpnInterfaces"] = json!([{"id": 0, "ipAddress": "35.242.0.1"},
                {"id": 1, "ipAddress": "35.243.0.1"}]);
        }
        self.gcp.borrow_mut().insert(gcp_key(step, body), v.clone());
        Ok(v)
    }
    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        if step.cloud == Cloud::Aws {
            return self.ec2.update(step, body, current, fields).await;
        }
        let mut v = current.clone();
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.gcp.borrow_mut().insert(gcp_key(step, body), v.clone());
        Ok(v)
    }
    async fn capa_vpc(&self, region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        self.ec2.capa_vpc(region, cluster).await
    }
    async fn account_id(&self) -> Result<String, ApiError> {
        self.ec2.account_id().await
    }
}

/// The fleet, its plan, its steps and fresh secrets.
pub fn setup(text: &str) -> (Fleet, Plan, Vec<Step>, Secrets) {
    let fleet = meshfleet_spec::parse(text).unwrap().fleet;
    let plan = meshfleet_plan::plan(&fleet, None).unwrap();
    let mut secrets = Secrets::default();
    secrets
        .ensure(&tunnel_names(&fleet, &plan).unwrap())
        .unwrap();
    let s = steps(&fleet, &plan, &secrets).unwrap();
    (fleet, plan, s, secrets)
}

/// The example fleet file.
pub fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .unwrap()
}

/// The rows of AWS steps, with their actions.
pub fn aws_rows<'a>(r: &'a Report, s: &'a [Step]) -> Vec<(&'a str, Action, &'a str)> {
    r.steps
        .iter()
        .zip(s)
        .filter(|(_, st)| st.cloud == Cloud::Aws)
        .map(|(row, st)| (st.action, row.action, st.id.as_str()))
        .collect()
}

/// Three AWS regions, two VPCs in one; `VIA` is the `awsCrossRegion` kind.
pub const AWS3: &str = "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: { name: tri }\nspec:\n  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }\n  management: { egressCIDRs: [203.0.113.10/32] }\n  interconnect: { awsCrossRegion: VIA }\n  providers: { aws: {} }\n  clusters:\n    - { name: use1, provider: aws, region: us-east-1, zones: [us-east-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1, provider: aws, region: eu-west-1, zones: [eu-west-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: euw1b, provider: aws, region: eu-west-1, zones: [eu-west-1b], controlPlane: { replicas: 1, machineType: m6i.large } }\n    - { name: aps1, provider: aws, region: ap-south-1, zones: [ap-south-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n";

/// Fast retries.
pub fn opts() -> Options {
    Options {
        attempts: 3,
        backoff: std::time::Duration::from_millis(10),
        ..Options::default()
    }
}
