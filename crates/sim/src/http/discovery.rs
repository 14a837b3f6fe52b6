//! Discovery (`/api`, `/apis`, resource lists) and the OpenAPI v3 index.

use super::*;

/// The OpenAPI v3 index. kubectl reads it to learn that the server validates fields itself
/// (`fieldValidation`), so it skips client-side schema validation.
pub(super) fn openapi_root(api: &Api) -> Response<Body> {
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
pub(super) fn openapi_gv(api: &Api, group: &str, version: &str) -> Response<Body> {
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

pub(super) fn not_found_path() -> Response<Body> {
    status_error(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        ),
    )
}

pub(super) fn group_json(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

pub(super) fn resource_list(api: &Api, group: &str, version: &str) -> Response<Body> {
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
