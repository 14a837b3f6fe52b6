//! Reading what controllers report: conditions and phases, from objects known only as JSON.

use serde::Serialize;
use serde_json::Value;

/// One condition of an object's status (Kubernetes `metav1.Condition` shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Condition type, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    /// True when the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// The conditions in `status.conditions` (Cluster API v1beta2 and most kinds), falling back to
/// the deprecated v1beta1 list.
pub fn conditions(obj: &Value) -> Vec<Condition> {
    let list = obj
        .pointer("/status/conditions")
        .or_else(|| obj.pointer("/status/deprecated/v1beta1/conditions"))
        .and_then(Value::as_array);
    let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
    list.map(|l| {
        l.iter()
            .filter_map(|c| {
                Some(Condition {
                    type_: s(c, "type")?,
                    status: s(c, "status").unwrap_or_else(|| "Unknown".to_string()),
                    reason: s(c, "reason").filter(|r| !r.is_empty()),
                    message: s(c, "message").filter(|m| !m.is_empty()),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The condition of this type, if reported.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// `status.phase`, if reported.
pub fn phase(obj: &Value) -> Option<String> {
    obj.pointer("/status/phase")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The condition that best explains why an object is not ready: the first non-true condition
/// that carries a message, preferring specific conditions over the summaries (`Ready`,
/// `Available`) that only repeat them.
pub fn blocking(conds: &[Condition]) -> Option<&Condition> {
    let summary = |c: &&Condition| matches!(c.type_.as_str(), "Ready" | "Available");
    let bad = |c: &&Condition| {
        !c.is_true() && !c.type_.ends_with("Deleting") && !c.type_.starts_with("Paused")
    };
    conds
        .iter()
        .filter(bad)
        .find(|c| !summary(c) && c.message.is_some())
        .or_else(|| conds.iter().filter(bad).find(|c| c.message.is_some()))
        .or_else(|| conds.iter().find(|c| bad(c) && summary(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_conditions_and_finds_the_blocking_one() {
        let v = serde_json::json!({"status": {"phase": "Provisioning", "conditions": [
            {"type": "Available", "status": "False", "reason": "NotAvailable", "message": "control plane not available"},
            {"type": "InfrastructureReady", "status": "True"},
            {"type": "ControlPlaneInitialized", "status": "False", "reason": "Bootstrapping",
             "message": "waiting for etcd: dial tcp 10.0.0.2:50000: i/o timeout"}]}});
        let c = conditions(&v);
        assert_eq!(c.len(), 3);
        assert_eq!(phase(&v).as_deref(), Some("Provisioning"));
        let b = blocking(&c).unwrap();
        assert_eq!(b.type_, "ControlPlaneInitialized");
        assert!(condition(&c, "InfrastructureReady").unwrap().is_true());
        assert!(blocking(&conditions(&serde_json::json!({}))).is_none());
    }
}
