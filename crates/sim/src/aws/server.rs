//! The plain-HTTP listener, the dispatch by service and action, and the `/_sim/aws` admin
//! endpoints.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::query::{Params, QueryError, Service, el, scope};
use super::{ACCOUNT, AmiRecord, Aws, OPT_IN_REGIONS, REGIONS, Stack, TALOS_OWNER};
use crate::gcp::{now_ms, rfc3339};

/// Largest request body accepted (templates are at most 1 MB in CloudFormation).
const MAX_BODY: usize = 4 * 1024 * 1024;

type Result<T> = std::result::Result<T, QueryError>;

/// Serve the fake on `listener` until `stop` fires.
pub async fn serve(
    aws: Arc<Aws>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let aws = aws.clone();
        conns.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let svc = hyper::service::service_fn(move |req| {
                let aws = aws.clone();
                async move { Ok::<_, Infallible>(handle(&aws, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r
}

async fn handle(aws: &Aws, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return respond(
                413,
                "text/plain",
                format!("request body too large or unreadable: {e}"),
            );
        }
    };
    let path = parts.uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/_sim/aws/") {
        return admin(aws, &parts.method, rest, &body);
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some((region, service)) = scope(auth) else {
        return respond(
            403,
            "text/xml",
            Service::Sts.error(
                &QueryError::new(
                    403,
                    "MissingAuthenticationToken",
                    "Request is missing Authentication Token",
                ),
                &request_id(),
            ),
        );
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let p = Params::parse(&[parts.uri.query().unwrap_or_default(), &text]);
    let action = p.get("Action").unwrap_or_default().to_owned();
    let rid = request_id();
    let (svc, result) = match service.as_str() {
        "sts" => (Service::Sts, sts(&action)),
        "ec2" => (Service::Ec2, ec2(aws, &region, &action, &p)),
        "cloudformation" => (Service::CloudFormation, cfn(aws, &region, &action, &p)),
        other => (
            Service::Sts,
            Err(QueryError::new(
                400,
                "UnknownService",
                format!("the simulator does not fake service `{other}`"),
            )),
        ),
    };
    match result {
        Ok(inner) => respond(200, "text/xml", svc.ok(&action, &inner, &rid)),
        Err(e) => respond(e.status, "text/xml", svc.error(&e, &rid)),
    }
}

fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(..0x1000),
        fastrand::u64(..0x1_0000_0000_0000)
    )
}

fn unknown(action: &str) -> QueryError {
    QueryError::new(
        400,
        "InvalidAction",
        format!(
            "The action {action} is not valid for this web service (the simulator fakes only what `meshfleet aws setup` calls)"
        ),
    )
}

fn sts(action: &str) -> Result<String> {
    match action {
        "GetCallerIdentity" => Ok(format!(
            "{}{}{}",
            el("Arn", &format!("arn:aws:iam::{ACCOUNT}:user/meshfleet-sim")),
            el("UserId", "AIDAMESHFLEETSIM"),
            el("Account", ACCOUNT)
        )),
        _ => Err(unknown(action)),
    }
}

fn ec2(aws: &Aws, region: &str, action: &str, p: &Params) -> Result<String> {
    match action {
        "DescribeRegions" => {
            let all = p.get("AllRegions") == Some("true");
            let mut items = String::new();
            let listed = REGIONS.iter().map(|r| (*r, "opt-in-not-required")).chain(
                OPT_IN_REGIONS
                    .iter()
                    .filter(|_| all)
                    .map(|r| (*r, "not-opted-in")),
            );
            for (r, opt) in listed {
                items.push_str(&format!(
                    "<item>{}{}{}</item>",
                    el("regionName", r),
                    el("regionEndpoint", &format!("ec2.{r}.amazonaws.com")),
                    el("optInStatus", opt)
                ));
            }
            Ok(format!("<regionInfo>{items}</regionInfo>"))
        }
        "DescribeImages" => {
            let owners = p.list("Owner");
            let ids = p.list("ImageId");
            let mut names: Vec<&str> = Vec::new();
            for i in 1.. {
                let Some(f) = p.get(&format!("Filter.{i}.Name")) else {
                    break;
                };
                if f == "name" {
                    names.extend(p.list(&format!("Filter.{i}.Value")));
                }
            }
            let found: Vec<AmiRecord> = aws.read(|st| {
                st.images
                    .iter()
                    .filter(|i| i.region == region)
                    .filter(|i| {
                        owners.is_empty()
                            || owners
                                .iter()
                                .any(|o| *o == i.owner || (*o == "self" && i.owner == ACCOUNT))
                    })
                    .filter(|i| ids.is_empty() || ids.contains(&i.id.as_str()))
                    .filter(|i| names.is_empty() || names.contains(&i.name.as_str()))
                    .cloned()
                    .collect()
            });
            let mut items = String::new();
            for i in found {
                items.push_str(&format!(
                    "<item>{}{}{}{}{}{}{}{}{}</item>",
                    el("imageId", &i.id),
                    el("imageLocation", &format!("{}/{}", i.owner, i.name)),
                    el("imageState", &i.state),
                    el("imageOwnerId", &i.owner),
                    el(
                        "isPublic",
                        if i.owner == TALOS_OWNER {
                            "true"
                        } else {
                            "false"
                        }
                    ),
                    el("architecture", "x86_64"),
                    el("imageType", "machine"),
                    el("name", &i.name),
                    el("virtualizationType", "hvm"),
                ));
            }
            Ok(format!("<imagesSet>{items}</imagesSet>"))
        }
        "DescribeKeyPairs" => {
            let names = p.list("KeyName");
            let have: Vec<String> = aws.read(|st| {
                st.key_pairs
                    .iter()
                    .filter_map(|k| k.strip_prefix(&format!("{region}/")).map(str::to_owned))
                    .collect()
            });
            // EC2 (and moto) fail the whole call when a named key pair is missing.
            if let Some(missing) = names.iter().find(|n| !have.iter().any(|h| h == *n)) {
                return Err(QueryError::new(
                    400,
                    "InvalidKeyPair.NotFound",
                    format!("The key pair '{missing}' does not exist"),
                ));
            }
            let mut items = String::new();
            for (i, k) in have.iter().enumerate() {
                if names.is_empty() || names.contains(&k.as_str()) {
                    items.push_str(&format!(
                        "<item>{}{}{}</item>",
                        el("keyPairId", &format!("key-{:017x}", i + 1)),
                        el("keyName", k),
                        el(
                            "keyFingerprint",
                            "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"
                        )
                    ));
                }
            }
            Ok(format!("<keySet>{items}</keySet>"))
        }
        "ImportKeyPair" => {
            let name = p.get("KeyName").filter(|n| !n.is_empty()).ok_or_else(|| {
                QueryError::new(
                    400,
                    "MissingParameter",
                    "The request must contain the parameter KeyName",
                )
            })?;
            let key = format!("{region}/{name}");
            let dup = aws.with_state(|st| !st.key_pairs.insert(key));
            if dup {
                return Err(QueryError::new(
                    400,
                    "InvalidKeyPair.Duplicate",
                    format!("The keypair '{name}' already exists."),
                ));
            }
            Ok(format!(
                "{}{}",
                el("keyName", name),
                el(
                    "keyFingerprint",
                    "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"
                )
            ))
        }
        _ => super::ec2net_api::handle(aws, region, action, p)
            .or_else(|| super::ec2net_links::handle(aws, region, action, p))
            .unwrap_or_else(|| Err(unknown(action))),
    }
}

fn missing_stack(name: &str) -> QueryError {
    QueryError::validation(format!("Stack with id {name} does not exist"))
}

/// Named IAM resources need `CAPABILITY_NAMED_IAM`; the body must be a JSON template with
/// resources (YAML templates are not understood by the fake).
fn check_template(body: &str, capabilities: &[&str]) -> Result<()> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        QueryError::validation(format!(
            "Template format error: JSON not well-formed. ({e})"
        ))
    })?;
    let Some(res) = v["Resources"].as_object().filter(|r| !r.is_empty()) else {
        return Err(QueryError::validation(
            "Template format error: At least one Resources member must be defined.",
        ));
    };
    let named = res.values().any(|r| {
        r["Type"]
            .as_str()
            .is_some_and(|t| t.starts_with("AWS::IAM::"))
            && r["Properties"]
                .as_object()
                .is_some_and(|p| p.keys().any(|k| k.ends_with("Name")))
    });
    if named && !capabilities.contains(&"CAPABILITY_NAMED_IAM") {
        return Err(QueryError::new(
            400,
            "InsufficientCapabilitiesException",
            "Requires capabilities : [CAPABILITY_NAMED_IAM]",
        ));
    }
    Ok(())
}

