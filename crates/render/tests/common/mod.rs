//! Shared test support: fleets, plans and the upstream schema directory.

#![allow(dead_code)]

use std::path::PathBuf;

use meshfleet_plan::Plan;
use meshfleet_spec::Fleet;

/// The schema directory, or `None` (after a loud message) when it is absent.
pub fn schema_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MESHFLEET_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/schemas"
            ))
        });
    if dir.join("crds").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             SKIPPED: upstream schemas not found at `{}`\n\
             set MESHFLEET_SCHEMA_DIR to the shared/schemas directory to run this test\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
            dir.display()
        );
        None
    }
}

/// The example fleet shipped with the project.
pub fn example_fleet_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .expect("examples/fleet.yaml")
}

/// Parse and validate a fleet, failing the test with every diagnostic.
pub fn parse(text: &str) -> Fleet {
    match meshfleet_spec::parse(text) {
        Ok(l) => l.fleet,
        Err(r) => panic!("fleet does not validate: {r:#?}"),
    }
}

/// A generated fleet of `n` clusters alternating GCP and AWS across a few regions.
pub fn large_fleet_text(n: usize, max_connected: u16) -> String {
    let mut s = format!(
        "apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: {{ name: big }}
spec:
  versions: {{ kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }}
  network:
    pods:     {{ pool: 10.0.0.0/9,    prefixLength: 19 }}
    services: {{ pool: 10.128.0.0/12, prefixLength: 22 }}
    nodes:    {{ pool: 10.160.0.0/12, prefixLength: 24 }}
  mesh: {{ maxConnectedClusters: {max_connected} }}
  management: {{ egressCIDRs: [203.0.113.10/32] }}
  interconnect: {{ gcpToAws: haVpn, awsCrossRegion: transitGateway }}
  providers:
    gcp: {{ project: big-project, network: meshfleet, imageBucket: big-talos-images }}
    aws: {{ sshKeyName: ops }}
  clusters:
"
    );
    let gcp = [
        ("europe-west1", "b"),
        ("us-east1", "c"),
        ("asia-east1", "a"),
    ];
    let aws = [("eu-west-1", "a"), ("us-east-1", "b")];
    for i in 0..n {
        if i % 2 == 0 {
            let (r, z) = gcp[i % gcp.len()];
            s.push_str(&format!(
                "    - {{ name: c{i}, provider: gcp, region: {r}, zones: [{r}-{z}], controlPlane: {{ replicas: 3, machineType: n2-standard-2 }}, workerPools: [{{ name: w, replicas: 2, machineType: n2-standard-4 }}] }}\n"
            ));
        } else {
            let (r, z) = aws[i % aws.len()];
            s.push_str(&format!(
                "    - {{ name: c{i}, provider: aws, region: {r}, zones: [{r}{z}], controlPlane: {{ replicas: 3, machineType: m6i.large }}, workerPools: [{{ name: w, replicas: 2, machineType: m6i.xlarge }}] }}\n"
            ));
        }
    }
    s
}

/// An AWS-only fleet over two regions (what a LoadBalancer clustermesh-apiserver needs: GCP has
/// no deliverable cloud controller manager), with the mesh options as given.
pub fn aws_fleet_text(mesh: &str) -> String {
    format!(
        "apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: {{ name: awsonly }}
spec:
  versions: {{ kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }}
  mesh: {{ {mesh} }}
  management: {{ egressCIDRs: [203.0.113.10/32] }}
  interconnect: {{ awsCrossRegion: transitGateway }}
  providers:
    aws: {{}}
  clusters:
    - name: aws-euw1
      provider: aws
      region: eu-west-1
      zones: [eu-west-1a, eu-west-1b, eu-west-1c]
      controlPlane: {{ replicas: 3, machineType: m6i.large }}
      workerPools:
        - {{ name: general, replicas: 4, machineType: m6i.xlarge }}
        - {{ name: single, replicas: 1, machineType: m6i.xlarge }}
    - name: aws-use1
      provider: aws
      region: us-east-1
      zones: [us-east-1a, us-east-1b]
      controlPlane: {{ replicas: 1, machineType: m6i.large }}
      workerPools:
        - {{ name: general, replicas: 2, machineType: m6i.xlarge }}
"
    )
}

/// Plan with the real planner (no lock: a first plan).
pub fn plan(fleet: &Fleet) -> Plan {
    match meshfleet_plan::plan(fleet, None) {
        Ok(p) => p,
        Err(r) => panic!("the planner rejected the fleet: {r:#?}"),
    }
}

/// Made-up endpoints for every mesh peer of `cluster`: node IPs on the NodePort, or a load
/// balancer address on 2379.
pub fn peer_endpoints(
    plan: &Plan,
    cluster: &str,
    lb: bool,
) -> std::collections::BTreeMap<String, meshfleet_render::PeerEndpoint> {
    plan.mesh_peers
        .get(cluster)
        .map(|peers| {
            peers
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let e = if lb {
                        meshfleet_render::PeerEndpoint {
                            ips: Vec::new(),
                            address: Some(format!("{p}.lb.example.com")),
                            port: meshfleet_render::CLUSTERMESH_LB_PORT,
                        }
                    } else {
                        meshfleet_render::PeerEndpoint {
                            ips: vec![format!("10.{}.0.{}", i / 250, i % 250 + 1)],
                            address: None,
                            port: meshfleet_render::CLUSTERMESH_NODE_PORT,
                        }
                    };
                    (p.clone(), e)
                })
                .collect()
        })
        .unwrap_or_default()
}
