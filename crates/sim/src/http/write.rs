//! The write verbs: create, update, patch (merge, JSON, apply) and delete, with schema checks,
//! identity checks and field ownership.

use super::*;

pub(super) fn valid_name(n: &str) -> bool {
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

pub(super) fn part_of(t: &ResourceType, status: bool) -> Part {
    if status {
        Part::Status
    } else {
        Part::Main {
            status_separate: t.status_subresource,
        }
    }
}

/// Schema check per the CRD (when loaded) and `fieldValidation`. Returns warnings.
pub(super) fn schema_check(
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

pub(super) fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

pub(super) fn check_namespace(api: &Api, t: &ResourceType, ns: &str) -> Result<(), StoreError> {
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

pub(super) fn check_identity(
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

pub(super) fn respond_written(
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

pub(super) fn create(
    world: &Arc<World>,
    api: &Api,
    t: &ResourceType,
    version: &str,
    ns: &str,
    r: &Req,
) -> Response<Body> {
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
    let mut warnings = match schema_check(t, version, &mut obj, r) {
        Ok(w) => w,
        Err(e) => return store_error(t, &name, e),
    };
    if let Err(e) = pod_security(world, api, t, ns, &name, &obj, &mut warnings) {
        return store_error(t, &name, e);
    }
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
pub(super) fn combine(t: &ResourceType, cur: &Value, mut incoming: Value, status: bool) -> Value {
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

pub(super) fn update(
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
pub(super) fn write_with<F>(
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

#[allow(clippy::too_many_arguments)]
pub(super) fn patch_op(
    world: &World,
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
            apply(world, api, t, version, ns, name, status, r, body)
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
pub(super) fn apply(
    world: &World,
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
    // Pod Security admission judges a Pod this apply creates (read before the store is locked).
    let namespace = (is_pod(t) && !status)
        .then(|| api.store.get(&Key::new("/namespaces", "", ns)))
        .flatten();
    let config = crate::psa::config(world, &api.name);
    let mut psa_warnings = Vec::new();
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
        if created && is_pod(t) && !status {
            psa_warnings = admit_pod(config.as_ref(), namespace.as_ref(), name, &new)?;
        }
        if dry {
            dry_out = Some(new);
            return Ok(Change::Keep);
        }
        Ok(Change::Put(new))
    });
    let res = if dry { res.map(|_| dry_out) } else { res };
    warnings.extend(psa_warnings);
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

fn is_pod(t: &ResourceType) -> bool {
    t.group.is_empty() && t.kind == "Pod"
}

/// Pod Security admission of a Pod being created in `namespace` ([`crate::psa`]): the warnings
/// to send, or the 403 the real admission answers.
fn admit_pod(
    config: Option<&Value>,
    namespace: Option<&Value>,
    name: &str,
    pod: &Value,
) -> Result<Vec<String>, StoreError> {
    let v = crate::psa::admit(config, namespace, name, pod);
    match v.refused {
        Some(msg) => Err(reject(
            403,
            "Forbidden",
            &msg,
            Some(json!({"name": name, "kind": "pods"})),
        )),
        None => Ok(v.warnings),
    }
}

/// [`admit_pod`] for a create request: reads the namespace, adds the warnings.
fn pod_security(
    world: &World,
    api: &Api,
    t: &ResourceType,
    ns: &str,
    name: &str,
    pod: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), StoreError> {
    if !is_pod(t) {
        return Ok(());
    }
    let namespace = api.store.get(&Key::new("/namespaces", "", ns));
    let config = crate::psa::config(world, &api.name);
    warnings.extend(admit_pod(config.as_ref(), namespace.as_ref(), name, pod)?);
    Ok(())
}

pub(super) fn prune_to(v: &mut Value, unknown: &[String]) {
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

pub(super) fn delete(
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
