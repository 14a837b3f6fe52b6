//! The Kubernetes REST protocol over HTTPS: routing, codecs, `Status` errors and fault
//! injection. Handlers turn requests into [`crate::store::Store::mutate`] calls. Discovery and
//! OpenAPI are in `discovery`, watch streams in `watch`, the write verbs in `write`, the pod
//! proxy in `proxy`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::patch::{self, Part};
use crate::resources::ResourceType;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType, Key, StoreError, now_rfc3339};
use crate::validate;
use crate::{Api, World};

mod discovery;
mod proxy;
mod watch;
mod write;

use discovery::*;
use proxy::*;
use watch::*;
use write::*;

/// Response body: whole JSON documents or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 8 * 1024 * 1024;

/// Accept TLS connections until `stop` turns true.
pub async fn serve(
    world: Arc<World>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((tcp, _peer)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let world = world.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            // rustls verified any certificate presented against the simulator's CA.
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let io = hyper_util::rt::TokioIo::new(tls);
            let svc = hyper::service::service_fn(move |req| {
                let world = world.clone();
                let stop = stop.clone();
                async move {
                    // A workload cluster that is down (simulated outage) drops the connection.
                    if crate::outage::workload_api_down(&world, req.uri().path()) {
                        return Err(crate::outage::Unreachable);
                    }
                    Ok(handle(world, req, stop, cert).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A Kubernetes `Status` failure response.
pub fn status_error(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response<Body> {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &s,
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// A parsed request.
struct Req {
    method: Method,
    query: HashMap<String, String>,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }
    fn manager(&self) -> String {
        if let Some(m) = self.q("fieldManager") {
            return m.to_string();
        }
        self.headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }
    fn wants_table(&self) -> bool {
        self.headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(crate::table::wanted)
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
}

async fn handle(
    world: Arc<World>,
    req: Request<Incoming>,
    stop: tokio::sync::watch::Receiver<bool>,
    client_cert: bool,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    // Fault injection: never on watches (clients re-establish those on their own schedule).
    if world.cfg.faults > 0.0 && !is_watch && fastrand::f64() < world.cfg.faults {
        match fastrand::u8(0..3) {
            0 => {
                return status_error(500, "InternalError", "injected fault: internal error", None);
            }
            1 => {
                let mut r = status_error(
                    429,
                    "TooManyRequests",
                    "injected fault: too many requests, please try again later",
                    Some(json!({"retryAfterSeconds": 1})),
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                return r;
            }
            _ => tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1500))).await,
        }
    }
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let (api, rest): (Arc<Api>, &[String]) = if segs.first().map(String::as_str) == Some("workload")
    {
        if segs.len() < 3 {
            return status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        }
        let key = format!("{}/{}", segs[1], segs[2]);
        match world.workload(&key) {
            Some(a) => (a, &segs[3..]),
            None => {
                // 404 rather than 503: clients retry 503 for a long time, but this one is final
                // until the control plane bootstraps.
                return status_error(
                    404,
                    "NotFound",
                    &format!(
                        "workload cluster `{key}` has no API server (not bootstrapped or deleted)"
                    ),
                    None,
                );
            }
        }
    } else {
        (world.management.clone(), &segs[..])
    };
    let token_ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == api.token);
    // A CA-signed client certificate authenticates to the management API; workload APIs
    // want their own token, as separate clusters would.
    let authorized = token_ok || (client_cert && api.name == "management");
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    if matches!(rest.as_slice(), ["healthz" | "readyz" | "livez"]) {
        let mut r = Response::new(full("ok"));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        return r;
    }
    if !authorized {
        return status_error(401, "Unauthorized", "Unauthorized", None);
    }
    let method = req.method().clone();
    world.count_request(&api.name, request_kind(&method, &rest, is_watch));
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return status_error(
                413,
                "RequestEntityTooLarge",
                &format!("request body: {e}"),
                None,
            );
        }
    };
    let r = Req {
        method,
        query,
        headers,
        body,
    };
    route(&world, &api, &rest, r, stop).await
}

/// What a request does, for [`World::request_counts`]: a collection path (ending in a plural
/// resource, not a name) read is a `list`.
fn request_kind(method: &Method, rest: &[&str], watch: bool) -> &'static str {
    if rest.contains(&"proxy") {
        return "proxy";
    }
    // `/api/v1/<plural>`, `/api/v1/namespaces/<ns>/<plural>`, `/apis/<g>/<v>/...`: the
    // segments after the version alternate `namespaces`, name; an even count is a collection.
    let after_version = match rest.first() {
        Some(&"api") => rest.len().saturating_sub(2),
        Some(&"apis") => rest.len().saturating_sub(3),
        _ => return "other",
    };
    let collection = after_version % 2 == 1;
    match *method {
        Method::GET if watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

async fn route(
    world: &Arc<World>,
    api: &Arc<Api>,
    p: &[&str],
    r: Req,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response<Body> {
    match p {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-meshfleet-sim",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc",
                "platform": "linux/amd64"}),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": world.addr.to_string()}]}),
        ),
        ["apis"] => {
            let groups: Vec<Value> = api
                .registry
                .groups()
                .iter()
                .map(|(g, vs)| group_json(g, vs))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        ["apis", g] => match api.registry.groups().iter().find(|(n, _)| n == g) {
            Some((g, vs)) => {
                let mut v = group_json(g, vs);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                json_response(StatusCode::OK, &v)
            }
            None => not_found_path(),
        },
        ["openapi", "v3"] => openapi_root(api),
        ["openapi", "v3", "api", "v1"] => openapi_gv(api, "", "v1"),
        ["openapi", "v3", "apis", g, v] => openapi_gv(api, g, v),
        ["api", "v1"] => resource_list(api, "", "v1"),
        ["apis", g, v] => resource_list(api, g, v),
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "pods",
            pod,
            "proxy",
            tail @ ..,
        ] => pod_proxy(world, api, ns, pod, tail, &r),
        ["api", "v1", rest @ ..] => resource(world, api, "", "v1", rest, r, stop).await,
        ["apis", g, v, rest @ ..] => resource(world, api, g, v, rest, r, stop).await,
        _ => not_found_path(),
    }
}

fn not_found(t: &ResourceType, name: &str) -> Response<Body> {
    status_error(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", t.qualified()),
        Some(json!({"name": name, "group": t.group, "kind": t.plural})),
    )
}

fn store_error(t: &ResourceType, name: &str, e: StoreError) -> Response<Body> {
    match e {
        StoreError::NotFound => not_found(t, name),
        StoreError::AlreadyExists => status_error(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.qualified()),
            Some(json!({"name": name, "group": t.group, "kind": t.plural})),
        ),
        StoreError::Conflict => status_error(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                t.qualified()
            ),
            Some(json!({"name": name, "group": t.group, "kind": t.plural})),
        ),
        StoreError::Rejected(body) => {
            // Handlers encode a complete Status as JSON in Rejected.
            match serde_json::from_str::<Value>(&body) {
                Ok(v) => {
                    let code = v.get("code").and_then(Value::as_u64).unwrap_or(400) as u16;
                    json_response(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                        &v,
                    )
                }
                Err(_) => status_error(400, "BadRequest", &body, None),
            }
        }
        StoreError::Gone(rv) => status_error(
            410,
            "Expired",
            &format!("too old resource version: {rv}"),
            None,
        ),
        e @ StoreError::Io { .. } => status_error(500, "InternalError", &e.to_string(), None),
    }
}

