//! Shared test support: the example fleet's GCP prerequisites and fast options.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use meshfleet_gcp::{GcpPrerequisites, RetryPolicy, SetupOptions};

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
