//! `status`: the fleet at a glance, read from the management cluster and from each workload
//! cluster (nodes, and Cilium's own view of the mesh).

use std::collections::BTreeMap;

use meshfleet_kube::status as kstatus;
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;
use crate::up::{cluster_ready, control_plane_ref};
use crate::{mesh, objects, workload};

/// What status needs to know about one cluster of the fleet file.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Name.
    pub name: String,
    /// `gcp` or `aws`.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Machines the fleet file asks for.
    pub nodes: u64,
    /// Its mesh peers.
    pub peers: Vec<String>,
    /// In the management cluster with the fleet's label, but not in the fleet file.
    pub orphan: bool,
    /// The versions the fleet file asks for (none for an orphan).
    pub versions: Option<meshfleet_spec::Versions>,
}

/// One component's versions: what the cluster runs and what the file asks for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionPair {
    /// Versions in use now (several while a rollout replaces machines).
    pub current: Vec<String>,
    /// The fleet file's version.
    pub desired: String,
}

impl VersionPair {
    /// Every part of the cluster runs the desired version (or nothing is known yet).
    pub fn settled(&self) -> bool {
        self.current.is_empty() || self.current.iter().all(|c| *c == self.desired)
    }
}

/// Current and desired versions of a cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Versions {
    /// Kubernetes, from the Machines' `spec.version`.
    pub kubernetes: VersionPair,
    /// Talos, from the Machines' TalosConfigs.
    pub talos: VersionPair,
    /// Cilium, from the HelmChartProxy's chart version.
    pub cilium: VersionPair,
}

impl Versions {
    /// A rollout has not finished (some part runs another version than the file's).
    pub fn rolling(&self) -> bool {
        !(self.kubernetes.settled() && self.talos.settled() && self.cilium.settled())
    }
}

/// A condition with the object that reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjCondition {
    /// `Cluster` or the control plane kind.
    pub object: String,
    /// The condition.
    #[serde(flatten)]
    pub condition: kstatus::Condition,
}

/// Node counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Nodes {
    /// Ready nodes.
    pub ready: u64,
    /// Nodes (existing, or asked for when more).
    pub total: u64,
}

/// Mesh state, from the cluster's Cilium.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshStatus {
    /// Connected peers.
    pub connected: Vec<String>,
    /// Problems.
    pub problems: Vec<String>,
}

/// One cluster at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Name.
    pub name: String,
    /// Provider.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Cluster API says available.
    pub ready: bool,
    /// Cluster API phase (`Absent` when there is no Cluster object).
    pub phase: String,
    /// Cluster and control plane conditions.
    pub conditions: Vec<ObjCondition>,
    /// Nodes.
    pub nodes: Nodes,
    /// Mesh.
    pub mesh: MeshStatus,
    /// Why it is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Current and desired versions (absent for a cluster not in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Versions>,
}

impl ClusterStatus {
    /// Has something to say.
    pub fn troubled(&self) -> bool {
        !self.ready || self.problem.is_some() || !self.mesh.problems.is_empty()
    }
}

/// The fleet.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// Fleet name.
    pub fleet: String,
    /// Clusters, troubled first, then by name.
    pub clusters: Vec<ClusterStatus>,
}

/// Collect the status of every expected cluster, concurrently.
pub async fn collect<A: Api>(
    mgmt: &A,
    fleet: &str,
    expected: &[Expected],
    mesh_on: bool,
) -> FleetStatus {
    let mut expected = expected.to_vec();
    // Clusters of this fleet that the file no longer names are shown too, so they are not
    // forgotten (and running) unnoticed.
    let selector = format!("{}={fleet}", objects::FLEET_LABEL);
    if let Ok(live) = mgmt
        .list(objects::CAPI_VERSION, "Cluster", Some(fleet), &selector)
        .await
    {
        for c in live {
            if let Some(name) = c.pointer("/metadata/name").and_then(Value::as_str)
                && !expected.iter().any(|e| e.name == name)
            {
                expected.push(Expected {
                    name: name.to_string(),
                    provider: "-".into(),
                    region: "-".into(),
                    nodes: 0,
                    peers: Vec::new(),
                    orphan: true,
                    versions: None,
                });
            }
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in expected.iter().enumerate() {
        let (mgmt, fleet, e) = (mgmt.clone(), fleet.to_string(), e.clone());
        set.spawn(async move { (i, one(&mgmt, &fleet, &e, mesh_on).await) });
    }
    let mut out: Vec<(usize, ClusterStatus)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, s)| (!s.troubled(), *i));
    FleetStatus {
        fleet: fleet.to_string(),
        clusters: out.into_iter().map(|(_, s)| s).collect(),
    }
}

