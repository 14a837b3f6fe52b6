//! The one way to reach a workload cluster: its admin kubeconfig, which Cluster API writes to
//! the Secret `<cluster>-kubeconfig` (key `value`) in the cluster's namespace.

use std::time::Duration;

use meshfleet_kube::{KubeError, Retry};

use crate::api::Api;
use crate::objects;

/// Retries for reads that must not hang on a cluster that does not answer (`status`,
/// `mesh status`): a few quick attempts, then the caller says so.
pub const GLANCE: Retry = Retry {
    attempts: 3,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_millis(500),
};

/// Retries while probing a workload API that may just be coming up (`up` polls on its own).
pub const PROBE: Retry = Retry {
    attempts: 2,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_millis(500),
};

/// Where a workload cluster's kubeconfig came from, for messages.
pub fn source(fleet: &str, cluster: &str) -> String {
    format!("Secret `{fleet}/{}`", objects::kubeconfig_secret(cluster))
}

/// Open a workload cluster's API from the kubeconfig bytes read from its Secret.
pub async fn open<A: Api>(
    mgmt: &A,
    fleet: &str,
    cluster: &str,
    kubeconfig: &[u8],
    retry: Retry,
) -> Result<A, KubeError> {
    let what = source(fleet, cluster);
    let text = std::str::from_utf8(kubeconfig).map_err(|_| KubeError::Malformed {
        message: format!("{what} key `value` is not text"),
    })?;
    mgmt.open(text, &what, retry).await
}

/// Read a workload cluster's kubeconfig Secret and open its API; `None` while Cluster API has
/// not written the Secret yet.
pub async fn from_secret<A: Api>(
    mgmt: &A,
    fleet: &str,
    cluster: &str,
    retry: Retry,
) -> Result<Option<A>, KubeError> {
    let Some(kc) = mgmt
        .secret_value(fleet, &objects::kubeconfig_secret(cluster), "value")
        .await?
    else {
        return Ok(None);
    };
    open(mgmt, fleet, cluster, &kc, retry).await.map(Some)
}
