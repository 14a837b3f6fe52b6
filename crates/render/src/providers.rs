//! The Cluster API providers a management cluster must run for a fleet, as data: `meshfleet up`
//! checks the installed providers against it and prints the `clusterctl init` line for what is
//! missing or too old.
//!
//! Minimum versions are the releases whose served API versions and behaviour meshfleet's objects
//! were checked against (the CRDs in `shared/schemas/crds`, REAL-STACK.md), and whose
//! compatibility tables cover the fleet's Talos line where a table exists:
//! - CACPPT: no release claims Talos 1.13. The newest, v0.5.12, lists Talos up to v1.12 and
//!   Kubernetes up to v1.35 (siderolabs/cluster-api-control-plane-provider-talos:`README.md`@v0.5.12,
//!   built on `talos/pkg/machinery` v1.12.0, `go.mod`@v0.5.12; `main` is unchanged). It is still
//!   the one to require: CACPPT drives etcd bootstrap and upgrades through the Talos API, which
//!   is compatible across adjacent lines, and there is nothing newer; the requirement says so.
//! - CABPT: v0.6.12 vendors `talos/pkg/machinery` v1.13.0 (`go.mod`@v0.6.12), so it generates
//!   Talos 1.13 configs and decodes the v1alpha1 patches; its README table was not updated past
//!   v1.6 (`README.md`@v0.6.12). v0.7.0 is only at alpha.
//! - CAPI v1.14.0 for the `v1beta2` objects; CAPG v1.12.0 (`v1beta1`); CAPA v2.11.1 (`v1beta2`,
//!   and the `findSubnet` behaviour `publicIP` relies on); CAAPH v0.6.4 (`v1alpha1`
//!   HelmChartProxy with OCI repositories: `internal/helm_client.go`@v0.6.4).

use std::collections::BTreeSet;

use meshfleet_spec::{Fleet, Provider, Version};
use serde::Serialize;

use crate::api;

/// A provider's type, as `clusterctl init` takes it (`--core`, `--bootstrap`,
/// `--control-plane`, `--infrastructure`, `--addon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderType {
    /// Cluster API itself.
    Core,
    /// A bootstrap provider.
    Bootstrap,
    /// A control-plane provider.
    ControlPlane,
    /// An infrastructure provider.
    Infrastructure,
    /// An add-on provider.
    Addon,
}

impl ProviderType {
    /// The `clusterctl init` flag for this type.
    pub fn clusterctl_flag(self) -> &'static str {
        match self {
            Self::Core => "--core",
            Self::Bootstrap => "--bootstrap",
            Self::ControlPlane => "--control-plane",
            Self::Infrastructure => "--infrastructure",
            Self::Addon => "--addon",
        }
    }
}

/// One provider a fleet needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequirement {
    /// The provider's name as clusterctl calls it (`cluster-api`, `talos`, `gcp`, `aws`, `helm`).
    pub name: &'static str,
    /// Its type.
    pub type_: ProviderType,
    /// The oldest release meshfleet's objects work with.
    pub min_version: Version,
    /// `apiVersion`/`kind` of every object meshfleet gives it.
    pub kinds: Vec<(&'static str, &'static str)>,
    /// Why it is needed, and at that version.
    pub why: String,
}

impl ProviderRequirement {
    /// `name:vX.Y.Z`, the form `clusterctl init` takes after the type flag.
    pub fn clusterctl_spec(&self) -> String {
        format!("{}:v{}", self.name, self.min_version)
    }
}

fn v(major: u32, minor: u32, patch: u32) -> Version {
    Version {
        major,
        minor,
        patch,
    }
}

/// The providers `fleet` needs, core first then by type and name. Pure.
pub fn required_providers(fleet: &Fleet) -> Vec<ProviderRequirement> {
    let talos = &fleet.spec.versions.talos;
    let clouds: BTreeSet<Provider> = fleet.spec.clusters.iter().map(|c| c.provider).collect();
    let mut out = vec![
        ProviderRequirement {
            name: "cluster-api",
            type_: ProviderType::Core,
            min_version: v(1, 14, 0),
            kinds: vec![
                (api::CAPI_V1BETA2, api::CLUSTER),
                (api::CAPI_V1BETA2, api::MACHINE_DEPLOYMENT),
                (api::CAPI_V1BETA2, api::MACHINE_HEALTH_CHECK),
            ],
            why: "the Cluster, MachineDeployments and MachineHealthChecks are `cluster.x-k8s.io/v1beta2`, served from v1.14".to_owned(),
        },
        ProviderRequirement {
            name: "talos",
            type_: ProviderType::Bootstrap,
            min_version: v(0, 6, 12),
            kinds: vec![(api::CABPT_V1ALPHA3, api::TALOS_CONFIG_TEMPLATE)],
            why: format!(
                "generates the machine configs for Talos `{talos}`: v0.6.12 is built on Talos machinery v1.13.0 and decodes the v1alpha1 patches"
            ),
        },
        ProviderRequirement {
            name: "talos",
            type_: ProviderType::ControlPlane,
            min_version: v(0, 5, 12),
            kinds: vec![(api::CACPPT_V1ALPHA3, api::TALOS_CONTROL_PLANE)],
            why: format!(
                "bootstraps etcd and rolls the control plane for Talos `{talos}`: v0.5.12 is the newest release; its compatibility table stops at Talos v1.12 and Kubernetes v1.35, none claims Talos v1.13"
            ),
        },
        ProviderRequirement {
            name: "helm",
            type_: ProviderType::Addon,
            min_version: v(0, 6, 4),
            kinds: vec![(api::CAAPH_V1ALPHA1, api::HELM_CHART_PROXY)],
            why: "installs Cilium and the cloud controller managers from HelmChartProxies (OCI and HTTPS chart repositories)".to_owned(),
        },
    ];
    if clouds.contains(&Provider::Gcp) {
        out.push(ProviderRequirement {
            name: "gcp",
            type_: ProviderType::Infrastructure,
            min_version: v(1, 12, 0),
            kinds: vec![
                (api::CAPG_V1BETA1, api::GCP_CLUSTER),
                (api::CAPG_V1BETA1, api::GCP_MACHINE_TEMPLATE),
            ],
            why: "creates the GCP clusters' machines, load balancer and firewall rules".to_owned(),
        });
    }
    if clouds.contains(&Provider::Aws) {
        out.push(ProviderRequirement {
            name: "aws",
            type_: ProviderType::Infrastructure,
            min_version: v(2, 11, 1),
            kinds: vec![
                (api::CAPA_V1BETA2, api::AWS_CLUSTER),
                (api::CAPA_V1BETA2, api::AWS_MACHINE_TEMPLATE),
            ],
            why: "creates the AWS clusters' VPCs, subnets, security groups, NLB and machines (`v1beta2` only)".to_owned(),
        });
    }
    out.sort_by_key(|r| (r.type_, r.name));
    out
}
