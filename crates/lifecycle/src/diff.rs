//! `diff`: what `up` would change on the management cluster, before it does.
//!
//! For every object `up` would apply, the live object is read and compared field by field on
//! the fields meshfleet sets — what its server-side apply owns. Fields only the live object has
//! (defaults filled in by the API server or webhooks, status, other managers' fields) are not
//! meshfleet's and are ignored; lists are compared whole, as meshfleet's apply owns them whole.
//! A cluster the management cluster holds for this fleet but the fleet file no longer names is
//! `delete`. Each update also says what it will cause (a rolling replacement, a Cilium upgrade,
//! a mesh change), so a reviewer knows the blast radius.

use std::collections::BTreeMap;

use meshfleet_kube::ObjectRef;
use meshfleet_plan::Plan;
use meshfleet_render::{PeerEndpoint, Rendered, api};
use meshfleet_spec::Fleet;
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;
use crate::{Error, objects};

/// What happens to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing of it exists yet.
    Create,
    /// Some of its objects differ.
    Update,
    /// It exists for this fleet but the fleet file no longer names it.
    Delete,
    /// It is as the fleet file says.
    Unchanged,
}

/// One field that changes (or one object created or deleted, with `field` empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Dotted path of the field (`spec.replicas`), empty for a whole object.
    pub field: String,
    /// The live value (`null` when absent).
    pub from: Value,
    /// The value `up` would set (`null` when the object goes).
    pub to: Value,
}

/// One cluster's differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDiff {
    /// Cluster name.
    pub name: String,
    /// What happens to it.
    pub action: Action,
    /// Each changed field.
    pub changes: Vec<Change>,
    /// What the changes will cause, for people.
    pub effects: Vec<String>,
    /// When `up` rolls this cluster (it replaces machines or upgrades Cilium): its wave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSlot>,
}

/// Where a rolled cluster goes in the rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutSlot {
    /// 1-based position of its wave among the waves that roll something.
    pub wave: usize,
    /// How many waves roll something.
    pub waves: usize,
    /// The wave's selector, for people.
    pub selector: String,
    /// 1-based position of the cluster inside its wave (file order).
    pub position: usize,
    /// Clusters rolled at once.
    pub max_parallel: u32,
}

/// The whole fleet's differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetDiff {
    /// Clusters in fleet-file order, then those to delete.
    pub clusters: Vec<ClusterDiff>,
}

impl FleetDiff {
    /// Does anything change?
    pub fn changed(&self) -> bool {
        self.clusters.iter().any(|c| c.action != Action::Unchanged)
    }
}

/// Compare what `up` would apply with what the management cluster holds.
pub async fn run<A: Api>(
    mgmt: &A,
    fleet: &Fleet,
    plan: &Plan,
    rendered: &Rendered,
) -> Result<FleetDiff, Error> {
    let ns = fleet.metadata.name.as_str();
    // Cilium's values as `up` would write them: with the peers' endpoints already recorded
    // live, so a connected mesh does not show as a change.
    let mut known: BTreeMap<String, PeerEndpoint> = BTreeMap::new();
    for c in &rendered.clusters {
        if let Ok(r) = ObjectRef::of(&c.cilium.proxy)
            && let Some(live) = get_served(mgmt, &r).await?
        {
            for (peer, e) in objects::proxy_peer_endpoints(&live) {
                known.entry(peer).or_insert(e);
            }
        }
    }
    // Which clusters `up` would roll, in which wave, and whether their versions may move.
    let live = crate::rollout::read(mgmt, ns, fleet, rendered).await?;
    let order = crate::rollout::order(fleet, &live);
    let refused = crate::rollout::check_paths(fleet, &live);
    let slot = |name: &str| {
        order.waves.iter().enumerate().find_map(|(i, w)| {
            let pos = w.clusters.iter().position(|c| c == name)?;
            Some(RolloutSlot {
                wave: i + 1,
                waves: order.waves.len(),
                selector: crate::rollout::describe_wave(fleet, w.index),
                position: pos + 1,
                max_parallel: fleet.spec.rollout.max_parallel,
            })
        })
    };
    let mut out = Vec::new();
    for c in &rendered.clusters {
        let mut desired: Vec<Value> = c.objects.clone();
        desired.extend(c.addons.iter().map(|a| a.proxy.clone()));
        if !c.cilium.proxy.is_null() {
            let peers: BTreeMap<String, PeerEndpoint> = plan
                .mesh_peers
                .get(&c.name)
                .into_iter()
                .flatten()
                .filter(|_| fleet.spec.mesh.enabled)
                .filter_map(|p| Some((p.clone(), known.get(p)?.clone())))
                .collect();
            desired.push(
                meshfleet_render::cilium_proxy_with_peers(fleet, plan, &c.name, &peers)
                    .map_err(|e| Error::Other(e.to_string()))?,
            );
        }
        let mut changes = Vec::new();
        let mut absent = 0;
        for d in &desired {
            let r = ObjectRef::of(d)?;
            match get_served(mgmt, &r).await? {
                None => {
                    absent += 1;
                    changes.push(Change {
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                        field: String::new(),
                        from: Value::Null,
                        to: Value::String("created".into()),
                    });
                }
                Some(live) => compare(&r, d, &live, &mut changes),
            }
        }
        let action = if absent == desired.len() {
            Action::Create
        } else if changes.is_empty() {
            Action::Unchanged
        } else {
            Action::Update
        };
        let mut effects = if action == Action::Update {
            effects(&changes, fleet, plan, &c.name)
        } else {
            Vec::new()
        };
        let rollout = slot(&c.name);
        if let Some(r) = &rollout {
            effects.push(format!(
                "rolls in wave {}/{} ({}), position {} of its wave, at most {} cluster(s) at a time, behind a health gate",
                r.wave, r.waves, r.selector, r.position, r.max_parallel
            ));
        }
        for d in refused
            .iter()
            .filter(|d| d.message.contains(&format!("`{}`", c.name)))
        {
            effects.push(format!("refused by `up`: {d}"));
        }
        out.push(ClusterDiff {
            name: c.name.clone(),
            action,
            changes,
            effects,
            rollout,
        });
    }
    // Clusters held for this fleet that the file no longer names: `up` leaves them, so they
    // are what `up --prune` or `down --cluster` would delete.
    let gone = crate::up::not_in_file(mgmt, ns, rendered).await?;
    for name in gone {
        out.push(ClusterDiff {
            changes: vec![Change {
                kind: api::CLUSTER.into(),
                name: name.clone(),
                field: String::new(),
                from: Value::String("exists".into()),
                to: Value::Null,
            }],
            effects: vec![if fleet.spec.mesh.enabled {
                format!(
                    "its machines and infrastructure are deleted; its {} mesh peers lose it",
                    rendered.clusters.len()
                )
            } else {
                "its machines and infrastructure are deleted".to_string()
            }],
            name,
            action: Action::Delete,
            rollout: None,
        });
    }
    Ok(FleetDiff { clusters: out })
}

