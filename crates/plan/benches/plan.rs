//! Planning a 511-cluster fleet (Cilium's `maxConnectedClusters: 511`): from scratch, against
//! its own lock (the steady state of `meshfleet plan`), and with one cluster added; plus the
//! lock's serialisation. The fleet matches `benches/gen-fleet.sh`.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use meshfleet_plan::plan;
use meshfleet_spec::Fleet;

const REGIONS: [(&str, &str); 8] = [
    ("gcp", "europe-west1"),
    ("gcp", "us-east1"),
    ("gcp", "us-central1"),
    ("gcp", "asia-east1"),
    ("aws", "eu-west-1"),
    ("aws", "us-east-1"),
    ("aws", "us-west-2"),
    ("aws", "ap-southeast-1"),
];

/// A valid fleet of `n` clusters whose pools hold 1024 blocks of each kind.
fn fleet_text(n: usize) -> String {
    let mut s = String::from(
        "apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata:
  name: big
spec:
  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }
  network:
    pods:     { pool: 10.0.0.0/8,     prefixLength: 18 }
    services: { pool: 172.16.0.0/12,  prefixLength: 22 }
    nodes:    { pool: 100.64.0.0/10,  prefixLength: 20 }
  mesh: { enabled: true, maxConnectedClusters: 511, encryption: wireguard }
  management: { egressCIDRs: [203.0.113.10/32] }
  interconnect: { awsCrossRegion: transitGateway, gcpToAws: haVpn }
  providers:
    gcp: { project: my-project }
    aws: {}
  clusters:
",
    );
    for i in 0..n {
        let (provider, region) = REGIONS[i % REGIONS.len()];
        let (zone, machine) = if provider == "gcp" {
            (format!("{region}-b"), "n2-standard-2")
        } else {
            (format!("{region}a"), "m6i.large")
        };
        let _ = writeln!(
            s,
            "    - {{ name: c{i:03}-{region}, provider: {provider}, region: {region}, zones: [{zone}], controlPlane: {{ replicas: 3, machineType: {machine} }}, workerPools: [{{ name: general, replicas: 3, machineType: {machine} }}] }}"
        );
    }
    s
}

fn fleet(n: usize) -> Fleet {
    match meshfleet_spec::parse(&fleet_text(n)) {
        Ok(l) => l.fleet,
        Err(r) => panic!("benchmark fleet is invalid: {:#?}", r.errors),
    }
}

fn bench(c: &mut Criterion) {
    let big = fleet(511);
    let lock = plan(&big, None).expect("plans").lock;
    let mut fewer = big.clone();
    fewer.spec.clusters.remove(255);
    let lock_510 = plan(&fewer, None).expect("plans").lock;

    let mut g = c.benchmark_group("plan-511");
    g.sample_size(30);
    g.bench_function("from-scratch", |b| b.iter(|| plan(black_box(&big), None)));
    g.bench_function("against-own-lock", |b| {
        b.iter(|| plan(black_box(&big), Some(black_box(&lock))))
    });
    g.bench_function("one-added", |b| {
        b.iter(|| plan(black_box(&big), Some(black_box(&lock_510))))
    });
    g.bench_function("lock-to-yaml", |b| b.iter(|| black_box(&lock).to_yaml()));
    g.bench_function("plan-to-json", |b| {
        let p = plan(&big, Some(&lock)).expect("plans");
        b.iter(|| serde_json::to_vec(black_box(&p)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
