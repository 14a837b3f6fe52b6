//! The structural pass: the parsed tree against the JSON schema derived from [`crate::model`].
//! Messages are written here from the schema (not taken from the validator) so they read like
//! the semantic ones and can suggest the field or value the user probably meant.

use std::sync::OnceLock;

use serde_json::Value;

use super::semantic;
use crate::diag::{Diagnostic, Report};
use crate::model::{API_VERSION, Fleet, KIND};
use crate::source::{SourceMap, join_key};

/// The fleet file's JSON schema, derived once from the types. `Option<T>` fields take T's schema
/// (no `null` branch) so an error inside an optional object is reported at its own field instead
/// of as a vague "matches no alternative" at the parent.
pub(crate) fn fleet_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = schemars::schema_for!(Fleet);
        let mut value = serde_json::to_value(schema).unwrap_or(Value::Null);
        drop_null_branches(&mut value);
        value
    })
}

/// Remove the `null` alternative schemars adds for `Option<T>`: `anyOf: [T, null]` becomes T and
/// `type: [t, "null"]` becomes `t`.
fn drop_null_branches(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Array(types)) = obj.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    obj.insert("type".to_owned(), only);
                }
            }
            if let Some(Value::Array(alts)) = obj.get("anyOf") {
                let rest: Vec<Value> = alts
                    .iter()
                    .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                    .cloned()
                    .collect();
                if rest.len() == 1 && rest.len() < alts.len() {
                    obj.remove("anyOf");
                    if let Value::Object(inner) = &rest[0] {
                        for (k, val) in inner {
                            obj.entry(k.clone()).or_insert_with(|| val.clone());
                        }
                    }
                }
            }
            for child in obj.values_mut() {
                drop_null_branches(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_branches),
        _ => {}
    }
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(fleet_schema()).ok())
        .as_ref()
}

/// Check the tree against the schema and deserialize it. Every structural problem is reported.
pub(crate) fn structural(tree: &Value, map: &SourceMap) -> Result<Fleet, Report> {
    let mut report = Report::default();
    let Value::Object(root) = tree else {
        report.push(
            Diagnostic::error("", format!("the fleet file must be a mapping, found {}", describe(tree)))
                .with_hint("start from `meshfleet init`: a fleet file has `apiVersion`, `kind`, `metadata` and `spec`")
                .at(map.position("").unwrap_or(crate::Position { line: 1, column: 1 })),
        );
        return Err(report);
    };
    // A wrong kind or apiVersion means the rest is another format: report that alone rather
    // than a screenful of unknown fields.
    let mut identity_wrong = false;
    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match root.get(field) {
            Some(Value::String(s)) if s == expected => {}
            Some(other) => {
                identity_wrong = true;
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned);
                let hint = if field == "apiVersion" {
                    format!("this release reads `apiVersion: {API_VERSION}`")
                } else {
                    format!("a fleet file has `kind: {KIND}`; other kinds are not fleet files")
                };
                let mut d = Diagnostic::error(field, format!("`{field}` must be `{expected}`"))
                    .with_value(shown)
                    .with_hint(hint);
                map.locate(&mut d);
                report.push(d);
            }
            None => {
                identity_wrong = true;
                report.push(
                    Diagnostic::error(field, format!("missing required field `{field}`"))
                        .with_hint(format!("add `{field}: {expected}` at the top of the file"))
                        .at(map
                            .position("")
                            .unwrap_or(crate::Position { line: 1, column: 1 })),
                );
            }
        }
    }
    if identity_wrong {
        return Err(report);
    }

    let mut repaired = tree.clone();
    let mut repairable = true;
    if let Some(v) = validator() {
        for err in v.iter_errors(tree) {
            let pointer = err.instance_path().as_str().to_owned();
            let path = pointer_to_path(tree, &pointer);
            report.extend(structural_diagnostic(
                tree,
                map,
                &path,
                err.kind(),
                err.instance(),
            ));
            repairable &= repair(&mut repaired, &pointer, err.kind());
        }
    }
    dedup(&mut report.errors);
    report.sort();
    if !report.is_ok() {
        // Keep going on a repaired copy (unknown keys dropped, bad defaulted values reset) so the
        // semantic rules report their problems in the same run instead of after the next edit.
        if repairable && let Ok(fleet) = serde_json::from_value::<Fleet>(repaired) {
            let mut more = semantic(&fleet);
            for d in more.errors.iter_mut().chain(more.warnings.iter_mut()) {
                map.locate(d);
            }
            report.extend(more.errors);
            report.sort();
        }
        return Err(report);
    }
    serde_json::from_value(tree.clone()).map_err(|e| {
        // The schema and the types come from the same definitions; reaching this means a
        // mismatch between them, which is still reported, never a panic.
        let mut r = Report::default();
        r.push(Diagnostic::error(
            "",
            format!("the fleet file does not match the fleet types: {e}"),
        ));
        r
    })
}

