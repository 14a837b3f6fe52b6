//! The Kubernetes REST protocol over HTTPS: routing, discovery, codecs, `Status` errors, watch
//! streams and fault injection. Handlers turn requests into [`Store::mutate`] calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::patch::{self, Part};
use crate::resources::ResourceType;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType, Key, StoreError, now_rfc3339};
use crate::validate;
use crate::{Api, World};

/// Response body: whole JSON documents or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 8 * 1024 * 1024;

/// Accept TLS connections until `stop` turns true.
pub async fn serve(
    world: Arc<World>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
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
                async move { Ok::<_, Infallible>(handle(world, req, stop, cert).await) }
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
    stop: watch::Receiver<bool>,
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

async fn route(
    world: &Arc<World>,
    api: &Arc<Api>,
    p: &[&str],
    r: Req,
    stop: watch::Receiver<bool>,
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

/// The API server's pod proxy (`pods/<name>[:<port>]/proxy/<path>`), for what simulated pods
/// serve: the Cilium agents' Prometheus endpoint (`:9962/metrics`). Anything else answers as
/// the real proxy does when nothing listens: 503 `ServiceUnavailable`.
fn pod_proxy(
    world: &World,
    api: &Api,
    ns: &str,
    pod: &str,
    tail: &[&str],
    r: &Req,
) -> Response<Body> {
    if r.method != Method::GET {
        return status_error(
            405,
            "MethodNotAllowed",
            "the simulated pod proxy serves GET only",
            None,
        );
    }
    // `name`, `name:port` or `scheme:name:port`.
    let parts: Vec<&str> = pod.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [n] => (*n, None),
        [n, p] => (*n, Some(*p)),
        [_, n, p] => (*n, Some(*p)),
        _ => return bad_request(&format!("invalid pod proxy target `{pod}`")),
    };
    let Some(obj) = api.store.get(&Key::new("/pods", ns, name)) else {
        return status_error(
            404,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            Some(json!({"name": name, "kind": "pods"})),
        );
    };
    let ip = obj
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    let port = port.unwrap_or("80");
    let is_agent = obj
        .pointer("/metadata/labels/k8s-app")
        .and_then(Value::as_str)
        == Some(crate::workload::AGENT_LABEL.1);
    let node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    // An agent whose cluster has no mesh yet serves no ClusterMesh series (an empty page).
    let metrics = (is_agent
        && port == crate::workload::AGENT_METRICS_PORT.to_string()
        && tail == ["metrics"])
    .then(|| crate::mesh::metrics(world, &api.name, node).unwrap_or_default());
    match metrics {
        Some(text) => {
            let mut resp = Response::new(full(text));
            resp.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        None if is_agent && port == crate::workload::AGENT_METRICS_PORT.to_string() => {
            let mut resp = Response::new(full("404 page not found\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
        None => status_error(
            503,
            "ServiceUnavailable",
            &format!(
                "error trying to reach service: dial tcp {ip}:{port}: connect: connection refused"
            ),
            None,
        ),
    }
}

/// The OpenAPI v3 index. kubectl reads it to learn that the server validates fields itself
/// (`fieldValidation`), so it skips client-side schema validation.
fn openapi_root(api: &Api) -> Response<Body> {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", api.store.rv())}),
    );
    for (g, vs) in api.registry.groups() {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=sim")}),
            );
        }
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

/// A per-group-version OpenAPI v3 document: one PATCH operation per kind (with the
/// `fieldValidation` parameter and the group-version-kind extension), and the CRD schema when loaded.
fn openapi_gv(api: &Api, group: &str, version: &str) -> Response<Body> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut any = false;
    for t in api
        .registry
        .types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        any = true;
        let gvk = json!([{"group": t.group, "version": version, "kind": t.kind}]);
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}
        ]);
        paths.insert(item, json!({"patch": {"operationId": format!("patch{}", t.kind), "x-kubernetes-group-version-kind": gvk[0].clone(),
            "x-kubernetes-action": "patch", "parameters": params, "responses": {"200": {"description": "OK"}}}}));
        let mut schema = t.schemas.get(version).cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = gvk;
        let mut rev: Vec<&str> = group.split('.').collect();
        rev.reverse();
        let id = if group.is_empty() {
            format!("io.k8s.api.core.v1.{}", t.kind)
        } else {
            format!("{}.{version}.{}", rev.join("."), t.kind)
        };
        schemas.insert(id, schema);
    }
    if !any {
        return not_found_path();
    }
    json_response(
        StatusCode::OK,
        &json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.0"}, "paths": paths,
            "components": {"schemas": schemas}}),
    )
}

