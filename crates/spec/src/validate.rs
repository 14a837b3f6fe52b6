//! Validation in two passes, each reporting every problem it finds.
//!
//! 1. Structural: the parsed tree is checked against the JSON schema derived from the types in
//!    [`crate::model`] (unknown fields, wrong types, bad enum values, missing fields). Messages
//!    are written here from the schema, not taken from the validator, so they read the same as
//!    the semantic ones and can suggest the field or value the user probably meant.
//! 2. Semantic: the rules of DESIGN.md §2 on the typed fleet (names, CIDRs and their overlaps,
//!    mesh IDs, zones, replicas, versions, Pod Security, providers).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

use ipnet::IpNet;
use serde_json::Value;

use crate::diag::{Diagnostic, Report};
use crate::model::{API_VERSION, Fleet, KIND, Provider, PsaLevel, Routing};
use crate::source::{SourceMap, join_key};

/// A `MAJOR.MINOR.PATCH` version, with or without a leading `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parse `v1.35.4` or `1.19.5`; a pre-release or build suffix (`-rc.1`, `+meta`) is dropped.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let mut num = || -> Option<u32> {
            let part = it.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let v = Self {
            major: num()?,
            minor: num()?,
            patch: num()?,
        };
        if it.next().is_some() {
            return None;
        }
        Some(v)
    }

    /// `MAJOR.MINOR` as a pair, for support-matrix lookups.
    pub fn line(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version matrix this release supports.
pub struct SupportedVersions;

impl SupportedVersions {
    /// Talos minor lines meshfleet renders for (1.12–1.13 single-document, 1.14+ multi-document).
    pub const TALOS_MINORS: std::ops::RangeInclusive<u32> = 12..=15;
    /// Cilium minor lines meshfleet renders values for.
    pub const CILIUM_MINORS: std::ops::RangeInclusive<u32> = 18..=19;

    /// Kubernetes minors a Talos 1.x line supports: six minors ending at x + 23 (Talos support
    /// matrix: 1.11 → 1.29–1.34, 1.12 → 1.30–1.35, 1.13 → 1.31–1.36).
    pub fn kubernetes_for_talos(talos_minor: u32) -> std::ops::RangeInclusive<u32> {
        (talos_minor + 18)..=(talos_minor + 23)
    }
}

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

// ---------------------------------------------------------------------------------------------
// Semantic rules
// ---------------------------------------------------------------------------------------------

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parse a CIDR strictly: it must parse and have no host bits set. A problem is reported at
/// `path` with the corrected network or the missing prefix length as the hint. Shared with the
/// planner so a CIDR reads the same, and is refused the same way, everywhere.
pub fn parse_cidr(report: &mut Report, path: &str, text: &str) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            report.push(
                Diagnostic::error(path, format!("`{text}` has host bits set"))
                    .with_value(text)
                    .with_hint(format!("did you mean `{}`?", net.trunc())),
            );
            None
        }
        Err(_) => {
            let hint = if text.parse::<std::net::IpAddr>().is_ok() {
                format!("add a prefix length, e.g. `{text}/32`")
            } else {
                "write an IPv4 or IPv6 network in CIDR notation, e.g. `10.64.0.0/16`".to_owned()
            };
            report.push(
                Diagnostic::error(path, format!("`{text}` is not a CIDR"))
                    .with_value(text)
                    .with_hint(hint),
            );
            None
        }
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Directory names of the render layout that a cluster directory must not shadow.
const RESERVED_CLUSTER_NAMES: [&str; 2] = ["fleet", "prerequisites"];

const KINDS: [&str; 3] = ["pods", "services", "nodes"];

