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
    Ok(Emitted {
        value: to_value(t, what)?,
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
