//! Metadata shared by every object: names, namespace, the labels selectors and `status` use,
//! and the reference shapes of the Cluster API contracts.

use std::collections::BTreeMap;

use meshfleet_spec::Fleet;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Ctx;

/// Label naming the fleet, on every object meshfleet renders.
pub const FLEET_LABEL: &str = "meshfleet.io/fleet";
/// Label naming the workload cluster, on every per-cluster object (and its HelmChartProxy).
pub const CLUSTER_LABEL: &str = "meshfleet.io/cluster";
/// Label naming the worker pool, on the machines of every MachineDeployment of that pool (one
/// per zone); the pool's MachineHealthCheck selects by it.
pub const POOL_LABEL: &str = "meshfleet.io/pool";

/// Kubernetes object metadata, as much as meshfleet sets.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A namespaced object with a spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: S,
}

/// A Cluster API v1beta2 contract reference (group, kind, name; same namespace).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractRef {
    pub api_group: &'static str,
    pub kind: &'static str,
    pub name: String,
}

/// An object reference with a full `apiVersion` (what the Talos control plane provider's
/// `infrastructureTemplate` still uses).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
}

/// Fleet-level labels: the fleet's own labels, then `meshfleet.io/fleet` (which wins).
pub fn fleet_labels(fleet: &Fleet) -> BTreeMap<String, String> {
    let mut l = fleet.metadata.labels.clone();
    l.insert(FLEET_LABEL.to_owned(), fleet.metadata.name.clone());
    l
}

/// Labels of every per-cluster object.
pub fn cluster_labels(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let mut l = fleet_labels(ctx.fleet);
    l.insert(CLUSTER_LABEL.to_owned(), ctx.cluster.name.clone());
    l
}

/// Metadata of a per-cluster object.
pub fn cluster_meta(ctx: &Ctx<'_>, name: impl Into<String>) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: Some(ctx.namespace().to_owned()),
        labels: cluster_labels(ctx),
    }
}

/// The fleet's management namespace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
}

/// The Namespace every object of the fleet lives in (named after the fleet).
pub fn namespace(fleet: &Fleet) -> Namespace {
    Namespace {
        api_version: crate::api::CORE_V1,
        kind: crate::api::NAMESPACE,
        metadata: ObjectMeta {
            name: fleet.metadata.name.clone(),
            namespace: None,
            labels: fleet_labels(fleet),
        },
    }
}

/// `base-<8 hex>` from a digest of `spec`. Machine templates are immutable once machines use
/// them (the providers' webhooks reject spec changes), so a changed template gets a new name
/// and the objects referencing it roll their machines over to it. Hashing the typed spec (not a
/// `serde_json::Value`) keeps the name independent of map-ordering features.
pub fn content_name<S: Serialize>(base: &str, spec: &S) -> String {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut name = String::with_capacity(base.len() + 9);
    name.push_str(base);
    name.push('-');
    for b in &digest[..4] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}
