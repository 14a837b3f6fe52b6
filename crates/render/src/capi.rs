//! Core Cluster API objects (`cluster.x-k8s.io/v1beta2`, the storage version of CAPI v1.14):
//! Cluster, MachineDeployment and MachineHealthCheck, plus the order a cluster's objects are
//! applied in. The provider objects come from an [`Infra`] so GCP and AWS share this skeleton.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meta::{self, ContractRef, Object, POOL_LABEL};
use crate::talos::{self, Patches};
use crate::yaml::Emitted;
use crate::{Ctx, RenderError, api};

pub const API_VERSION: &str = api::CAPI_V1BETA2;
pub const INFRA_GROUP: &str = api::INFRA_GROUP;

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
    /// returns the object and its name. The digest is how upgrades reach machines: Cluster API
    /// treats infrastructure machine templates as immutable, and a change (a new Talos image or
    /// AMI, a machine type) is a new template under a new name that the TalosControlPlane or
    /// MachineDeployment then references, which starts their rolling replacement
    /// (kubernetes-sigs/cluster-api:`docs/book/src/tasks/updating-machine-templates.md`@v1.14.0;
    /// CACPPT rolls machines whose version, template or Talos config differ,
    /// siderolabs/cluster-api-control-plane-provider-talos:`controllers/controlplane.go`@v0.5.12,
    /// one surge machine at a time by default, `api/v1alpha3/taloscontrolplane_webhook.go`).
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

/// Name of a worker pool's MachineHealthCheck and the base of its templates' names (which add
/// a digest). The `workers-` infix keeps it distinct from the control plane whatever the pool
/// is called.
pub fn pool_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-workers-{pool}")
}

/// Name of a pool's MachineDeployment in one zone: the pool name and the zone's suffix after
/// the region (`europe-west1-b` → `b`, `eu-west-1a` → `a`), so names stay short (the name is
/// also the value of the 63-character `cluster.x-k8s.io/deployment-name` label) and stable.
pub fn deployment_name(cluster: &str, pool: &str, region: &str, zone: &str) -> String {
    let suffix = zone
        .strip_prefix(region)
        .map(|s| s.trim_start_matches('-'))
        .filter(|s| !s.is_empty())
        .unwrap_or(zone);
    format!("{}-{suffix}", pool_name(cluster, pool))
}

/// `replicas` spread over `zones` zones: as even as possible, the first zones taking the
/// remainder, so adding a replica adds it to the next zone in fleet-file order.
pub fn split_replicas(replicas: u32, zones: usize) -> Vec<u32> {
    let Ok(n) = u32::try_from(zones.max(1)) else {
        return vec![replicas];
    };
    (0..n)
        .map(|i| replicas / n + u32::from(i < replicas % n))
        .collect()
}