/// Apply every semantic rule. Paths are set; positions are filled by the caller.
pub(crate) fn semantic(fleet: &Fleet) -> Report {
    let mut r = Report::default();
    let spec = &fleet.spec;

    if !is_dns_label(&fleet.metadata.name, 63) {
        r.push(
            Diagnostic::error("metadata.name", format!("`{}` is not a DNS-1123 label", fleet.metadata.name))
                .with_value(&fleet.metadata.name)
                .with_hint("use at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"),
        );
    }
    check_labels(&mut r, "metadata.labels", &fleet.metadata.labels);
    check_versions(&mut r, fleet);

    // Pools.
    let mut pools: Vec<Option<IpNet>> = Vec::new();
    for kind in KINDS {
        let pool = match kind {
            "pods" => &spec.network.pods,
            "services" => &spec.network.services,
            _ => &spec.network.nodes,
        };
        let path = format!("spec.network.{kind}");
        let net = parse_cidr(&mut r, &format!("{path}.pool"), &pool.pool);
        if let Some(net) = net {
            let max = net.max_prefix_len();
            if pool.prefix_length < net.prefix_len() || pool.prefix_length > max {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!(
                            "prefix length `{}` does not fit pool `{net}`: it must be between {} and {max}",
                            pool.prefix_length,
                            net.prefix_len()
                        ),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint("each cluster gets one block of this size carved from the pool"),
                );
            } else if kind == "pods" && net.addr().is_ipv4() && pool.prefix_length > 24 {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!("pod blocks of /{} are smaller than one node's /24", pool.prefix_length),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint("Kubernetes gives every node a /24 from the cluster's pod CIDR: use 24 or less (16 is usual)"),
                );
            } else if kind == "services"
                && service_too_big(net.addr().is_ipv4(), pool.prefix_length)
            {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!(
                            "service blocks of /{} are larger than the API server accepts",
                            pool.prefix_length
                        ),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint(
                        "kube-apiserver accepts at most a /12 (IPv4) or /108 (IPv6) service range",
                    ),
                );
            }
        }
        pools.push(net);
    }
    for i in 0..3 {
        for j in (i + 1)..3 {
            if let (Some(a), Some(b)) = (pools[i], pools[j])
                && overlaps(&a, &b)
            {
                r.push(
                    Diagnostic::error(
                        format!("spec.network.{}.pool", KINDS[j]),
                        format!("the {} pool `{b}` overlaps the {} pool `{a}`", KINDS[j], KINDS[i]),
                    )
                    .with_value(b)
                    .with_hint("pod, service and node pools must be disjoint so no cluster's blocks can collide"),
                );
            }
        }
    }

    // Mesh.
    let max = spec.mesh.max_connected_clusters;
    if max != 255 && max != 511 {
        r.push(
            Diagnostic::error(
                "spec.mesh.maxConnectedClusters",
                format!("`{max}` is not a value Cilium accepts"),
            )
            .with_value(max)
            .with_hint("use `255` (the default) or `511`; Cilium accepts nothing else"),
        );
    }
    let meshed = if spec.mesh.enabled {
        spec.clusters.len()
    } else {
        0
    };
    if (max == 255 || max == 511) && meshed > usize::from(max) {
        r.push(
            Diagnostic::error(
                "spec.clusters",
                format!("{meshed} meshed clusters exceed `maxConnectedClusters: {max}`"),
            )
            .with_hint(if max == 255 {
                "set `spec.mesh.maxConnectedClusters: 511` (it halves the identities per cluster) or split the fleet"
            } else {
                "Cilium meshes at most 511 clusters: split the fleet"
            }),
        );
    }
    if spec.mesh.routing == Routing::Native && spec.clusters.len() > 1 {
        r.push(
            Diagnostic::warning(
                "spec.mesh.routing",
                "with `routing: native` the network between clusters must route every cluster's pod CIDR to its nodes, and meshfleet does not create those routes",
            )
            .with_hint("add the routes (GCP routes or alias IP ranges, AWS route tables, VPN route advertisements), or use `routing: tunnel`"),
        );
    }
    if spec.mesh.routing == Routing::Native && spec.mesh.tunnel_protocol != Default::default() {
        r.push(
            Diagnostic::warning(
                "spec.mesh.tunnelProtocol",
                "`tunnelProtocol` has no effect with `routing: native`",
            )
            .with_hint("remove it, or set `routing: tunnel`"),
        );
    }

    check_pod_security(&mut r, fleet);

    // Management.
    if spec.management.egress_cidrs.is_empty() && !spec.clusters.is_empty() {
        r.push(
            Diagnostic::warning(
                "spec.management.egressCIDRs",
                "no management egress CIDR: nothing opens Talos apid (tcp/50000) to the management cluster",
            )
            .with_hint("add the address the management cluster dials from, e.g. `egressCIDRs: [203.0.113.10/32]`; without it bootstrap hangs with an i/o timeout"),
        );
    }
    for (i, c) in spec.management.egress_cidrs.iter().enumerate() {
        let path = format!("spec.management.egressCIDRs[{i}]");
        if let Some(net) = parse_cidr(&mut r, &path, c)
            && net.prefix_len() == 0
        {
            r.push(
                Diagnostic::warning(
                    &path,
                    format!("`{c}` opens Talos apid (tcp/50000) to the whole internet"),
                )
                .with_value(c)
                .with_hint("narrow it to the management cluster's egress addresses"),
            );
        }
    }

    // Providers.
    if let Some(gcp) = &spec.providers.gcp {
        let p = &gcp.project;
        let ok = p.len() >= 6
            && p.len() <= 30
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && is_dns_label(p, 30);
        if !ok {
            r.push(
                Diagnostic::error(
                    "spec.providers.gcp.project",
                    format!("`{p}` is not a GCP project id"),
                )
                .with_value(p)
                .with_hint("6 to 30 lower-case letters, digits and `-`, starting with a letter"),
            );
        }
        if !(is_dns_label(&gcp.network, 63)
            && gcp.network.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            r.push(
                Diagnostic::error(
                    "spec.providers.gcp.network",
                    format!("`{}` is not a GCP network name", gcp.network),
                )
                .with_value(&gcp.network)
                .with_hint("up to 63 lower-case letters, digits and `-`, starting with a letter"),
            );
        }
        if let Some(b) = &gcp.image_bucket {
            let ok = (3..=63).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
                && b.starts_with(|c: char| c.is_ascii_alphanumeric())
                && b.ends_with(|c: char| c.is_ascii_alphanumeric())
                && !b.starts_with("goog");
            if !ok {
                r.push(
                    Diagnostic::error("spec.providers.gcp.imageBucket", format!("`{b}` is not a valid bucket name"))
                        .with_value(b)
                        .with_hint("3 to 63 lower-case letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, not starting with `goog`"),
                );
            }
        }
    }

    check_clusters(&mut r, fleet, &pools);
    r
}

