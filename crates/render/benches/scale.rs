//! Scale bench (issue #17): plan + render + write of 3, 100 and 511 clusters, each size in a
//! child process of its own so its peak memory (`VmHWM` of `/proc/self/status`) is that size's
//! alone, beside the loop a user would write instead — `crates/plan/benches/envsubst-baseline.sh`,
//! one `envsubst` per cluster over a Cluster API template — for the same cluster count in the
//! same run.
//!
//! ```text
//! cargo bench -p meshfleet-render --bench scale            # all sizes
//! MESHFLEET_SCALE_SIZES=511 cargo bench -p meshfleet-render --bench scale
//! ```
//!
//! Per size it prints, best of a few runs: the time of parse, plan, `render_files` (the text,
//! what `render --out` writes) and writing the files as `meshfleet render` does (into a fresh
//! directory: temporary files, fsynced from 16 threads, renamed — see [`write_like_cli`]), and
//! of writing them again over themselves (a re-render: nothing changed, nothing written); the
//! files and bytes; the bytes of the fully meshed Cilium proxies (what `up` applies once every
//! peer's endpoint is known); `render` with the JSON values (what `up` applies); and the peak
//! memory — `peak MB*` after parse, plan, render_files and writes (what `plan` + `render --out`
//! hold), `peak MB` after everything. On stderr: what adding the `n`th cluster to a meshed
//! fleet of `n - 1` changes on the management cluster, by kind. `MESHFLEET_SCALE_ATOMIC=1` also compares ways of writing
//! on stderr; `MESHFLEET_SCALE_PROFILE=render|meshed|sizes|stages` runs one phase for `perf`.
//!
//! Times are wall-clock on a shared machine: compare the figures of one run, not across runs.
//! The envsubst loop writes its files plainly (no fsync), so on a busy disk the comparison
//! favours it; `TMPDIR=/dev/shm` takes the disk out of both.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

const CHILD_ENV: &str = "MESHFLEET_SCALE_CHILD";
const RUNS: usize = 5;

fn main() {
    if let Ok(n) = std::env::var(CHILD_ENV) {
        child(n.parse().expect("cluster count"));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: do
    // the smallest size only then, so the test run stays short.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("MESHFLEET_SCALE_SIZES") {
        Ok(s) => s
            .split(',')
            .map(|n| n.trim().parse().expect("MESHFLEET_SCALE_SIZES: numbers"))
            .collect(),
        Err(_) if benching => vec![3, 100, 511],
        Err(_) => vec![3],
    };
    let me = std::env::current_exe().expect("current exe");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plan/benches/envsubst-baseline.sh");
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6} {:>11} {:>12} {:>9} {:>10} {:>7} {:>10} {:>9} {:>10}",
        "n",
        "parse ms",
        "plan ms",
        "render ms",
        "write ms",
        "total ms",
        "files",
        "bytes",
        "meshed B",
        "peak MB*",
        "envsubst ms",
        "ratio",
        "values ms",
        "peak MB",
        "rewrite ms"
    );
    for n in sizes {
        let out = Command::new(&me)
            .env(CHILD_ENV, n.to_string())
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "child for {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).expect("utf-8");
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        let envsubst = envsubst_loop(&script, n);
        let total = f[0] + f[1] + f[2] + f[3];
        let ratio = envsubst.map(|e| e.as_secs_f64() * 1e3 / total);
        println!(
            "{n:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>6} {:>11} {:>12} {:>9.1} {:>10} {:>7} {:>10.1} {:>9.1} {:>10.1}",
            f[0],
            f[1],
            f[2],
            f[3],
            total,
            f[4],
            f[5],
            f[6],
            f[7] / 1024.0,
            envsubst.map_or("absent".to_owned(), |e| format!(
                "{:.1}",
                e.as_secs_f64() * 1e3
            )),
            ratio.map_or("-".to_owned(), |r| format!("{r:.2}x")),
            f[8],
            f[9] / 1024.0,
            f[10],
        );
    }
}

