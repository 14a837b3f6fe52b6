//! `down`: delete clusters in the order their controllers need, and only what this fleet owns.
//!
//! Per cluster: its Cilium proxy first (CAAPH uninstalls the release while the cluster still
//! runs), then the Cluster (Cluster API tears down machines and infrastructure), waiting until
//! it is gone, then the templates and configs nothing owns any more. For the whole fleet, the
//! mesh CA, the IPsec keys and the fleet-wide objects go last. Nothing without the fleet's
//! label is deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshfleet_kube::{KubeError, ObjectRef};
use meshfleet_render::{ClusterObjects, Rendered};
use serde_json::Value;

use crate::api::Api;
use crate::event::Progress;
use crate::{Error, objects, providers};

/// What `down` is asked to do.
#[derive(Debug, Clone)]
pub struct DownOptions {
    /// Fleet name (the namespace in the management cluster).
    pub fleet: String,
    /// Only this cluster (`None`: the whole fleet, including clusters the file no longer names).
    pub cluster: Option<String>,
    /// How long one cluster may take to be gone.
    pub timeout: Duration,
}

/// How `down` ended.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// Clusters deleted.
    pub deleted: Vec<String>,
    /// Clusters that could not be deleted, with the reason.
    pub failures: BTreeMap<String, String>,
    /// Fleet-wide objects that could not be deleted.
    pub errors: Vec<String>,
}

impl DownReport {
    /// Was everything deleted?
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.errors.is_empty()
    }
}

/// Delete the fleet's clusters (or one), concurrently, then (whole fleet only, and only when
/// every cluster went) the fleet's secrets and fleet-wide objects.
pub async fn run<A: Api>(
    mgmt: &A,
    rendered: &Rendered,
    opts: &DownOptions,
    progress: Arc<Progress>,
) -> Result<DownReport, Error> {
    let fleet = &opts.fleet;
    let mut targets: Vec<ClusterObjects> = rendered
        .clusters
        .iter()
        .filter(|c| opts.cluster.as_ref().is_none_or(|n| n == &c.name))
        .cloned()
        .collect();
    if let Some(n) = &opts.cluster
        && targets.is_empty()
    {
        // A cluster the file no longer names (the caller checked that the fleet holds it): its
        // objects are found by their labels.
        targets.push(ClusterObjects::named(n.clone()));
    }
    if opts.cluster.is_none() {
        // Clusters of this fleet that the fleet file no longer names go too: nothing else
        // would ever delete them.
        let selector = format!("{}={fleet}", objects::FLEET_LABEL);
        let live = mgmt
            .list(objects::CAPI_VERSION, "Cluster", Some(fleet), &selector)
            .await?;
        for c in live {
            let Some(name) = c.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            if !targets.iter().any(|t| t.name == name) {
                progress.info(&format!(
                    "{name}: not in the fleet file any more; deleting it too"
                ));
                targets.push(ClusterObjects::named(name));
            }
        }
    }
    let kinds: Vec<(String, String)> = providers::kinds(rendered)
        .into_iter()
        .filter(|(_, k)| !matches!(k.as_str(), "Namespace" | "Cluster"))
        .collect();
    let mut report = DownReport::default();
    let mut set = tokio::task::JoinSet::new();
    for c in targets {
        let (mgmt, fleet, kinds) = (mgmt.clone(), fleet.clone(), kinds.clone());
        let timeout = opts.timeout;
        set.spawn(async move {
            let r = down_cluster(&mgmt, &fleet, &c, &kinds, timeout).await;
            (c.name.clone(), r)
        });
    }
    while let Some(r) = set.join_next().await {
        let (name, r) = r.map_err(|e| Error::Other(format!("a cluster's task panicked: {e}")))?;
        match r {
            Ok(()) => {
                progress.info(&format!("{name}: deleted"));
                report.deleted.push(name);
            }
            Err(e) => {
                report.failures.insert(name, e.to_string());
            }
        }
    }
    report.deleted.sort();
    if opts.cluster.is_none() && report.failures.is_empty() {
        // Whole fleet: the mesh CA and then the namespace go last.
        for name in [
            objects::mesh_ca_secret(fleet),
            objects::ipsec_keys_secret(fleet),
        ] {
            let r = ObjectRef::new("v1", "Secret", Some(fleet), &name);
            if let Err(e) = delete_owned(mgmt, &r, fleet).await {
                report.errors.push(e.to_string());
            }
        }
        for o in rendered.fleet_objects.iter().rev() {
            let r = ObjectRef::of(o)?;
            if let Err(e) = delete_owned(mgmt, &r, fleet).await {
                report.errors.push(e.to_string());
            }
        }
    }
    Ok(report)
}

