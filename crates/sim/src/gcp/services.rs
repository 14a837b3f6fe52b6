//! IAM (service accounts, keys), Resource Manager (project, IAM policy) and Service Usage.

use std::sync::Arc;

use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::server::{Reply, Req, ok};
use super::{
    ApiError, ApiResult, Gcp, ServiceOp, State, now_ms, project_number, require_service, rfc3339,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MAX_KEYS: usize = 10;
const SERVICE_OP_META: &str = "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata";

fn not_allowed(r: &Req) -> ApiError {
    ApiError::new(
        404,
        format!("The requested URL {} was not found on this server.", r.path),
    )
}

/// Route `/v1/projects/{project}/{rest}` (IAM and Service Usage share the prefix).
pub(crate) fn route_v1(gcp: &Arc<Gcp>, r: &Req, project: &str, rest: &[&str]) -> ApiResult<Reply> {
    match rest {
        ["serviceAccounts", ..] => {
            gcp.with_state(|st| require_service(st, project, "iam.googleapis.com"))?;
            iam(gcp, r, project, &rest[1..])
        }
        ["services:batchEnable"] if r.method == Method::POST => {
            let ids: Vec<String> = r
                .json()?
                .get("serviceIds")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() || ids.len() > 20 {
                return Err(ApiError::new(
                    400,
                    format!(
                        "serviceIds must name between 1 and 20 services, got {}",
                        ids.len()
                    ),
                ));
            }
            enable(gcp, project, ids, false)
        }
        ["services:batchGet"] if r.method == Method::GET => {
            let names = r.qs("names");
            gcp.read(|st| {
                let services: Vec<Value> = names
                    .iter()
                    .map(|n| service_json(st, project, n.rsplit('/').next().unwrap_or(n)))
                    .collect();
                ok(json!({"services": services}))
            })
        }
        ["services"] if r.method == Method::GET => gcp.read(|st| {
            let services: Vec<Value> = st
                .projects
                .get(project)
                .map(|p| {
                    p.services
                        .iter()
                        .map(|s| service_json(st, project, s))
                        .collect()
                })
                .unwrap_or_default();
            ok(json!({"services": services}))
        }),
        [svc] if r.method == Method::POST && svc.ends_with(":enable") => {
            let id = svc.trim_end_matches(":enable").to_string();
            enable(gcp, project, vec![id], true)
        }
        ["services", svc] if r.method == Method::GET => {
            gcp.read(|st| ok(service_json(st, project, svc)))
        }
        ["services", svc] if r.method == Method::POST && svc.ends_with(":enable") => {
            let id = svc.trim_end_matches(":enable").to_string();
            enable(gcp, project, vec![id], true)
        }
        _ => Err(not_allowed(r)),
    }
}

fn service_json(st: &State, project: &str, svc: &str) -> Value {
    let on = st
        .projects
        .get(project)
        .is_some_and(|p| p.services.contains(svc));
    let num = project_number(project);
    json!({"name": format!("projects/{num}/services/{svc}"), "parent": format!("projects/{num}"),
        "state": if on { "ENABLED" } else { "DISABLED" },
        "config": {"name": svc, "title": svc}})
}

fn enable(gcp: &Gcp, project: &str, ids: Vec<String>, single: bool) -> ApiResult<Reply> {
    if let Some(bad) = ids.iter().find(|s| !s.ends_with(".googleapis.com")) {
        return Err(ApiError::new(
            403,
            format!("Not found or permission denied for service(s): {bad}."),
        )
        .with("PERMISSION_DENIED", "forbidden"));
    }
    gcp.with_state(|st| {
        let p = st.projects.entry(project.to_string()).or_default();
        if !p.billing && ids.iter().any(|s| s == "compute.googleapis.com") {
            let mut e = ApiError::new(
                400,
                format!(
                    "Billing account for project '{}' is not found. Billing must be enabled for activation of service(s) 'compute.googleapis.com' to proceed.",
                    project_number(project)
                ),
            )
            .with("FAILED_PRECONDITION", "failedPrecondition");
            let num = project_number(project);
            e.details = vec![
                json!({"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [{"type": "googleapis.com/billing-enabled",
                        "subject": format!("?error_code=390001&project={num}&services=compute.googleapis.com")}]}),
                json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "UREQ_PROJECT_BILLING_NOT_FOUND",
                    "domain": "serviceusage.googleapis.com/billing-enabled",
                    "metadata": {"project": num.to_string(), "services": "compute.googleapis.com"}}),
            ];
            return Err(e);
        }
        let id = format!(
            "acf.p2-{}-{:08x}-{:04x}-{:04x}-{:012x}",
            project_number(project),
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u16(..),
            fastrand::u64(..) >> 16
        );
        let delay = gcp.op_delay_ms();
        p.service_operations.insert(
            id.clone(),
            ServiceOp {
                done_at: now_ms() + delay,
                services: ids,
                single,
            },
        );
        Ok(())
        .map(|()| id)
    })
    .and_then(|id| operation_json(gcp, &id))
    .map(|v| Reply::Json(StatusCode::OK, v))
}