fn reject(code: u16, reason: &str, message: &str, details: Option<Value>) -> StoreError {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    StoreError::Rejected(s.to_string())
}

/// Set apiVersion/kind to what the client asked for (objects are stored once, served in every
/// version: no conversion, which is exact for the versions meshfleet uses).
fn present(mut o: Value, t: &ResourceType, version: &str) -> Value {
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(t.api_version(version)));
        m.insert("kind".into(), json!(t.kind));
    }
    o
}

/// What the API server does to every write of some kinds: Secret `stringData` folds into `data`.
fn normalize(t: &ResourceType, obj: &mut Value) {
    if t.group.is_empty()
        && t.kind == "Secret"
        && let Some(o) = obj.as_object_mut()
        && let Some(Value::Object(sd)) = o.remove("stringData")
    {
        use base64::Engine;
        let data = o.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in sd {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn unsupported_body(r: &Req) -> Option<Response<Body>> {
    let ct = r.content_type();
    if ct.contains("protobuf") && crate::proto::decode(&r.body).is_ok() {
        return None;
    }
    (ct.contains("protobuf") || ct.contains("cbor")).then(|| {
        status_error(
            415,
            "UnsupportedMediaType",
            &format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got `{ct}`)"),
            None,
        )
    })
}

fn parse_body(r: &Req) -> Result<Value, String> {
    if r.body.is_empty() {
        return Err("the request body is empty".into());
    }
    if r.content_type().contains("protobuf") {
        return crate::proto::decode(&r.body);
    }
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) => Ok(v),
        Err(je) => {
            let text = std::str::from_utf8(&r.body).map_err(|e| e.to_string())?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|ye| format!("cannot decode body as JSON ({je}) or YAML ({ye})"))
        }
    }
}

