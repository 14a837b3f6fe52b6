//! The pure diff: golden request bodies and the create/update/unchanged decisions.

mod common;

use meshfleet_gcp::SetupError;
use meshfleet_gcp::desired::{self, Diff};
use serde_json::json;

use common::{example_prereq, example_prereq_with_rules};

#[test]
fn golden_request_bodies() {
    let p = example_prereq_with_rules();
    insta::assert_json_snapshot!("network", desired::network_body(&p));
    insta::assert_json_snapshot!(
        "subnetwork",
        desired::subnetwork_body(&p, &p.subnetworks[0])
    );
    insta::assert_json_snapshot!("router_nat", desired::router_body(&p, &p.routers[0]));
    insta::assert_json_snapshot!("firewall", desired::firewall_body(&p, &p.firewall_rules[0]));
    insta::assert_json_snapshot!(
        "image",
        desired::image_body(&p, p.image.bucket.as_deref().unwrap_or_default())
    );
    insta::assert_json_snapshot!(
        "bucket",
        desired::bucket_body("talos-images-01-7f3a", "europe-west1")
    );
}

#[test]
fn service_account_is_capg_controller_with_least_privilege() {
    let p = example_prereq();
    assert_eq!(
        desired::service_account_email(&p),
        "capg-controller@my-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        p.service_account.roles,
        [
            "roles/compute.instanceAdmin.v1",
            "roles/compute.loadBalancerAdmin",
            "roles/compute.securityAdmin",
            "roles/iam.serviceAccountUser",
        ]
    );
}

#[test]
fn iam_merge_keeps_foreign_bindings_and_adds_only_ours() {
    let p = example_prereq();
    let member = desired::service_account_member(&p);
    let policy = json!({
        "version": 3,
        "etag": "BwXyz",
        "bindings": [
            { "role": "roles/owner", "members": ["user:admin@example.com"] },
            // Someone else already holds one of our roles: we join that binding.
            { "role": "roles/compute.securityAdmin", "members": ["group:net@example.com"] },
            // A conditional binding of one of our roles is not ours and stays as it is.
            { "role": "roles/iam.serviceAccountUser", "members": [member.clone()],
              "condition": { "title": "until 2027", "expression": "request.time < timestamp('2027-01-01T00:00:00Z')" } },
            // Already held unconditionally.
            { "role": "roles/compute.instanceAdmin.v1", "members": [member.clone(), "user:x@example.com"] },
        ],
        "auditConfigs": [{ "service": "allServices" }],
    });
    let roles: Vec<&str> = p.service_account.roles.clone();
    let (added, merged) =
        desired::merge_policy(&policy, &member, &roles).expect("something to add");
    assert_eq!(
        added,
        [
            "roles/compute.loadBalancerAdmin",
            "roles/compute.securityAdmin",
            "roles/iam.serviceAccountUser",
        ]
    );
    insta::assert_json_snapshot!("iam_policy_merge", merged);
    // Idempotent: the merged policy needs nothing more.
    assert!(desired::merge_policy(&merged, &member, &roles).is_none());
}

