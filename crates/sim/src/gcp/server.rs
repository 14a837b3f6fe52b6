//! The plain-HTTP listener, request parsing, routing and the `/_sim/gcp` admin endpoints.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{ApiError, ApiResult, FaultRule, Gcp, compute, services, storage};

/// Largest request body accepted (an upload chunk or a whole multipart upload).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// One parsed request.
pub(crate) struct Req {
    pub method: Method,
    /// The raw path.
    pub path: String,
    /// Percent-decoded path segments (so `a%2Fb` stays one segment).
    pub segs: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// The first value of query parameter `k`.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `k`.
    pub fn qs(&self, k: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON (`{}` when empty).
    pub fn json(&self) -> ApiResult<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::new(400, format!("Invalid JSON payload received. {e}"))
                .with("INVALID_ARGUMENT", "parseError")
        })
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
}

/// What a handler answers.
pub(crate) enum Reply {
    Json(StatusCode, Value),
    Raw(Response<Full<Bytes>>),
}

pub(crate) fn ok(v: Value) -> ApiResult<Reply> {
    Ok(Reply::Json(StatusCode::OK, v))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Serve the fake on `listener` until `stop` fires.
pub async fn serve(
    gcp: Arc<Gcp>,
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
        let gcp = gcp.clone();
        conns.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let svc = hyper::service::service_fn(move |req| {
                let gcp = gcp.clone();
                async move { Ok::<_, Infallible>(handle(gcp, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

fn json_response(code: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// Google's error response.
pub(crate) fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.body(),
    )
}

async fn handle(gcp: Arc<Gcp>, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(&ApiError::new(
                413,
                format!("request body too large or unreadable: {e}"),
            ));
        }
    };
    let path = parts.uri.path().to_string();
    let r = Req {
        method: parts.method,
        segs: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect(),
        path,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    if !r.path.starts_with("/_sim/") {
        if let Some(e) = gcp.take_fault(r.method.as_str(), &r.path) {
            return error_response(&e);
        }
        if gcp.random_faults > 0.0 && fastrand::f64() < gcp.random_faults {
            let code = [500, 429, 503][fastrand::usize(0..3)];
            return error_response(&ApiError::new(code, format!("injected fault: HTTP {code}")));
        }
    }
    let result = route(&gcp, &r).await;
    match result {
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::Raw(resp)) => resp,
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!("gcp fake: {} {}: {}", r.method, r.path, e.message);
            }
            error_response(&e)
        }
    }
}

async fn route(gcp: &Arc<Gcp>, r: &Req) -> ApiResult<Reply> {
    let s: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["_sim", "gcp", rest @ ..] => admin(gcp, r, rest),
        ["compute", "v1", "projects", p, rest @ ..] => compute::route(gcp, r, p, rest).await,
        ["v1", "operations", id] => services::get_operation(gcp, None, id),
        ["v1", "projects", p, rest @ ..] => services::route_v1(gcp, r, p, rest),
        ["v3", "projects", rest @ ..] => services::route_crm(gcp, r, rest),
        ["storage", "v1", "b", rest @ ..] => storage::route(gcp, r, rest),
        ["upload", "storage", "v1", "b", b, "o"] => storage::upload(gcp, r, b),
        _ => Err(ApiError::new(
            404,
            format!("The requested URL {} was not found on this server.", r.path),
        )),
    }
}

fn admin(gcp: &Arc<Gcp>, r: &Req, rest: &[&str]) -> ApiResult<Reply> {
    match (&r.method, rest) {
        (&Method::POST, ["faults"]) => {
            let rule: FaultRule = serde_json::from_value(r.json()?)
                .map_err(|e| ApiError::new(400, format!("fault rule: {e}")))?;
            if !(400..=599).contains(&rule.status) {
                return Err(ApiError::new(
                    400,
                    format!(
                        "fault rule: status {} is not an error status (400-599)",
                        rule.status
                    ),
                ));
            }
            gcp.add_fault(rule);
            ok(json!({}))
        }
        (&Method::DELETE, ["faults"]) => {
            gcp.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
            ok(json!({}))
        }
        (&Method::POST, ["projects", p]) => {
            let body = r.json()?;
            gcp.with_state(|st| {
                let proj = st.projects.entry(p.to_string()).or_default();
                if let Some(b) = body.get("billing").and_then(Value::as_bool) {
                    proj.billing = b;
                }
                if let Some(b) = body.get("keyCreationBlocked").and_then(Value::as_bool) {
                    proj.key_creation_blocked = b;
                }
                if let Some(list) = body.get("services").and_then(Value::as_array) {
                    proj.services = list
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                }
            });
            ok(json!({}))
        }
        (&Method::POST, ["foreign-buckets", b]) => {
            gcp.with_state(|st| st.foreign_buckets.insert(b.to_string()));
            ok(json!({}))
        }
        (&Method::GET, ["state"]) => ok(gcp.snapshot()),
        (&Method::POST, ["seed"]) => {
            gcp.seed(&r.json()?)?;
            ok(json!({}))
        }
        _ => Err(ApiError::new(
            404,
            format!("no admin endpoint {} {}", r.method, r.path),
        )),
    }
}