/// Undo one structural error on the copy used for the semantic pass: drop unknown keys, reset a
/// value that has a schema default. Returns false when the error cannot be repaired.
fn repair(tree: &mut Value, pointer: &str, kind: &jsonschema::error::ValidationErrorKind) -> bool {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::AdditionalProperties { unexpected } => {
            if let Some(Value::Object(obj)) = tree.pointer_mut(pointer) {
                for k in unexpected {
                    obj.remove(k);
                }
            }
            true
        }
        _ => {
            let Some((parent, key)) = pointer.rsplit_once('/') else {
                return false;
            };
            let key = key.replace("~1", "/").replace("~0", "~");
            let segs: Vec<String> = parent
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let root = fleet_schema();
            let default = schema_at(root, tree, &segs)
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(&key))
                .and_then(|p| p.get("default"))
                .cloned()
                .or_else(|| {
                    // Enum-typed fields default through their type's `Default`.
                    let s = schema_at(root, tree, &[segs.clone(), vec![key.clone()]].concat())?;
                    enum_options(s).first().map(|o| Value::String(o.clone()))
                });
            match (default, tree.pointer_mut(parent)) {
                (Some(d), Some(Value::Object(obj))) => {
                    obj.insert(key, d);
                    true
                }
                _ => false,
            }
        }
    }
}

fn dedup(ds: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    ds.retain(|d| seen.insert((d.path.clone(), d.message.clone())));
}

/// `/spec/clusters/0/name` → `spec.clusters[0].name`, using the tree to tell indices from keys.
fn pointer_to_path(tree: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut node = Some(tree);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{seg}]"));
                node = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            Some(Value::Object(obj)) => {
                path = join_key(&path, &seg);
                node = obj.get(&seg);
            }
            _ => {
                path = join_key(&path, &seg);
                node = None;
            }
        }
    }
    path
}

/// The schema node that describes the value at `path` (following `$ref`s).
fn schema_at<'a>(root: &'a Value, tree: &Value, path_pointer: &[String]) -> Option<&'a Value> {
    let mut schema = resolve(root, root)?;
    let mut node = Some(tree);
    for seg in path_pointer {
        schema = match node {
            Some(Value::Array(items)) => {
                node = seg.parse::<usize>().ok().and_then(|i| items.get(i));
                resolve(root, schema.get("items")?)?
            }
            _ => {
                node = node.and_then(|n| n.get(seg));
                match schema.get("properties").and_then(|p| p.get(seg)) {
                    Some(s) => resolve(root, s)?,
                    None => resolve(root, schema.get("additionalProperties")?)?,
                }
            }
        };
    }
    Some(schema)
}

fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/$defs/")?;
                s = root.get("$defs")?.get(name)?;
            }
            None => return Some(s),
        }
    }
    None
}

