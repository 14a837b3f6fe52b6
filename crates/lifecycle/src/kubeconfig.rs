//! `kubeconfig`: the workload clusters' admin kubeconfigs, one context per cluster, read from
//! the Secrets Cluster API writes. The credentials are returned, never printed or logged.

use meshfleet_kube::kubeconfig::{self, Kubeconfig};

use crate::api::Api;
use crate::{Error, objects};

/// What was found.
#[derive(Debug, Clone)]
pub struct Collected {
    /// One single-context kubeconfig per cluster that has one, named after the cluster.
    pub parts: Vec<Kubeconfig>,
    /// Clusters without a kubeconfig yet (not created, or still bootstrapping).
    pub absent: Vec<String>,
}

/// Read every cluster's kubeconfig Secret and reduce each to one context named after its
/// cluster.
pub async fn collect<A: Api>(
    mgmt: &A,
    fleet: &str,
    clusters: &[String],
) -> Result<Collected, Error> {
    let mut out = Collected {
        parts: Vec::new(),
        absent: Vec::new(),
    };
    for c in clusters {
        let secret = objects::kubeconfig_secret(c);
        match mgmt.secret_value(fleet, &secret, "value").await? {
            Some(v) => {
                let what = format!("Secret `{fleet}/{secret}`");
                let kc = kubeconfig::parse(&String::from_utf8_lossy(&v), &what)?;
                out.parts.push(kubeconfig::single_context(&kc, c, &what)?);
            }
            None => out.absent.push(c.clone()),
        }
    }
    Ok(out)
}