fn stack_member(name: &str, s: &Stack) -> String {
    format!(
        "<member>{}{}{}{}</member>",
        el("StackName", name),
        el("StackId", &s.id),
        el("CreationTime", &rfc3339(s.created)),
        el("StackStatus", &s.status)
    )
}

fn cfn(aws: &Aws, region: &str, action: &str, p: &Params) -> Result<String> {
    let name = p.get("StackName").unwrap_or_default().to_owned();
    let key = format!("{region}/{name}");
    let delay = aws.op_delay_ms();
    match action {
        "DescribeStacks" => {
            let s = aws
                .read(|st| st.stacks.get(&key).cloned())
                .ok_or_else(|| missing_stack(&name))?;
            Ok(format!("<Stacks>{}</Stacks>", stack_member(&name, &s)))
        }
        "GetTemplate" => {
            let s = aws
                .read(|st| st.stacks.get(&key).cloned())
                .ok_or_else(|| missing_stack(&name))?;
            Ok(el("TemplateBody", &s.template))
        }
        "DescribeStackEvents" => {
            let s = aws
                .read(|st| st.stacks.get(&key).cloned())
                .ok_or_else(|| missing_stack(&name))?;
            let mut items = String::new();
            // Newest first, as CloudFormation lists them.
            for (i, (logical, status, reason)) in s.events.iter().enumerate().rev() {
                items.push_str(&format!(
                    "<member>{}{}{}{}{}{}{}</member>",
                    el("StackId", &s.id),
                    el("EventId", &format!("{}-{i}", s.id)),
                    el("StackName", &name),
                    el("LogicalResourceId", logical),
                    el("ResourceStatus", status),
                    el("ResourceStatusReason", reason),
                    el("Timestamp", &rfc3339(s.created)),
                ));
            }
            Ok(format!("<StackEvents>{items}</StackEvents>"))
        }
        "CreateStack" => {
            if name.is_empty() {
                return Err(QueryError::validation(
                    "1 validation error detected: Value null at 'stackName' failed to satisfy constraint: Member must not be null",
                ));
            }
            let body = p.get("TemplateBody").unwrap_or_default();
            check_template(body, &p.list("Capabilities.member"))?;
            let now = now_ms();
            aws.with_state(|st| {
                if st.stacks.contains_key(&key) {
                    return Err(QueryError::new(
                        400,
                        "AlreadyExistsException",
                        format!("Stack [{name}] already exists"),
                    ));
                }
                let id = format!(
                    "arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{name}/{:012x}",
                    st.id()
                );
                st.stacks.insert(
                    key.clone(),
                    Stack {
                        id: id.clone(),
                        status: "CREATE_IN_PROGRESS".to_owned(),
                        settles_to: "CREATE_COMPLETE".to_owned(),
                        settles_at: now + delay,
                        template: body.to_owned(),
                        created: now,
                        events: vec![(
                            name.clone(),
                            "CREATE_IN_PROGRESS".to_owned(),
                            "User Initiated".to_owned(),
                        )],
                    },
                );
                Ok(el("StackId", &id))
            })
        }
        "UpdateStack" => {
            let body = p.get("TemplateBody").unwrap_or_default();
            let caps = p.list("Capabilities.member");
            aws.with_state(|st| {
                let s = st
                    .stacks
                    .get_mut(&key)
                    .ok_or_else(|| missing_stack(&name))?;
                if s.status.ends_with("_IN_PROGRESS") || s.status == "ROLLBACK_COMPLETE" {
                    return Err(QueryError::validation(format!(
                        "Stack:{} is in {} state and can not be updated.",
                        s.id, s.status
                    )));
                }
                check_template(body, &caps)?;
                if s.template == body {
                    return Err(QueryError::validation("No updates are to be performed."));
                }
                s.template = body.to_owned();
                s.status = "UPDATE_IN_PROGRESS".to_owned();
                s.settles_to = "UPDATE_COMPLETE".to_owned();
                s.settles_at = now_ms() + delay;
                s.events.push((
                    name.clone(),
                    "UPDATE_IN_PROGRESS".to_owned(),
                    "User Initiated".to_owned(),
                ));
                Ok(el("StackId", &s.id))
            })
        }
        "DeleteStack" => {
            aws.with_state(|st| {
                if let Some(s) = st.stacks.get_mut(&key)
                    && !s.status.starts_with("DELETE_")
                {
                    s.status = "DELETE_IN_PROGRESS".to_owned();
                    s.settles_to = "DELETE_COMPLETE".to_owned();
                    s.settles_at = now_ms() + delay;
                }
            });
            Ok(String::new())
        }
        _ => Err(unknown(action)),
    }
}

