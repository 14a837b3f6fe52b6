//! Cloud controller managers, delivered like Cilium: one CAAPH `HelmChartProxy` per cluster.
//!
//! Cluster API v1.14 matches a Machine to its Node only by `spec.providerID`
//! (cluster-api:`internal/controllers/machine/machine_controller_noderef.go`@v1.14.0), and a
//! Talos kubelet started with `cluster.externalCloudProvider.enabled: true` registers with
//! `--cloud-provider=external` and waits, tainted `node.cloudprovider.kubernetes.io/uninitialized`,
//! for a cloud controller manager to initialise it
//! (siderolabs/talos:`internal/app/machined/pkg/controllers/k8s/kubelet_spec.go`@v1.13.9).
//!
//! - **Talos CCM** on every cluster (siderolabs/talos-cloud-controller-manager, chart
//!   `charts/talos-cloud-controller-manager`@v1.9.1, chart version 0.4.5, published at
//!   `oci://ghcr.io/siderolabs/charts`, `docs/install.md`@v1.9.1). It reads each node's
//!   platform metadata through apid (hence `kubernetesTalosAPIAccess` in the control-plane
//!   patch, which the chart's `talos.dev/v1alpha1` ServiceAccount needs) and sets the node's
//!   providerID, addresses and topology labels. It runs as a DaemonSet on the control-plane
//!   nodes with `hostNetwork` (`daemonSet.enabled`: "You can run it without CNI plugin"): it
//!   must initialise nodes before Cilium, which is held back until the mesh CA is delivered.
//!   The providerID it sets is the one Talos reads from the platform, and it is exactly the one
//!   the infrastructure provider puts on the Machine, which is what Cluster API compares:
//!   `aws:///<zone>/<instance-id>` (siderolabs/talos:`internal/app/machined/pkg/runtime/v1alpha1/platform/aws/aws.go`@v1.13.9;
//!   CAPA `GenerateProviderID` via `pkg/cloud/scope/machine.go`@v2.11.1) and
//!   `gce://<project>/<zone>/<instance>` (Talos `platform/gcp/gcp.go`@v1.13.9; CAPG
//!   `cloud/providerid/providerid.go`@v1.12.0).
//! - **AWS CCM** where LoadBalancer Services are needed (`mesh.apiserverService:
//!   LoadBalancer` on an AWS cluster): kubernetes/cloud-provider-aws chart
//!   `charts/aws-cloud-controller-manager` version 0.0.11 (tag
//!   `helm-chart-aws-cloud-controller-manager-0.0.11`, app v1.35.0), repository
//!   `https://kubernetes.github.io/cloud-provider-aws` (the chart's `Readme.md`). On such a
//!   cluster the AWS CCM runs its node controllers (the way Sidero's own AWS template uses it,
//!   siderolabs/cluster-api-templates `aws/standard/standard.yaml`) and the Talos CCM runs only
//!   `node-csr-approval`, so two CCMs never both initialise nodes.
//! - GCP has no deliverable CCM (kubernetes/cloud-provider-gcp ships no chart); validation
//!   refuses a LoadBalancer clustermesh-apiserver on GCP.

use std::collections::BTreeMap;

use meshfleet_spec::{ApiserverService, Provider};
use serde::Serialize;

use crate::cilium::{HelmChartProxySpec, Selector, cluster_selector};
use crate::meta::{self, Object};
use crate::talos::KUBEPRISM_PORT;
use crate::{Ctx, api};

/// OCI repository of the Talos CCM chart.
pub const TALOS_CCM_REPO: &str = "oci://ghcr.io/siderolabs/charts";
/// Chart name of the Talos CCM.
pub const TALOS_CCM_CHART: &str = "talos-cloud-controller-manager";
/// Chart version of the Talos CCM (app v1.9.1).
pub const TALOS_CCM_VERSION: &str = "0.4.5";
/// Helm repository of the AWS CCM chart.
pub const AWS_CCM_REPO: &str = "https://kubernetes.github.io/cloud-provider-aws";
/// Chart name of the AWS CCM.
pub const AWS_CCM_CHART: &str = "aws-cloud-controller-manager";
/// Chart version of the AWS CCM (app v1.35.0).
pub const AWS_CCM_VERSION: &str = "0.0.11";