fn operation_json(gcp: &Gcp, id: &str) -> ApiResult<Value> {
    gcp.read(|st| {
        let (project, o) = st
            .projects
            .iter()
            .find_map(|(name, p)| p.service_operations.get(id).map(|o| (name, o)))
            .ok_or_else(|| ApiError::new(404, format!("Operation 'operations/{id}' not found.")))?;
        let num = project_number(project);
        let names: Vec<String> = o
            .services
            .iter()
            .map(|s| format!("projects/{num}/services/{s}"))
            .collect();
        let mut v = json!({"name": format!("operations/{id}"),
            "metadata": {"@type": SERVICE_OP_META, "resourceNames": names}});
        if o.done_at <= now_ms() {
            let services: Vec<Value> = o
                .services
                .iter()
                .map(|s| service_json(st, project, s))
                .collect();
            v["done"] = json!(true);
            v["response"] = if o.single {
                json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                    "service": services.first().cloned().unwrap_or(Value::Null)})
            } else {
                json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse",
                    "services": services})
            };
        }
        Ok(v)
    })
}

/// GET `/v1/operations/{id}` (Service Usage's long-running operations).
pub(crate) fn get_operation(gcp: &Gcp, _project: Option<&str>, id: &str) -> ApiResult<Reply> {
    operation_json(gcp, id).and_then(ok)
}

// ---------------------------------------------------------------- IAM

fn valid_account_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last() != Some(&b'-')
}

fn sa_not_found(project: &str, email: &str) -> ApiError {
    ApiError::new(
        404,
        format!("Unknown service account (projects/{project}/serviceAccounts/{email})"),
    )
}

