//! Schema checks for custom resources whose CRD was loaded: unknown fields (reported for
//! `fieldValidation=Strict`/`Warn`, always pruned as the API server does), types, enums and
//! required properties (422), and schema defaults.

use serde_json::Value;

/// What a schema check found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Unknown fields, as `spec.foo`.
    pub unknown: Vec<String>,
    /// Invalid values: (field, message).
    pub invalid: Vec<(String, String)>,
}

/// Check `obj` against `schema`, pruning unknown fields and filling defaults in place.
pub fn check(obj: &mut Value, schema: &Value) -> Findings {
    let mut f = Findings::default();
    let Some(o) = obj.as_object_mut() else {
        f.invalid.push((String::new(), "must be an object".into()));
        return f;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = o.keys().cloned().collect();
    for k in keys {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&k)) {
            Some(s) => {
                if let Some(v) = o.get_mut(&k) {
                    walk(v, s, &k, &mut f);
                }
            }
            None => {
                f.unknown.push(k.clone());
                o.remove(&k);
            }
        }
    }
    if let Some(p) = props {
        for (k, s) in p {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || o.contains_key(k) {
                continue;
            }
            if let Some(d) = s.get("default") {
                o.insert(k.clone(), d.clone());
            }
        }
    }
    required(o, schema, "", &mut f);
    f
}

fn required(o: &serde_json::Map<String, Value>, schema: &Value, path: &str, f: &mut Findings) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !o.contains_key(r)
            && !(path.is_empty() && matches!(r, "apiVersion" | "kind" | "metadata"))
        {
            let field = if path.is_empty() {
                r.to_string()
            } else {
                format!("{path}.{r}")
            };
            f.invalid.push((field, "Required value".into()));
        }
    }
}

fn type_ok(v: &Value, t: &str, schema: &Value) -> bool {
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn walk(v: &mut Value, schema: &Value, path: &str, f: &mut Findings) {
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(v, t, schema)
    {
        f.invalid.push((
            path.to_string(),
            format!("Invalid value: must be of type {t}"),
        ));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let allowed: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        f.invalid.push((
            path.to_string(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                allowed.join(", ")
            ),
        ));
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let embedded = schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    match v {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                let child = format!("{path}.{k}");
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    if let Some(c) = o.get_mut(&k) {
                        walk(c, s, &child, f);
                    }
                } else if let Some(a) = additional.filter(|a| a.is_object()) {
                    if let Some(c) = o.get_mut(&k) {
                        walk(c, a, &child, f);
                    }
                } else if additional.and_then(Value::as_bool) == Some(true)
                    || preserve
                    || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                {
                } else {
                    f.unknown.push(child);
                    o.remove(&k);
                }
            }
            if let Some(p) = props {
                for (k, s) in p {
                    if !o.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        o.insert(k.clone(), d.clone());
                    }
                }
            }
            required(o, schema, path, f);
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, c) in a.iter_mut().enumerate() {
                    walk(c, items, &format!("{path}[{i}]"), f);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_pruned_defaults_filled() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "integer", "default": 3}, "b": {"type": "string", "enum": ["x"]}}}}});
        let mut o =
            json!({"apiVersion": "g/v1", "kind": "K", "metadata": {}, "spec": {"zz": 1, "b": "y"}});
        let f = check(&mut o, &schema);
        assert_eq!(f.unknown, vec!["spec.zz".to_string()]);
        assert_eq!(f.invalid.len(), 1);
        assert_eq!(o["spec"]["a"], 3);
    }
}