/// `get`, with a kind the management cluster does not serve read as absent.
async fn get_served<A: Api>(mgmt: &A, r: &ObjectRef) -> Result<Option<Value>, Error> {
    match mgmt.get(r).await {
        Ok(v) => Ok(v),
        Err(meshfleet_kube::KubeError::NotServed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every field `desired` sets that `live` holds differently. Metadata other than labels and
/// annotations is the server's; `status` is the controllers'.
pub fn compare(r: &ObjectRef, desired: &Value, live: &Value, out: &mut Vec<Change>) {
    let Some(d) = desired.as_object() else { return };
    for (k, v) in d {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for m in ["labels", "annotations"] {
                    if let Some(dv) = v.get(m) {
                        walk(
                            r,
                            &format!("metadata.{m}"),
                            dv,
                            live.pointer(&format!("/metadata/{m}")),
                            out,
                        );
                    }
                }
            }
            _ => walk(r, k, v, live.get(k), out),
        }
    }
}

fn walk(r: &ObjectRef, path: &str, desired: &Value, live: Option<&Value>, out: &mut Vec<Change>) {
    match (desired, live) {
        (Value::Object(d), Some(Value::Object(l))) => {
            for (k, v) in d {
                walk(r, &format!("{path}.{k}"), v, l.get(k), out);
            }
        }
        (Value::Object(d), None | Some(Value::Null)) if d.is_empty() => {}
        _ => {
            let same = match live {
                Some(l) => subset(desired, l),
                None => desired.is_null(),
            };
            if !same {
                out.push(Change {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    field: path.to_string(),
                    from: live.cloned().unwrap_or(Value::Null),
                    to: desired.clone(),
                });
            }
        }
    }
}

/// Does `live` hold everything `desired` sets? Objects may carry more keys (defaults the API
/// server filled in, such as a firewall rule's `priority` inside a list); lists must have the
/// same length, element by element; scalars must be equal.
fn subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => subset(v, lv),
            None => v.is_null(),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| subset(a, b))
        }
        _ => desired == live,
    }
}

/// What a set of changes to one cluster will cause, from the kinds and fields that change.
fn effects(changes: &[Change], fleet: &Fleet, plan: &Plan, cluster: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for c in changes {
        let replaces_machines = c.field.starts_with("spec.template")
            || c.field == "spec.version"
            || c.field.starts_with("spec.controlPlaneConfig")
            || c.field.starts_with("spec.infrastructureTemplate");
        match c.kind.as_str() {
            api::TALOS_CONTROL_PLANE if c.field == "spec.replicas" => push(format!(
                "the control plane scales from {} to {} machines",
                c.from, c.to
            )),
            api::TALOS_CONTROL_PLANE if replaces_machines => {
                push("a rolling replacement of the control-plane machines".into())
            }
            api::MACHINE_DEPLOYMENT if c.field == "spec.replicas" => push(format!(
                "MachineDeployment `{}` scales from {} to {} machines",
                c.name, c.from, c.to
            )),
            api::MACHINE_DEPLOYMENT if replaces_machines => push(format!(
                "a rolling replacement of the machines of MachineDeployment `{}`",
                c.name
            )),
            api::GCP_MACHINE_TEMPLATE | api::AWS_MACHINE_TEMPLATE | api::TALOS_CONFIG_TEMPLATE
                if c.field.starts_with("spec") =>
            {
                push(format!(
                    "{} `{}` changes in place: machines made from it keep the old settings until replaced",
                    c.kind, c.name
                ))
            }
            api::HELM_CHART_PROXY if c.field == "spec.version" => push(format!(
                "a Helm upgrade of `{}` from {} to {}",
                c.name, c.from, c.to
            )),
            api::HELM_CHART_PROXY
                if c.name == meshfleet_render::proxy_name(cluster)
                    && c.field == "spec.valuesTemplate" =>
            {
                let peers = if fleet.spec.mesh.enabled {
                    plan.mesh_peers.get(cluster).map_or(0, Vec::len)
                } else {
                    0
                };
                push(format!(
                    "Cilium's values change (a Helm upgrade; the mesh of {peers} peers is reconfigured)"
                ))
            }
            _ => {}
        }
    }
    out
}
