//! Plan + render of a 511-cluster fleet (Cilium's largest mesh, `maxConnectedClusters: 511`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/mod.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let fleet = common::parse(&common::large_fleet_text(511, 511));
    let mut g = c.benchmark_group("fleet-511");
    g.sample_size(10);
    g.bench_function("plan", |b| {
        b.iter(|| meshfleet_plan::plan(black_box(&fleet), None).expect("plan"))
    });
    let plan = common::plan(&fleet);
    let once = meshfleet_render::render(&fleet, &plan).expect("render");
    let bytes: usize = once.files.iter().map(|f| f.contents.len()).sum();
    eprintln!(
        "fleet-511: {} files, {} objects, {bytes} bytes rendered",
        once.files.len(),
        once.all_objects().count()
    );
    g.bench_function("render", |b| {
        b.iter(|| meshfleet_render::render(black_box(&fleet), black_box(&plan)).expect("render"))
    });
    g.bench_function("plan+render", |b| {
        b.iter(|| {
            let plan = meshfleet_plan::plan(black_box(&fleet), None).expect("plan");
            meshfleet_render::render(&fleet, &plan).expect("render")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