fn not_found_path() -> Response<Body> {
    status_error(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        ),
    )
}

fn group_json(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

fn resource_list(api: &Api, group: &str, version: &str) -> Response<Body> {
    let mut resources = Vec::new();
    for t in api
        .registry
        .types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        let mut e = json!({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
        if !t.short_names.is_empty() {
            e["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            e["categories"] = json!(t.categories);
        }
        resources.push(e);
        if t.status_subresource {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    if resources.is_empty() {
        return not_found_path();
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
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
    stop: watch::Receiver<bool>,
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
        (Method::PATCH, Some(n)) => patch_op(api, &t, version, ns, n, sub.is_some(), &r),
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
    let (items, rv) = api.store.list(&t.key(), (!ns.is_empty()).then_some(ns));
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .map(|o| present(o, t, version))
        .collect();
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

fn watch_stream(
    api: &Arc<Api>,
    t: &ResourceType,
    version: &str,
    ns: &str,
    r: &Req,
    mut stop: watch::Receiver<bool>,
) -> Response<Body> {
    let (ls, fs) = match selectors(r) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let rv = r.q("resourceVersion");
    let initial = r.q("sendInitialEvents") == Some("true");
    let bookmarks = r.q("allowWatchBookmarks") == Some("true");
    let since = match rv {
        None | Some("0") => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return bad_request(&format!("invalid resourceVersion `{s}`")),
        },
    };
    let (backlog, mut rx) = match api.store.watch_from(if initial { None } else { since }) {
        Ok(x) => x,
        Err(e) => {
            // Kubernetes answers an expired resourceVersion with a 200 stream holding one ERROR event.
            let ev = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": e.to_string(), "reason": "Expired", "code": 410}});
            let mut line = serde_json::to_vec(&ev).unwrap_or_default();
            line.push(b'\n');
            let mut resp = Response::new(full(line));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return resp;
        }
    };
    let timeout = r
        .q("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let api = api.clone();
    let t = t.clone();
    let version = version.to_string();
    let ns = ns.to_string();
    let key = t.key();
    let synthetic_initial = since.is_none() || initial;
    let as_table = r.wants_table();
    tokio::spawn(async move {
        let encode = |ty: &str, obj: Value| -> Bytes {
            // `kubectl get -w` asks for Tables: each event then carries a one-row Table.
            let obj = if as_table && ty != "BOOKMARK" && ty != "ERROR" {
                crate::table::table(&t, &version, &[obj], None)
            } else {
                obj
            };
            let mut v = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };

        let mut last_rv = api.store.rv();
        // Objects that enter or leave the selection (a label change) arrive as ADDED or
        // DELETED, judged on the object before and after the change, as the API server does.
        let translate = |ev: &crate::store::Event| -> Option<&'static str> {
            let scope = ev.key.resource == key && (ns.is_empty() || ev.key.namespace == ns);
            if !scope {
                return None;
            }
            let sel = |o: &Value| ls.matches(o) && fs.matches(o);
            let now = sel(&ev.object);
            let was = ev.old.as_ref().is_some_and(sel);
            match (ev.kind, was, now) {
                (EventType::Deleted, w, n) => (w || n).then_some("DELETED"),
                (_, false, true) => Some("ADDED"),
                (_, true, true) => Some("MODIFIED"),
                (_, true, false) => Some("DELETED"),
                (_, false, false) => None,
            }
        };
        if synthetic_initial {
            let (items, rv) = api
                .store
                .list(&key, (!ns.is_empty()).then_some(ns.as_str()));
            // Events already in the backlog/receiver with rv <= list rv were covered by the list.
            last_rv = rv;
            for o in items.into_iter().filter(|o| ls.matches(o) && fs.matches(o)) {
                if tx
                    .send(encode("ADDED", present(o, &t, &version)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if initial {
                let bm = json!({"kind": t.kind, "apiVersion": t.api_version(&version),
                    "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                if tx.send(encode("BOOKMARK", bm)).await.is_err() {
                    return;
                }
            }
        } else {
            for ev in backlog {
                last_rv = ev.rv;
                if let Some(ty) = translate(&ev)
                    && tx
                        .send(encode(ty, present(ev.object, &t, &version)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if let Some(ty) = translate(&ev)
                            && tx.send(encode(ty, present(ev.object, &t, &version))).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let st = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "watch fell behind; relist", "reason": "Expired", "code": 410});
                        let _ = tx.send(encode("ERROR", st)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if bookmarks {
                        let bm = json!({"kind": t.kind, "apiVersion": t.api_version(&version),
                            "metadata": {"resourceVersion": last_rv.to_string()}});
                        if tx.send(encode("BOOKMARK", bm)).await.is_err() { return; }
                    } else if tx.is_closed() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = stop.changed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    resp
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn part_of(t: &ResourceType, status: bool) -> Part {
    if status {
        Part::Status
    } else {
        Part::Main {
            status_separate: t.status_subresource,
        }
    }
}

/// Schema check per the CRD (when loaded) and `fieldValidation`. Returns warnings.
fn schema_check(
    t: &ResourceType,
    version: &str,
    obj: &mut Value,
    r: &Req,
) -> Result<Vec<String>, StoreError> {
    let Some(schema) = t.schemas.get(version) else {
        return Ok(Vec::new());
    };
    let f = validate::check(obj, schema);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !f.invalid.is_empty() {
        let causes: Vec<Value> = f
            .invalid
            .iter()
            .map(|(field, msg)| json!({"reason": "FieldValueInvalid", "message": msg, "field": field}))
            .collect();
        let msg = f
            .invalid
            .iter()
            .map(|(field, msg)| format!("{field}: {msg}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(reject(
            422,
            "Invalid",
            &format!("{} \"{name}\" is invalid: {msg}", t.qualified()),
            Some(json!({"name": name, "group": t.group, "kind": t.kind, "causes": causes})),
        ));
    }
    if f.unknown.is_empty() {
        return Ok(Vec::new());
    }
    match r.q("fieldValidation") {
        Some("Strict") => {
            let list = f
                .unknown
                .iter()
                .map(|u| format!("unknown field \"{u}\""))
                .collect::<Vec<_>>();
            Err(reject(
                400,
                "BadRequest",
                &format!("strict decoding error: {}", list.join(", ")),
                None,
            ))
        }
        Some("Ignore") => Ok(Vec::new()),
        _ => Ok(f
            .unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect()),
    }
}

fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

fn check_namespace(api: &Api, t: &ResourceType, ns: &str) -> Result<(), StoreError> {
    if !t.namespaced {
        return Ok(());
    }
    match api.store.get(&Key::new("/namespaces", "", ns)) {
        None => Err(reject(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
            Some(json!({"name": ns, "kind": "namespaces"})),
        )),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(reject(
            403,
            "Forbidden",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
            None,
        )),
        Some(_) => Ok(()),
    }
}

fn check_identity(
    t: &ResourceType,
    version: &str,
    obj: &Value,
    ns: &str,
) -> Result<(), StoreError> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!av.is_empty() && av != t.api_version(version)) || (!kind.is_empty() && kind != t.kind) {
        return Err(reject(
            400,
            "BadRequest",
            &format!(
                "the API version in the data ({av}) and kind ({kind}) do not match the request ({}, {})",
                t.api_version(version),
                t.kind
            ),
            None,
        ));
    }
    if let Some(ons) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
        && !ons.is_empty()
        && t.namespaced
        && ons != ns
    {
        return Err(reject(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
            None,
        ));
    }
    Ok(())
}

fn respond_written(
    res: Result<Option<Value>, StoreError>,
    t: &ResourceType,
    version: &str,
    name: &str,
    code: StatusCode,
    warnings: &[String],
) -> Response<Body> {
    match res {
        Ok(Some(o)) => with_warnings(json_response(code, &present(o, t, version)), warnings),
        Ok(None) => with_warnings(
            json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": t.group, "kind": t.plural}}),
            ),
            warnings,
        ),
        Err(e) => store_error(t, name, e),
    }
}

fn create(
    world: &Arc<World>,
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    r: &Req,
) -> Response<Body> {
    let _ = world;
    let mut obj = match parse_body(r) {
        Ok(v) if v.is_object() => v,
        Ok(_) => return bad_request("the request body must be an object"),
        Err(e) => return bad_request(&e),
    };
    if let Err(e) = check_identity(t, version, &obj, ns) {
        return store_error(t, "", e);
    }
    let mut name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty()
        && let Some(g) = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
    {
        let suffix: String = (0..5)
            .map(|_| {
                fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789".iter())
                    .map(|c| *c as char)
                    .unwrap_or('x')
            })
            .collect();
        name = format!("{g}{suffix}");
    }
    if !valid_name(&name) {
        return status_error(
            422,
            "Invalid",
            &format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                t.qualified()
            ),
            Some(
                json!({"name": name, "group": t.group, "kind": t.kind, "causes": [{"reason": "FieldValueInvalid", "field": "metadata.name"}]}),
            ),
        );
    }
    if let Err(e) = check_namespace(api, t, ns) {
        return store_error(t, &name, e);
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
            "generation",
        ] {
            m.remove(f);
        }
    }
    obj["apiVersion"] = json!(t.api_version(version));
    obj["kind"] = json!(t.kind);
    if t.status_subresource
        && !t.group.is_empty()
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if t.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
    }
    let warnings = match schema_check(t, version, &mut obj, r) {
        Ok(w) => w,
        Err(e) => return store_error(t, &name, e),
    };
    let key = Key::new(&t.key(), ns, &name);
    let manager = r.manager();
    let part = part_of(t, false);
    let dry = r.dry_run();
    let mut dry_out = None;
    let res = api.store.mutate(&key, |cur| {
        if cur.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        normalize(t, &mut obj);
        patch::record_update(
            None,
            &mut obj,
            &manager,
            &t.api_version(version),
            part,
            &now_rfc3339(),
        );
        if dry {
            dry_out = Some(obj.clone());
            return Ok(Change::Keep);
        }
        Ok(Change::Put(obj))
    });
    let res = if dry { res.map(|_| dry_out) } else { res };
    respond_written(res, t, version, &name, StatusCode::CREATED, &warnings)
}

/// Merge the written part into the current object: the main endpoint keeps the current status
/// (when status is a subresource), the status endpoint keeps everything but status.
fn combine(t: &ResourceType, cur: &Value, mut incoming: Value, status: bool) -> Value {
    if status {
        let mut out = cur.clone();
        match incoming.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return out;
    }
    if t.status_subresource
        && let Some(o) = incoming.as_object_mut()
    {
        match cur.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.remove("status");
            }
        }
    }
    if let (Some(o), Some(m)) = (incoming.as_object_mut(), cur.get("metadata")) {
        // Server-owned metadata cannot be changed by clients.
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ] {
            if let (Some(v), Some(mm)) = (m.get(f), meta.as_object_mut()) {
                mm.insert(f.into(), v.clone());
            }
        }
    }
    incoming
}

fn update(
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    name: &str,
    status: bool,
    r: &Req,
) -> Response<Body> {
    let obj = match parse_body(r) {
        Ok(v) if v.is_object() => v,
        Ok(_) => return bad_request("the request body must be an object"),
        Err(e) => return bad_request(&e),
    };
    if let Err(e) = check_identity(t, version, &obj, ns) {
        return store_error(t, name, e);
    }
    if obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n != name)
    {
        return bad_request("the name of the object does not match the name on the URL");
    }
    let want_rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    write_with(api, t, version, ns, name, status, r, move |cur| {
        if let Some(w) = &want_rv
            && cur
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(w.as_str())
        {
            return Err(StoreError::Conflict);
        }
        Ok(obj)
    })
}

#[allow(clippy::too_many_arguments)]
fn write_with<F>(
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    name: &str,
    status: bool,
    r: &Req,
    f: F,
) -> Response<Body>
where
    F: FnOnce(&Value) -> Result<Value, StoreError>,
{
    let key = Key::new(&t.key(), ns, name);
    let manager = r.manager();
    let part = part_of(t, status);
    let dry = r.dry_run();
    let mut dry_out = None;
    let mut warnings = Vec::new();
    let res = api.store.mutate(&key, |cur| {
        let Some(cur) = cur else {
            return Err(StoreError::NotFound);
        };
        let incoming = f(cur)?;
        let mut new = combine(t, cur, incoming, status);
        new["apiVersion"] = json!(t.api_version(version));
        new["kind"] = json!(t.kind);
        warnings = schema_check(t, version, &mut new, r)?;
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
            if let Some(mf) = cur.pointer("/metadata/managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
        normalize(t, &mut new);
        patch::record_update(
            Some(cur),
            &mut new,
            &manager,
            &t.api_version(version),
            part,
            &now_rfc3339(),
        );
        if dry {
            dry_out = Some(new);
            return Ok(Change::Keep);
        }
        Ok(Change::Put(new))
    });
    let res = if dry { res.map(|_| dry_out) } else { res };
    respond_written(res, t, version, name, StatusCode::OK, &warnings)
}

fn patch_op(
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    name: &str,
    status: bool,
    r: &Req,
) -> Response<Body> {
    let ct = r
        .content_type()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let body = match parse_body(r) {
        Ok(v) => v,
        Err(e) => return bad_request(&e),
    };
    match ct.as_str() {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            apply(api, t, version, ns, name, status, r, body)
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let want_rv = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            write_with(api, t, version, ns, name, status, r, move |cur| {
                if let Some(w) = &want_rv
                    && cur
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        != Some(w.as_str())
                {
                    return Err(StoreError::Conflict);
                }
                let mut out = cur.clone();
                patch::merge_patch(&mut out, &body);
                Ok(out)
            })
        }
        "application/json-patch+json" => {
            write_with(api, t, version, ns, name, status, r, move |cur| {
                let mut out = cur.clone();
                patch::json_patch(&mut out, &body).map_err(|e| {
                    reject(
                        422,
                        "Invalid",
                        &format!("the JSON patch cannot be applied: {e}"),
                        None,
                    )
                })?;
                Ok(out)
            })
        }
        other => status_error(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got `{other}`)"
            ),
            None,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn apply(
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    name: &str,
    status: bool,
    r: &Req,
    mut applied: Value,
) -> Response<Body> {
    if !applied.is_object() {
        return bad_request("the applied configuration must be an object");
    }
    if applied.get("apiVersion").and_then(Value::as_str).is_none()
        || applied.get("kind").and_then(Value::as_str).is_none()
    {
        return bad_request("apiVersion and kind must be set in the applied configuration");
    }
    if let Err(e) = check_identity(t, version, &applied, ns) {
        return store_error(t, name, e);
    }
    if applied
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n != name)
    {
        return bad_request("the name of the object does not match the name on the URL");
    }
    if r.q("fieldManager").is_none() {
        return status_error(
            422,
            "Invalid",
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
            None,
        );
    }
    // Unknown fields in the intent are judged (and pruned) before ownership is computed, so a
    // manager never owns a field the schema drops.
    let mut warnings = Vec::new();
    if let Some(schema) = t.schemas.get(version) {
        let mut probe = applied.clone();
        let f = validate::check(&mut probe, schema);
        if !f.unknown.is_empty() {
            match r.q("fieldValidation") {
                Some("Strict") => {
                    let list = f
                        .unknown
                        .iter()
                        .map(|u| format!(".{u}: field not declared in schema"))
                        .collect::<Vec<_>>();
                    return status_error(
                        400,
                        "BadRequest",
                        &format!(
                            "failed to create typed patch object ({}/{name}; {}): {}",
                            ns,
                            t.api_version(version),
                            list.join(", ")
                        ),
                        None,
                    );
                }
                Some("Ignore") => {}
                _ => {
                    warnings = f
                        .unknown
                        .iter()
                        .map(|u| format!("unknown field \"{u}\""))
                        .collect()
                }
            }
            prune_to(&mut applied, &f.unknown);
        }
    }
    if !status && let Err(e) = check_namespace(api, t, ns) {
        return store_error(t, name, e);
    }
    let key = Key::new(&t.key(), ns, name);
    let manager = r.q("fieldManager").unwrap_or("").to_string();
    let force = r.q("force") == Some("true");
    let part = part_of(t, status);
    let dry = r.dry_run();
    let mut created = false;
    let mut dry_out = None;
    let res = api.store.mutate(&key, |cur| {
        let base = match cur {
            Some(c) => c.clone(),
            None => {
                if status {
                    return Err(StoreError::NotFound);
                }
                created = true;
                let mut m = json!({"name": name});
                if t.namespaced {
                    m["namespace"] = json!(ns);
                }
                let mut b = json!({"apiVersion": t.api_version(version), "kind": t.kind, "metadata": m});
                if t.kind == "Namespace" {
                    b["status"] = json!({"phase": "Active"});
                    b["spec"] = json!({"finalizers": ["kubernetes"]});
                }
                b
            }
        };
        let mut new = patch::apply(&base, &applied, &manager, &t.api_version(version), force, part, &now_rfc3339()).map_err(|conflicts| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                .collect();
            let lines: Vec<String> = conflicts.iter().map(|c| format!("- {}", c.field)).collect();
            let mgr = conflicts.first().map(|c| c.manager.clone()).unwrap_or_default();
            reject(
                409,
                "Conflict",
                &format!("Apply failed with {} conflict{}: conflict with \"{mgr}\": {}", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }, lines.join(" ")),
                Some(json!({"name": name, "group": t.group, "kind": t.plural, "causes": causes})),
            )
        })?;
        normalize(t, &mut new);
        if let Some(schema) = t.schemas.get(version) {
            let f = validate::check(&mut new, schema);
            if !f.invalid.is_empty() {
                let msg = f.invalid.iter().map(|(a, b)| format!("{a}: {b}")).collect::<Vec<_>>().join(", ");
                let causes: Vec<Value> = f.invalid.iter().map(|(a, b)| json!({"reason": "FieldValueInvalid", "message": b, "field": a})).collect();
                return Err(reject(422, "Invalid", &format!("{} \"{name}\" is invalid: {msg}", t.qualified()), Some(json!({"name": name, "group": t.group, "kind": t.kind, "causes": causes}))));
            }
        }
        if dry {
            dry_out = Some(new);
            return Ok(Change::Keep);
        }
        Ok(Change::Put(new))
    });
    let res = if dry { res.map(|_| dry_out) } else { res };
    respond_written(
        res,
        t,
        version,
        name,
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &warnings,
    )
}

fn prune_to(v: &mut Value, unknown: &[String]) {
    for u in unknown {
        // `spec.rules[3].foo` -> parent pointer `/spec/rules/3`, field `foo`.
        let ptr: String = u
            .split('.')
            .flat_map(|seg| match seg.split_once('[') {
                Some((f, i)) => vec![f.to_string(), i.trim_end_matches(']').to_string()],
                None => vec![seg.to_string()],
            })
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect();
        let Some(cut) = ptr.rfind('/') else { continue };
        let field = ptr[cut + 1..].replace("~1", "/").replace("~0", "~");
        if let Some(m) = v.pointer_mut(&ptr[..cut]).and_then(Value::as_object_mut) {
            m.remove(&field);
        }
    }
}

fn delete(
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    name: &str,
    r: &Req,
) -> Response<Body> {
    let opts: Value = if r.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&r.body).unwrap_or(json!({}))
    };
    let pre_uid = opts
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let pre_rv = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let key = Key::new(&t.key(), ns, name);
    let dry = r.dry_run();
    let mut last = None;
    let res = api.store.mutate(&key, |cur| {
        let Some(cur) = cur else {
            return Err(StoreError::NotFound);
        };
        if let Some(u) = &pre_uid
            && cur.pointer("/metadata/uid").and_then(Value::as_str) != Some(u.as_str())
        {
            return Err(StoreError::Conflict);
        }
        if let Some(v) = &pre_rv
            && cur
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(v.as_str())
        {
            return Err(StoreError::Conflict);
        }
        last = Some(cur.clone());
        if dry {
            return Ok(Change::Keep);
        }
        let has_finalizers = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || (t.kind == "Namespace"
                && cur
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()));
        if has_finalizers {
            if cur.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Change::Keep);
            }
            let mut n = cur.clone();
            n["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if t.kind == "Namespace" {
                n["status"] = json!({"phase": "Terminating"});
            }
            Ok(Change::Put(n))
        } else {
            Ok(Change::Remove)
        }
    });
    match res {
        Ok(Some(o)) => json_response(StatusCode::OK, &present(o, t, version)),
        Ok(None) => match last {
            Some(o) => json_response(StatusCode::OK, &present(o, t, version)),
            None => not_found(t, name),
        },
        Err(e) => store_error(t, name, e),
    }
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
