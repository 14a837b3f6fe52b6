//! The executor against the in-memory fake: idempotency, dry run, interruption and resume,
//! retried and tolerated failures, and the errors that come with a fix.

mod common;

use meshfleet_gcp::fake::FakeGcp;
use meshfleet_gcp::{Action, ApiError, Report, SetupError, Status, run};

use common::{example_prereq, example_prereq_with_rules, fast_options};

fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn kinds(r: &Report, action: Action) -> Vec<(String, String)> {
    r.steps
        .iter()
        .filter(|s| s.action == action)
        .map(|s| (s.kind.to_owned(), s.name.clone()))
        .collect()
}

const WRITES: [&str; 9] = [
    "enable_services",
    "create_service_account",
    "set_iam_policy",
    "create_key",
    "insert_bucket",
    "patch_bucket",
    "upload_object",
    "compute_insert",
    "compute_patch",
];

#[test]
fn first_run_creates_everything_and_second_run_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq_with_rules();
    let opts = fast_options(dir.path());
    let fake = FakeGcp::new();
    let mut finished = 0;
    let first = block(run(&fake, &p, &opts, |e| {
        if let meshfleet_gcp::StepEvent::Finished(_) = e {
            finished += 1;
        }
    }))
    .expect("first run");
    assert_eq!(
        finished,
        first.steps.len(),
        "every step reported as it ended"
    );
    assert!(first.steps.iter().all(|s| s.status == Status::Done));
    let expected_creates = 5
        + 1
        + 4
        + 1
        + 1
        + 1
        + 1
        + 1
        + p.subnetworks.len()
        + p.routers.len()
        + p.firewall_rules.len();
    assert_eq!(
        kinds(&first, Action::Create).len(),
        expected_creates,
        "{first:#?}"
    );
    {
        let s = fake.state();
        assert_eq!(s.enabled.len(), 5);
        assert_eq!(s.keys.values().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(
            s.compute.len(),
            2 + p.subnetworks.len() + p.routers.len() + p.firewall_rules.len()
        );
        assert!(
            s.ops_polled >= s.compute.len(),
            "every insert waited for its operation"
        );
        let image = &s.compute["global/images/talos-v1-13-9-amd64"];
        assert_eq!(image["guestOsFeatures"][1]["type"], "UEFI_COMPATIBLE");
    }

    let writes_before = fake
        .state()
        .calls
        .iter()
        .filter(|c| WRITES.contains(c))
        .count();
    let second = block(run(&fake, &p, &opts, |_| {})).expect("second run");
    assert!(second.all_unchanged(), "{second:#?}");
    assert_eq!(second.steps.len(), first.steps.len());
    let writes_after = fake
        .state()
        .calls
        .iter()
        .filter(|c| WRITES.contains(c))
        .count();
    assert_eq!(
        writes_before, writes_after,
        "a converged project gets no writes"
    );
}

#[cfg(unix)]
#[test]
fn the_key_is_kept_0600_in_a_0700_directory_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let opts = fast_options(dir.path());
    let fake = FakeGcp::new();
    let r = block(run(&fake, &p, &opts, |_| {})).expect("run");
    let key = opts.key_dir.join("my-project-capg-controller.json");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&opts.key_dir), 0o700);
    let text = std::fs::read_to_string(&key).expect("key");
    assert!(text.contains("PRIVATE KEY"));
    // The report names where the key is, never what it is.
    let json = serde_json::to_string(&r).expect("json");
    assert!(!json.contains("PRIVATE KEY"));
    assert!(json.contains("my-project-capg-controller.json"));

    // The key meshfleet holds was deleted on the account: a new one is made.
    fake.state().keys.clear();
    let r = block(run(&fake, &p, &opts, |_| {})).expect("run");
    let step = r.steps.iter().find(|s| s.kind == "key").expect("key step");
    assert_eq!(step.action, Action::Create);
    assert!(step.detail.contains("no longer exists"), "{}", step.detail);
    assert_eq!(fake.state().keys.values().map(Vec::len).sum::<usize>(), 1);
}

#[test]
fn dry_run_reads_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let mut opts = fast_options(dir.path());
    opts.dry_run = true;
    let fake = FakeGcp::new();
    let r = block(run(&fake, &p, &opts, |_| {})).expect("dry run");
    assert!(
        r.steps
            .iter()
            .all(|s| s.action == Action::Create && s.status == Status::Planned),
        "{r:#?}"
    );
    let s = fake.state();
    assert!(!s.calls.iter().any(|c| WRITES.contains(c)), "{:?}", s.calls);
    assert!(s.compute.is_empty() && s.buckets.is_empty() && s.enabled.is_empty());
    assert!(!opts.key_dir.exists());
    drop(s);

    opts.dry_run = false;
    block(run(&fake, &p, &opts, |_| {})).expect("apply");
    opts.dry_run = true;
    let r = block(run(&fake, &p, &opts, |_| {})).expect("dry run");
    assert!(r.all_unchanged());
}