fn service_too_big(v4: bool, prefix: u8) -> bool {
    if v4 { prefix < 12 } else { prefix < 108 }
}

fn check_versions(r: &mut Report, fleet: &Fleet) {
    let v = &fleet.spec.versions;
    let k8s = version_field(r, "spec.versions.kubernetes", &v.kubernetes, true);
    let talos = version_field(r, "spec.versions.talos", &v.talos, true);
    let cilium = version_field(r, "spec.versions.cilium", &v.cilium, false);
    if let Some(t) = talos {
        let lines = SupportedVersions::TALOS_MINORS;
        if t.major != 1 || !lines.contains(&t.minor) {
            r.push(
                Diagnostic::error(
                    "spec.versions.talos",
                    format!("Talos `v{t}` is not supported"),
                )
                .with_value(&v.talos)
                .with_hint(format!(
                    "use Talos v1.{} to v1.{} (v1.13 is the current stable line)",
                    lines.start(),
                    lines.end()
                )),
            );
        } else if let Some(k) = k8s {
            let range = SupportedVersions::kubernetes_for_talos(t.minor);
            if k.major != 1 || !range.contains(&k.minor) {
                r.push(
                    Diagnostic::error(
                        "spec.versions.kubernetes",
                        format!("Kubernetes `v{k}` is not supported by Talos `v{t}`"),
                    )
                    .with_value(&v.kubernetes)
                    .with_hint(format!(
                        "Talos v1.{} supports Kubernetes v1.{} to v1.{}",
                        t.minor,
                        range.start(),
                        range.end()
                    )),
                );
            }
        }
    }
    if let Some(c) = cilium {
        let lines = SupportedVersions::CILIUM_MINORS;
        if c.major != 1 || c.minor < *lines.start() {
            r.push(
                Diagnostic::error(
                    "spec.versions.cilium",
                    format!("Cilium `{c}` is not supported"),
                )
                .with_value(&v.cilium)
                .with_hint(format!(
                    "use Cilium 1.{} or 1.{}",
                    lines.start(),
                    lines.end()
                )),
            );
        } else if c.minor > *lines.end() {
            r.push(
                Diagnostic::warning(
                    "spec.versions.cilium",
                    format!("Cilium `{c}` is newer than the 1.{} line meshfleet's values are checked against", lines.end()),
                )
                .with_value(&v.cilium)
                .with_hint("render and review the values before rolling it out"),
            );
        }
    }
}

