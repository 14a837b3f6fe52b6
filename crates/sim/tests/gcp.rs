//! The simulator's Google Cloud API fake, driven by the official SDK clients (and plain HTTP
//! where the SDK has no JSON call), and the simulated CAPG's use of its state.

mod common;

use common::gcp::*;

use common::*;
use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_compute_v1::client::{Firewalls, Images, Networks, Subnetworks};
use google_cloud_compute_v1::model;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_lro::Poller;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_storage::client::Storage;
use serde_json::{Value, json};

#[tokio::test]
async fn endpoints_file_names_the_gcp_url() {
    let (mut sim, url) = start(|_| {}).await;
    let path = meshfleet_sim::endpoints_path(&sim.kubeconfig);
    assert!(
        path.to_string_lossy()
            .ends_with("kubeconfig.endpoints.json")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["gcp"], json!(url));
    // The AWS fake listens beside it (crates/sim/src/aws).
    assert!(
        v["aws"]
            .as_str()
            .is_some_and(|a| a.starts_with("http://127.0.0.1:") && a != url),
        "{v}"
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    sim.stop().await;
}

#[tokio::test]
async fn service_usage_gates_compute_and_enables_through_an_operation() {
    let (mut sim, url) = start(|_| {}).await;
    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let e = nets
        .get()
        .set_project(P)
        .set_network("meshfleet")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(403), "{e}");
    assert!(
        e.to_string()
            .contains("Compute Engine API has not been used in project acme-prod"),
        "{e}"
    );
    let su = ServiceUsage::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let svc = su
        .get_service()
        .set_name(format!("projects/{P}/services/compute.googleapis.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        svc.state,
        google_cloud_api_serviceusage_v1::model::State::Disabled
    );
    // The operation is pending at first: poll it by hand once, then to the end.
    let mut poller = su
        .batch_enable_services()
        .set_parent(format!("projects/{P}"))
        .set_service_ids(["compute.googleapis.com", "iam.googleapis.com"])
        .poller();
    let first = poller.poll().await.unwrap();
    assert!(
        matches!(first, google_cloud_lro::PollingResult::InProgress(_)),
        "{first:?}"
    );
    let done = poller.until_done().await.unwrap();
    assert_eq!(done.services.len(), 2);
    let got = su
        .batch_get_services()
        .set_parent(format!("projects/{P}"))
        .set_names([
            format!("projects/{P}/services/compute.googleapis.com"),
            format!("projects/{P}/services/storage.googleapis.com"),
        ])
        .send()
        .await
        .unwrap();
    let states: Vec<_> = got.services.iter().map(|s| s.state.clone()).collect();
    assert_eq!(
        states,
        [
            google_cloud_api_serviceusage_v1::model::State::Enabled,
            google_cloud_api_serviceusage_v1::model::State::Disabled
        ]
    );
    // Now Compute answers: 404 for a network that does not exist.
    let e = nets
        .get()
        .set_project(P)
        .set_network("meshfleet")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(404), "{e}");
    assert!(
        e.to_string()
            .contains("The resource 'projects/acme-prod/global/networks/meshfleet' was not found"),
        "{e}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn compute_inserts_poll_conflict_and_dedupe_by_request_id() {
    let (mut sim, url) = start(|_| {}).await;
    enable(&url, &["compute.googleapis.com"]).await;
    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let op = nets
        .insert()
        .set_project(P)
        .set_body(network("meshfleet"))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(op.status, Some(model::operation::Status::Done));
    let n = nets
        .get()
        .set_project(P)
        .set_network("meshfleet")
        .send()
        .await
        .unwrap();
    assert_eq!(
        n.self_link.as_deref(),
        Some("https://www.googleapis.com/compute/v1/projects/acme-prod/global/networks/meshfleet")
    );
    assert!(n.id.is_some() && n.creation_timestamp.is_some());
    // A second insert of the same name: 409 alreadyExists.
    let e = nets
        .insert()
        .set_project(P)
        .set_body(network("meshfleet"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(409), "{e}");

    // Same requestId twice: the same operation, no 409 (a retried insert is safe).
    let fws = Firewalls::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let fw = model::Firewall::new()
        .set_name("meshfleet-talos-apid")
        .set_network("global/networks/meshfleet")
        .set_source_ranges(["203.0.113.10/32"])
        .set_allowed([model::firewall::Allowed::new()
            .set_ip_protocol("tcp")
            .set_ports(["50000"])]);
    let rid = "6f1c2a6e-7d51-4d8e-9a0c-1b2c3d4e5f60";
    let a = fws
        .insert()
        .set_project(P)
        .set_request_id(rid)
        .set_body(fw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(a.status, Some(model::operation::Status::Running));
    let b = fws
        .insert()
        .set_project(P)
        .set_request_id(rid)
        .set_body(fw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(a.name, b.name);
    // Pending under another requestId: already exists too.
    let e = fws
        .insert()
        .set_project(P)
        .set_request_id("another")
        .set_body(fw.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(409), "{e}");
    let got = eventually("firewall created", 10, || async {
        fws.get()
            .set_project(P)
            .set_firewall("meshfleet-talos-apid")
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(
        got.network.as_deref(),
        Some("https://www.googleapis.com/compute/v1/projects/acme-prod/global/networks/meshfleet"),
        "references are normalised to full links"
    );
    assert_eq!(got.direction, Some(model::firewall::Direction::Ingress));

    // Regional: subnetwork insert polls the region's operations.
    let subs = Subnetworks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let sub = model::Subnetwork::new()
        .set_name("gcp-a")
        .set_network(format!("projects/{P}/global/networks/meshfleet"))
        .set_ip_cidr_range("10.0.0.0/20");
    subs.insert()
        .set_project(P)
        .set_region("europe-west1")
        .set_body(sub)
        .poller()
        .until_done()
        .await
        .unwrap();
    let s = subs
        .get()
        .set_project(P)
        .set_region("europe-west1")
        .set_subnetwork("gcp-a")
        .send()
        .await
        .unwrap();
    assert_eq!(s.ip_cidr_range.as_deref(), Some("10.0.0.0/20"));
    // An overlapping range in the same network is refused, as GCE does.
    let e = subs
        .insert()
        .set_project(P)
        .set_region("europe-west2")
        .set_body(
            model::Subnetwork::new()
                .set_name("gcp-b")
                .set_network("global/networks/meshfleet")
                .set_ip_cidr_range("10.0.8.0/24"),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(400), "{e}");
    // A subnet of a network that does not exist: 404 naming it.
    let e = subs
        .insert()
        .set_project(P)
        .set_region("europe-west1")
        .set_body(
            model::Subnetwork::new()
                .set_name("x")
                .set_network("global/networks/nope")
                .set_ip_cidr_range("10.9.0.0/20"),
        )
        .send()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("global/networks/nope"), "{e}");
    sim.stop().await;
}

#[tokio::test]
async fn iam_accounts_keys_and_policy_etags() {
    let (mut sim, url) = start(|_| {}).await;
    enable(
        &url,
        &["iam.googleapis.com", "cloudresourcemanager.googleapis.com"],
    )
    .await;
    let iam = Iam::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let sa = iam
        .create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("capg-controller")
        .set_service_account(
            google_cloud_iam_admin_v1::model::ServiceAccount::new().set_display_name("CAPG"),
        )
        .send()
        .await
        .unwrap();
    let email = "capg-controller@acme-prod.iam.gserviceaccount.com";
    assert_eq!(sa.email, email);
    let e = iam
        .create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("capg-controller")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(409), "{e}");
    let got = iam
        .get_service_account()
        .set_name(format!("projects/{P}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.display_name, "CAPG");

    let key = iam
        .create_service_account_key()
        .set_name(format!("projects/{P}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap();
    let creds_file: Value = serde_json::from_slice(&key.private_key_data).unwrap();
    assert_eq!(creds_file["type"], "service_account");
    assert_eq!(creds_file["client_email"], email);
    assert!(
        creds_file["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let keys = iam
        .list_service_account_keys()
        .set_name(format!("projects/{P}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].name, key.name);
    assert!(
        keys.keys[0].private_key_data.is_empty(),
        "listed keys carry no secret"
    );
    let one = iam
        .get_service_account_key()
        .set_name(key.name.clone())
        .send()
        .await
        .unwrap();
    assert!(one.private_key_data.is_empty());

    // Read-modify-write of the project policy; a stale etag is ABORTED (409).
    let crm = Projects::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let p = crm
        .get_project()
        .set_name(format!("projects/{P}"))
        .send()
        .await
        .unwrap();
    assert_eq!(p.project_id, P);
    let policy = crm
        .get_iam_policy()
        .set_resource(format!("projects/{P}"))
        .send()
        .await
        .unwrap();
    let mut next = policy.clone();
    next.bindings.push(
        google_cloud_iam_v1::model::Binding::new()
            .set_role("roles/compute.securityAdmin")
            .set_members([format!("serviceAccount:{email}")]),
    );
    let written = crm
        .set_iam_policy()
        .set_resource(format!("projects/{P}"))
        .set_policy(next.clone())
        .send()
        .await
        .unwrap();
    assert_ne!(written.etag, policy.etag, "etag changes on every write");
    assert_eq!(written.bindings.len(), 2);
    let e = crm
        .set_iam_policy()
        .set_resource(format!("projects/{P}"))
        .set_policy(next)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(409), "{e}");
    assert!(e.to_string().contains("concurrent policy changes"), "{e}");
    // A member that does not exist is refused.
    let mut ghost = written.clone();
    ghost.bindings.push(
        google_cloud_iam_v1::model::Binding::new()
            .set_role("roles/viewer")
            .set_members([format!(
                "serviceAccount:ghost-account@{P}.iam.gserviceaccount.com"
            )]),
    );
    let e = crm
        .set_iam_policy()
        .set_resource(format!("projects/{P}"))
        .set_policy(ghost)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(400), "{e}");

    // The org policy blocks key creation.
    admin(
        &url,
        &format!("projects/{P}"),
        json!({"keyCreationBlocked": true}),
    )
    .await;
    let e = iam
        .create_service_account_key()
        .set_name(format!("projects/{P}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(400), "{e}");
    let raw = http()
        .post(format!(
            "{url}/v1/projects/{P}/serviceAccounts/{email}/keys"
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("FAILED_PRECONDITION"), "{raw}");
    assert!(
        raw.contains("constraints/iam.disableServiceAccountKeyCreation"),
        "{raw}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn enabling_compute_without_billing_fails() {
    let (mut sim, url) = start(|_| {}).await;
    admin(&url, &format!("projects/{P}"), json!({"billing": false})).await;
    let su = ServiceUsage::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let e = su
        .batch_enable_services()
        .set_parent(format!("projects/{P}"))
        .set_service_ids(["compute.googleapis.com"])
        .poller()
        .until_done()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "Billing must be enabled for activation of service(s) 'compute.googleapis.com'"
        ),
        "{e}"
    );
    // Other APIs do not need billing.
    enable(&url, &["iam.googleapis.com"]).await;
    sim.stop().await;
}

#[tokio::test]
async fn storage_buckets_uploads_and_images() {
    let (mut sim, url) = start(|_| {}).await;
    enable(&url, &["storage.googleapis.com", "compute.googleapis.com"]).await;
    let c = http();
    // Bucket insert is a JSON call (the SDK's StorageControl speaks gRPC).
    let body = json!({"name": "meshfleet-talos-1a2b", "location": "europe-west1",
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"}});
    let r = c
        .post(format!("{url}/storage/v1/b?project={P}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["location"], "EUROPE-WEST1");
    assert_eq!(b["iamConfiguration"]["publicAccessPrevention"], "enforced");
    assert_eq!(
        b["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
        true
    );
    let r = c
        .post(format!("{url}/storage/v1/b?project={P}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let got: Value = c
        .get(format!("{url}/storage/v1/b/meshfleet-talos-1a2b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "meshfleet-talos-1a2b");
    // PATCH changes what it names and keeps the rest.
    let patched: Value = c
        .patch(format!("{url}/storage/v1/b/meshfleet-talos-1a2b"))
        .json(&json!({"iamConfiguration": {"publicAccessPrevention": "inherited"}, "labels": {"owner": "meshfleet"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        patched["iamConfiguration"]["publicAccessPrevention"],
        "inherited"
    );
    assert_eq!(
        patched["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
        true
    );
    assert_eq!(patched["labels"]["owner"], "meshfleet");
    assert_eq!(patched["metageneration"], "2");
    assert_eq!(patched["location"], "EUROPE-WEST1");
    let r = c
        .get(format!("{url}/storage/v1/b/free-name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    admin(&url, "foreign-buckets/taken-name", json!({})).await;
    let r = c
        .get(format!("{url}/storage/v1/b/taken-name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{url}/storage/v1/b?project={P}"))
        .json(&json!({"name": "taken-name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("bucket namespace is shared")
    );

    // A resumable upload in several 256 KiB chunks (308 until the last), then a refused
    // overwrite with ifGenerationMatch=0.
    let storage = Storage::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .with_resumable_upload_threshold(0_usize)
        .with_resumable_upload_buffer_size(256 * 1024_usize)
        .build()
        .await
        .unwrap();
    let payload: Vec<u8> = (0..700 * 1024).map(|i| (i % 251) as u8).collect();
    let obj = storage
        .write_object(
            "projects/_/buckets/meshfleet-talos-1a2b",
            "talos/gcp-amd64.raw.tar.gz",
            bytes::Bytes::from(payload.clone()),
        )
        .set_if_generation_match(0)
        .send_buffered()
        .await
        .unwrap();
    assert_eq!(obj.size, payload.len() as i64);
    let e = storage
        .write_object(
            "projects/_/buckets/meshfleet-talos-1a2b",
            "talos/gcp-amd64.raw.tar.gz",
            bytes::Bytes::from_static(b"other"),
        )
        .set_if_generation_match(0)
        .send_buffered()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(412), "{e}");
    // What `gcp setup` sends: a file, unbuffered, always resumable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gcp-arm64.raw.tar.gz");
    std::fs::write(&file, &payload[..300 * 1024]).unwrap();
    let f = tokio::fs::File::open(&file).await.unwrap();
    let obj = storage
        .write_object(
            "projects/_/buckets/meshfleet-talos-1a2b",
            "talos/gcp-arm64.raw.tar.gz",
            f,
        )
        .set_if_generation_match(0)
        .with_resumable_upload_threshold(0_usize)
        .send_unbuffered()
        .await
        .unwrap();
    assert_eq!(obj.size, 300 * 1024);
    // Small objects go in one multipart request.
    let small = Storage::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let o = small
        .write_object(
            "projects/_/buckets/meshfleet-talos-1a2b",
            "notes.txt",
            bytes::Bytes::from_static(b"hello"),
        )
        .send_buffered()
        .await
        .unwrap();
    assert_eq!(o.size, 5);
    let meta: Value = c
        .get(format!(
            "{url}/storage/v1/b/meshfleet-talos-1a2b/o/notes.txt"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["size"], "5");
    assert_eq!(meta["md5Hash"], "XUFAKrxLKna5cZ2REBfFkg==");
    let data = c
        .get(format!(
            "{url}/storage/v1/b/meshfleet-talos-1a2b/o/notes.txt?alt=media"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&data[..], b"hello");

    // Images from the uploaded object; a missing object fails the operation.
    let images = Images::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let image = |name: &str, src: &str| {
        model::Image::new()
            .set_name(name)
            .set_family("talos")
            .set_raw_disk(model::image::RawDisk::new().set_source(src))
    };
    images
        .insert()
        .set_project(P)
        .set_body(image(
            "talos-v1-11-5-amd64",
            "https://storage.googleapis.com/meshfleet-talos-1a2b/talos/gcp-amd64.raw.tar.gz",
        ))
        .poller()
        .until_done()
        .await
        .unwrap();
    let img = images
        .get()
        .set_project(P)
        .set_image("talos-v1-11-5-amd64")
        .send()
        .await
        .unwrap();
    assert_eq!(img.family.as_deref(), Some("talos"));
    // The SDK's Compute poller completes with Ok(op) and leaves `op.error` to the caller.
    let op = images
        .insert()
        .set_project(P)
        .set_body(image(
            "talos-missing",
            "https://storage.googleapis.com/meshfleet-talos-1a2b/nope.tar.gz",
        ))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(op.status, Some(model::operation::Status::Done));
    assert_eq!(op.http_error_status_code, Some(404));
    let err = &op.error.as_ref().unwrap().errors[0];
    assert!(
        err.message.as_deref().unwrap_or("").contains("nope.tar.gz"),
        "{err:?}"
    );
    let e = images
        .get()
        .set_project(P)
        .set_image("talos-missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.http_status_code(), Some(404));
    sim.stop().await;
}

/// A client killed mid-way resumes: the upload session reports what it holds, and an insert
/// repeated with its requestId finds the first attempt's operation.
#[tokio::test]
async fn interrupted_upload_and_insert_resume() {
    let (mut sim, url) = start(|_| {}).await;
    enable(&url, &["storage.googleapis.com", "compute.googleapis.com"]).await;
    let c = http();
    c.post(format!("{url}/storage/v1/b?project={P}"))
        .json(&json!({"name": "resume-bucket"}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(format!(
            "{url}/upload/storage/v1/b/resume-bucket/o?uploadType=resumable&name=big.raw&ifGenerationMatch=0"
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers()["location"].to_str().unwrap().to_string();
    let chunk = vec![7u8; 256 * 1024];
    let r = c
        .put(&session)
        .header("content-range", "bytes 0-262143/*")
        .body(chunk.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], "bytes=0-262143");
    // ... the client dies here; its successor asks where the upload stands.
    let r = c
        .put(&session)
        .header("content-range", "bytes */*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], "bytes=0-262143");
    let r = c
        .put(&session)
        .header("content-range", "bytes 262144-262153/262154")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["size"], "262154");
    assert!(o["crc32c"].as_str().is_some_and(|s| !s.is_empty()));

    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let first = nets
        .insert()
        .set_project(P)
        .set_request_id("req-1")
        .set_body(network("meshfleet"))
        .send()
        .await
        .unwrap();
    // Killed before polling; the rerun repeats the insert and polls what it gets back.
    let op = nets
        .insert()
        .set_project(P)
        .set_request_id("req-1")
        .set_body(network("meshfleet"))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(op.name, first.name);
    assert!(op.error.is_none());
    let st = state(&url).await;
    assert!(st["projects"][P]["compute"]["global/networks/meshfleet"].is_object());
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_answer_in_google_error_json() {
    let (mut sim, url) = start(|_| {}).await;
    enable(&url, &["compute.googleapis.com"]).await;
    let c = http();
    for (status, want) in [
        (429, "RESOURCE_EXHAUSTED"),
        (503, "UNAVAILABLE"),
        (409, "ABORTED"),
        (412, "FAILED_PRECONDITION"),
        (500, "INTERNAL"),
    ] {
        admin(
            &url,
            "faults",
            json!({"method": "POST", "pathPrefix": format!("/compute/v1/projects/{P}/global/networks"),
                "status": status, "count": 1}),
        )
        .await;
        let r = c
            .post(format!("{url}/compute/v1/projects/{P}/global/networks"))
            .json(&json!({"name": format!("n{status}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], status);
        assert_eq!(v["error"]["status"], want);
        assert!(v["error"]["errors"][0]["reason"].is_string());
        // count 1: the next request goes through.
        let r = c
            .post(format!("{url}/compute/v1/projects/{P}/global/networks"))
            .json(&json!({"name": format!("n{status}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The SDK retries a GET through a 503.
    admin(
        &url,
        "faults",
        json!({"method": "GET", "pathPrefix": format!("/compute/v1/projects/{P}/global/networks/n429"),
            "status": 503, "count": 2, "message": "backend hiccup"}),
    )
    .await;
    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let n = eventually("n429 visible", 10, || async {
        nets.get()
            .set_project(P)
            .set_network("n429")
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(n.name.as_deref(), Some("n429"));
    sim.stop().await;
}

#[tokio::test]
async fn gcp_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (mut sim, url) = start(|c| c.state_dir = Some(d.clone())).await;
    enable(&url, &["compute.googleapis.com"]).await;
    admin(
        &url,
        "seed",
        json!({"project": P, "networks": [{"name": "kept"}]}),
    )
    .await;
    sim.stop().await;
    assert!(dir.path().join("gcp.json").exists());
    let (mut sim2, url2) = start(|c| c.state_dir = Some(d.clone())).await;
    let st = state(&url2).await;
    assert!(
        st["projects"][P]["compute"]["global/networks/kept"].is_object(),
        "{st}"
    );
    assert!(
        st["projects"][P]["services"]
            .as_array()
            .unwrap()
            .contains(&json!("compute.googleapis.com"))
    );
    sim2.stop().await;
}
