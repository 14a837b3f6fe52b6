//! Which providers the fleet needs, and the `clusterctl init` line for those missing.

use meshfleet_render::Rendered;

use crate::Error;
use crate::api::Api;

/// The fleet's kinds the management cluster must serve.
pub fn kinds(rendered: &Rendered) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rendered
        .all_objects()
        .filter_map(|o| {
            Some((
                o.get("apiVersion")?.as_str()?.to_string(),
                o.get("kind")?.as_str()?.to_string(),
            ))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The `clusterctl init` line that installs the providers serving `missing`.
pub fn install_hint(missing: &[(String, String)]) -> String {
    let mut infra = Vec::new();
    let (mut core, mut bootstrap, mut cp, mut addon) = (false, false, false, false);
    for (av, kind) in missing {
        let group = av.split('/').next().unwrap_or_default();
        match group {
            "cluster.x-k8s.io" => core = true,
            "bootstrap.cluster.x-k8s.io" => bootstrap = true,
            "controlplane.cluster.x-k8s.io" => cp = true,
            "addons.cluster.x-k8s.io" => addon = true,
            "infrastructure.cluster.x-k8s.io" if kind.starts_with("GCP") => infra.push("gcp"),
            "infrastructure.cluster.x-k8s.io" if kind.starts_with("AWS") => infra.push("aws"),
            _ => {}
        }
    }
    infra.sort();
    infra.dedup();
    let mut cmd = String::from("clusterctl init");
    if !infra.is_empty() {
        cmd.push_str(&format!(" --infrastructure {}", infra.join(",")));
    }
    if bootstrap {
        cmd.push_str(" --bootstrap talos");
    }
    if cp {
        cmd.push_str(" --control-plane talos");
    }
    if addon {
        cmd.push_str(" --addon helm");
    }
    if !core && infra.is_empty() && !bootstrap && !cp && !addon {
        return "install the CustomResourceDefinitions of the kinds above".into();
    }
    cmd
}

/// Fail with [`Error::ProvidersMissing`] when the management cluster does not serve every kind
/// the fleet renders: applying into a cluster that lacks a CRD would fail half-way.
pub async fn check<A: Api>(mgmt: &A, rendered: &Rendered) -> Result<(), Error> {
    let missing = mgmt.missing_kinds(&kinds(rendered)).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::ProvidersMissing {
        server: mgmt.server().to_string(),
        hint: install_hint(&missing),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_hint_names_the_providers() {
        let m: Vec<(String, String)> = [
            ("infrastructure.cluster.x-k8s.io/v1beta1", "GCPCluster"),
            ("infrastructure.cluster.x-k8s.io/v1beta2", "AWSCluster"),
            ("bootstrap.cluster.x-k8s.io/v1alpha3", "TalosConfigTemplate"),
            (
                "controlplane.cluster.x-k8s.io/v1alpha3",
                "TalosControlPlane",
            ),
            ("addons.cluster.x-k8s.io/v1alpha1", "HelmChartProxy"),
        ]
        .into_iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect();
        assert_eq!(
            install_hint(&m),
            "clusterctl init --infrastructure aws,gcp --bootstrap talos --control-plane talos --addon helm"
        );
        assert_eq!(
            install_hint(&[("v1".into(), "Widget".into())]),
            "install the CustomResourceDefinitions of the kinds above"
        );
    }
}