fn version_field(r: &mut Report, path: &str, text: &str, want_v: bool) -> Option<Version> {
    let Some(v) = Version::parse(text) else {
        let example = if want_v { "v1.35.4" } else { "1.19.5" };
        r.push(
            Diagnostic::error(path, format!("`{text}` is not a MAJOR.MINOR.PATCH version"))
                .with_value(text)
                .with_hint(format!("write a full version such as `{example}`")),
        );
        return None;
    };
    match (want_v, text.starts_with('v')) {
        (true, false) => {
            r.push(
                Diagnostic::error(path, format!("`{text}` lacks the leading `v`"))
                    .with_value(text)
                    .with_hint(format!("write `v{text}`")),
            );
            None
        }
        (false, true) => {
            r.push(
                Diagnostic::error(path, format!("`{text}` must not have a leading `v`"))
                    .with_value(text)
                    .with_hint(format!("write `{}` (the Helm chart version)", &text[1..])),
            );
            None
        }
        _ => Some(v),
    }
}

fn check_pod_security(r: &mut Report, fleet: &Fleet) {
    let ps = &fleet.spec.pod_security;
    for (i, ns) in ps.exemptions.namespaces.iter().enumerate() {
        if !is_dns_label(ns, 63) {
            r.push(
                Diagnostic::error(
                    format!("spec.podSecurity.exemptions.namespaces[{i}]"),
                    format!("`{ns}` is not a namespace name"),
                )
                .with_value(ns)
                .with_hint("namespace names are DNS-1123 labels"),
            );
        }
    }
    let exempt = ps.exemptions.namespaces.iter().any(|n| n == "kube-system");
    if ps.enforce != PsaLevel::Privileged && !exempt {
        r.push(
            Diagnostic::error(
                "spec.podSecurity.exemptions.namespaces",
                format!(
                    "enforcing `{}` without exempting `kube-system` blocks Cilium's privileged pods, so no node becomes Ready",
                    ps.enforce.as_str()
                ),
            )
            .with_hint("add `kube-system` to `spec.podSecurity.exemptions.namespaces`"),
        );
    }
    if ps.enforce == PsaLevel::Privileged {
        r.push(
            Diagnostic::warning(
                "spec.podSecurity.enforce",
                "Pod Security enforces nothing with `privileged`",
            )
            .with_hint(
                "`baseline` blocks known privilege escalations and runs almost every workload",
            ),
        );
    }
    let rank = |l: PsaLevel| match l {
        PsaLevel::Privileged => 0,
        PsaLevel::Baseline => 1,
        PsaLevel::Restricted => 2,
    };
    for (field, level) in [("audit", ps.audit), ("warn", ps.warn)] {
        if rank(level) < rank(ps.enforce) {
            r.push(
                Diagnostic::warning(
                    format!("spec.podSecurity.{field}"),
                    format!(
                        "`{field}: {}` is looser than `enforce: {}`, so it never reports anything",
                        level.as_str(),
                        ps.enforce.as_str()
                    ),
                )
                .with_hint(format!(
                    "set `{field}` to `{}` or stricter",
                    ps.enforce.as_str()
                )),
            );
        }
    }
}