fn bad_request(msg: &str) -> Response<Body> {
    status_error(400, "BadRequest", msg, None)
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    world: &Arc<World>,
    api: &Arc<Api>,
    group: &str,
    version: &str,
    rest: &[&str],
    r: Req,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response<Body> {
    let (ns, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty()
                && !(group.is_empty()
                    && tail.len() == 1
                    && matches!(tail[0], "status" | "finalize")) =>
        {
            (Some(*ns), tail)
        }
        _ => (None, rest),
    };
    let Some((plural, tail)) = rest.split_first() else {
        return not_found_path();
    };
    let Some(t) = api.registry.find(group, version, plural) else {
        return not_found_path();
    };
    let t = t.clone();
    let name = tail.first().copied();
    let sub = tail.get(1).copied();
    if tail.len() > 2 || sub.is_some_and(|s| s != "status" || !t.status_subresource) {
        return not_found_path();
    }
    if !t.namespaced && ns.is_some() {
        return not_found_path();
    }
    if t.namespaced && ns.is_none() && name.is_some() {
        return not_found_path();
    }
    let ns = ns.unwrap_or("");
    if !r.body.is_empty()
        && let Some(resp) = unsupported_body(&r)
    {
        return resp;
    }
    let m = r.method.clone();
    match (m, name) {
        (Method::GET, None) => {
            let is_watch = matches!(r.q("watch"), Some("true" | "1"));
            if is_watch {
                watch_stream(api, &t, version, ns, &r, stop)
            } else {
                list(api, &t, version, ns, &r)
            }
        }
        (Method::GET, Some(n)) => match api.store.get(&Key::new(&t.key(), ns, n)) {
            Some(o) if r.wants_table() && sub.is_none() => json_response(
                StatusCode::OK,
                &crate::table::table(&t, version, &[present(o, &t, version)], None),
            ),
            Some(o) => json_response(StatusCode::OK, &present(o, &t, version)),
            None => not_found(&t, n),
        },
        (Method::POST, None) => create(world, api, &t, version, ns, &r),
        (Method::PUT, Some(n)) => update(api, &t, version, ns, n, sub.is_some(), &r),
        (Method::PATCH, Some(n)) => patch_op(world, api, &t, version, ns, n, sub.is_some(), &r),
        (Method::DELETE, Some(n)) if sub.is_none() => delete(api, &t, version, ns, n, &r),
        _ => status_error(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
    }
}

fn selectors(r: &Req) -> Result<(LabelSelector, FieldSelector), Box<Response<Body>>> {
    let ls = LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
        .map_err(|e| Box::new(bad_request(&e)))?;
    let fs = FieldSelector::parse(r.q("fieldSelector").unwrap_or(""))
        .map_err(|e| Box::new(bad_request(&e)))?;
    Ok((ls, fs))
}

fn list(api: &Api, t: &ResourceType, version: &str, ns: &str, r: &Req) -> Response<Body> {
    let (ls, fs) = match selectors(r) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let (items, rv) = api
        .store
        .list_where(&t.key(), (!ns.is_empty()).then_some(ns), |o| {
            ls.matches(o) && fs.matches(o)
        });
    let items: Vec<Value> = items.into_iter().map(|o| present(o, t, version)).collect();
    if r.wants_table() {
        return json_response(
            StatusCode::OK,
            &crate::table::table(t, version, &items, Some(rv)),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(version),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = parse_query(Some("labelSelector=a+in+%28x%2Cy%29&watch=1"));
        assert_eq!(q["labelSelector"], "a in (x,y)");
        assert_eq!(q["watch"], "1");
    }

    #[test]
    fn names() {
        assert!(valid_name("a-b.c"));
        assert!(!valid_name("A"));
        assert!(!valid_name("-a"));
    }
}
