//! One lister for the whole fleet: what `up` waits on, read with a few LIST calls per tick
//! instead of a few GETs per cluster per tick. With fifty clusters that is the difference
//! between a handful of requests a second and hundreds, on a management cluster that has its
//! own controllers to run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use meshfleet_kube::KubeError;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::Api;

/// The label Cluster API puts on a workload cluster's kubeconfig Secret.
const CAPI_CLUSTER_NAME: &str = "cluster.x-k8s.io/cluster-name";

/// The fleet's objects in the management cluster, as last listed.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Cluster objects by name.
    pub clusters: BTreeMap<String, Value>,
    /// Control plane objects by name.
    pub control_planes: BTreeMap<String, Value>,
    /// Cilium HelmChartProxies by name.
    pub proxies: BTreeMap<String, Value>,
    /// `value` of each kubeconfig Secret, by Secret name.
    pub kubeconfigs: BTreeMap<String, Vec<u8>>,
}

fn by_name(items: Vec<Value>) -> BTreeMap<String, Value> {
    items
        .into_iter()
        .filter_map(|o| Some((o.pointer("/metadata/name")?.as_str()?.to_string(), o)))
        .collect()
}

async fn list_or_empty<A: Api>(
    mgmt: &A,
    api_version: &str,
    kind: &str,
    ns: &str,
    selector: &str,
) -> Result<Vec<Value>, KubeError> {
    match mgmt.list(api_version, kind, Some(ns), selector).await {
        Err(KubeError::NotServed { .. }) => Ok(Vec::new()),
        other => other,
    }
}

async fn list_once<A: Api>(
    mgmt: &A,
    ns: &str,
    control_plane_kinds: &[(String, String)],
) -> Result<Snapshot, KubeError> {
    let clusters =
        by_name(list_or_empty(mgmt, crate::objects::CAPI_VERSION, "Cluster", ns, "").await?);
    let mut control_planes = BTreeMap::new();
    for (av, kind) in control_plane_kinds {
        control_planes.extend(by_name(list_or_empty(mgmt, av, kind, ns, "").await?));
    }
    let proxies = by_name(
        list_or_empty(
            mgmt,
            crate::objects::CAAPH_VERSION,
            "HelmChartProxy",
            ns,
            "",
        )
        .await?,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let kubeconfigs = list_or_empty(mgmt, "v1", "Secret", ns, CAPI_CLUSTER_NAME)
        .await?
        .into_iter()
        .filter_map(|s| {
            let name = s.pointer("/metadata/name")?.as_str()?.to_string();
            let value = b64.decode(s.pointer("/data/value")?.as_str()?).ok()?;
            Some((name, value))
        })
        .collect();
    Ok(Snapshot {
        clusters,
        control_planes,
        proxies,
        kubeconfigs,
    })
}

/// Start listing every `interval` (or three times as long as a listing takes, when longer); the
/// receiver always holds the latest snapshot. A failed listing keeps the previous snapshot (the
/// waits it feeds are bounded by their deadlines).
pub fn spawn<A: Api>(
    mgmt: A,
    namespace: String,
    control_plane_kinds: Vec<(String, String)>,
    interval: Duration,
) -> (watch::Receiver<Arc<Snapshot>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let task = tokio::spawn(async move {
        loop {
            let start = tokio::time::Instant::now();
            if let Ok(s) = list_once(&mgmt, &namespace, &control_plane_kinds).await
                && tx.send(Arc::new(s)).is_err()
            {
                return;
            }
            // Listing a large fleet takes a while at both ends (hundreds of objects serialised
            // and parsed): pausing three times as long as the listing took keeps it to a
            // quarter of the time, whatever the fleet's size, instead of listing back to back.
            tokio::time::sleep(interval.max(start.elapsed() * 3)).await;
        }
    });
    (rx, task)
}
