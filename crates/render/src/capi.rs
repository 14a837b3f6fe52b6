//! Core Cluster API objects (`cluster.x-k8s.io/v1beta2`, the storage version of CAPI v1.14):
//! Cluster, MachineDeployment and MachineHealthCheck, plus the order a cluster's objects are
//! applied in. The provider objects come from an [`Infra`] so GCP and AWS share this skeleton.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meta::{self, ContractRef, Object};
use crate::talos::{self, Patches};
use crate::yaml::{self, Emitted};
use crate::{Ctx, RenderError};

pub const API_VERSION: &str = "cluster.x-k8s.io/v1beta2";
pub const INFRA_GROUP: &str = "infrastructure.cluster.x-k8s.io";

/// CAPI's own label naming a Machine's cluster.
const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// CAPI's own label naming a Machine's MachineDeployment.
const DEPLOYMENT_NAME_LABEL: &str = "cluster.x-k8s.io/deployment-name";

/// Which machines a template is for; decides tags and security groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineRole {
    ControlPlane,
    Worker,
}

/// One cloud's Cluster API infrastructure objects.
pub trait Infra {
    /// `apiVersion` of the provider's objects.
    fn api_version(&self) -> &'static str;
    /// Kind of the infrastructure cluster, e.g. `GCPCluster`.
    fn cluster_kind(&self) -> &'static str;
    /// Kind of the machine template, e.g. `GCPMachineTemplate`.
    fn template_kind(&self) -> &'static str;
    /// The infrastructure cluster object.
    fn cluster(&self, ctx: &Ctx<'_>) -> Result<Emitted, RenderError>;
    /// A machine template, named `base-<digest of its spec>` (see [`meta::content_name`]);
    /// returns the object and its name.
    fn machine_template(
        &self,
        ctx: &Ctx<'_>,
        base: &str,
        machine_type: &str,
        disk_gib: u32,
        role: MachineRole,
    ) -> Result<(Emitted, String), RenderError>;
}

/// Name of the control plane (TalosControlPlane; its machine template adds a digest).
pub fn control_plane_name(cluster: &str) -> String {
    format!("{cluster}-control-plane")
}

/// Name of a worker pool's MachineDeployment and MachineHealthCheck (its templates add a digest). The `workers-` infix keeps it distinct from the control plane whatever
/// the pool is called.
pub fn pool_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-workers-{pool}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterSpec {
    cluster_network: ClusterNetwork,
    control_plane_ref: ContractRef,
    infrastructure_ref: ContractRef,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterNetwork {
    pods: CidrBlocks,
    services: CidrBlocks,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CidrBlocks {
    cidr_blocks: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineDeploymentSpec {
    cluster_name: String,
    replicas: u32,
    selector: LabelSelector,
    template: MachineTemplateSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineTemplateSpec {
    metadata: TemplateMeta,
    spec: MachineSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateMeta {
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineSpec {
    cluster_name: String,
    version: String,
    bootstrap: Bootstrap,
    infrastructure_ref: ContractRef,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bootstrap {
    config_ref: ContractRef,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineHealthCheckSpec {
    cluster_name: String,
    selector: LabelSelector,
    checks: Checks,
    remediation: Remediation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checks {
    node_startup_timeout_seconds: u32,
    unhealthy_node_conditions: Vec<NodeCondition>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeCondition {
    #[serde(rename = "type")]
    type_: &'static str,
    status: &'static str,
    timeout_seconds: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Remediation {
    trigger_if: TriggerIf,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TriggerIf {
    unhealthy_less_than_or_equal_to: &'static str,
}

/// Every Cluster API object of one cluster, in apply order: Cluster, infrastructure cluster,
/// control plane (template, then TalosControlPlane), then per pool its machine template,
/// TalosConfigTemplate, MachineDeployment and MachineHealthCheck. Referenced objects come
/// before the objects that reference them (except the Cluster, which CAPI expects first and
/// which tolerates its references appearing later).
pub fn cluster_objects(
    ctx: &Ctx<'_>,
    patches: &Patches,
    infra: &dyn Infra,
) -> Result<Vec<Emitted>, RenderError> {
    let name = &ctx.cluster.name;
    let cp_name = control_plane_name(name);
    let mut out = Vec::new();

    let cluster = Object {
        api_version: API_VERSION,
        kind: "Cluster",
        metadata: {
            // The user's cluster labels go on the Cluster only; meshfleet's labels win.
            let mut m = meta::cluster_meta(ctx, name.clone());
            for (k, v) in &ctx.cluster.labels {
                m.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            m
        },
        spec: ClusterSpec {
            cluster_network: ClusterNetwork {
                pods: CidrBlocks {
                    cidr_blocks: vec![ctx.plan.network.pods.to_string()],
                },
                services: CidrBlocks {
                    cidr_blocks: vec![ctx.plan.network.services.to_string()],
                },
            },
            control_plane_ref: ContractRef {
                api_group: talos::CONTROL_PLANE_GROUP,
                kind: "TalosControlPlane",
                name: cp_name.clone(),
            },
            infrastructure_ref: ContractRef {
                api_group: INFRA_GROUP,
                kind: infra.cluster_kind(),
                name: name.clone(),
            },
        },
    };
    out.push(yaml::emit(&cluster, "Cluster")?);
    out.push(infra.cluster(ctx)?);

    let cp = &ctx.cluster.control_plane;
    let (cp_template, cp_template_name) = infra.machine_template(
        ctx,
        &cp_name,
        &cp.machine_type,
        cp.disk_gib,
        MachineRole::ControlPlane,
    )?;
    out.push(cp_template);
    out.push(yaml::emit(
        &talos::control_plane(ctx, &cp_name, &cp_template_name, infra, patches),
        "TalosControlPlane",
    )?);

    for pool in &ctx.cluster.worker_pools {
        let pname = pool_name(name, &pool.name);
        let (template, template_name) = infra.machine_template(
            ctx,
            &pname,
            &pool.machine_type,
            pool.disk_gib,
            MachineRole::Worker,
        )?;
        out.push(template);
        let (config, config_name) = talos::config_template(ctx, &pname, patches);
        out.push(yaml::emit(&config, "TalosConfigTemplate")?);

        let mut selector = BTreeMap::new();
        selector.insert(CLUSTER_NAME_LABEL.to_owned(), name.clone());
        selector.insert(DEPLOYMENT_NAME_LABEL.to_owned(), pname.clone());
        let mut template_labels = meta::cluster_labels(ctx);
        template_labels.extend(selector.clone());

        let md = Object {
            api_version: API_VERSION,
            kind: "MachineDeployment",
            metadata: meta::cluster_meta(ctx, pname.clone()),
            spec: MachineDeploymentSpec {
                cluster_name: name.clone(),
                replicas: pool.replicas,
                selector: LabelSelector {
                    match_labels: selector.clone(),
                },
                template: MachineTemplateSpec {
                    metadata: TemplateMeta {
                        labels: template_labels,
                    },
                    spec: MachineSpec {
                        cluster_name: name.clone(),
                        version: ctx.fleet.spec.versions.kubernetes.clone(),
                        bootstrap: Bootstrap {
                            config_ref: ContractRef {
                                api_group: talos::BOOTSTRAP_GROUP,
                                kind: "TalosConfigTemplate",
                                name: config_name,
                            },
                        },
                        infrastructure_ref: ContractRef {
                            api_group: INFRA_GROUP,
                            kind: infra.template_kind(),
                            name: template_name,
                        },
                    },
                },
            },
        };
        out.push(yaml::emit(&md, "MachineDeployment")?);

        let mhc = Object {
            api_version: API_VERSION,
            kind: "MachineHealthCheck",
            metadata: meta::cluster_meta(ctx, pname.clone()),
            spec: MachineHealthCheckSpec {
                cluster_name: name.clone(),
                selector: LabelSelector {
                    match_labels: selector,
                },
                checks: Checks {
                    // A Talos node installs, reboots and joins; ten minutes leaves room for
                    // slow image pulls without hiding a machine that never comes up.
                    node_startup_timeout_seconds: 600,
                    unhealthy_node_conditions: vec![
                        NodeCondition {
                            type_: "Ready",
                            status: "False",
                            timeout_seconds: 300,
                        },
                        NodeCondition {
                            type_: "Ready",
                            status: "Unknown",
                            timeout_seconds: 300,
                        },
                    ],
                },
                remediation: Remediation {
                    // Stop remediating when many machines fail at once: that is a network or
                    // cloud outage, and replacing machines would only make it worse.
                    trigger_if: TriggerIf {
                        unhealthy_less_than_or_equal_to: "40%",
                    },
                },
            },
        };
        out.push(yaml::emit(&mhc, "MachineHealthCheck")?);
    }
    Ok(out)
}
