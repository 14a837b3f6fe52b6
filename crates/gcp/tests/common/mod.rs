//! Shared test support: the example fleet's GCP prerequisites and fast options.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use meshfleet_gcp::{GcpPrerequisites, RetryPolicy, SetupOptions};
use meshfleet_render::{Allowed, GcpFirewallRule};

/// The GCP prerequisites of `examples/fleet.yaml`.
pub fn example_prereq() -> GcpPrerequisites {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleet.yaml"
    ))
    .expect("examples/fleet.yaml");
    let fleet = match meshfleet_spec::parse(&text) {
        Ok(l) => l.fleet,
        Err(r) => panic!("example fleet does not validate: {r:#?}"),
    };
    let plan = meshfleet_plan::plan(&fleet, None).expect("example fleet plans");
    meshfleet_render::gcp_prerequisites(&fleet, &plan)
        .expect("renders")
        .expect("example fleet has GCP clusters")
}

/// The example's prerequisites plus firewall rules for `gcp setup` to own. The rendered
/// prerequisites list none (every planned rule is cluster-scoped, and CAPG owns those through
/// the GCPCluster), but the setup still converges any rule it is given; these exercise that.
pub fn example_prereq_with_rules() -> GcpPrerequisites {
    let mut p = example_prereq();
    assert!(
        p.firewall_rules.is_empty(),
        "render gives gcp setup no firewall rules: CAPG owns the cluster-scoped ones"
    );
    p.firewall_rules = (0..12u16)
        .map(|i| GcpFirewallRule {
            name: format!("meshfleet-setup-rule-{i}"),
            description: format!("meshfleet: test rule {i}"),
            direction: "INGRESS",
            source_ranges: vec!["203.0.113.0/24".to_owned()],
            target_tags: vec!["gcp-euw1-control-plane".to_owned()],
            allowed: vec![Allowed {
                ip_protocol: "TCP",
                ports: vec![(10000 + i).to_string()],
            }],
        })
        .collect();
    p
}

/// Options with millisecond backoffs, keys under `dir/keys`, the image from `dir/talos.raw.tar.gz`.
pub fn fast_options(dir: &Path) -> SetupOptions {
    let image = dir.join("talos.raw.tar.gz");
    if !image.exists() {
        std::fs::write(&image, b"not really a Talos image, but bytes to upload").expect("image");
    }
    SetupOptions {
        endpoint: None,
        dry_run: false,
        image_source: Some(image.display().to_string()),
        key_dir: dir.join("keys"),
        retry: RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            propagation: Duration::from_secs(2),
        },
    }
}
