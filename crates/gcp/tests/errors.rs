//! Google's error JSON, as the real APIs send it, is recognised for the cases with a fix.

use meshfleet_gcp::ApiError;

fn parse(http: u16, body: &str) -> ApiError {
    ApiError::from_google_json(http, body.as_bytes()).expect("Google error JSON")
}

#[test]
fn service_disabled_from_its_error_info() {
    let e = parse(
        403,
        r#"{"error":{"code":403,"message":"Compute Engine API has not been used in project 1 before or it is disabled.","status":"PERMISSION_DENIED",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com"}]}}"#,
    );
    assert!(e.is_service_disabled());
    assert_eq!(e.reason, "SERVICE_DISABLED");
}

#[test]
fn billing_from_the_enable_failure() {
    let e = parse(
        400,
        r#"{"error":{"code":400,"message":"Billing account for project '1' is not found. Billing must be enabled for activation of service(s) 'compute.googleapis.com' to proceed.","status":"FAILED_PRECONDITION",
            "details":[{"@type":"type.googleapis.com/google.rpc.PreconditionFailure","violations":[{"type":"googleapis.com/billing-enabled","subject":"?error_code=390001"}]}]}}"#,
    );
    assert!(e.is_billing_disabled());
    assert!(!e.is_retryable());
}

#[test]
fn key_creation_blocked_only_named_in_the_violations() {
    let e = parse(
        400,
        r#"{"error":{"code":400,"message":"Key creation is not allowed on this service account.","status":"FAILED_PRECONDITION",
            "details":[{"@type":"type.googleapis.com/google.rpc.PreconditionFailure","violations":[{"type":"constraints/iam.disableServiceAccountKeyCreation","subject":"projects/p/serviceAccounts/x"}]}]}}"#,
    );
    assert!(e.is_key_creation_blocked());
}

#[test]
fn conflicts_and_transients() {
    let exists = parse(
        409,
        r#"{"error":{"code":409,"message":"The resource 'projects/p/global/networks/n' already exists","errors":[{"reason":"alreadyExists"}]}}"#,
    );
    assert!(exists.is_already_exists() && !exists.is_aborted());
    let etag = parse(
        409,
        r#"{"error":{"code":409,"message":"There were concurrent policy changes.","status":"ABORTED"}}"#,
    );
    assert!(etag.is_aborted() && !etag.is_already_exists());
    for code in [429, 500, 502, 503, 504] {
        assert!(ApiError::new(code, "", "x").is_retryable(), "{code}");
    }
    assert!(!ApiError::new(400, "INVALID_ARGUMENT", "x").is_retryable());
    assert!(ApiError::transport("connection refused").is_retryable());
    let missing = ApiError::new(
        400,
        "INVALID_ARGUMENT",
        "Service account capg-controller@p.iam.gserviceaccount.com does not exist.",
    );
    assert!(missing.is_member_not_found());
    assert!(ApiError::from_google_json(502, b"<html>bad gateway</html>").is_none());
}
