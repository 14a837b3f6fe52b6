//! Which providers the fleet needs, and the `clusterctl init` line for those missing.

use std::collections::{BTreeMap, BTreeSet};

use meshfleet_render::{ProviderRequirement, ProviderType, Rendered, required_providers};
use meshfleet_spec::Fleet;

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

/// The `clusterctl init` line that installs the providers serving `missing`, each at the
/// version `required` names (render's table of the releases meshfleet's objects need), e.g.
/// `clusterctl init --infrastructure gcp:v1.12.0 --bootstrap talos:v0.6.12`.
pub fn install_hint(missing: &[(String, String)], required: &[ProviderRequirement]) -> String {
    let mut by_type: BTreeMap<ProviderType, BTreeSet<String>> = BTreeMap::new();
    let mut unknown = false;
    for (av, kind) in missing {
        match required
            .iter()
            .find(|r| r.kinds.iter().any(|(a, k)| a == av && k == kind))
        {
            Some(r) => {
                by_type
                    .entry(r.type_)
                    .or_default()
                    .insert(r.clusterctl_spec());
            }
            None => unknown = true,
        }
    }
    if by_type.is_empty() {
        return "install the CustomResourceDefinitions of the kinds above".into();
    }
    let mut cmd = String::from("clusterctl init");
    for (t, specs) in &by_type {
        let list: Vec<&str> = specs.iter().map(String::as_str).collect();
        cmd.push_str(&format!(" {} {}", t.clusterctl_flag(), list.join(",")));
    }
    if unknown {
        cmd.push_str(" (and the CustomResourceDefinitions of the other kinds above)");
    }
    cmd
}

/// Fail with [`Error::ProvidersMissing`] when the management cluster does not serve every kind
/// the fleet renders: applying into a cluster that lacks a CRD would fail half-way.
pub async fn check<A: Api>(mgmt: &A, fleet: &Fleet, rendered: &Rendered) -> Result<(), Error> {
    let missing = mgmt.missing_kinds(&kinds(rendered)).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::ProvidersMissing {
        server: mgmt.server().to_string(),
        hint: install_hint(&missing, &required_providers(fleet)),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(providers: &str) -> Fleet {
        let text = format!(
            "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: {{ name: f }}\nspec:\n  versions: {{ kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }}\n  network:\n    pods: {{ pool: 10.64.0.0/10, prefixLength: 16 }}\n    services: {{ pool: 10.128.0.0/12, prefixLength: 20 }}\n    nodes: {{ pool: 10.0.0.0/14, prefixLength: 20 }}\n  management: {{ egressCIDRs: [203.0.113.10/32] }}\n  podSecurity: {{ enforce: baseline, exemptions: {{ namespaces: [kube-system] }} }}\n  providers: {{ gcp: {{ project: p-123456, network: meshfleet, imageBucket: b-123456 }}, aws: {{}} }}\n  clusters:\n{providers}"
        );
        meshfleet_spec::parse(&text).expect("valid").fleet
    }

    #[test]
    fn install_hint_names_the_providers_at_the_versions_required() {
        let f = fleet(
            "    - { name: g, provider: gcp, region: europe-west1, zones: [europe-west1-b], controlPlane: { replicas: 1, machineType: n2-standard-2 } }\n    - { name: a, provider: aws, region: eu-west-1, zones: [eu-west-1a], controlPlane: { replicas: 1, machineType: m6i.large } }\n",
        );
        let req = required_providers(&f);
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
            install_hint(&m, &req),
            "clusterctl init --bootstrap talos:v0.6.12 --control-plane talos:v0.5.12 --infrastructure aws:v2.11.1,gcp:v1.12.0 --addon helm:v0.6.4"
        );
        assert_eq!(
            install_hint(&[("v1".into(), "Widget".into())], &req),
            "install the CustomResourceDefinitions of the kinds above"
        );
    }
}