fn iam(gcp: &Gcp, r: &Req, project: &str, rest: &[&str]) -> ApiResult<Reply> {
    match (&r.method, rest) {
        (&Method::POST, []) => {
            let body = r.json()?;
            let id = body.get("accountId").and_then(Value::as_str).unwrap_or("");
            if !valid_account_id(id) {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Invalid account ID '{id}': it must be 6-30 characters of lowercase letters, digits and dashes, starting with a letter."
                    ),
                ));
            }
            let email = format!("{id}@{project}.iam.gserviceaccount.com");
            gcp.with_state(|st| {
                let unique = st.new_id().to_string();
                let p = st.projects.entry(project.to_string()).or_default();
                if p.service_accounts.contains_key(&email) {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "Service account {id} already exists within project projects/{project}."
                        ),
                    )
                    .with("ALREADY_EXISTS", "alreadyExists"));
                }
                let sa = body.get("serviceAccount").cloned().unwrap_or(json!({}));
                let v = json!({"name": format!("projects/{project}/serviceAccounts/{email}"),
                    "projectId": project, "uniqueId": unique, "email": email,
                    "displayName": sa.get("displayName").cloned().unwrap_or(json!("")),
                    "description": sa.get("description").cloned().unwrap_or(json!("")),
                    "etag": B64.encode(b"\x07\x00"), "oauth2ClientId": unique});
                p.service_accounts.insert(email.clone(), v.clone());
                Ok(v)
            })
            .and_then(ok)
        }
        (&Method::GET, []) => gcp.read(|st| {
            let accounts: Vec<Value> = st
                .projects
                .get(project)
                .map(|p| p.service_accounts.values().cloned().collect())
                .unwrap_or_default();
            ok(json!({"accounts": accounts}))
        }),
        (&Method::GET, [email]) => gcp
            .read(|st| {
                st.projects
                    .get(project)
                    .and_then(|p| p.service_accounts.get(*email).cloned())
            })
            .ok_or_else(|| sa_not_found(project, email))
            .and_then(ok),
        (&Method::DELETE, [email]) => gcp.with_state(|st| {
            let p = st.projects.entry(project.to_string()).or_default();
            p.keys.remove(*email);
            p.service_accounts
                .remove(*email)
                .map(|_| Reply::Json(StatusCode::OK, json!({})))
                .ok_or_else(|| sa_not_found(project, email))
        }),
        (&Method::POST, [email, "keys"]) => create_key(gcp, r, project, email),
        (&Method::GET, [email, "keys"]) => gcp.read(|st| {
            let p = st.projects.get(project);
            if p.is_none_or(|p| !p.service_accounts.contains_key(*email)) {
                return Err(sa_not_found(project, email));
            }
            let keys = p
                .and_then(|p| p.keys.get(*email).cloned())
                .unwrap_or_default();
            ok(json!({"keys": keys}))
        }),
        (&Method::GET, [email, "keys", id]) => gcp
            .read(|st| {
                st.projects
                    .get(project)
                    .and_then(|p| p.keys.get(*email))
                    .and_then(|ks| {
                        ks.iter()
                            .find(|k| {
                                k["name"]
                                    .as_str()
                                    .is_some_and(|n| n.ends_with(&format!("/keys/{id}")))
                            })
                            .cloned()
                    })
            })
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    format!("Unknown key (projects/{project}/serviceAccounts/{email}/keys/{id})"),
                )
            })
            .and_then(ok),
        (&Method::DELETE, [email, "keys", id]) => gcp.with_state(|st| {
            let ks = st
                .projects
                .entry(project.to_string())
                .or_default()
                .keys
                .entry(email.to_string())
                .or_default();
            let before = ks.len();
            ks.retain(|k| {
                !k["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!("/keys/{id}")))
            });
            if ks.len() == before {
                return Err(ApiError::new(404, format!("Unknown key {id}")));
            }
            ok(json!({}))
        }),
        _ => Err(not_allowed(r)),
    }
}

fn create_key(gcp: &Gcp, r: &Req, project: &str, email: &str) -> ApiResult<Reply> {
    let body = r.json()?;
    let key_type = match body.get("privateKeyType") {
        None | Some(Value::Null) => "TYPE_GOOGLE_CREDENTIALS_FILE".to_string(),
        Some(Value::Number(n)) if n.as_i64() == Some(2) => "TYPE_GOOGLE_CREDENTIALS_FILE".into(),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => "TYPE_PKCS12_FILE".into(),
        Some(Value::Number(_)) => "TYPE_UNSPECIFIED".into(),
        Some(v) => v.as_str().unwrap_or("").to_string(),
    };
    if key_type != "TYPE_GOOGLE_CREDENTIALS_FILE" && key_type != "TYPE_UNSPECIFIED" {
        return Err(ApiError::new(
            400,
            format!("The simulator only issues TYPE_GOOGLE_CREDENTIALS_FILE keys, not {key_type}."),
        ));
    }
    // Generated outside the lock: key generation is the slow part.
    let pem = rcgen::KeyPair::generate()
        .map_err(|e| ApiError::new(500, format!("cannot generate a key: {e}")))?
        .serialize_pem();
    let key_id = format!(
        "{:016x}{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u64(..),
        fastrand::u32(..)
    );
    gcp.with_state(|st| {
        let p = st.projects.entry(project.to_string()).or_default();
        let Some(sa) = p.service_accounts.get(email) else {
            return Err(sa_not_found(project, email));
        };
        let client_id = sa["uniqueId"].as_str().unwrap_or("").to_string();
        if p.key_creation_blocked {
            let mut e = ApiError::new(
                400,
                "Key creation is not allowed on this service account.",
            )
            .with("FAILED_PRECONDITION", "failedPrecondition");
            e.details = vec![json!({"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{"type": "constraints/iam.disableServiceAccountKeyCreation",
                    "subject": format!("projects/{project}/serviceAccounts/{email}?configvalue={}", email.replace('@', "%40")),
                    "description": "Key creation is not allowed on this service account."}]})];
            return Err(e);
        }
        let keys = p.keys.entry(email.to_string()).or_default();
        if keys.len() >= MAX_KEYS {
            return Err(ApiError::new(
                400,
                format!("Precondition check failed: service account {email} already has {MAX_KEYS} keys."),
            )
            .with("FAILED_PRECONDITION", "failedPrecondition"));
        }
        let now = now_ms();
        let name = format!("projects/{project}/serviceAccounts/{email}/keys/{key_id}");
        let public = json!({"name": name, "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE",
            "keyAlgorithm": "KEY_ALG_RSA_2048", "validAfterTime": rfc3339(now),
            "validBeforeTime": "9999-12-31T23:59:59Z", "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": "USER_MANAGED"});
        keys.push(public.clone());
        let creds = json!({"type": "service_account", "project_id": project,
            "private_key_id": key_id, "private_key": pem, "client_email": email,
            "client_id": client_id, "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", email.replace('@', "%40")),
            "universe_domain": "googleapis.com"});
        let mut out = public;
        out["privateKeyData"] = json!(B64.encode(serde_json::to_vec_pretty(&creds).unwrap_or_default()));
        Ok(out)
    })
    .and_then(ok)
}