/// How many unhealthy machines a pool's MachineHealthCheck may remediate at once, or `None`
/// for no MachineHealthCheck.
///
/// Cluster API scales a percentage against the expected machines rounding *down*
/// (`getMaxUnhealthy`: `intstr.GetScaledValueFromIntOrPercent(..., false)`,
/// cluster-api:`core/reconcilers/machinehealthcheck/machinehealthcheck_controller.go`@v1.14.0)
/// and short-circuits when more machines are unhealthy than that, so `40%` of 2 is 0 and never
/// remediates. An integer of 40% rounded down but at least 1 keeps the intent (stop when many
/// fail at once: an outage, where replacing machines makes it worse) and always allows one.
/// A pool of one machine gets none: with one machine a broken machine and a broken cluster
/// (no CNI, no cloud controller: every node unhealthy) look the same, and remediating the
/// latter would replace the only worker in a loop.
pub fn max_unhealthy(replicas: u32) -> Option<u32> {
    (replicas >= 2).then(|| (replicas * 2 / 5).max(1))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_domain: Option<String>,
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
    unhealthy_less_than_or_equal_to: u32,
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
        kind: api::CLUSTER,
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
                api_group: api::CONTROL_PLANE_GROUP,
                kind: api::TALOS_CONTROL_PLANE,
                name: cp_name.clone(),
            },
            infrastructure_ref: ContractRef {
                api_group: INFRA_GROUP,
                kind: infra.cluster_kind(),
                name: name.clone(),
            },
        },
    };
    out.push(ctx.emit(&cluster, api::CLUSTER)?);
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
    out.push(ctx.emit(
        &talos::control_plane(ctx, &cp_name, &cp_template_name, infra, patches),
        api::TALOS_CONTROL_PLANE,
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
        out.push(ctx.emit(&config, api::TALOS_CONFIG_TEMPLATE)?);

        // One MachineDeployment per zone: without `failureDomain` CAPG puts every machine in
        // the first zone (`cloud/scope/machine.go`@v1.12.0) and CAPA in the first private
        // subnet (`pkg/cloud/services/ec2/instances.go`@v2.11.1, `findSubnet`).
        let zones: Vec<Option<&String>> = if ctx.cluster.zones.is_empty() {
            vec![None]
        } else {
            ctx.cluster.zones.iter().map(Some).collect()
        };
        let split = split_replicas(pool.replicas, zones.len());
        for (zone, replicas) in zones.iter().zip(split) {
            let md_name = match zone {
                Some(z) => deployment_name(name, &pool.name, &ctx.cluster.region, z),
                None => pname.clone(),
            };
            let mut selector = BTreeMap::new();
            selector.insert(CLUSTER_NAME_LABEL.to_owned(), name.clone());
            selector.insert(DEPLOYMENT_NAME_LABEL.to_owned(), md_name.clone());
            let mut template_labels = meta::cluster_labels(ctx);
            template_labels.insert(POOL_LABEL.to_owned(), pool.name.clone());
            template_labels.extend(selector.clone());

            let md = Object {
                api_version: API_VERSION,
                kind: api::MACHINE_DEPLOYMENT,
                metadata: meta::cluster_meta(ctx, md_name.clone()),
                spec: MachineDeploymentSpec {
                    cluster_name: name.clone(),
                    replicas,
                    selector: LabelSelector {
                        match_labels: selector,
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
                                    api_group: api::BOOTSTRAP_GROUP,
                                    kind: api::TALOS_CONFIG_TEMPLATE,
                                    name: config_name.clone(),
                                },
                            },
                            infrastructure_ref: ContractRef {
                                api_group: INFRA_GROUP,
                                kind: infra.template_kind(),
                                name: template_name.clone(),
                            },
                            failure_domain: zone.map(|z| z.to_string()),
                        },
                    },
                },
            };
            out.push(ctx.emit(&md, api::MACHINE_DEPLOYMENT)?);
        }

        // One health check per pool, over all its zones (the pool label), so the threshold
        // counts the whole pool.
        let Some(max) = max_unhealthy(pool.replicas) else {
            continue;
        };
        let selector = BTreeMap::from([
            (CLUSTER_NAME_LABEL.to_owned(), name.clone()),
            (POOL_LABEL.to_owned(), pool.name.clone()),
        ]);
        let mhc = Object {
            api_version: API_VERSION,
            kind: api::MACHINE_HEALTH_CHECK,
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
                    trigger_if: TriggerIf {
                        unhealthy_less_than_or_equal_to: max,
                    },
                },
            },
        };
        out.push(ctx.emit(&mhc, api::MACHINE_HEALTH_CHECK)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_spread_evenly_first_zones_first() {
        assert_eq!(split_replicas(3, 3), [1, 1, 1]);
        assert_eq!(split_replicas(4, 3), [2, 1, 1]);
        assert_eq!(split_replicas(2, 3), [1, 1, 0]);
        assert_eq!(split_replicas(5, 1), [5]);
        assert_eq!(split_replicas(5, 0), [5]);
    }

    #[test]
    fn health_checks_always_allow_one_and_skip_single_machines() {
        assert_eq!(max_unhealthy(0), None);
        assert_eq!(max_unhealthy(1), None);
        assert_eq!(max_unhealthy(2), Some(1));
        assert_eq!(max_unhealthy(3), Some(1));
        assert_eq!(max_unhealthy(5), Some(2));
        assert_eq!(max_unhealthy(10), Some(4));
    }

    #[test]
    fn deployment_names_use_the_zone_suffix() {
        assert_eq!(
            deployment_name("c", "p", "europe-west1", "europe-west1-b"),
            "c-workers-p-b"
        );
        assert_eq!(
            deployment_name("c", "p", "eu-west-1", "eu-west-1a"),
            "c-workers-p-a"
        );
        assert_eq!(
            deployment_name("c", "p", "us-west-2", "us-west-2-lax-1a"),
            "c-workers-p-lax-1a"
        );
        assert_eq!(deployment_name("c", "p", "r", "other"), "c-workers-p-other");
    }
}