/// Delete `r` if it exists and carries `meshfleet.io/fleet=<fleet>`; refuse otherwise.
pub async fn delete_owned<A: Api>(mgmt: &A, r: &ObjectRef, fleet: &str) -> Result<bool, Error> {
    let Some(live) = mgmt.get(r).await? else {
        return Ok(false);
    };
    match objects::labels(&live).get(objects::FLEET_LABEL) {
        Some(f) if f == fleet => {}
        other => {
            return Err(Error::Other(format!(
                "refusing to delete {r}: its label `{}` is {} instead of `{fleet}`\n  hint: it was not created by this fleet; delete it yourself if it must go",
                objects::FLEET_LABEL,
                other.map_or("absent".to_string(), |v| format!("`{v}`"))
            )));
        }
    }
    Ok(mgmt.delete(r).await?)
}

/// A kind whose provider is gone has nothing left to delete.
fn not_served(e: &Error) -> bool {
    matches!(e, Error::Kube(KubeError::NotServed { .. }))
}

async fn down_cluster<A: Api>(
    mgmt: &A,
    fleet: &str,
    c: &ClusterObjects,
    kinds: &[(String, String)],
    timeout: Duration,
) -> Result<(), Error> {
    // Its add-ons first (Cilium and the cloud controller managers): those rendered, and those
    // labelled as the cluster's (a cluster the fleet file no longer names has nothing rendered).
    let mut proxies: Vec<ObjectRef> = std::iter::once(&c.cilium.proxy)
        .chain(c.addons.iter().map(|a| &a.proxy))
        .filter(|p| !p.is_null())
        .map(ObjectRef::of)
        .collect::<Result<_, _>>()?;
    match mgmt
        .list(
            objects::CAAPH_VERSION,
            "HelmChartProxy",
            Some(fleet),
            &cluster_selector(fleet, &c.name),
        )
        .await
    {
        Ok(live) => {
            for p in live {
                let r = ObjectRef::of(&p)?;
                if !proxies.contains(&r) {
                    proxies.push(r);
                }
            }
        }
        Err(KubeError::NotServed { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for proxy in &proxies {
        match delete_owned(mgmt, proxy, fleet).await {
            Err(e) if !not_served(&e) => return Err(e),
            _ => {}
        }
    }
    let cref = objects::cluster_ref(fleet, &c.name);
    delete_owned(mgmt, &cref, fleet).await?;
    let (last, gone) = mgmt
        .wait(&cref, timeout, Duration::from_millis(200), |o| o.is_none())
        .await?;
    if !gone {
        let why = last
            .map(|live| meshfleet_kube::status::conditions(&live))
            .and_then(|conds| {
                meshfleet_kube::status::condition(&conds, "Deleting")
                    .and_then(|c| c.message.clone())
            })
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err(Error::Other(format!(
            "Cluster `{fleet}/{}` is still being deleted after {}s{why}",
            c.name,
            timeout.as_secs()
        )));
    }
    for o in c.objects.iter().rev() {
        let r = ObjectRef::of(o)?;
        if r.kind == "Cluster" {
            continue;
        }
        match delete_owned(mgmt, &r, fleet).await {
            Err(e) if !not_served(&e) => return Err(e),
            _ => {}
        }
    }
    // What the fleet file no longer renders (a removed worker pool, a removed cluster) is
    // found by its labels.
    let selector = cluster_selector(fleet, &c.name);
    for (api_version, kind) in kinds {
        let live = match mgmt.list(api_version, kind, Some(fleet), &selector).await {
            Ok(l) => l,
            Err(KubeError::NotServed { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for o in live {
            mgmt.delete(&ObjectRef::of(&o)?).await?;
        }
    }
    Ok(())
}

/// The label selector of one cluster's objects.
fn cluster_selector(fleet: &str, cluster: &str) -> String {
    format!(
        "{}={fleet},{}={cluster}",
        objects::FLEET_LABEL,
        objects::CLUSTER_LABEL
    )
}