// ---------------------------------------------------------------- Resource Manager

/// Route `/v3/projects/{rest}` (`{p}`, `{p}:getIamPolicy`, `{p}:setIamPolicy`).
pub(crate) fn route_crm(gcp: &Arc<Gcp>, r: &Req, rest: &[&str]) -> ApiResult<Reply> {
    let [seg] = rest else {
        return Err(not_allowed(r));
    };
    let (project, verb) = seg.split_once(':').unwrap_or((seg, ""));
    match (&r.method, verb) {
        (&Method::GET, "") => {
            let num = project_number(project);
            ok(
                json!({"name": format!("projects/{num}"), "projectId": project,
                "state": "ACTIVE", "displayName": project,
                "createTime": "2026-01-01T00:00:00Z", "etag": B64.encode(num.to_be_bytes())}),
            )
        }
        (&Method::POST, "getIamPolicy") => gcp.with_state(|st| ok(policy(st, project))),
        (&Method::POST, "setIamPolicy") => {
            let body = r.json()?;
            let new = body
                .get("policy")
                .cloned()
                .ok_or_else(|| ApiError::new(400, "Invalid JSON payload: `policy` is required."))?;
            gcp.with_state(|st| {
                let cur = policy(st, project);
                if let Some(tag) = new.get("etag").and_then(Value::as_str)
                    && tag != cur["etag"].as_str().unwrap_or("")
                {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. The request's ETag '\"{tag}\"' did not match the current policy's ETag '\"{}\"'.",
                            cur["etag"].as_str().unwrap_or("")
                        ),
                    )
                    .with("ABORTED", "aborted"));
                }
                let bindings = new.get("bindings").cloned().unwrap_or(json!([]));
                check_members(st, project, &bindings)?;
                let p = st.projects.entry(project.to_string()).or_default();
                p.policy_serial += 1;
                let version = new.get("version").and_then(Value::as_i64).unwrap_or(1);
                p.policy = json!({"version": version, "bindings": bindings,
                    "etag": etag(project, p.policy_serial)});
                ok(p.policy.clone())
            })
        }
        _ => Err(not_allowed(r)),
    }
}

fn etag(project: &str, serial: u64) -> String {
    B64.encode([project_number(project).to_be_bytes(), serial.to_be_bytes()].concat())
}

fn policy(st: &mut State, project: &str) -> Value {
    let p = st.projects.entry(project.to_string()).or_default();
    if p.policy.is_null() {
        p.policy = json!({"version": 1, "etag": etag(project, 0),
            "bindings": [{"role": "roles/owner", "members": ["user:owner@example.com"]}]});
    }
    p.policy.clone()
}

/// Service accounts of this project named in a binding must exist (the real API checks too).
fn check_members(st: &State, project: &str, bindings: &Value) -> ApiResult<()> {
    let suffix = format!("@{project}.iam.gserviceaccount.com");
    for m in bindings
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| {
            b.get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
    {
        if let Some(email) = m.strip_prefix("serviceAccount:")
            && email.ends_with(&suffix)
            && !st
                .projects
                .get(project)
                .is_some_and(|p| p.service_accounts.contains_key(email))
        {
            return Err(ApiError::new(
                400,
                format!("Service account {email} does not exist."),
            ));
        }
    }
    Ok(())
}