fn check_labels(r: &mut Report, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = join_key(path, k);
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        let prefix_ok =
            prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(|l| is_dns_label(l, 63)));
        if !name_ok(name) || !prefix_ok {
            r.push(
                Diagnostic::error(&p, format!("`{k}` is not a valid label key"))
                    .with_value(k)
                    .with_hint("an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` and `.`"),
            );
        } else if prefix.is_some_and(|p| p == "meshfleet.io" || p.ends_with(".meshfleet.io")) {
            r.push(
                Diagnostic::error(&p, format!("`{k}` uses the reserved `meshfleet.io` prefix"))
                    .with_value(k)
                    .with_hint(
                        "meshfleet sets `meshfleet.io/*` labels itself: choose another prefix",
                    ),
            );
        }
        if !(v.is_empty() || name_ok(v)) {
            r.push(
                Diagnostic::error(&p, format!("`{v}` is not a valid label value"))
                    .with_value(v)
                    .with_hint("up to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"),
            );
        }
    }
}

fn zone_matches(provider: Provider, region: &str, zone: &str) -> bool {
    match provider {
        // europe-west1-b
        Provider::Gcp => zone
            .strip_prefix(region)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|z| z.len() == 1 && z.bytes().all(|b| b.is_ascii_lowercase())),
        // eu-west-1a, and local zones such as us-west-2-lax-1a
        Provider::Aws => zone.strip_prefix(region).is_some_and(|z| {
            (z.len() == 1 && z.bytes().all(|b| b.is_ascii_lowercase()))
                || (z.starts_with('-')
                    && z.len() > 2
                    && z.ends_with(|c: char| c.is_ascii_lowercase()))
        }),
    }
}