fn enum_options(schema: &Value) -> Vec<String> {
    if let Some(Value::Array(vals)) = schema.get("enum") {
        return vals
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(|a| a.get("const").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{n}`"),
        Value::String(s) => format!("a string `{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn expected_type(schema: &Value) -> String {
    let name = |t: &str| match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "`true` or `false`",
        "null" => "nothing",
        _ => "a value",
    };
    match schema.get("type") {
        Some(Value::String(t)) => name(t).to_owned(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".to_owned(),
    }
}

fn structural_diagnostic(
    tree: &Value,
    map: &SourceMap,
    path: &str,
    kind: &jsonschema::error::ValidationErrorKind,
    instance: &Value,
) -> Vec<Diagnostic> {
    use jsonschema::error::ValidationErrorKind as K;
    let root = fleet_schema();
    let segs = pointer_segments(tree, path);
    let schema = schema_at(root, tree, &segs);
    let mut d = match kind {
        K::AdditionalProperties { unexpected } => {
            let known: Vec<String> = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            // One diagnostic per unknown key, each pointing at the key itself.
            return unexpected
                .iter()
                .map(|key| {
                    let field_path = join_key(path, key);
                    let mut d = Diagnostic::error(&field_path, format!("unknown field `{key}`"));
                    d = match suggest(key, &known) {
                        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                        None if known.is_empty() => d,
                        None => d.with_hint(format!("expected one of {}", list(&known))),
                    };
                    match map.key_position(&field_path) {
                        Some(p) => d.at(p),
                        None => d,
                    }
                })
                .collect();
        }
        K::Required { property } => {
            let prop = property.as_str().unwrap_or_default();
            let example = schema
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(prop))
                .and_then(|p| p.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let d = Diagnostic::error(
                join_key(path, prop),
                format!("missing required field `{prop}`"),
            );
            let d = if example.is_empty() {
                d
            } else {
                d.with_hint(format!("add `{prop}`: {}", example.trim_end_matches('.')))
            };
            match map.position(path) {
                Some(p) => d.at(p),
                None => d,
            }
        }
        K::Type { .. } => {
            let expected = schema.map_or_else(|| "another type".to_owned(), expected_type);
            let mut d = Diagnostic::error(
                path,
                format!("expected {expected}, found {}", describe(instance)),
            );
            if instance.is_number() && expected == "a string" {
                d = d.with_hint(format!(
                    "YAML read `{}` as a number; quote it: \"{}\"",
                    instance, instance
                ));
            } else if instance.is_null() {
                d = d.with_hint("give the field a value, or remove the key to use the default");
            }
            d
        }
        K::OneOfNotValid { .. } | K::Enum { .. } | K::Constant { .. } | K::AnyOf { .. } => {
            let options = schema.map(enum_options).unwrap_or_default();
            let text = scalar_text(instance);
            let mut d = if options.is_empty() {
                Diagnostic::error(path, format!("invalid value {}", describe(instance)))
            } else {
                Diagnostic::error(path, format!("`{text}` is not one of {}", list(&options)))
            };
            if let Some(s) = suggest(&text, &options) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            d.with_value(text)
        }
        K::Minimum { limit } => Diagnostic::error(
            path,
            format!("{} is below the minimum `{limit}`", describe(instance)),
        ),
        K::Maximum { limit } => Diagnostic::error(
            path,
            format!("{} is above the maximum `{limit}`", describe(instance)),
        ),
        other => Diagnostic::error(path, format!("invalid value: {other:?}")),
    };
    map.locate(&mut d);
    vec![d]
}

fn pointer_segments(tree: &Value, path: &str) -> Vec<String> {
    // Re-derive the segments from the path we built (keys never contain `[` unless quoted).
    let mut segs = Vec::new();
    let mut node = Some(tree);
    let mut rest = path;
    while !rest.is_empty() {
        let (seg, next) = if let Some(r) = rest.strip_prefix('[') {
            let end = if r.starts_with('"') {
                r.find("\"]").map_or(r.len(), |i| i + 1)
            } else {
                r.find(']').unwrap_or(r.len())
            };
            let raw = &r[..end];
            let seg = raw.trim_matches('"').replace("\\\"", "\"");
            (seg, r.get(end + 1..).unwrap_or(""))
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (r[..end].to_owned(), &r[end..])
        };
        node = match node {
            Some(Value::Array(items)) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            Some(n) => n.get(&seg),
            None => None,
        };
        segs.push(seg);
        rest = next;
    }
    segs
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest known word: same letters ignoring case and separators (`worker_pools` →
/// `workerPools`), or within a small edit distance.
pub(crate) fn suggest(input: &str, known: &[String]) -> Option<String> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let n = norm(input);
    if let Some(k) = known.iter().find(|k| norm(k) == n) {
        return Some(k.clone());
    }
    let limit = (input.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&n, &norm(k)), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, k)| (*d, (*k).clone()))
        .map(|(_, k)| k.clone())
}
