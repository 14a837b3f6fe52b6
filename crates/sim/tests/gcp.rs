//! The simulator's Google Cloud API fake, driven by the official SDK clients (and plain HTTP
//! where the SDK has no JSON call), and the simulated CAPG's use of its state.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_auth::credentials::{Credentials, anonymous};
use google_cloud_compute_v1::client::{Firewalls, Images, Networks, Subnetworks};
use google_cloud_compute_v1::model;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_lro::Poller;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_storage::client::Storage;
use serde_json::{Value, json};

const P: &str = "acme-prod";

fn creds() -> Credentials {
    anonymous::Builder::new().build()
}

async fn start(f: impl FnOnce(&mut meshfleet_sim::SimConfig)) -> (Sim, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(|c| {
        c.speed = 10.0;
        f(c)
    })
    .await;
    let url = sim.sim.as_ref().unwrap().gcp_url().to_string();
    (sim, url)
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn admin(url: &str, path: &str, body: Value) {
    let r = http()
        .post(format!("{url}/_sim/gcp/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

async fn state(url: &str) -> Value {
    http()
        .get(format!("{url}/_sim/gcp/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn enable(url: &str, services: &[&str]) {
    enable_in(url, P, services).await
}

async fn enable_in(url: &str, project: &str, services: &[&str]) {
    let su = ServiceUsage::builder()
        .with_endpoint(url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let resp = su
        .batch_enable_services()
        .set_parent(format!("projects/{project}"))
        .set_service_ids(services.iter().map(|s| s.to_string()))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(resp.services.len(), services.len());
}

async fn cluster(client: &kube::Client, name: &str) -> Option<Value> {
    let probe = json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "fleet"}});
    dyn_api(client, &probe)
        .await
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

fn network(name: &str) -> model::Network {
    model::Network::new().set_name(name)
}

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

/// The simulated CAPG: without the network and subnet in the project the GCPCluster stays not
/// ready with a precise message; once `gcp setup`'s calls created them, the cluster proceeds;
/// a tcp/50000 rule may come from the project's firewalls instead of the GCPCluster's own.
#[tokio::test]
async fn capg_needs_the_network_and_subnet_and_reads_project_firewalls() {
    let crds = crds_dir();
    let (mut sim, url) = start(|c| {
        c.crds_dir = crds.clone();
        c.egress_ip = Some("203.0.113.10".parse().unwrap());
        c.speed = 50.0;
    })
    .await;
    let client = sim.client().await;
    for f in ["namespace.yaml", "gcp-a.yaml", "gcp-blocked.yaml"] {
        apply_file(&client, &fixtures().join(f)).await.unwrap();
    }
    let stuck = eventually("gcp-a stuck on its network", 30, || async {
        cluster(&client, "gcp-a").await.filter(|c| {
            condition(c, "InfrastructureReady").is_some_and(|x| {
                x["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("network `demo-net` not found in project `demo-project`")
            })
        })
    })
    .await;
    let msg = condition(&stuck, "InfrastructureReady").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("meshfleet gcp setup"), "{msg}");
    // Stays stuck (well past the provisioning delay at speed 50).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = cluster(&client, "gcp-a").await.unwrap();
    assert_ne!(
        condition(&c, "InfrastructureReady").unwrap()["status"],
        "True"
    );

    // The calls `gcp setup` makes: enable Compute, network, then the subnet.
    enable_in(&url, "demo-project", &["compute.googleapis.com"]).await;
    let nets = Networks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    for n in ["demo-net", "blocked-net"] {
        nets.insert()
            .set_project("demo-project")
            .set_body(network(n))
            .poller()
            .until_done()
            .await
            .unwrap();
    }
    eventually("gcp-a waits for its subnet", 30, || async {
        cluster(&client, "gcp-a").await.filter(|c| {
            condition(c, "InfrastructureReady").is_some_and(|x| {
                x["message"].as_str().unwrap_or("").contains(
                    "subnetwork `gcp-a` in region `europe-west1` of network `demo-net` not found",
                )
            })
        })
    })
    .await;
    let subs = Subnetworks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    for (name, net, cidr) in [
        ("gcp-a", "demo-net", "10.0.0.0/20"),
        ("gcp-blocked", "blocked-net", "10.2.0.0/20"),
    ] {
        subs.insert()
            .set_project("demo-project")
            .set_region("europe-west1")
            .set_body(
                model::Subnetwork::new()
                    .set_name(name)
                    .set_network(format!("global/networks/{net}"))
                    .set_ip_cidr_range(cidr),
            )
            .poller()
            .until_done()
            .await
            .unwrap();
    }
    eventually("gcp-a Available", 60, || async {
        cluster(&client, "gcp-a")
            .await
            .filter(|c| condition(c, "Available").is_some_and(|x| x["status"] == "True"))
    })
    .await;
    // gcp-blocked's own rules do not admit the egress: stuck on tcp/50000 ...
    eventually("gcp-blocked stuck on 50000", 60, || async {
        cluster(&client, "gcp-blocked").await.filter(|c| {
            condition(c, "ControlPlaneInitialized")
                .is_some_and(|x| x["message"].as_str().unwrap_or("").contains("50000"))
        })
    })
    .await;
    // ... until the project's firewall on its network does.
    let fws = Firewalls::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    fws.insert()
        .set_project("demo-project")
        .set_body(
            model::Firewall::new()
                .set_name("blocked-net-talos-apid")
                .set_network("global/networks/blocked-net")
                .set_source_ranges(["203.0.113.10/32"])
                .set_allowed([model::firewall::Allowed::new()
                    .set_ip_protocol("tcp")
                    .set_ports(["50000"])]),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    eventually("gcp-blocked initialized", 60, || async {
        cluster(&client, "gcp-blocked").await.filter(|c| {
            condition(c, "ControlPlaneInitialized").is_some_and(|x| x["status"] == "True")
        })
    })
    .await;
    sim.stop().await;
}

/// Changes after creation: a router's NAT (PATCH), Private Google Access on a subnet, a
/// firewall's source ranges; and the blocking `operations/{op}/wait`.
#[tokio::test]
async fn routers_subnets_and_firewalls_are_patched_through_operations() {
    use google_cloud_compute_v1::client::Routers;
    use google_cloud_compute_v1::model::router_nat::{
        NatIpAllocateOption, SourceSubnetworkIpRangesToNat,
    };
    let (mut sim, url) = start(|_| {}).await;
    admin(
        &url,
        "seed",
        json!({"project": P, "networks": [{"name": "meshfleet"}],
            "subnetworks": [{"name": "gcp-a", "region": "europe-west1", "network": "meshfleet", "ipCidrRange": "10.0.0.0/20"}]}),
    )
    .await;
    let routers = Routers::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    let nat = |name: &str| {
        model::RouterNat::new()
            .set_name(name)
            .set_nat_ip_allocate_option(NatIpAllocateOption::AutoOnly)
            .set_source_subnetwork_ip_ranges_to_nat(
                SourceSubnetworkIpRangesToNat::AllSubnetworksAllIpRanges,
            )
    };
    routers
        .insert()
        .set_project(P)
        .set_region("europe-west1")
        .set_body(
            model::Router::new()
                .set_name("meshfleet-router")
                .set_network(format!(
                    "https://www.googleapis.com/compute/v1/projects/{P}/global/networks/meshfleet"
                ))
                .set_bgp(model::RouterBgp::new().set_asn(64514_u32))
                .set_nats([nat("meshfleet-nat")]),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    let op = routers
        .patch()
        .set_project(P)
        .set_region("europe-west1")
        .set_router("meshfleet-router")
        .set_body(model::Router::new().set_nats([nat("meshfleet-nat-2")]))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert!(op.error.is_none());
    let r = routers
        .get()
        .set_project(P)
        .set_region("europe-west1")
        .set_router("meshfleet-router")
        .send()
        .await
        .unwrap();
    assert_eq!(r.nats.len(), 1);
    assert_eq!(r.nats[0].name.as_deref(), Some("meshfleet-nat-2"));
    assert_eq!(
        r.bgp.and_then(|b| b.asn),
        Some(64514),
        "PATCH keeps what it does not name"
    );

    let subs = Subnetworks::builder()
        .with_endpoint(&url)
        .with_credentials(creds())
        .build()
        .await
        .unwrap();
    subs.set_private_ip_google_access()
        .set_project(P)
        .set_region("europe-west1")
        .set_subnetwork("gcp-a")
        .set_body(
            model::SubnetworksSetPrivateIpGoogleAccessRequest::new()
                .set_private_ip_google_access(true),
        )
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
    assert_eq!(s.private_ip_google_access, Some(true));

    // Firewall PATCH through plain HTTP, waiting with `operations/{op}/wait`.
    let c = http();
    let op: Value = c
        .post(format!("{url}/compute/v1/projects/{P}/global/firewalls"))
        .json(&json!({"name": "fw", "network": "global/networks/meshfleet",
            "sourceRanges": ["10.0.0.0/8"], "allowed": [{"IPProtocol": "tcp", "ports": ["50000"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["status"], "RUNNING");
    let name = op["name"].as_str().unwrap();
    let done: Value = c
        .post(format!(
            "{url}/compute/v1/projects/{P}/global/operations/{name}/wait"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["progress"], 100);
    let op: Value = c
        .patch(format!("{url}/compute/v1/projects/{P}/global/firewalls/fw"))
        .json(&json!({"sourceRanges": ["203.0.113.10/32"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(op["operationType"], "patch");
    let name = op["name"].as_str().unwrap();
    c.post(format!(
        "{url}/compute/v1/projects/{P}/global/operations/{name}/wait"
    ))
    .send()
    .await
    .unwrap();
    let fw: Value = c
        .get(format!("{url}/compute/v1/projects/{P}/global/firewalls/fw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fw["sourceRanges"], json!(["203.0.113.10/32"]));
    assert_eq!(fw["allowed"][0]["ports"], json!(["50000"]));
    // A patch of something that does not exist is a 404 in Compute's words.
    let r = c
        .patch(format!(
            "{url}/compute/v1/projects/{P}/global/firewalls/nope"
        ))
        .json(&json!({"sourceRanges": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "The resource 'projects/acme-prod/global/firewalls/nope' was not found"
    );
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    sim.stop().await;
}

/// `--faults 1`: every Google API call fails with a retryable status in Google's error JSON;
/// the admin endpoints keep working. Disabled APIs answer 403 on every service.
#[tokio::test]
async fn random_faults_and_disabled_apis() {
    let (mut sim, url) = start(|c| c.faults = 1.0).await;
    let c = http();
    for _ in 0..5 {
        let r = c
            .get(format!("{url}/compute/v1/projects/{P}/global/networks/n"))
            .send()
            .await
            .unwrap();
        assert!(
            [429, 500, 503].contains(&r.status().as_u16()),
            "{}",
            r.status()
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["status"].is_string(), "{v}");
    }
    assert!(state(&url).await["projects"].is_object());
    sim.stop().await;

    let (mut sim, url) = start(|_| {}).await;
    for (path, service) in [
        (
            format!("/v1/projects/{P}/serviceAccounts/x@{P}.iam.gserviceaccount.com"),
            "iam.googleapis.com",
        ),
        (
            format!("/storage/v1/b?project={P}"),
            "storage.googleapis.com",
        ),
    ] {
        let r = c.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["details"][0]["reason"], "SERVICE_DISABLED",
            "{v}"
        );
        assert_eq!(v["error"]["details"][0]["metadata"]["service"], service);
    }
    sim.stop().await;
}
