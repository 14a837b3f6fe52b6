//! Patches and field ownership: JSON merge patch (also used for strategic merge, as the API
//! server does for custom resources), JSON patch, and server-side apply with field managers.
//!
//! Field sets are tracked at map granularity; lists are owned atomically (as `+listType=atomic`),
//! which is coarser than the real server for keyed lists but gives the same conflicts for the
//! objects meshfleet applies.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A leaf field path, e.g. `["spec", "replicas"]`.
pub type Path = Vec<String>;

/// RFC 7386 merge patch. Strategic-merge directives (`$patch`, `$retainKeys`,
/// `$setElementOrder/…`, `$deleteFromPrimitiveList/…`) are dropped.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
        } else if v.is_object() {
            let entry = t.entry(k.clone()).or_insert(Value::Null);
            merge_patch(entry, v);
        } else {
            t.insert(k.clone(), v.clone());
        }
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(p: &str) -> Result<(String, String), String> {
    let i = p
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer `{p}`"))?;
    Ok((p[..i].to_string(), unescape(&p[i + 1..])))
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("path `{parent}` does not exist"))?;
    match target {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(format!("path `{path}` does not exist"));
            }
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("bad array index `{last}`"))?;
                if replace {
                    let slot = a
                        .get_mut(i)
                        .ok_or_else(|| format!("index `{i}` out of range"))?;
                    *slot = value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(format!("index `{i}` out of range"));
                }
            }
        }
        _ => return Err(format!("path `{parent}` is not a container")),
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("path `{parent}` does not exist"))?;
    match target {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("path `{path}` does not exist")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index `{last}`"))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(format!("index `{i}` out of range"))
            }
        }
        _ => Err(format!("path `{parent}` is not a container")),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match name {
            "add" => add_at(doc, path, value, false)?,
            "replace" => add_at(doc, path, value, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value) {
                    return Err(format!("test failed at `{path}`"));
                }
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).unwrap_or("");
                let v = if name == "move" {
                    remove_at(doc, from)?
                } else {
                    doc.pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("path `{from}` does not exist"))?
                };
                add_at(doc, path, v, false)?;
            }
            other => return Err(format!("unknown JSON patch operation `{other}`")),
        }
    }
    Ok(())
}

/// Which part of an object an operation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but status (when the kind has a status subresource), or everything.
    Main {
        /// Whether status is excluded.
        status_separate: bool,
    },
    /// Only `.status`.
    Status,
}

impl Part {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Part::Status => Some("status"),
            Part::Main { .. } => None,
        }
    }
}

/// The leaf paths an object sets, within `part`.
pub fn leaves(obj: &Value, part: Part) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(o) = obj.as_object() else { return out };
    for (k, v) in o {
        let keep = match (part, k.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Part::Status, "status") => true,
            (Part::Status, _) => false,
            (Part::Main { status_separate }, "status") => !status_separate,
            _ => true,
        };
        if !keep {
            continue;
        }
        if k == "metadata" {
            if let Some(m) = v.as_object() {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = m.get(mk) {
                        walk(mv, vec!["metadata".into(), mk.into()], &mut out);
                    }
                }
            }
            continue;
        }
        walk(v, vec![k.clone()], &mut out);
    }
    out
}

fn walk(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match v.as_object() {
        // An empty map sets nothing and so owns nothing.
        Some(m) if m.is_empty() => {}
        Some(m) => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(c, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// Encode leaf paths as `fieldsV1`.
pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            let e = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            let Some(m) = e.as_object_mut() else { break };
            cur = m;
        }
    }
    Value::Object(root)
}

/// Decode `fieldsV1` into leaf paths (list element keys collapse onto the list).
pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    fn rec(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, c) in children {
            if let Some(name) = k.strip_prefix("f:") {
                let mut p = path.clone();
                p.push(name.to_string());
                rec(c, p, out);
            } else if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
    rec(v, Vec::new(), &mut out);
    out
}

fn overlaps(a: &Path, b: &Path) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn get_path<'a>(v: &'a Value, p: &Path) -> Option<&'a Value> {
    let mut cur = v;
    for s in p {
        cur = cur.get(s)?;
    }
    Some(cur)
}

