//! From YAML text to a JSON value plus a map from field paths to positions.
//!
//! serde-saphyr parses the YAML (with its limits against alias bombs and its located syntax
//! errors) into a generic tree whose every node carries its position. The tree becomes a plain
//! JSON value for the schema pass, and the positions become a [`SourceMap`] so that any later
//! problem, found by path, can point at its line and column.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Position, Report};

/// A YAML node with its position, as serde-saphyr reports it.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Node>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

/// Field path → position of the value (and of the key, for mapping entries).
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl SourceMap {
    /// Position of the value at `path`, or of its nearest ancestor that was written in the file
    /// (a defaulted field has no position of its own; its parent does).
    pub fn position(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// Position of the key that introduces `path`, falling back to the value's position.
    pub fn key_position(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied().or_else(|| self.position(path))
    }

    /// Fill a diagnostic's position from its path, unless it already has one.
    pub fn locate(&self, d: &mut Diagnostic) {
        if d.position.is_none() {
            d.position = self.position(&d.path);
        }
    }

    /// True if the user wrote a value at exactly this path (not defaulted).
    pub fn written(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → `` → None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn pos(s: &serde_saphyr::Location) -> Position {
    Position {
        line: u32::try_from(s.line()).unwrap_or(u32::MAX),
        column: u32::try_from(s.column()).unwrap_or(u32::MAX),
    }
}

/// Join a mapping key onto a path, quoting keys that are not plain identifiers so the path stays
/// unambiguous (labels such as `meshfleet.io/tier`).
pub(crate) fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

fn to_json(node: Spanned<Node>, path: &str, map: &mut SourceMap) -> Value {
    map.values.insert(path.to_owned(), pos(&node.referenced));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        Node::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), map))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut obj = serde_json::Map::new();
            for (k, v) in entries {
                let key = match k.value {
                    Node::Str(s) => s,
                    Node::Int(i) => i.to_string(),
                    Node::UInt(u) => u.to_string(),
                    Node::Bool(b) => b.to_string(),
                    Node::Float(f) => f.to_string(),
                    Node::Null => "null".to_owned(),
                    Node::Seq(_) | Node::Map(_) => "<complex key>".to_owned(),
                };
                let child = join_key(path, &key);
                map.keys.insert(child.clone(), pos(&k.referenced));
                let value = to_json(v, &child, map);
                obj.insert(key, value);
            }
            Value::Object(obj)
        }
    }
}

/// Parse YAML text into a JSON value and its source map. Empty input, syntax errors and more
/// than one document are reported as located diagnostics.
pub(crate) fn parse_tree(text: &str) -> Result<(Value, SourceMap), Report> {
    let fail = |d: Diagnostic| {
        let mut r = Report::default();
        r.push(d);
        Err(r)
    };
    let meaningful = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    if !meaningful {
        return fail(
            Diagnostic::error("", "the fleet file is empty")
                .with_hint("run `meshfleet init` to write a commented example fleet file")
                .at(Position { line: 1, column: 1 }),
        );
    }
    match serde_saphyr::from_str::<Spanned<Node>>(text) {
        Ok(tree) => {
            let mut map = SourceMap::default();
            let value = to_json(tree, "", &mut map);
            Ok((value, map))
        }
        Err(e) => {
            let position = e
                .location()
                .map_or(Position { line: 1, column: 1 }, |l| pos(&l));
            let raw = e.to_string();
            let multi = raw.contains("multiple documents") || raw.contains("more than one");
            let message = first_line(&raw);
            let hint = if multi {
                "a fleet file holds exactly one YAML document: remove the extra `---` sections"
            } else {
                "check indentation, quoting and the `key: value` form near this position"
            };
            fail(
                Diagnostic::error("", format!("the file is not valid YAML: {message}"))
                    .with_hint(hint)
                    .at(position),
            )
        }
    }
}

/// serde-saphyr's messages may carry a rendered snippet after the first line; the snippet is
/// ours to render, so keep only the sentence.
fn first_line(s: &str) -> String {
    let mut line = s.lines().next().unwrap_or(s).trim();
    // Drop the "error: line X column Y:" prefix and a trailing " at line X column Y": our own
    // location is printed beside the message.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        line = rest;
    }
    let line = line.split(" at line ").next().unwrap_or(line);
    line.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_walk_up_to_the_root() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn positions_follow_paths() {
        let (_, map) = parse_tree("a:\n  b:\n    - x\n    - y\n").unwrap();
        assert_eq!(
            map.position("a.b[1]"),
            Some(Position { line: 4, column: 7 })
        );
        assert_eq!(
            map.key_position("a.b"),
            Some(Position { line: 2, column: 3 })
        );
        assert_eq!(map.position("a.b[1].missing"), map.position("a.b[1]"));
    }
}
