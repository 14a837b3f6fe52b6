//! Shared test support: the example fleet's AWS prerequisites and fast options.

#![allow(dead_code)]

use std::time::Duration;

use meshfleet_aws::{AwsPrerequisites, RetryPolicy, SetupOptions};

/// Sidero Labs' account (render's `TALOS_AMI_OWNER`).
pub const OWNER: &str = "540036508848";

/// The AWS prerequisites of `examples/fleet.yaml` (one cluster in eu-west-1, key pair `ops`).
pub fn example_prereq() -> AwsPrerequisites {
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
    meshfleet_render::aws_prerequisites(&fleet, &plan)
        .expect("renders")
        .expect("example fleet has AWS clusters")
}

/// The example with a second region, us-east-1 (AMI name of the same release).
pub fn two_region_prereq() -> AwsPrerequisites {
    let mut p = example_prereq();
    let mut r = p.regions[0].clone();
    r.ami.name = r.ami.name.replace(&r.region, "us-east-1");
    r.region = "us-east-1".to_owned();
    p.regions.push(r);
    p
}

/// Options with millisecond backoffs and stack polling.
pub fn fast_options() -> SetupOptions {
    SetupOptions {
        endpoint: None,
        dry_run: false,
        stack_region: None,
        retry: RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            poll: Duration::from_millis(1),
            stack_timeout: Duration::from_secs(20),
        },
    }
}