/// The user's loop for `n` clusters, best of two, or `None` when `envsubst` is not installed.
fn envsubst_loop(script: &Path, n: usize) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..2 {
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .arg(n.to_string())
            .output()
            .ok()?;
        let d = t.elapsed();
        if !out.status.success() {
            eprintln!(
                "envsubst loop skipped: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        best = Some(best.map_or(d, |b| b.min(d)));
    }
    best
}

/// One size: the best of [`RUNS`] runs of each phase, on stdout as numbers (ms, counts, kB).
fn child(n: usize) {
    let text = common::large_fleet_text(n, 511);
    if let Ok(phase) = std::env::var("MESHFLEET_SCALE_PROFILE") {
        profile(&text, &phase);
        return;
    }
    let dir = std::env::temp_dir().join(format!("meshfleet-scale-{n}-{}", std::process::id()));
    let (mut parse, mut plan_t, mut render_t, mut write_t) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let (mut files, mut bytes) = (0, 0);
    let mut rewrite_t = f64::MAX;
    for _ in 0..RUNS {
        let t = Instant::now();
        let fleet = common::parse(&text);
        parse = parse.min(ms(t));
        let t = Instant::now();
        let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
        plan_t = plan_t.min(ms(t));
        let t = Instant::now();
        let rendered = meshfleet_render::render_files(&fleet, &plan).expect("render");
        render_t = render_t.min(ms(t));
        let t = Instant::now();
        write_like_cli(&dir, &rendered.files);
        write_t = write_t.min(ms(t));
        let t = Instant::now();
        assert_eq!(
            write_like_cli(&dir, &rendered.files),
            0,
            "a re-render rewrites nothing"
        );
        rewrite_t = rewrite_t.min(ms(t));
        files = rendered.files.len();
        bytes = rendered
            .files
            .iter()
            .map(|f| f.contents.len())
            .sum::<usize>();
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::env::var_os("MESHFLEET_SCALE_ATOMIC").is_some() {
        write_variants(&text, &dir);
    }
    let peak_render = peak_kb();
    if n >= 2 {
        let (added, changed) = one_more(n);
        eprintln!(
            "{n}: adding the {n}th cluster to a meshed fleet of {}: {added} objects added, {changed} changed on the management cluster",
            n - 1
        );
    }
    // `render` with every object also as a JSON value (what `up` applies).
    let mut full = f64::MAX;
    {
        let fleet = common::parse(&text);
        let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = meshfleet_render::render(&fleet, &plan).expect("render");
            full = full.min(ms(t));
            drop(r);
        }
    }
    // What `up` ends with: every cluster's proxy naming all of its peers.
    let fleet = common::parse(&text);
    let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
    let meshed: usize = fleet
        .spec
        .clusters
        .iter()
        .map(|c| {
            let peers = common::peer_endpoints(&plan, &c.name, false);
            let proxy = meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, &c.name, &peers)
                .expect("proxy with peers");
            serde_json::to_vec(&proxy).expect("json").len()
        })
        .sum();
    println!(
        "{parse} {plan_t} {render_t} {write_t} {files} {bytes} {meshed} {peak_render} {full} {} {rewrite_t}",
        peak_kb()
    );
}

