//! Compute Engine v1: networks, subnetworks, routers, firewalls, images and their operations.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use ipnet::IpNet;
use serde_json::{Value, json};

use super::server::{Reply, Req, ok};
use super::{
    ApiError, ApiResult, COMPUTE_LINK, ComputeOp, Gcp, State, now_ms, require_service, rfc3339,
};

const SERVICE: &str = "compute.googleapis.com";

/// How long `operations/{op}/wait` blocks at most, like the real API.
const WAIT_MAX: Duration = Duration::from_secs(120);

fn kind_of(coll: &str) -> Option<&'static str> {
    Some(match coll {
        "networks" => "compute#network",
        "subnetworks" => "compute#subnetwork",
        "routers" => "compute#router",
        "firewalls" => "compute#firewall",
        "images" => "compute#image",
        "vpnGateways" => "compute#vpnGateway",
        "externalVpnGateways" => "compute#externalVpnGateway",
        "vpnTunnels" => "compute#vpnTunnel",
        _ => return None,
    })
}

fn regional(coll: &str) -> bool {
    matches!(
        coll,
        "subnetworks" | "routers" | "vpnGateways" | "vpnTunnels"
    )
}

/// Whether `n` is a valid Compute resource name (RFC 1035 label, at most 63 characters).
pub(crate) fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last() != Some(&b'-')
}

/// The project-relative path of a network reference (full URL, `projects/p/global/networks/n`,
/// `global/networks/n` or a bare name), with the project it names.
fn network_ref(project: &str, r: &str) -> Option<(String, String)> {
    let r = r
        .trim_start_matches("https://www.googleapis.com/compute/v1/")
        .trim_start_matches("https://compute.googleapis.com/compute/v1/")
        .trim_start_matches("https://www.googleapis.com/compute/beta/");
    let parts: Vec<&str> = r.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "global", "networks", n] => Some((p.to_string(), n.to_string())),
        ["global", "networks", n] => Some((project.to_string(), n.to_string())),
        [n] if valid_name(n) => Some((project.to_string(), n.to_string())),
        _ => None,
    }
}

fn link(project: &str, rel: &str) -> String {
    format!("{COMPUTE_LINK}projects/{project}/{rel}")
}