fn remove_path(v: &mut Value, p: &Path) {
    let Some((last, parent)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for s in parent {
        match cur.get_mut(s) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// One managedFields entry, decoded.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: BTreeSet<Path>,
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e
                .get("manager")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            operation: e
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("Update")
                .to_string(),
            subresource: e
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            api_version: e
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            time: e
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let arr: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let (Some(s), Some(o)) = (e.subresource, m.as_object_mut()) {
                o.insert("subresource".into(), json!(s));
            }
            m
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The field, as `.spec.replicas`.
    pub field: String,
}

fn dotted(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

fn deep_merge(live: &mut Value, applied: &Value) {
    match (live.as_object_mut(), applied.as_object()) {
        (Some(l), Some(a)) => {
            for (k, v) in a {
                if v.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) if lv.is_object() && v.is_object() => deep_merge(lv, v),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *live = applied.clone(),
    }
}

/// Server-side apply `applied` (the caller's full intent) onto `live` for `manager`.
/// Returns the merged object with updated managedFields, or the conflicts when not forced.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    part: Part,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let new_fields = leaves(applied, part);
    let mut entries = read_entries(live);
    let sub = part.subresource().map(str::to_string);
    let mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        let mut lost = Vec::new();
        for q in &e.fields {
            for p in &new_fields {
                if overlaps(p, q) && get_path(live, p) != get_path(applied, p) {
                    if force {
                        lost.push(q.clone());
                    } else {
                        conflicts.push(Conflict {
                            manager: e.manager.clone(),
                            field: dotted(p),
                        });
                    }
                }
            }
        }
        for q in lost {
            e.fields.remove(&q);
        }
    }
    if !conflicts.is_empty() {
        conflicts.dedup();
        return Err(conflicts);
    }
    let old_fields: BTreeSet<Path> = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut out = live.clone();
    // Fields this manager applied before and no longer applies are removed unless someone else
    // still owns them.
    for p in old_fields.difference(&new_fields) {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !mine(e))
            .any(|e| e.fields.iter().any(|q| overlaps(p, q)));
        if !owned_elsewhere {
            remove_path(&mut out, p);
        }
    }
    // Merge the applied intent.
    if let (Some(o), Some(a)) = (out.as_object_mut(), applied.as_object()) {
        for (k, v) in a {
            match k.as_str() {
                "apiVersion" | "kind" => {
                    o.insert(k.clone(), v.clone());
                }
                "metadata" => {
                    let meta = o.entry("metadata").or_insert_with(|| json!({}));
                    for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(mv) = v.get(mk)
                            && let Some(m) = meta.as_object_mut()
                        {
                            match m.get_mut(mk) {
                                Some(cur) if cur.is_object() && mv.is_object() => {
                                    deep_merge(cur, mv)
                                }
                                _ => {
                                    m.insert(mk.into(), mv.clone());
                                }
                            }
                        }
                    }
                }
                "status"
                    if part != Part::Status
                        && matches!(
                            part,
                            Part::Main {
                                status_separate: true
                            }
                        ) => {}
                _ if part == Part::Status && k != "status" => {}
                _ => match o.get_mut(k) {
                    Some(cur) if cur.is_object() && v.is_object() => deep_merge(cur, v),
                    _ => {
                        o.insert(k.clone(), v.clone());
                    }
                },
            }
        }
    }
    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        subresource: sub,
        api_version: api_version.to_string(),
        time: now.to_string(),
        fields: new_fields,
    });
    write_entries(&mut out, entries);
    Ok(out)
}

/// Record an ordinary write (create, update, patch) by `manager`: it takes ownership of every
/// field it changed; fields it removed are dropped from every manager.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    part: Part,
    now: &str,
) {
    let before = old.map(|o| leaves(o, part)).unwrap_or_default();
    let after = leaves(new, part);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| old.is_none_or(|o| get_path(o, p) != get_path(new, p)))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = before.difference(&after).cloned().collect();
    let mut entries = match old {
        Some(o) => read_entries(o),
        None => read_entries(new),
    };
    let sub = part.subresource().map(str::to_string);
    for e in entries.iter_mut() {
        let is_me = e.manager == manager && e.operation == "Update" && e.subresource == sub;
        if !is_me {
            e.fields.retain(|q| !changed.iter().any(|p| overlaps(p, q)));
        }
        e.fields.retain(|q| !removed.contains(q));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                subresource: sub,
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Part = Part::Main {
        status_separate: true,
    };

    #[test]
    fn merge_patch_removes_nulls() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut t, &json!({"a": {"b": null}, "d": [2], "$patch": "x"}));
        assert_eq!(t, json!({"a": {"c": 2}, "d": [2]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a": [1, 2]});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/a/0", "value": 0}]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": [0, 2, 3]}));
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/zz"}])).is_err());
    }

    #[test]
    fn apply_conflicts_and_force() {
        let live = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        let a = apply(
            &live,
            &json!({"spec": {"replicas": 1}}),
            "one",
            "v1",
            false,
            MAIN,
            "t",
        )
        .unwrap();
        let b = apply(
            &a,
            &json!({"spec": {"replicas": 3}}),
            "two",
            "v1",
            false,
            MAIN,
            "t",
        );
        let c = b.unwrap_err();
        assert_eq!(
            c,
            vec![Conflict {
                manager: "one".into(),
                field: ".spec.replicas".into()
            }]
        );
        let forced = apply(
            &a,
            &json!({"spec": {"replicas": 3}}),
            "two",
            "v1",
            true,
            MAIN,
            "t",
        )
        .unwrap();
        assert_eq!(forced.pointer("/spec/replicas"), Some(&json!(3)));
        let mf = forced
            .pointer("/metadata/managedFields")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(mf.len(), 1, "{mf:?}");
        assert_eq!(mf[0]["manager"], "two");
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let live = json!({"metadata": {"name": "x"}});
        let a = apply(
            &live,
            &json!({"spec": {"a": 1, "b": 2}}),
            "m",
            "v1",
            false,
            MAIN,
            "t",
        )
        .unwrap();
        let b = apply(&a, &json!({"spec": {"a": 1}}), "m", "v1", false, MAIN, "t").unwrap();
        assert_eq!(b.pointer("/spec"), Some(&json!({"a": 1})));
    }

    #[test]
    fn fields_v1_roundtrip() {
        let obj = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"x": {"y": 1}, "l": [1]}});
        let l = leaves(&obj, MAIN);
        assert_eq!(from_fields_v1(&to_fields_v1(&l)), l);
    }
}
