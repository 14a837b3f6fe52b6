//! The API server's pod proxy for what simulated pods serve.

use super::*;

/// The API server's pod proxy (`pods/<name>[:<port>]/proxy/<path>`), for what simulated pods
/// serve: the Cilium agents' Prometheus endpoint (`:9962/metrics`). Anything else answers as
/// the real proxy does when nothing listens: 503 `ServiceUnavailable`.
pub(super) fn pod_proxy(
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
        None => match port
            .parse()
            .ok()
            .and_then(|p| crate::echo::serve(world, &api.name, &obj, p, tail, &r.query))
        {
            Some((code, body)) => {
                let mut resp = Response::new(full(body));
                *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
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
        },
    }
}