#[test]
fn interrupted_at_any_write_a_rerun_finishes_the_job() {
    let p = example_prereq();
    let clean = {
        let dir = tempfile::tempdir().expect("tmp");
        let fake = FakeGcp::new();
        block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("clean");
        let s = fake.state();
        (
            s.compute.keys().cloned().collect::<Vec<_>>(),
            s.policy["bindings"].clone(),
        )
    };
    let mut interrupted = 0;
    for n in 0.. {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = fast_options(dir.path());
        let fake = FakeGcp::new();
        fake.interrupt_after_writes(n);
        match block(run(&fake, &p, &opts, |_| {})) {
            Ok(_) => break,
            Err(f) => {
                interrupted += 1;
                assert_eq!(
                    f.report.steps.last().map(|s| s.status),
                    Some(Status::Failed)
                );
            }
        }
        fake.clear_faults();
        block(run(&fake, &p, &opts, |_| {}))
            .unwrap_or_else(|f| panic!("resume after {n} writes: {f}"));
        let again = block(run(&fake, &p, &opts, |_| {})).expect("third run");
        assert!(again.all_unchanged(), "after {n} writes: {again:#?}");
        let s = fake.state();
        assert_eq!(
            s.compute.keys().cloned().collect::<Vec<_>>(),
            clean.0,
            "after {n} writes"
        );
        assert_eq!(s.policy["bindings"], clean.1);
        assert_eq!(
            s.keys.values().map(Vec::len).sum::<usize>(),
            1,
            "one key after {n} writes"
        );
    }
    assert!(
        interrupted > 10,
        "every write was interrupted once ({interrupted})"
    );
}

#[test]
fn transient_failures_are_retried() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let fake = FakeGcp::new();
    fake.fail_next(
        "services_state",
        ApiError::new(503, "UNAVAILABLE", "try again"),
    );
    fake.fail_next(
        "compute_get",
        ApiError::new(429, "RESOURCE_EXHAUSTED", "quota"),
    );
    fake.fail_next("compute_insert", ApiError::new(500, "INTERNAL", "oops"));
    fake.fail_next("get_iam_policy", ApiError::transport("connection reset"));
    fake.fail_next("upload_object", ApiError::new(502, "", "bad gateway"));
    block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("retried through");
}

#[test]
fn a_lost_response_is_recognised_on_retry() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq_with_rules();
    let fake = FakeGcp::new();
    // The write happened but the answer was lost: the retry sees 409 (or the same request id).
    fake.fail_next_after_effect(
        "create_service_account",
        ApiError::new(503, "UNAVAILABLE", "lost"),
    );
    fake.fail_next_after_effect("insert_bucket", ApiError::new(503, "UNAVAILABLE", "lost"));
    fake.fail_next_after_effect("compute_insert", ApiError::new(503, "UNAVAILABLE", "lost"));
    let r = block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("run");
    let sa = r
        .steps
        .iter()
        .find(|s| s.kind == "service-account")
        .expect("sa");
    assert_eq!(
        (sa.action, sa.detail.as_str()),
        (Action::Create, "already existed")
    );
    let b = r.steps.iter().find(|s| s.kind == "bucket").expect("bucket");
    assert_eq!(b.detail, "already existed");
    assert_eq!(
        fake.state().compute.len(),
        2 + p.subnetworks.len() + p.routers.len() + p.firewall_rules.len()
    );
}

#[test]
fn insert_conflict_means_already_exists() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let fake = FakeGcp::new();
    // Someone else creates the image between our read and our insert.
    fake.fail_next_after_effect(
        "compute_insert",
        ApiError::new(409, "ALREADY_EXISTS", "The resource already exists"),
    );
    let r = block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("run");
    let img = r.steps.iter().find(|s| s.kind == "image").expect("image");
    assert_eq!(
        (img.action, img.detail.as_str()),
        (Action::Create, "already existed")
    );

    // A conflict on a resource that then cannot be read is not papered over.
    let fake = FakeGcp::new();
    fake.fail_next(
        "compute_insert",
        ApiError::new(409, "ALREADY_EXISTS", "exists"),
    );
    let e = failure(&fake);
    assert!(e.to_string().contains("cannot be read"), "{e}");
}