fn region_ok(provider: Provider, region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    match provider {
        // europe-west1, us-central1, northamerica-northeast2
        Provider::Gcp => {
            parts.len() == 2
                && parts[0].bytes().all(|b| b.is_ascii_lowercase())
                && !parts[0].is_empty()
                && parts[1].ends_with(|c: char| c.is_ascii_digit())
                && parts[1].starts_with(|c: char| c.is_ascii_lowercase())
                && parts[1]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
        // eu-west-1, us-gov-west-1, ap-southeast-2
        Provider::Aws => {
            (3..=4).contains(&parts.len())
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
                && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        }
    }
}

fn example_zone(provider: Provider, region: &str) -> String {
    match provider {
        Provider::Gcp => format!("{region}-b"),
        Provider::Aws => format!("{region}a"),
    }
}

fn check_clusters(r: &mut Report, fleet: &Fleet, pools: &[Option<IpNet>]) {
    let spec = &fleet.spec;
    if spec.clusters.is_empty() {
        r.push(
            Diagnostic::error("spec.clusters", "the fleet has no clusters").with_hint(
                "add at least one entry under `spec.clusters`; `meshfleet init` writes an example",
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<u16, usize> = HashMap::new();
    // Pinned CIDRs: (kind index, net, cluster index).
    let mut pins: Vec<(usize, IpNet, usize)> = Vec::new();
    let max = spec.mesh.max_connected_clusters;

    for (i, c) in spec.clusters.iter().enumerate() {
        let base = format!("spec.clusters[{i}]");
        // Name.
        let name_ok = c.name.len() <= 32
            && !c.name.is_empty()
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && c.name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.name.ends_with(|ch: char| ch.is_ascii_alphanumeric());
        if !name_ok {
            let fixed: String = c
                .name
                .to_lowercase()
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                .take(32)
                .collect::<String>()
                .trim_matches('-')
                .to_owned();
            let mut d = Diagnostic::error(
                format!("{base}.name"),
                format!("`{}` is not a valid cluster name", c.name),
            )
            .with_value(&c.name);
            d = if c.name.len() > 32 {
                d.with_hint(format!(
                    "Cilium limits cluster names to 32 characters (this one has {})",
                    c.name.len()
                ))
            } else if fixed.is_empty() {
                d.with_hint("use lower-case letters, digits and `-`, starting and ending with a letter or digit")
            } else {
                d.with_hint(format!(
                    "use lower-case letters, digits and `-`, e.g. `{fixed}`"
                ))
            };
            r.push(d);
        } else if c.name == "default" {
            r.push(
                Diagnostic::error(format!("{base}.name"), "`default` is reserved by Cilium")
                    .with_value(&c.name)
                    .with_hint("Cilium refuses to mesh a cluster named `default`: pick a name that says where it runs"),
            );
        } else if RESERVED_CLUSTER_NAMES.contains(&c.name.as_str()) {
            r.push(
                Diagnostic::error(
                    format!("{base}.name"),
                    format!("`{}` is reserved for meshfleet's render layout", c.name),
                )
                .with_value(&c.name)
                .with_hint("`render` writes fleet-wide files under `fleet/` and `prerequisites/`: pick another name"),
            );
        }
        if let Some(first) = names.insert(c.name.as_str(), i) {
            r.push(
                Diagnostic::error(
                    format!("{base}.name"),
                    format!("duplicate cluster name `{}`", c.name),
                )
                .with_value(&c.name)
                .with_hint(format!(
                    "`spec.clusters[{first}]` already uses it; cluster names are unique in a fleet"
                )),
            );
        }
        check_labels(r, &format!("{base}.labels"), &c.labels);

        // Provider configured.
        let configured = match c.provider {
            Provider::Gcp => spec.providers.gcp.is_some(),
            Provider::Aws => spec.providers.aws.is_some(),
        };
        if !configured {
            let example = match c.provider {
                Provider::Gcp => {
                    "`spec.providers.gcp: { project: my-project, network: meshfleet }`"
                }
                Provider::Aws => "`spec.providers.aws: {}`",
            };
            r.push(
                Diagnostic::error(
                    format!("{base}.provider"),
                    format!("provider `{}` is used but not configured", c.provider),
                )
                .with_value(c.provider)
                .with_hint(format!("add {example}")),
            );
        }

        // Region and zones.
        if !region_ok(c.provider, &c.region) {
            let example = match c.provider {
                Provider::Gcp => "`europe-west1`",
                Provider::Aws => "`eu-west-1`",
            };
            r.push(
                Diagnostic::error(
                    format!("{base}.region"),
                    format!("`{}` is not a {} region name", c.region, c.provider),
                )
                .with_value(&c.region)
                .with_hint(format!("{} regions look like {example}", c.provider)),
            );
        } else {
            if c.zones.is_empty() {
                r.push(
                    Diagnostic::error(format!("{base}.zones"), "a cluster needs at least one zone")
                        .with_hint(format!(
                            "e.g. `zones: [{}]`",
                            example_zone(c.provider, &c.region)
                        )),
                );
            }
            let mut seen = HashMap::new();
            for (z, zone) in c.zones.iter().enumerate() {
                let path = format!("{base}.zones[{z}]");
                if !zone_matches(c.provider, &c.region, zone) {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("zone `{zone}` is not in region `{}`", c.region),
                        )
                        .with_value(zone)
                        .with_hint(format!(
                            "zones of `{}` look like `{}`",
                            c.region,
                            example_zone(c.provider, &c.region)
                        )),
                    );
                }
                if let Some(prev) = seen.insert(zone, z) {
                    r.push(
                        Diagnostic::error(&path, format!("zone `{zone}` is listed twice"))
                            .with_value(zone)
                            .with_hint(format!("it is already `{base}.zones[{prev}]`")),
                    );
                }
            }
        }

        // Machines.
        let cp = &c.control_plane;
        if cp.replicas == 0 || cp.replicas % 2 == 0 {
            let up = cp.replicas + 1;
            r.push(
                Diagnostic::error(
                    format!("{base}.controlPlane.replicas"),
                    format!("control-plane replicas must be odd, got `{}`", cp.replicas),
                )
                .with_value(cp.replicas)
                .with_hint(format!(
                    "etcd needs a majority: use {} (an even count adds no fault tolerance)",
                    if cp.replicas == 0 { 1 } else { up }
                )),
            );
        } else if cp.replicas == 1 {
            r.push(
                Diagnostic::warning(
                    format!("{base}.controlPlane.replicas"),
                    "one control-plane node: losing it loses the cluster's etcd",
                )
                .with_hint("use 3 for production"),
            );
        }
        machine_type(
            r,
            &format!("{base}.controlPlane"),
            &cp.machine_type,
            cp.disk_gib,
        );
        let mut pool_names = HashMap::new();
        for (p, pool) in c.worker_pools.iter().enumerate() {
            let pbase = format!("{base}.workerPools[{p}]");
            if !is_dns_label(&pool.name, 63) {
                r.push(
                    Diagnostic::error(
                        format!("{pbase}.name"),
                        format!("`{}` is not a valid pool name", pool.name),
                    )
                    .with_value(&pool.name)
                    .with_hint(
                        "pool names are DNS-1123 labels: lower-case letters, digits and `-`",
                    ),
                );
            }
            if let Some(prev) = pool_names.insert(pool.name.as_str(), p) {
                r.push(
                    Diagnostic::error(
                        format!("{pbase}.name"),
                        format!("duplicate pool name `{}`", pool.name),
                    )
                    .with_value(&pool.name)
                    .with_hint(format!("`{base}.workerPools[{prev}]` already uses it")),
                );
            }
            machine_type(r, &pbase, &pool.machine_type, pool.disk_gib);
        }

        // Mesh ID pin.
        if let Some(id) = c.mesh_id {
            if id == 0 || id > max {
                r.push(
                    Diagnostic::error(
                        format!("{base}.meshId"),
                        format!("mesh ID `{id}` is outside 1..={max}"),
                    )
                    .with_value(id)
                    .with_hint(format!("Cilium cluster IDs run from 1 to `maxConnectedClusters` ({max}); remove the pin to let the planner choose")),
                );
            } else if let Some(first) = ids.insert(id, i) {
                r.push(
                    Diagnostic::error(format!("{base}.meshId"), format!("mesh ID `{id}` is also pinned by `spec.clusters[{first}]`"))
                        .with_value(id)
                        .with_hint("Cilium cluster IDs must be unique across the mesh; remove one pin to let the planner choose"),
                );
            }
        }

        // CIDR pins.
        if let Some(net) = &c.network {
            let mut mine: Vec<(usize, IpNet)> = Vec::new();
            for (k, text) in [&net.pods, &net.services, &net.nodes]
                .into_iter()
                .enumerate()
            {
                let Some(text) = text else { continue };
                let path = format!("{base}.network.{}", KINDS[k]);
                let Some(cidr) = parse_cidr(r, &path, text) else {
                    continue;
                };
                // A pinned block may sit outside its own pool, but never inside another kind's
                // pool: the planner would hand that space to another cluster.
                for (o, pool) in pools.iter().enumerate() {
                    if o != k
                        && let Some(pool) = pool
                        && overlaps(&cidr, pool)
                    {
                        r.push(
                            Diagnostic::error(
                                &path,
                                format!(
                                    "pinned {} CIDR `{cidr}` overlaps the {} pool `{pool}`",
                                    KINDS[k], KINDS[o]
                                ),
                            )
                            .with_value(cidr)
                            .with_hint(format!("pick a {} block outside `{pool}`", KINDS[k])),
                        );
                    }
                }
                if k == 0 && cidr.addr().is_ipv4() && cidr.prefix_len() > 24 {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("pod CIDR `{cidr}` is smaller than one node's /24"),
                        )
                        .with_value(cidr)
                        .with_hint("use a /24 or larger (a /16 is usual)"),
                    );
                }
                if k == 1 && service_too_big(cidr.addr().is_ipv4(), cidr.prefix_len()) {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("service CIDR `{cidr}` is larger than the API server accepts"),
                        )
                        .with_value(cidr)
                        .with_hint("use at most a /12 (IPv4) or /108 (IPv6)"),
                    );
                }
                for (ok, other) in &mine {
                    if overlaps(&cidr, other) {
                        r.push(
                            Diagnostic::error(
                                &path,
                                format!(
                                    "{} CIDR `{cidr}` overlaps this cluster's {} CIDR `{other}`",
                                    KINDS[k], KINDS[*ok]
                                ),
                            )
                            .with_value(cidr)
                            .with_hint("pods, services and nodes of a cluster must not overlap"),
                        );
                    }
                }
                mine.push((k, cidr));
                pins.push((k, cidr, i));
            }
        }
    }

    // Fleet-wide pin overlaps: pods with pods, nodes with nodes, pods with nodes.
    for (a_idx, (ka, a, ca)) in pins.iter().enumerate() {
        for (kb, b, cb) in &pins[..a_idx] {
            if ca == cb || !overlaps(a, b) {
                continue;
            }
            let clash = matches!((*ka, *kb), (0, 0) | (2, 2) | (0, 2) | (2, 0));
            if clash {
                let other = &spec.clusters[*cb].name;
                r.push(
                    Diagnostic::error(
                        format!("spec.clusters[{ca}].network.{}", KINDS[*ka]),
                        format!("{} CIDR `{a}` overlaps the {} CIDR `{b}` of cluster `{other}`", KINDS[*ka], KINDS[*kb]),
                    )
                    .with_value(a)
                    .with_hint(if *ka == 0 && *kb == 0 {
                        "pod CIDRs must be disjoint across a mesh, or Cilium routes pods to the wrong cluster; remove the pin to let the planner choose"
                    } else {
                        "node subnets and pod CIDRs must be disjoint across the fleet; remove the pin to let the planner choose"
                    }),
                );
            }
        }
    }
}