#[test]
fn created_resources_read_back_as_unchanged() {
    let p = example_prereq_with_rules();
    let bucket = p.image.bucket.clone().unwrap_or_default();
    let mut net = desired::network_body(&p);
    net["selfLink"] = json!(
        "https://www.googleapis.com/compute/v1/projects/my-project/global/networks/meshfleet"
    );
    assert_eq!(
        desired::diff_network(&p, Some(&net)).ok(),
        Some(Diff::Unchanged)
    );
    for s in &p.subnetworks {
        let mut have = desired::subnetwork_body(&p, s);
        // Google answers with full URLs where we sent partial ones.
        have["network"] = json!(format!(
            "https://www.googleapis.com/compute/v1/{}",
            desired::network_link(&p)
        ));
        assert_eq!(
            desired::diff_subnetwork(&p, s, Some(&have)).ok(),
            Some(Diff::Unchanged)
        );
    }
    for r in &p.routers {
        let have = desired::router_body(&p, r);
        assert_eq!(
            desired::diff_router(&p, r, Some(&have)).ok(),
            Some(Diff::Unchanged)
        );
    }
    for f in &p.firewall_rules {
        let mut have = desired::firewall_body(&p, f);
        // Order of lists and protocol case are not differences.
        if let Some(a) = have["sourceRanges"].as_array_mut() {
            a.reverse();
        }
        have["allowed"][0]["IPProtocol"] = json!(
            have["allowed"][0]["IPProtocol"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase()
        );
        assert_eq!(
            desired::diff_firewall(&p, f, Some(&have)).ok(),
            Some(Diff::Unchanged),
            "{}",
            f.name
        );
    }
    let img = desired::image_body(&p, &bucket);
    assert_eq!(
        desired::diff_image(&p, &bucket, Some(&img)).ok(),
        Some(Diff::Unchanged)
    );
    let b = desired::bucket_body(&bucket, "europe-west1");
    assert_eq!(
        desired::diff_bucket(&bucket, "europe-west1", Some(&b)),
        Diff::Unchanged
    );
}

#[test]
fn absent_resources_are_created_with_their_body() {
    let p = example_prereq_with_rules();
    assert_eq!(
        desired::diff_network(&p, None).ok(),
        Some(Diff::Create(desired::network_body(&p)))
    );
    let f = &p.firewall_rules[0];
    assert_eq!(
        desired::diff_firewall(&p, f, None).ok(),
        Some(Diff::Create(desired::firewall_body(&p, f)))
    );
}

#[test]
fn owned_fields_that_differ_are_updated() {
    let p = example_prereq_with_rules();
    let f = &p.firewall_rules[0];
    let mut have = desired::firewall_body(&p, f);
    have["sourceRanges"] = json!(["0.0.0.0/0"]);
    match desired::diff_firewall(&p, f, Some(&have)) {
        Ok(Diff::Update { body, detail }) => {
            assert_eq!(detail, "sourceRanges differ");
            assert_eq!(body["sourceRanges"], json!(f.source_ranges));
        }
        other => panic!("expected an update, got {other:?}"),
    }

    let s = &p.subnetworks[0];
    let mut have = desired::subnetwork_body(&p, s);
    have["privateIpGoogleAccess"] = json!(false);
    assert!(matches!(
        desired::diff_subnetwork(&p, s, Some(&have)),
        Ok(Diff::Update { ref body, .. }) if *body == json!({ "privateIpGoogleAccess": true })
    ));

    // A router without our NAT gets it, and keeps a NAT someone else configured.
    let r = &p.routers[0];
    let mut have = desired::router_body(&p, r);
    have["nats"] = json!([{ "name": "theirs", "natIpAllocateOption": "MANUAL_ONLY" }]);
    match desired::diff_router(&p, r, Some(&have)) {
        Ok(Diff::Update { body, detail }) => {
            assert_eq!(detail, format!("NAT {} missing", r.nat.name));
            let names: Vec<&str> = body["nats"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["name"].as_str())
                .collect();
            assert_eq!(names, ["theirs", r.nat.name.as_str()]);
        }
        other => panic!("expected an update, got {other:?}"),
    }

    let mut net = desired::network_body(&p);
    net["routingConfig"]["routingMode"] = json!("REGIONAL");
    assert!(matches!(
        desired::diff_network(&p, Some(&net)),
        Ok(Diff::Update { .. })
    ));

    let mut b = desired::bucket_body("b", "US");
    b["iamConfiguration"]["publicAccessPrevention"] = json!("inherited");
    assert!(matches!(
        desired::diff_bucket("b", "US", Some(&b)),
        Diff::Update { ref detail, .. } if detail == "public access prevention not enforced"
    ));
}

#[test]
fn immutable_differences_are_errors_with_a_hint() {
    let p = example_prereq_with_rules();
    let s = &p.subnetworks[0];
    let mut have = desired::subnetwork_body(&p, s);
    have["ipCidrRange"] = json!("192.168.0.0/24");
    let e = desired::diff_subnetwork(&p, s, Some(&have)).expect_err("range is immutable");
    assert!(matches!(
        e,
        SetupError::Immutable {
            field: "ipCidrRange",
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("192.168.0.0/24") && msg.contains(&s.ip_cidr_range) && msg.contains("hint:"),
        "{msg}"
    );

    let mut net = desired::network_body(&p);
    net["autoCreateSubnetworks"] = json!(true);
    let e = desired::diff_network(&p, Some(&net)).expect_err("auto mode");
    assert!(e.to_string().contains("autoCreateSubnetworks"), "{e}");

    let f = &p.firewall_rules[0];
    let mut have = desired::firewall_body(&p, f);
    have["network"] = json!("projects/my-project/global/networks/default");
    assert!(desired::diff_firewall(&p, f, Some(&have)).is_err());

    let bucket = p.image.bucket.clone().unwrap_or_default();
    let mut img = desired::image_body(&p, &bucket);
    img["architecture"] = json!("ARM64");
    assert!(desired::diff_image(&p, &bucket, Some(&img)).is_err());
}