#[test]
fn stale_etag_rereads_and_keeps_the_other_writer() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let fake = FakeGcp::new();
    fake.state().concurrent_policy_writes = 2;
    block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("run");
    let s = fake.state();
    let bindings = s.policy["bindings"].as_array().cloned().unwrap_or_default();
    let viewers = bindings
        .iter()
        .filter(|b| b["role"] == "roles/viewer")
        .count();
    assert_eq!(viewers, 2, "both concurrent writes survive: {bindings:#?}");
    assert!(bindings.iter().any(|b| b["role"] == "roles/owner"));
    for role in &p.service_account.roles {
        assert!(bindings.iter().any(|b| b["role"] == *role), "{role}");
    }
    assert_eq!(s.policy["version"], 3);
}

#[test]
fn a_new_service_account_is_waited_for() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let fake = FakeGcp::new();
    fake.state().sa_invisible_for = 3;
    block(run(&fake, &p, &fast_options(dir.path()), |_| {})).expect("run");
    assert_eq!(
        fake.state()
            .calls
            .iter()
            .filter(|c| **c == "set_iam_policy")
            .count(),
        4
    );
}

fn failure(fake: &FakeGcp) -> SetupError {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    match block(run(fake, &p, &fast_options(dir.path()), |_| {})) {
        Ok(r) => panic!("expected a failure, got {r:#?}"),
        Err(f) => f.error,
    }
}

#[test]
fn billing_disabled_says_how_to_link_billing() {
    let fake = FakeGcp::new();
    fake.state().billing_disabled = true;
    let e = failure(&fake);
    assert!(matches!(e, SetupError::BillingDisabled { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("gcloud billing projects link my-project"),
        "{e}"
    );
}

#[test]
fn a_bucket_of_someone_else_asks_for_another_name() {
    let fake = FakeGcp::new();
    fake.state()
        .foreign_buckets
        .insert("talos-images-01-7f3a".into());
    let e = failure(&fake);
    assert!(matches!(e, SetupError::BucketTaken { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("pick another `spec.providers.gcp.imageBucket`"),
        "{e}"
    );
}

#[test]
fn blocked_key_creation_points_to_keyless_or_an_exception() {
    let fake = FakeGcp::new();
    fake.state().keys_blocked = true;
    let e = failure(&fake);
    assert!(matches!(e, SetupError::KeyCreationBlocked { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("iam.disableServiceAccountKeyCreation") && msg.contains("Workload Identity"),
        "{msg}"
    );
}

#[test]
fn permission_denied_names_the_role() {
    let fake = FakeGcp::new();
    fake.fail_next(
        "services_state",
        ApiError::new(
            403,
            "PERMISSION_DENIED",
            "Permission denied to get service [compute.googleapis.com]",
        ),
    );
    let e = failure(&fake);
    assert!(
        e.to_string()
            .contains("roles/serviceusage.serviceUsageAdmin"),
        "{e}"
    );
}

#[test]
fn an_operation_error_is_surfaced() {
    let fake = FakeGcp::new();
    fake.state().op_errors.insert(
        "global/networks/meshfleet".into(),
        ApiError::new(
            400,
            "QUOTA_EXCEEDED",
            "Quota 'NETWORKS' exceeded. Limit: 5.0 globally.",
        ),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let f = block(run(
        &fake,
        &example_prereq(),
        &fast_options(dir.path()),
        |_| {},
    ))
    .expect_err("op error");
    let last = f.report.steps.last().expect("failed row");
    assert_eq!(
        (last.kind, last.action, last.status),
        ("network", Action::Create, Status::Failed)
    );
    let e = f.error;
    assert!(e.to_string().contains("Quota 'NETWORKS' exceeded"), "{e}");
    assert!(e.to_string().starts_with("network `meshfleet`"), "{e}");
}

#[test]
fn drifted_fields_are_updated_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq_with_rules();
    let opts = fast_options(dir.path());
    let fake = FakeGcp::new();
    block(run(&fake, &p, &opts, |_| {})).expect("run");
    let fw = format!("global/firewalls/{}", p.firewall_rules[0].name);
    fake.state().compute.get_mut(&fw).expect("rule")["sourceRanges"] =
        serde_json::json!(["0.0.0.0/0"]);
    let r = block(run(&fake, &p, &opts, |_| {})).expect("run");
    assert_eq!(
        kinds(&r, Action::Update),
        [("firewall".to_owned(), p.firewall_rules[0].name.clone())]
    );
    assert!(
        block(run(&fake, &p, &opts, |_| {}))
            .expect("run")
            .all_unchanged()
    );
}

#[test]
fn unusable_input_is_rejected_before_any_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut p = example_prereq();
    let mut opts = fast_options(dir.path());
    opts.image_source = Some("/nonexistent/talos.raw.tar.gz".into());
    let fake = FakeGcp::new();
    let e = block(run(&fake, &p, &opts, |_| {}))
        .expect_err("bad path")
        .error;
    assert!(
        e.is_invalid_input() && e.to_string().contains("--image-source"),
        "{e}"
    );
    p.image.bucket = None;
    let e = block(run(&fake, &p, &fast_options(dir.path()), |_| {}))
        .expect_err("no bucket")
        .error;
    assert!(
        e.is_invalid_input() && e.to_string().contains("imageBucket"),
        "{e}"
    );
    assert!(fake.state().calls.is_empty());
}

#[test]
fn an_image_source_url_is_downloaded_then_uploaded() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let image: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let served = image.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            served.len()
        );
        s.write_all(head.as_bytes()).expect("head");
        s.write_all(&served).expect("body");
    });
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let mut opts = fast_options(dir.path());
    opts.image_source = Some(format!("http://127.0.0.1:{port}/gcp-amd64.raw.tar.gz"));
    let fake = FakeGcp::new();
    block(run(&fake, &p, &opts, |_| {})).expect("run");
    server.join().expect("server");
    let s = fake.state();
    let key = (
        p.image.bucket.clone().unwrap_or_default(),
        p.image.object.clone(),
    );
    assert!(
        s.objects.get(&key) == Some(&image),
        "uploaded bytes are the served bytes"
    );
}

#[test]
fn an_existing_image_needs_no_raw_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq();
    let opts = fast_options(dir.path());
    let fake = FakeGcp::new();
    block(run(&fake, &p, &opts, |_| {})).expect("run");
    // A lifecycle rule deleted the uploaded disk; the image made from it is still there.
    fake.state().objects.clear();
    let r = block(run(&fake, &p, &opts, |_| {})).expect("run");
    assert!(r.all_unchanged(), "{r:#?}");
    assert!(fake.state().objects.is_empty(), "nothing uploaded again");
}

