//! The object contract: every API version and kind meshfleet emits, as constants, so consumers
//! (the lifecycle engine, status, tests) name them without repeating strings.
//!
//! Each version is the one the targeted provider serves (and stores): DESIGN.md §1, checked
//! against the CRDs in `shared/schemas/crds` by the conformance tests.

/// Cluster API's API group.
pub const CAPI_GROUP: &str = "cluster.x-k8s.io";
/// Cluster API v1.14's storage version (`Cluster`, `MachineDeployment`, `MachineHealthCheck`).
pub const CAPI_V1BETA2: &str = "cluster.x-k8s.io/v1beta2";
/// Kind `Cluster`.
pub const CLUSTER: &str = "Cluster";
/// Kind `MachineDeployment`.
pub const MACHINE_DEPLOYMENT: &str = "MachineDeployment";
/// Kind `MachineHealthCheck`.
pub const MACHINE_HEALTH_CHECK: &str = "MachineHealthCheck";

/// The infrastructure providers' API group.
pub const INFRA_GROUP: &str = "infrastructure.cluster.x-k8s.io";
/// CAPG v1.12's version.
pub const CAPG_V1BETA1: &str = "infrastructure.cluster.x-k8s.io/v1beta1";
/// Kind `GCPCluster`.
pub const GCP_CLUSTER: &str = "GCPCluster";
/// Kind `GCPMachineTemplate`.
pub const GCP_MACHINE_TEMPLATE: &str = "GCPMachineTemplate";
/// CAPA v2.11's version (`v1beta1` is no longer served).
pub const CAPA_V1BETA2: &str = "infrastructure.cluster.x-k8s.io/v1beta2";
/// Kind `AWSCluster`.
pub const AWS_CLUSTER: &str = "AWSCluster";
/// Kind `AWSMachineTemplate`.
pub const AWS_MACHINE_TEMPLATE: &str = "AWSMachineTemplate";

/// The control-plane providers' API group.
pub const CONTROL_PLANE_GROUP: &str = "controlplane.cluster.x-k8s.io";
/// CACPPT v0.5's version.
pub const CACPPT_V1ALPHA3: &str = "controlplane.cluster.x-k8s.io/v1alpha3";
/// Kind `TalosControlPlane`.
pub const TALOS_CONTROL_PLANE: &str = "TalosControlPlane";

/// The bootstrap providers' API group.
pub const BOOTSTRAP_GROUP: &str = "bootstrap.cluster.x-k8s.io";
/// CABPT v0.6's version.
pub const CABPT_V1ALPHA3: &str = "bootstrap.cluster.x-k8s.io/v1alpha3";
/// Kind `TalosConfigTemplate`.
pub const TALOS_CONFIG_TEMPLATE: &str = "TalosConfigTemplate";

/// The add-on providers' API group.
pub const ADDONS_GROUP: &str = "addons.cluster.x-k8s.io";
/// CAAPH v0.6's version.
pub const CAAPH_V1ALPHA1: &str = "addons.cluster.x-k8s.io/v1alpha1";
/// Kind `HelmChartProxy`.
pub const HELM_CHART_PROXY: &str = "HelmChartProxy";

/// The core API version.
pub const CORE_V1: &str = "v1";
/// Kind `Namespace`.
pub const NAMESPACE: &str = "Namespace";