/// The management-cluster objects of a fully meshed fleet, as `up` leaves them: every object
/// of [`meshfleet_render::render`], each Cilium proxy naming all of its peers; by kind/name.
fn meshed_objects(
    fleet: &meshfleet_spec::Fleet,
    plan: &meshfleet_plan::Plan,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let r = meshfleet_render::render(fleet, plan).expect("render");
    let mut out = std::collections::BTreeMap::new();
    let key = |o: &serde_json::Value| {
        format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    for o in r.all_objects() {
        out.insert(key(o), o.clone());
    }
    for c in &fleet.spec.clusters {
        let peers = common::peer_endpoints(plan, &c.name, false);
        let proxy = meshfleet_render::cilium_proxy_with_peers(fleet, plan, &c.name, &peers)
            .expect("proxy with peers");
        out.insert(key(&proxy), proxy);
    }
    out
}

/// Adding the `n`th cluster to a meshed fleet of `n - 1` (planned against the smaller fleet's
/// lock, as `meshfleet plan` would): objects (added, changed) on the management cluster.
fn one_more(n: usize) -> (usize, usize) {
    let small = common::parse(&common::large_fleet_text(n - 1, 511));
    let small_plan = meshfleet_plan::plan(&small, None).expect("plan");
    let big = common::parse(&common::large_fleet_text(n, 511));
    let big_plan = meshfleet_plan::plan(&big, Some(&small_plan.lock)).expect("plan");
    let before = meshed_objects(&small, &small_plan);
    let after = meshed_objects(&big, &big_plan);
    let added = after.keys().filter(|k| !before.contains_key(*k)).count();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k)
        .collect();
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for k in &changed {
        *by_kind
            .entry(k.split('/').next().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!("{n}: changed by kind {by_kind:?}");
    (added, changed.len())
}

/// Only one phase, many times, for `perf record` (`MESHFLEET_SCALE_PROFILE=render|meshed`).
fn profile(text: &str, phase: &str) {
    eprintln!("start: peak {} kB", peak_kb());
    let fleet = common::parse(text);
    eprintln!("after parse: peak {} kB, rss {} kB", peak_kb(), rss_kb());
    let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
    eprintln!("after plan: peak {} kB, rss {} kB", peak_kb(), rss_kb());
    for _ in 0..20 {
        match phase {
            "render" => {
                std::hint::black_box(meshfleet_render::render(&fleet, &plan).expect("render"));
            }
            "meshed" => {
                for c in &fleet.spec.clusters {
                    let peers = common::peer_endpoints(&plan, &c.name, false);
                    std::hint::black_box(
                        meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, &c.name, &peers)
                            .expect("proxy"),
                    );
                }
            }
            "sizes" => {
                let r = meshfleet_render::render(&fleet, &plan).expect("render");
                let j = |v: &serde_json::Value| serde_json::to_vec(v).expect("json").len();
                let fo: usize = r.fleet_objects.iter().map(j).sum();
                let co: usize = r.clusters.iter().flat_map(|c| &c.objects).map(j).sum();
                let cv: usize = r.clusters.iter().map(|c| j(&c.cilium.values)).sum();
                let cp: usize = r.clusters.iter().map(|c| j(&c.cilium.proxy)).sum();
                let ad: usize = r
                    .clusters
                    .iter()
                    .flat_map(|c| &c.addons)
                    .map(|a| j(&a.values) + j(&a.proxy))
                    .sum();
                let mut by_kind = std::collections::BTreeMap::new();
                for o in r.clusters.iter().flat_map(|c| &c.objects) {
                    *by_kind
                        .entry(o["kind"].as_str().unwrap_or("?").to_owned())
                        .or_insert(0) += j(o);
                }
                let mut by_file = std::collections::BTreeMap::new();
                for f in &r.files {
                    *by_file
                        .entry(f.path.rsplit('/').next().unwrap_or("").to_owned())
                        .or_insert(0) += f.contents.len();
                }
                eprintln!(
                    "json bytes: fleet_objects {fo}, cluster objects {co}, cilium values {cv}, cilium proxies {cp}, addons {ad}\nby kind {by_kind:?}\nby file {by_file:?}"
                );
                return;
            }
            "stages" => {
                let rendered = meshfleet_render::render(&fleet, &plan).expect("render");
                eprintln!("after render: peak {} kB, rss {} kB", peak_kb(), rss_kb());
                drop(rendered);
                eprintln!("after drop: rss {} kB", rss_kb());
                return;
            }
            other => panic!("unknown phase {other}"),
        }
    }
}

/// The ways of writing the files, each three times into a fresh directory then once over its
/// own output (a re-render), on stderr (`MESHFLEET_SCALE_ATOMIC=1`).
fn write_variants(text: &str, dir: &Path) {
    type Writer = fn(&Path, &meshfleet_render::Rendered);
    let fleet = common::parse(text);
    let plan = meshfleet_plan::plan(&fleet, None).expect("plan");
    let rendered = meshfleet_render::render(&fleet, &plan).expect("render");
    let variants: [(&str, Writer); 3] = [
        ("plain writes", |d, r| write_all(d, &r.files)),
        ("per-file atomic+fsync (the CLI before)", write_all_atomic),
        ("batched atomic, parallel fsync (the CLI now)", |d, r| {
            write_like_cli(d, &r.files);
        }),
    ];
    for (name, w) in variants {
        let mut fresh = Vec::new();
        for i in 0..3 {
            let d = dir.with_extension(format!("v{i}"));
            let t = Instant::now();
            w(&d, &rendered);
            fresh.push(ms(t));
        }
        let d = dir.with_extension("v0");
        let t = Instant::now();
        w(&d, &rendered);
        let again = ms(t);
        for i in 0..3 {
            let _ = std::fs::remove_dir_all(dir.with_extension(format!("v{i}")));
        }
        eprintln!("{name}: fresh {fresh:.0?} ms, over itself {again:.0} ms");
    }
}

/// The files as `meshfleet render` wrote them before `write_many_atomic` (`crates/cli/src/fsutil.rs`): per file a
/// temporary file beside it, written, fsynced, renamed over the target.
fn write_all_atomic(dir: &Path, rendered: &meshfleet_render::Rendered) {
    use std::io::Write as _;
    for f in &rendered.files {
        let path = dir.join(&f.path);
        let parent = path.parent().expect("parent");
        std::fs::create_dir_all(parent).expect("mkdir");
        let tmp = parent.join(".meshfleet-bench.tmp");
        let mut file = std::fs::File::create(&tmp).expect("create");
        file.write_all(f.contents.as_bytes()).expect("write");
        file.sync_all().expect("fsync");
        std::fs::rename(&tmp, &path).expect("rename");
    }
}

/// The files as `meshfleet render` writes them (`write_many_atomic` in
/// `crates/cli/src/fsutil.rs`): files already holding their bytes are skipped; the others are
/// written to temporary files, fsynced from 16 threads, renamed. Returns how many were written.
fn write_like_cli(dir: &Path, files: &[meshfleet_render::RenderedFile]) -> usize {
    let mut dirs = std::collections::BTreeSet::new();
    let mut pending = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let path = dir.join(&f.path);
        if std::fs::read(&path).is_ok_and(|old| old == f.contents.as_bytes()) {
            continue;
        }
        let parent = path.parent().expect("parent").to_path_buf();
        if dirs.insert(parent.clone()) {
            std::fs::create_dir_all(&parent).expect("mkdir");
        }
        let tmp = parent.join(format!(".meshfleet-{i}.tmp"));
        std::fs::write(&tmp, &f.contents).expect("write");
        pending.push((tmp, path));
    }
    let chunk = pending.len().div_ceil(16).max(1);
    std::thread::scope(|s| {
        for part in pending.chunks(chunk) {
            s.spawn(move || {
                for (tmp, _) in part {
                    std::fs::File::open(tmp)
                        .and_then(|f| f.sync_all())
                        .expect("fsync");
                }
            });
        }
    });
    for (tmp, path) in &pending {
        std::fs::rename(tmp, path).expect("rename");
    }
    pending.len()
}

fn write_all(dir: &Path, files: &[meshfleet_render::RenderedFile]) {
    for f in files {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &f.contents).expect("write");
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// This process's resident set now (`VmRSS`), in kB.
fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

/// This process's peak resident set (`VmHWM`), in kB.
fn peak_kb() -> u64 {
    status_kb("VmHWM:")
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a /proc/self/status field")
}