/// Which add-on a proxy installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddonKind {
    /// Cilium (CNI, ClusterMesh).
    Cilium,
    /// siderolabs/talos-cloud-controller-manager.
    TalosCcm,
    /// kubernetes/cloud-provider-aws.
    AwsCcm,
}

impl AddonKind {
    /// Short name, used in proxy names (`<short>-<cluster>`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Cilium => "cilium",
            Self::TalosCcm => "talos-ccm",
            Self::AwsCcm => "aws-ccm",
        }
    }
}

/// Does this cluster need the AWS CCM (LoadBalancer Services)?
pub fn needs_aws_ccm(ctx: &Ctx<'_>) -> bool {
    let mesh = &ctx.fleet.spec.mesh;
    ctx.cluster.provider == Provider::Aws
        && mesh.enabled
        && mesh.apiserver_service == ApiserverService::LoadBalancer
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalosCcmValues {
    daemon_set: Enabled,
    enabled_controllers: Vec<&'static str>,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

/// The Talos CCM's values for one cluster.
pub fn talos_ccm_values(ctx: &Ctx<'_>) -> impl Serialize + use<> {
    let enabled_controllers = if needs_aws_ccm(ctx) {
        // The AWS CCM initialises the nodes here; see the module documentation.
        vec!["node-csr-approval"]
    } else {
        // The chart's default set.
        vec!["cloud-node", "node-csr-approval"]
    };
    TalosCcmValues {
        daemon_set: Enabled { enabled: true },
        enabled_controllers,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsCcmValues {
    args: Vec<String>,
    host_networking: bool,
    env: Vec<EnvVar>,
}

#[derive(Serialize)]
struct EnvVar {
    name: &'static str,
    value: String,
}

/// The AWS CCM's values for one cluster.
///
/// - `--cluster-name`: the CCM finds the cluster's subnets and tags the load balancers it
///   creates by `kubernetes.io/cluster/<name>`, the tag CAPA puts on the resources of the
///   Cluster of that name.
/// - `--configure-cloud-routes=false`: Cilium routes pods; the CCM must not program VPC routes.
/// - host network, and the API server through KubePrism: it must run before any CNI exists,
///   and without a CNI (and with kube-proxy off) the `kubernetes` Service IP is unreachable.
pub fn aws_ccm_values(ctx: &Ctx<'_>) -> impl Serialize + use<> {
    AwsCcmValues {
        args: vec![
            "--v=2".to_owned(),
            "--cloud-provider=aws".to_owned(),
            format!("--cluster-name={}", ctx.cluster.name),
            "--configure-cloud-routes=false".to_owned(),
        ],
        host_networking: true,
        env: vec![
            EnvVar {
                name: "KUBERNETES_SERVICE_HOST",
                value: "localhost".to_owned(),
            },
            EnvVar {
                name: "KUBERNETES_SERVICE_PORT",
                value: KUBEPRISM_PORT.to_string(),
            },
        ],
    }
}

/// Name of a cluster's proxy for an add-on.
pub fn addon_proxy_name(kind: AddonKind, cluster: &str) -> String {
    format!("{}-{cluster}", kind.short())
}

/// The `HelmChartProxy` of a CCM on exactly one cluster. Not held back: nodes must be
/// initialised before anything else can schedule.
pub fn helm_chart_proxy(
    ctx: &Ctx<'_>,
    kind: AddonKind,
    values_yaml: &str,
) -> impl Serialize + use<> {
    let (repo_url, chart_name, version, release_name) = match kind {
        AddonKind::AwsCcm => (AWS_CCM_REPO, AWS_CCM_CHART, AWS_CCM_VERSION, AWS_CCM_CHART),
        _ => (
            TALOS_CCM_REPO,
            TALOS_CCM_CHART,
            TALOS_CCM_VERSION,
            TALOS_CCM_CHART,
        ),
    };
    let match_labels: BTreeMap<String, String> = cluster_selector(ctx);
    Object {
        api_version: api::CAAPH_V1ALPHA1,
        kind: api::HELM_CHART_PROXY,
        metadata: meta::cluster_meta(ctx, addon_proxy_name(kind, &ctx.cluster.name)),
        spec: HelmChartProxySpec {
            cluster_selector: Selector { match_labels },
            repo_url,
            chart_name,
            version: version.to_owned(),
            namespace: "kube-system",
            release_name,
            values_template: values_yaml.to_owned(),
        },
    }
}