async fn one<A: Api>(mgmt: &A, fleet: &str, e: &Expected, mesh_on: bool) -> ClusterStatus {
    let mut st = one_inner(mgmt, fleet, e, mesh_on).await;
    if e.orphan {
        st.problem = Some(
            "not in the fleet file any more\n  hint: `meshfleet down` deletes it (or put it back in the file)".into(),
        );
    }
    st
}

async fn one_inner<A: Api>(mgmt: &A, fleet: &str, e: &Expected, mesh_on: bool) -> ClusterStatus {
    let mut st = ClusterStatus {
        name: e.name.clone(),
        provider: e.provider.clone(),
        region: e.region.clone(),
        ready: false,
        phase: "Absent".into(),
        conditions: Vec::new(),
        nodes: Nodes {
            ready: 0,
            total: e.nodes,
        },
        mesh: MeshStatus::default(),
        problem: None,
        versions: None,
    };
    let cluster = match mgmt.get(&objects::cluster_ref(fleet, &e.name)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            st.problem = Some("not created\n  hint: run `meshfleet up`".into());
            return st;
        }
        Err(err) => {
            st.phase = "Unknown".into();
            st.problem = Some(format!("cannot read the Cluster: {err}"));
            return st;
        }
    };
    let deleting = cluster.pointer("/metadata/deletionTimestamp").is_some();
    st.phase = if deleting {
        "Deleting".into()
    } else {
        kstatus::phase(&cluster).unwrap_or_else(|| "Pending".into())
    };
    st.ready = !deleting && cluster_ready(&cluster);
    let mut conds: Vec<ObjCondition> = Vec::new();
    if let Some(cp) = control_plane_ref(&cluster, fleet)
        && let Ok(Some(cpo)) = mgmt.get(&cp).await
    {
        conds.extend(kstatus::conditions(&cpo).into_iter().map(|c| ObjCondition {
            object: cp.kind.clone(),
            condition: c,
        }));
    }
    conds.extend(
        kstatus::conditions(&cluster)
            .into_iter()
            .map(|c| ObjCondition {
                object: "Cluster".into(),
                condition: c,
            }),
    );
    if !st.ready {
        let plain: Vec<kstatus::Condition> = conds
            .iter()
            .map(|c| kstatus::Condition {
                type_: format!("{}/{}", c.object, c.condition.type_),
                ..c.condition.clone()
            })
            .collect();
        st.problem = kstatus::blocking(&plain).map(|b| match &b.message {
            Some(m) => format!("{} is {}: {m}", b.type_, b.status),
            None => format!("{} is {}", b.type_, b.status),
        });
    }
    // A cluster that was up and whose API server Cluster API can no longer probe: that is the
    // cause, whatever the summaries say after it (workers and control plane follow once the
    // Machines' node conditions turn Unknown; `RemoteConnectionProbe`,
    // cluster_controller_status.go@v1.14.0).
    let cluster_cond = |t: &str| {
        conds
            .iter()
            .find(|c| c.object == "Cluster" && c.condition.type_ == t)
    };
    if !deleting
        && cluster_cond("ControlPlaneInitialized").is_some_and(|c| c.condition.is_true())
        && let Some(probe) =
            cluster_cond("RemoteConnectionProbe").filter(|c| c.condition.status == "False")
    {
        st.ready = false;
        st.problem = Some(format!(
            "unreachable: Cluster API cannot reach its API server (RemoteConnectionProbe: {})",
            probe.condition.message.as_deref().unwrap_or("probe failed")
        ));
    }
    if deleting {
        let why = conds
            .iter()
            .find(|c| c.object == "Cluster" && c.condition.type_ == "Deleting")
            .and_then(|c| c.condition.message.clone())
            .unwrap_or_else(|| "deletion in progress".into());
        st.problem = Some(format!("being deleted: {why}"));
    }
    st.conditions = conds;
    if let Some(want) = &e.versions {
        st.versions = Some(versions(mgmt, fleet, &e.name, want).await);
    }

    // A glance must not hang on a cluster that does not answer: retry briefly, then say so.
    let Ok(Some(w)) = workload::from_secret(mgmt, fleet, &e.name, workload::GLANCE).await else {
        return st;
    };
    match w.list("v1", "Node", None, "").await {
        Ok(nodes) => {
            let ready = nodes.iter().filter(|n| node_ready(n)).count() as u64;
            st.nodes = Nodes {
                ready,
                total: (nodes.len() as u64).max(e.nodes),
            };
        }
        Err(err) => {
            st.problem
                .get_or_insert(format!("workload API unreachable: {err}"));
        }
    }
    if mesh_on {
        match mesh::view(&w).await {
            Ok(v) => {
                let missing: Vec<_> = e
                    .peers
                    .iter()
                    .filter(|p| !v.connected.contains(p))
                    .cloned()
                    .collect();
                st.mesh.connected = v.connected;
                st.mesh.problems = v.problems;
                if !missing.is_empty() && st.ready {
                    st.mesh
                        .problems
                        .push(format!("not connected to {}", missing.join(", ")));
                }
            }
            Err(err) => st
                .mesh
                .problems
                .push(format!("cannot read Cilium's mesh status: {err}")),
        }
    }
    st
}