/// Fill in the output-only fields of a resource about to be stored at `rel` and normalise its
/// references; the resource is not stored.
pub(crate) fn prepare(st: &mut State, project: &str, rel: &str, r: &mut Value) -> ApiResult<()> {
    let parts: Vec<&str> = rel.split('/').collect();
    let (coll, name, region) = match parts.as_slice() {
        ["global", c, n] => (*c, *n, None),
        ["regions", reg, c, n] => (*c, *n, Some(*reg)),
        _ => return Err(ApiError::new(400, format!("bad resource path `{rel}`"))),
    };
    if !valid_name(name) {
        return Err(ApiError::new(
            400,
            format!(
                "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
            ),
        )
        .with("INVALID_ARGUMENT", "invalid"));
    }
    if !r.is_object() {
        return Err(ApiError::new(400, "the resource must be a JSON object"));
    }
    let kind = kind_of(coll).unwrap_or("compute#resource");
    r["kind"] = json!(kind);
    r["name"] = json!(name);
    if r.get("id").and_then(Value::as_str).is_none() {
        r["id"] = json!(st.new_id().to_string());
    }
    if r.get("creationTimestamp").and_then(Value::as_str).is_none() {
        r["creationTimestamp"] = json!(rfc3339(now_ms()));
    }
    r["selfLink"] = json!(link(project, rel));
    if let Some(reg) = region {
        r["region"] = json!(link(project, &format!("regions/{reg}")));
    }
    if let Some(n) = r.get("network").and_then(Value::as_str) {
        let (np, nn) = network_ref(project, n).ok_or_else(|| {
            ApiError::new(
                400,
                format!("Invalid value for field 'resource.network': '{n}'. The URL is malformed."),
            )
        })?;
        r["network"] = json!(link(&np, &format!("global/networks/{nn}")));
    }
    match coll {
        "firewalls" => {
            if r.get("direction").is_none() {
                r["direction"] = json!("INGRESS");
            }
            if r.get("priority").is_none() {
                r["priority"] = json!(1000);
            }
            if r.get("disabled").is_none() {
                r["disabled"] = json!(false);
            }
            if r.get("network").is_none() {
                r["network"] = json!(link(project, "global/networks/default"));
            }
        }
        "networks" => {
            if r.get("mtu").is_none() {
                r["mtu"] = json!(1460);
            }
            if r.pointer("/routingConfig/routingMode").is_none() {
                r["routingConfig"]["routingMode"] = json!("REGIONAL");
            }
        }
        "subnetworks" => {
            if let Some(net) = r
                .get("ipCidrRange")
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<IpNet>().ok())
                && let Some(gw) = net.hosts().next()
            {
                r["gatewayAddress"] = json!(gw.to_string());
            }
            r["fingerprint"] = json!(fingerprint());
        }
        "routers" => {
            r["fingerprint"] = json!(fingerprint());
        }
        // An HA VPN gateway gets two public interface addresses from Google (output only).
        "vpnGateways"
            if r.get("vpnInterfaces")
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty()) =>
        {
            let n = st.new_id();
            r["vpnInterfaces"] = json!([
                {"id": 0, "ipAddress": format!("35.242.{}.{}", (n / 250) % 250, 1 + n % 250)},
                {"id": 1, "ipAddress": format!("35.243.{}.{}", (n / 250) % 250, 1 + n % 250)},
            ]);
        }
        "images" => {
            if r.get("status").is_none() {
                r["status"] = json!("READY");
            }
            if r.get("diskSizeGb").is_none() {
                r["diskSizeGb"] = json!("10");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Compute's `bytes` fields travel URL-safe base64 encoded (the SDK rejects `+` and `/`).
fn fingerprint() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(fastrand::u64(..).to_be_bytes())
}

/// Route `/compute/v1/projects/{project}/{rest}`.
pub(crate) async fn route(
    gcp: &Arc<Gcp>,
    r: &Req,
    project: &str,
    rest: &[&str],
) -> ApiResult<Reply> {
    gcp.with_state(|st| require_service(st, project, SERVICE))?;
    let m = &r.method;
    match rest {
        ["global", "operations", op] if m == Method::GET => get_op(gcp, project, op),
        ["regions", _, "operations", op] if m == Method::GET => get_op(gcp, project, op),
        ["global", "operations", op, "wait"] | ["regions", _, "operations", op, "wait"]
            if m == Method::POST =>
        {
            wait_op(gcp, project, op).await
        }
        ["global", coll] if kind_of(coll).is_some() && !regional(coll) => {
            collection(gcp, r, project, coll, None)
        }
        ["regions", reg, coll] if regional(coll) => collection(gcp, r, project, coll, Some(reg)),
        ["global", coll, name] if kind_of(coll).is_some() && !regional(coll) => {
            item(gcp, r, project, &format!("global/{coll}/{name}"))
        }
        ["regions", reg, coll, name] if regional(coll) => {
            item(gcp, r, project, &format!("regions/{reg}/{coll}/{name}"))
        }
        [
            "regions",
            reg,
            "subnetworks",
            name,
            "setPrivateIpGoogleAccess",
        ] if m == Method::POST => {
            let rel = format!("regions/{reg}/subnetworks/{name}");
            let on = r
                .json()?
                .get("privateIpGoogleAccess")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let rid = r.q("requestId").map(str::to_string);
            gcp.with_state(|st| {
                let mut cur = current(st, project, &rel)?;
                cur["privateIpGoogleAccess"] = json!(on);
                start_op(
                    gcp,
                    st,
                    project,
                    &rel,
                    Some(cur),
                    "setPrivateIpGoogleAccess",
                    rid,
                )
            })
            .map(|v| Reply::Json(StatusCode::OK, v))
        }
        _ => Err(ApiError::new(
            404,
            format!("The requested URL {} was not found on this server.", r.path),
        )),
    }
}

fn get_op(gcp: &Gcp, project: &str, op: &str) -> ApiResult<Reply> {
    gcp.read(|st| {
        st.projects
            .get(project)
            .and_then(|p| p.operations.get(op))
            .map(|o| o.op.clone())
    })
    .map(|v| Reply::Json(StatusCode::OK, v))
    .ok_or_else(|| ApiError::compute_not_found(project, &format!("global/operations/{op}")))
}

async fn wait_op(gcp: &Gcp, project: &str, op: &str) -> ApiResult<Reply> {
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        let (v, done_at) = gcp
            .read(|st| {
                st.projects
                    .get(project)
                    .and_then(|p| p.operations.get(op))
                    .map(|o| (o.op.clone(), o.done_at))
            })
            .ok_or_else(|| {
                ApiError::compute_not_found(project, &format!("global/operations/{op}"))
            })?;
        if v["status"] == "DONE" || tokio::time::Instant::now() >= deadline {
            return ok(v);
        }
        let left = (done_at - now_ms()).clamp(5, 1000) as u64;
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
}

fn current(st: &State, project: &str, rel: &str) -> ApiResult<Value> {
    st.projects
        .get(project)
        .and_then(|p| p.compute.get(rel))
        .cloned()
        .ok_or_else(|| ApiError::compute_not_found(project, rel))
}

fn collection(
    gcp: &Gcp,
    r: &Req,
    project: &str,
    coll: &str,
    region: Option<&str>,
) -> ApiResult<Reply> {
    let prefix = match region {
        Some(reg) => format!("regions/{reg}/{coll}/"),
        None => format!("global/{coll}/"),
    };
    if r.method == Method::GET {
        let items: Vec<Value> = gcp.read(|st| {
            st.projects
                .get(project)
                .map(|p| {
                    p.compute
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .filter(|(k, _)| !k[prefix.len()..].contains('/'))
                        .map(|(k, v)| answer(k, v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        let kind = kind_of(coll).unwrap_or("compute#resource");
        return ok(json!({"kind": format!("{kind}List"), "items": items,
            "selfLink": link(project, prefix.trim_end_matches('/'))}));
    }
    if r.method != Method::POST {
        return Err(ApiError::new(
            405,
            format!("{} is not allowed here", r.method),
        ));
    }
    let mut body = r.json()?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        return Err(ApiError::new(
            400,
            "Invalid value for field 'resource.name': ''. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
        ));
    }
    let rel = format!("{prefix}{name}");
    let rid = r.q("requestId").map(str::to_string);
    gcp.with_state(|st| {
        // A retried insert (same requestId) gets the operation of the first attempt.
        if let Some(rid) = &rid
            && let Some(o) = st
                .projects
                .get(project)
                .and_then(|p| p.request_ids.get(rid))
                .and_then(|n| st.projects.get(project)?.operations.get(n))
        {
            return Ok(o.op.clone());
        }
        let p = st.projects.entry(project.to_string()).or_default();
        let pending = p
            .operations
            .values()
            .any(|o| o.insert && o.target == rel && o.op["status"] != "DONE");
        if p.compute.contains_key(&rel) || pending {
            return Err(ApiError::new(
                409,
                format!("The resource 'projects/{project}/{rel}' already exists"),
            )
            .with("ALREADY_EXISTS", "alreadyExists"));
        }
        prepare(st, project, &rel, &mut body)?;
        let mut error = None;
        if let Some(net) = body.get("network").and_then(Value::as_str) {
            let net_rel = net
                .strip_prefix(COMPUTE_LINK)
                .and_then(|x| x.strip_prefix("projects/"))
                .and_then(|x| x.split_once('/'))
                .map(|(p, rest)| (p.to_string(), rest.to_string()))
                .unwrap_or_default();
            let exists = st
                .projects
                .get(&net_rel.0)
                .is_some_and(|p| p.compute.contains_key(&net_rel.1));
            if !exists {
                return Err(ApiError::compute_not_found(&net_rel.0, &net_rel.1));
            }
        }
        if coll == "subnetworks" {
            check_subnet_range(st, project, &body)?;
        }
        if coll == "images" {
            error = image_source_error(st, &body)?;
        }
        let op = start_op(gcp, st, project, &rel, Some(body), "insert", rid)?;
        if let Some(e) = error
            && let Some(o) = op
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| st.projects.get_mut(project)?.operations.get_mut(n))
        {
            o.error = Some(e);
            // Creating an image from a tarball takes longer than the rest.
            o.done_at += gcp.op_delay_ms() * 2;
        }
        Ok(op)
    })
    .map(|v| Reply::Json(StatusCode::OK, v))
}

fn check_subnet_range(st: &State, project: &str, body: &Value) -> ApiResult<()> {
    let text = body
        .get("ipCidrRange")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cidr: IpNet = text.parse().map_err(|_| {
        ApiError::new(
            400,
            format!("Invalid value for field 'resource.ipCidrRange': '{text}'. Invalid IPCidrRange: {text}."),
        )
    })?;
    let net = body.get("network").and_then(Value::as_str).unwrap_or("");
    if let Some(p) = st.projects.get(project) {
        for (rel, v) in &p.compute {
            if !rel.contains("/subnetworks/")
                || v.get("network").and_then(Value::as_str) != Some(net)
            {
                continue;
            }
            let other = v.get("ipCidrRange").and_then(Value::as_str).unwrap_or("");
            if let Ok(o) = other.parse::<IpNet>()
                && (o.contains(&cidr.network()) || cidr.contains(&o.network()))
            {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Invalid IPCidrRange: {text} conflicts with existing subnetwork '{}' in region '{}'.",
                        v["name"].as_str().unwrap_or(""),
                        v["region"]
                            .as_str()
                            .unwrap_or("")
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Why an image insert will fail: its `rawDisk.source` must name an existing object.
fn image_source_error(st: &State, body: &Value) -> ApiResult<Option<(u16, String, String)>> {
    let src = body
        .pointer("/rawDisk/source")
        .and_then(Value::as_str)
        .unwrap_or("");
    if src.is_empty() {
        // Images from other sources (disks, snapshots) are out of the fake's scope.
        return Err(ApiError::new(
            400,
            "Invalid value for field 'resource.rawDisk.source': ''. The simulator only creates images from a Cloud Storage tarball.",
        ));
    }
    let path = src
        .strip_prefix("https://storage.googleapis.com/")
        .or_else(|| src.strip_prefix("https://storage.cloud.google.com/"))
        .or_else(|| src.strip_prefix("gs://"));
    let found = path.and_then(|p| p.split_once('/')).is_some_and(|(b, o)| {
        st.buckets
            .get(b)
            .is_some_and(|bk| bk.objects.contains_key(o))
    });
    Ok((!found).then(|| {
        (
            404,
            "RESOURCE_NOT_FOUND".to_string(),
            format!("The resource '{src}' of type 'storage object' was not found."),
        )
    }))
}

fn item(gcp: &Gcp, r: &Req, project: &str, rel: &str) -> ApiResult<Reply> {
    let rid = r.q("requestId").map(str::to_string);
    match r.method {
        Method::GET => gcp
            .read(|st| current(st, project, rel))
            .map(|v| answer(rel, v))
            .and_then(ok),
        Method::PATCH => {
            let patch = r.json()?;
            gcp.with_state(|st| {
                if let Some(rid) = &rid
                    && let Some(o) = st
                        .projects
                        .get(project)
                        .and_then(|p| p.request_ids.get(rid))
                        .and_then(|n| st.projects.get(project)?.operations.get(n))
                {
                    return Ok(o.op.clone());
                }
                let mut cur = current(st, project, rel)?;
                let keep = ["kind", "id", "name", "selfLink", "creationTimestamp", "region"]
                    .map(|k| (k, cur.get(k).cloned()));
                merge(&mut cur, &patch);
                for (k, v) in keep {
                    if let Some(v) = v {
                        cur[k] = v;
                    }
                }
                prepare(st, project, rel, &mut cur)?;
                start_op(gcp, st, project, rel, Some(cur), "patch", rid)
            })
            .map(|v| Reply::Json(StatusCode::OK, v))
        }
        Method::DELETE => gcp
            .with_state(|st| {
                current(st, project, rel)?;
                if let Some(net) = rel.strip_prefix("global/networks/") {
                    let link = link(project, &format!("global/networks/{net}"));
                    if let Some((used, _)) = st.projects.get(project).and_then(|p| {
                        p.compute.iter().find(|(k, v)| {
                            !k.starts_with("global/networks/")
                                && v.get("network").and_then(Value::as_str) == Some(&link)
                        })
                    }) {
                        return Err(ApiError::new(
                            400,
                            format!(
                                "The network resource 'projects/{project}/{rel}' is already being used by 'projects/{project}/{used}'"
                            ),
                        )
                        .with("FAILED_PRECONDITION", "resourceInUseByAnotherResource"));
                    }
                }
                start_op(gcp, st, project, rel, None, "delete", rid)
            })
            .map(|v| Reply::Json(StatusCode::OK, v)),
        _ => Err(ApiError::new(405, format!("{} is not allowed here", r.method))),
    }
}

/// A stored resource as Compute answers with it: a VPN tunnel's `sharedSecret` is input only,
/// the API returns `sharedSecretHash` instead (`VpnTunnel` in the Compute v1 REST reference,
/// which documents no hash algorithm; the fake's is FNV-1a, hex). The stored resource keeps the
/// key: the network model compares both ends' keys.
fn answer(rel: &str, mut v: Value) -> Value {
    if rel.contains("/vpnTunnels/")
        && let Some(o) = v.as_object_mut()
        && let Some(Value::String(k)) = o.remove("sharedSecret")
    {
        let h = k.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        o.insert("sharedSecretHash".into(), json!(format!("{h:016x}")));
    }
    v
}

/// JSON merge with Compute's (and Storage's) PATCH semantics: objects merge, `null` removes,
/// everything else replaces.
pub(crate) fn merge(dst: &mut Value, patch: &Value) {
    match (dst, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

/// Record an operation that applies `resource` (None: delete) to `rel` when done.
fn start_op(
    gcp: &Gcp,
    st: &mut State,
    project: &str,
    rel: &str,
    resource: Option<Value>,
    kind: &str,
    request_id: Option<String>,
) -> ApiResult<Value> {
    let now = now_ms();
    let id = st.new_id();
    let name = format!(
        "operation-{now}-{:013x}-{:08x}-{:08x}",
        fastrand::u64(..) >> 12,
        fastrand::u32(..),
        fastrand::u32(..)
    );
    let scope = match rel.split('/').collect::<Vec<_>>().as_slice() {
        ["regions", reg, ..] => format!("regions/{reg}"),
        _ => "global".to_string(),
    };
    let target_id = resource
        .as_ref()
        .and_then(|r| r.get("id").and_then(Value::as_str))
        .map(str::to_string)
        .or_else(|| {
            st.projects
                .get(project)
                .and_then(|p| p.compute.get(rel))
                .and_then(|r| r.get("id").and_then(Value::as_str))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut op = json!({"kind": "compute#operation", "id": id.to_string(), "name": name,
        "operationType": kind, "targetLink": link(project, rel), "targetId": target_id,
        "status": "RUNNING", "progress": 0, "user": "anonymous",
        "insertTime": rfc3339(now), "startTime": rfc3339(now),
        "selfLink": link(project, &format!("{scope}/operations/{name}"))});
    if scope != "global" {
        op["region"] = json!(link(project, &scope));
    }
    let p = st.projects.entry(project.to_string()).or_default();
    p.operations.insert(
        name.clone(),
        ComputeOp {
            op: op.clone(),
            done_at: now + gcp.op_delay_ms(),
            target: rel.to_string(),
            resource,
            insert: kind == "insert",
            error: None,
        },
    );
    if let Some(rid) = request_id {
        p.request_ids.insert(rid, name);
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_network_refs() {
        assert!(valid_name("meshfleet"));
        assert!(valid_name("a-1"));
        assert!(!valid_name("1a"));
        assert!(!valid_name("a-"));
        assert!(!valid_name("A"));
        assert!(!valid_name(""));
        for r in [
            "https://www.googleapis.com/compute/v1/projects/p/global/networks/n",
            "projects/p/global/networks/n",
            "global/networks/n",
            "n",
        ] {
            assert_eq!(network_ref("p", r), Some(("p".into(), "n".into())), "{r}");
        }
        assert_eq!(network_ref("p", "regions/x/networks/n"), None);
    }

    #[test]
    fn merge_replaces_lists() {
        let mut a = json!({"a": 1, "n": {"x": 1, "y": [1, 2]}});
        merge(&mut a, &json!({"n": {"y": [3], "z": null}, "b": 2}));
        assert_eq!(a, json!({"a": 1, "b": 2, "n": {"x": 1, "y": [3]}}));
    }
}
