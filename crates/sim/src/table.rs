//! Server-side printing: the `meta.k8s.io/v1` `Table` kubectl asks for (`Accept: …;as=Table`),
//! with a CRD's `additionalPrinterColumns` when loaded and kubelet-like columns for core kinds.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// kubectl's short ages: `42s`, `5m3s`, `17m`, `3h20m`, `9h`, `4d`.
pub fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let s = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if d < 2 {
        format!("{h}h")
    } else {
        format!("{d}d")
    }
}

/// Evaluate the JSONPath subset printer columns use: `.a.b`, `[0]`, `[?(@.k=="v")]`.
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let field: String = chars[start..i].iter().collect();
                if field.is_empty() {
                    continue;
                }
                cur = cur.iter().filter_map(|v| v.get(&field).cloned()).collect();
            }
            '[' => {
                let start = i + 1;
                let mut depth = 1;
                i += 1;
                while i < chars.len() && depth > 0 {
                    match chars[i] {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
                let inner: String = chars[start..i.saturating_sub(1)].iter().collect();
                let inner = inner.trim();
                if let Some(f) = inner.strip_prefix("?(@.").and_then(|x| x.strip_suffix(')')) {
                    let (k, want) = f.split_once("==").unwrap_or((f, ""));
                    let want = want.trim().trim_matches('"').trim_matches('\'');
                    let k = k.trim();
                    cur = cur
                        .iter()
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter(|e| {
                            e.get(k).is_some_and(|v| {
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                                    == want
                            })
                        })
                        .cloned()
                        .collect();
                } else if inner == "*" {
                    cur = cur
                        .iter()
                        .filter_map(Value::as_array)
                        .flatten()
                        .cloned()
                        .collect();
                } else if let Ok(n) = inner.parse::<usize>() {
                    cur = cur.iter().filter_map(|v| v.get(n).cloned()).collect();
                } else {
                    return Vec::new();
                }
            }
            _ => i += 1,
        }
    }
    cur
}

fn text(vals: &[Value]) -> Value {
    let parts: Vec<String> = vals
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if parts.is_empty() {
        json!("<none>")
    } else {
        json!(parts.join(","))
    }
}

struct Col {
    name: String,
    ty: String,
    path: String,
    priority: i64,
}

fn col(name: &str, path: &str, priority: i64) -> Col {
    Col {
        name: name.into(),
        ty: "string".into(),
        path: path.into(),
        priority,
    }
}

fn node_status(o: &Value) -> Value {
    let ready = jsonpath(o, r#".status.conditions[?(@.type=="Ready")].status"#);
    let mut s = match ready.first().and_then(Value::as_str) {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

fn roles(o: &Value) -> Value {
    let r: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if r.is_empty() {
        json!("<none>")
    } else {
        json!(r.join(","))
    }
}

fn ports(o: &Value) -> Value {
    let p: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    if p.is_empty() {
        json!("<none>")
    } else {
        json!(p.join(","))
    }
}

fn count(o: &Value, field: &str) -> Value {
    json!(
        o.get(field)
            .and_then(Value::as_object)
            .map(|m| m.len())
            .unwrap_or(0)
    )
}

/// Build the Table for `items`.
pub fn table(t: &ResourceType, version: &str, items: &[Value], rv: Option<u64>) -> Value {
    let mut cols: Vec<Col> = Vec::new();
    type Cell = fn(&Value) -> Value;
    let mut special: Vec<(usize, Cell)> = Vec::new();
    let crd_cols = t.columns.get(version).cloned().unwrap_or_default();
    let mut has_age = false;
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Node") => {
            special.push((cols.len(), node_status));
            cols.push(col("Status", "", 0));
            special.push((cols.len(), roles));
            cols.push(col("Roles", "", 0));
            cols.push(col("Age", ".metadata.creationTimestamp", 0));
            cols.push(col("Version", ".status.nodeInfo.kubeletVersion", 0));
            cols.push(col(
                "Internal-IP",
                r#".status.addresses[?(@.type=="InternalIP")].address"#,
                1,
            ));
            cols.push(col("OS-Image", ".status.nodeInfo.osImage", 1));
            cols.push(col("Kernel-Version", ".status.nodeInfo.kernelVersion", 1));
            cols.push(col(
                "Container-Runtime",
                ".status.nodeInfo.containerRuntimeVersion",
                1,
            ));
            has_age = true;
        }
        ("", "Namespace") => cols.push(col("Status", ".status.phase", 0)),
        ("", "Event") => {
            cols.push(col("Last Seen", ".lastTimestamp", 0));
            cols[0].ty = "date".into();
            cols.push(col("Type", ".type", 0));
            cols.push(col("Reason", ".reason", 0));
            special.push((cols.len(), |o| {
                json!(format!(
                    "{}/{}",
                    o.pointer("/involvedObject/kind")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_lowercase(),
                    o.pointer("/involvedObject/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ))
            }));
            cols.push(col("Object", "", 0));
            cols.push(col("Message", ".message", 0));
            has_age = true;
        }
        ("", "Service") => {
            cols.push(col("Type", ".spec.type", 0));
            cols.push(col("Cluster-IP", ".spec.clusterIP", 0));
            cols.push(col("External-IP", ".status.loadBalancer.ingress[*].ip", 0));
            special.push((cols.len(), ports));
            cols.push(col("Port(s)", "", 0));
        }
        ("", "Secret") => {
            cols.push(col("Type", ".type", 0));
            special.push((cols.len(), |o| count(o, "data")));
            cols.push(col("Data", "", 0));
        }
        ("", "ConfigMap") => {
            special.push((cols.len(), |o| count(o, "data")));
            cols.push(col("Data", "", 0));
        }
        _ => {
            for c in &crd_cols {
                let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                if ty == "date" && path == ".metadata.creationTimestamp" {
                    has_age = true;
                }
                cols.push(Col {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    ty: ty.into(),
                    path: path.into(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                });
            }
        }
    }
    if !has_age {
        cols.push(col("Age", ".metadata.creationTimestamp", 0));
    }
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    for c in &cols {
        // Dates are sent as ages, the way the API server prints built-in kinds.
        let ty = if c.ty == "date" {
            "string"
        } else {
            c.ty.as_str()
        };
        defs.push(json!({"name": c.name, "type": ty, "format": "", "description": c.name, "priority": c.priority}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )];
            for (i, c) in cols.iter().enumerate() {
                if let Some((_, f)) = special.iter().find(|(j, _)| *j == i) {
                    cells.push(f(o));
                    continue;
                }
                let vals = jsonpath(o, &c.path);
                let cell = if c.ty == "date" || c.path == ".metadata.creationTimestamp" {
                    vals.first()
                        .and_then(Value::as_str)
                        .map(|s| json!(age(s)))
                        .unwrap_or(json!("<unknown>"))
                } else if matches!(c.ty.as_str(), "integer" | "number" | "boolean") {
                    vals.first().cloned().unwrap_or(Value::Null)
                } else {
                    text(&vals)
                };
                cells.push(cell);
            }
            json!({"cells": cells, "object": o})
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}});
        assert_eq!(
            jsonpath(&o, r#".status.conditions[?(@.type=="B")].status"#),
            vec![json!("False")]
        );
        assert_eq!(jsonpath(&o, ".status.conditions[0].type"), vec![json!("A")]);
        assert!(jsonpath(&o, ".nope").is_empty());
    }
}