#[test]
fn independent_compute_resources_are_written_concurrently_and_reported_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq_with_rules();
    let opts = fast_options(dir.path());
    let fake = FakeGcp::new();
    fake.state().insert_latency = std::time::Duration::from_millis(40);
    let report = block(run(&fake, &p, &opts, |_| {})).expect("run");
    let max = fake.state().max_inserts_in_flight;
    assert!(
        (2..=8).contains(&max),
        "firewall rules are inserted several (at most 8) at a time: {max}"
    );
    let reported: Vec<&str> = report
        .steps
        .iter()
        .filter(|s| s.kind == "firewall")
        .map(|s| s.name.as_str())
        .collect();
    let planned: Vec<&str> = p.firewall_rules.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(reported, planned, "reported in the plan's order");
}

#[test]
fn a_dry_run_says_what_each_create_would_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = example_prereq_with_rules();
    let mut opts = fast_options(dir.path());
    opts.dry_run = true;
    let r = block(run(&FakeGcp::new(), &p, &opts, |_| {})).expect("dry run");
    let detail = |kind: &str| {
        r.steps
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| s.detail.clone())
            .unwrap_or_else(|| panic!("no {kind} step: {r:#?}"))
    };
    let f = &p.firewall_rules[0];
    let fw = detail("firewall");
    assert!(fw.starts_with("INGRESS allow "), "{fw}");
    for part in f.source_ranges.iter().chain(&f.target_tags) {
        assert!(fw.contains(part.as_str()), "{fw} lacks {part}");
    }
    for a in &f.allowed {
        assert!(
            fw.contains(&a.ip_protocol.to_ascii_lowercase()),
            "{fw} lacks {}",
            a.ip_protocol
        );
        for port in &a.ports {
            assert!(fw.contains(port.as_str()), "{fw} lacks {port}");
        }
    }
    let router = detail("router");
    assert!(
        router.contains(&format!("Cloud NAT `{}`", p.routers[0].nat.name)),
        "{router}"
    );
    let subnet = detail("subnetwork");
    assert!(
        subnet.starts_with(&p.subnetworks[0].ip_cidr_range),
        "{subnet}"
    );
    assert!(detail("network").contains("custom subnets"));
}