fn json_reply(status: u16, v: &Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", v.to_string())
}

fn admin(aws: &Aws, method: &Method, rest: &str, body: &[u8]) -> Response<Full<Bytes>> {
    match (method, rest) {
        (&Method::GET, "state") => json_reply(200, &aws.snapshot()),
        (&Method::POST, "seed") => {
            let v: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return json_reply(400, &json!({"error": format!("seed: invalid JSON: {e}")}));
                }
            };
            for i in v["images"].as_array().into_iter().flatten() {
                let (Some(region), Some(name)) = (i["region"].as_str(), i["name"].as_str()) else {
                    return json_reply(
                        400,
                        &json!({"error": "seed: every image needs `region` and `name`"}),
                    );
                };
                aws.publish_image(region, i["owner"].as_str().unwrap_or(TALOS_OWNER), name);
            }
            for k in v["keyPairs"].as_array().into_iter().flatten() {
                let (Some(region), Some(name)) = (k["region"].as_str(), k["name"].as_str()) else {
                    return json_reply(
                        400,
                        &json!({"error": "seed: every key pair needs `region` and `name`"}),
                    );
                };
                aws.add_key_pair(region, name);
            }
            json_reply(200, &json!({}))
        }
        _ => json_reply(
            404,
            &json!({"error": format!("no admin endpoint {method} /_sim/aws/{rest}")}),
        ),
    }
}
