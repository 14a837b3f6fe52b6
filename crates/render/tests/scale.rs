//! Large fleets (issue #17): the text-only render gives exactly `render`'s files, two renders
//! of Cilium's largest mesh are byte-identical, and the output grows linearly with the fleet.

mod common;

use meshfleet_render::{render, render_files};

fn fleet(n: usize) -> (meshfleet_spec::Fleet, meshfleet_plan::Plan) {
    let fleet = common::parse(&common::large_fleet_text(n, 511));
    let plan = common::plan(&fleet);
    (fleet, plan)
}

#[test]
fn render_files_is_render_without_values() {
    for (fleet, plan) in [
        {
            let f = common::parse(&common::example_fleet_text());
            let p = common::plan(&f);
            (f, p)
        },
        fleet(40),
    ] {
        let full = render(&fleet, &plan).expect("render");
        let files = render_files(&fleet, &plan).expect("render_files");
        assert_eq!(files.files, full.files);
        assert_eq!(files.objects, full.all_objects().count());
    }
}

#[test]
fn two_renders_of_511_clusters_are_byte_identical() {
    // Each from its own parse and plan, so nothing is shared between them but the text.
    let (f1, p1) = fleet(511);
    let a = render_files(&f1, &p1).expect("render");
    let (f2, p2) = fleet(511);
    let b = render_files(&f2, &p2).expect("render");
    assert_eq!(a.files.len(), b.files.len());
    for (x, y) in a.files.iter().zip(&b.files) {
        assert_eq!(x.path, y.path);
        assert!(
            x.contents == y.contents,
            "{} differs between renders",
            x.path
        );
    }
}

#[test]
fn output_grows_linearly_with_the_fleet() {
    let bytes = |n| -> f64 {
        let (f, p) = fleet(n);
        let r = render_files(&f, &p).expect("render");
        r.files.iter().map(|f| f.contents.len()).sum::<usize>() as f64 / n as f64
    };
    let (small, large) = (bytes(64), bytes(511));
    // Per-cluster bytes may grow a little (longer names, more firewall sources per region),
    // never with the fleet's size: a list of every peer per cluster would make this ~8×.
    assert!(
        large < small * 1.25,
        "bytes per cluster: {small:.0} at 64 clusters, {large:.0} at 511"
    );
}