fn machine_type(r: &mut Report, base: &str, machine_type: &str, disk: u32) {
    if machine_type.trim().is_empty() {
        r.push(
            Diagnostic::error(format!("{base}.machineType"), "the machine type is empty")
                .with_hint("e.g. `n2-standard-2` on GCP or `m6i.large` on AWS"),
        );
    }
    if disk < 10 {
        r.push(
            Diagnostic::error(
                format!("{base}.diskGiB"),
                format!("a `{disk}` GiB disk is too small for Talos"),
            )
            .with_value(disk)
            .with_hint("Talos needs at least 10 GiB; 50 is a good default"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("v1.35.4").map(|v| v.line()), Some((1, 35)));
        assert_eq!(Version::parse("1.19.5-rc.1").map(|v| v.patch), Some(5));
        for bad in ["1.19", "v1..2", "v1.2.3.4", "x1.2.3", "1.2.+3", ""] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn suggestions_catch_case_separators_and_typos() {
        let known = vec![
            "workerPools".to_owned(),
            "zones".to_owned(),
            "region".to_owned(),
        ];
        assert_eq!(
            suggest("worker_pools", &known).as_deref(),
            Some("workerPools")
        );
        assert_eq!(
            suggest("workerPool", &known).as_deref(),
            Some("workerPools")
        );
        assert_eq!(suggest("zone", &known).as_deref(), Some("zones"));
        assert_eq!(suggest("regoin", &known).as_deref(), Some("region"));
        assert_eq!(suggest("banana", &known), None);
    }

    #[test]
    fn zones_belong_to_regions() {
        assert!(zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west1-b"
        ));
        assert!(!zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west4-b"
        ));
        assert!(!zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west1b"
        ));
        assert!(zone_matches(Provider::Aws, "eu-west-1", "eu-west-1a"));
        assert!(zone_matches(Provider::Aws, "us-west-2", "us-west-2-lax-1a"));
        assert!(!zone_matches(Provider::Aws, "eu-west-1", "eu-west-2a"));
    }

    #[test]
    fn kubernetes_range_follows_talos_line() {
        assert_eq!(SupportedVersions::kubernetes_for_talos(12), 30..=35);
        assert_eq!(SupportedVersions::kubernetes_for_talos(13), 31..=36);
    }
}