/// What the cluster's Machines and Cilium proxy run, against the file's versions.
async fn versions<A: Api>(
    mgmt: &A,
    fleet: &str,
    cluster: &str,
    want: &meshfleet_spec::Versions,
) -> Versions {
    let mut v = Versions {
        kubernetes: VersionPair {
            desired: want.kubernetes.clone(),
            ..VersionPair::default()
        },
        talos: VersionPair {
            desired: want.talos.clone(),
            ..VersionPair::default()
        },
        cilium: VersionPair {
            desired: want.cilium.clone(),
            ..VersionPair::default()
        },
    };
    for (m, talos) in crate::rollout::machines(mgmt, fleet, cluster)
        .await
        .unwrap_or_default()
    {
        if m.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        if let Some(k) = m.pointer("/spec/version").and_then(Value::as_str) {
            v.kubernetes.current.push(k.to_string());
        }
        v.talos.current.extend(talos);
    }
    let proxy = meshfleet_kube::ObjectRef::new(
        objects::CAAPH_VERSION,
        "HelmChartProxy",
        Some(fleet),
        &meshfleet_render::proxy_name(cluster),
    );
    if let Ok(Some(p)) = mgmt.get(&proxy).await
        && let Some(c) = p.pointer("/spec/version").and_then(Value::as_str)
    {
        v.cilium.current.push(c.to_string());
    }
    for l in [
        &mut v.kubernetes.current,
        &mut v.talos.current,
        &mut v.cilium.current,
    ] {
        l.sort();
        l.dedup();
    }
    v
}

fn node_ready(n: &Value) -> bool {
    kstatus::condition(&kstatus::conditions(n), "Ready").is_some_and(kstatus::Condition::is_true)
}

/// Expected clusters from the fleet file and plan.
pub fn expected(
    fleet: &meshfleet_spec::Fleet,
    peers: &BTreeMap<String, Vec<String>>,
) -> Vec<Expected> {
    fleet
        .spec
        .clusters
        .iter()
        .map(|c| Expected {
            name: c.name.clone(),
            provider: c.provider.to_string(),
            region: c.region.clone(),
            nodes: u64::from(c.control_plane.replicas)
                + c.worker_pools
                    .iter()
                    .map(|p| u64::from(p.replicas))
                    .sum::<u64>(),
            orphan: false,
            versions: Some(fleet.spec.versions.clone()),
            peers: if fleet.spec.mesh.enabled {
                peers.get(&c.name).cloned().unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect()
}
