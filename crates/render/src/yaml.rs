//! Serialisation helpers: typed object → JSON value (for `up`) and → YAML text (for files).

use serde::Serialize;
use serde_json::Value;

use crate::RenderError;

fn err(what: &str, e: impl std::fmt::Display) -> RenderError {
    RenderError::Serialize {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// A typed object as a JSON value.
pub fn to_value<T: Serialize>(t: &T, what: &str) -> Result<Value, RenderError> {
    serde_json::to_value(t).map_err(|e| err(what, e))
}

/// One YAML document (no leading `---`).
pub fn to_yaml<T: Serialize>(t: &T, what: &str) -> Result<String, RenderError> {
    let mut s = serde_saphyr::to_string(t).map_err(|e| err(what, e))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// An object both as a JSON value (for `up`) and as YAML text serialised from its typed form,
/// so the files keep the struct's field order whatever `serde_json` features the build has.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub value: Value,
    pub yaml: String,
}

/// Serialise a typed object both ways.
pub fn emit<T: Serialize>(t: &T, what: &str) -> Result<Emitted, RenderError> {
    emit_as(t, what, true)
}

/// Serialise a typed object as YAML, and as a JSON value only when `value` is true (otherwise
/// the value is `Null`): [`crate::render_files`] needs only the text, and the JSON value —
/// a tree of maps — is most of a large render's memory.
pub fn emit_as<T: Serialize>(t: &T, what: &str, value: bool) -> Result<Emitted, RenderError> {
    Ok(Emitted {
        value: if value {
            to_value(t, what)?
        } else {
            Value::Null
        },
        yaml: to_yaml(t, what)?,
    })
}

/// Documents joined into one multi-document YAML file.
pub fn join_docs<'a>(docs: impl IntoIterator<Item = &'a Emitted>) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&d.yaml);
    }
    out
}
