//! The renderer: fleet + plan → every manifest meshfleet hands to a management cluster.
//!
//! Rendering is pure (no file system, network or clock) so the same fleet and plan always give
//! byte-identical output, and so tests can check every object against the upstream schemas.
//! Each object is a typed Rust struct (never a string template): a misspelt field is a compile
//! error here and a schema failure in the conformance tests, not a silent drop by the API server.
//!
//! [`render`] returns the files of the `render --out DIR` layout (DESIGN.md §4) and the same
//! objects as JSON values in apply order, for `meshfleet up` to server-side-apply.

#![warn(missing_docs)]

mod aws;
mod capi;
mod cilium;
mod gcp;
mod meta;
mod prereq;
mod talos;
mod yaml;

use std::collections::BTreeMap;

use meshfleet_plan::{ClusterPlan, FirewallRule, Plan, Role};
use meshfleet_spec::{Cluster, Fleet, Provider, Version};
use serde_json::Value;

pub use cilium::{
    CA_SECRET_NAME, CILIUM_CHART, CILIUM_REPO, CLUSTERMESH_LB_PORT, CLUSTERMESH_NODE_PORT,
    IPSEC_SECRET_NAME, proxy_name,
};
pub use gcp::{Allowed, GcpFirewallRule};
pub use meta::{CLUSTER_LABEL, FLEET_LABEL};
pub use prereq::{
    AwsAmi, AwsIam, AwsPrerequisites, AwsRegion, AwsVpc, GcpImage, GcpNat, GcpNetwork,
    GcpPrerequisites, GcpRouter, GcpServiceAccount, GcpSubnetwork, Interconnect,
};

/// Name of the marker file `render` leaves in an output directory it owns.
pub const MARKER_FILE: &str = ".meshfleet-render";

/// Directory (under the output directory) of the fleet-wide management-cluster objects.
pub const FLEET_DIR: &str = "fleet";
/// Directory (under the output directory) of the cloud prerequisites.
pub const PREREQUISITES_DIR: &str = "prerequisites";

/// One rendered file, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative path with `/` separators, e.g. `gcp-euw1/cluster.yaml`.
    pub path: String,
    /// The file's text.
    pub contents: String,
}

/// The objects of one workload cluster, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterObjects {
    /// Cluster name.
    pub name: String,
    /// Cluster API, Talos and infrastructure objects, in the order `cluster.yaml` lists them.
    pub objects: Vec<Value>,
}

/// Everything [`render`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The files of the output directory, in a stable order.
    pub files: Vec<RenderedFile>,
    /// Fleet-wide management-cluster objects in apply order: the Namespace first, then one
    /// Cilium `HelmChartProxy` per cluster.
    pub fleet_objects: Vec<Value>,
    /// Per-cluster objects in fleet-file order.
    pub clusters: Vec<ClusterObjects>,
}

impl Rendered {
    /// Every object (fleet-wide first, then per cluster) in apply order.
    pub fn all_objects(&self) -> impl Iterator<Item = &Value> {
        self.fleet_objects
            .iter()
            .chain(self.clusters.iter().flat_map(|c| c.objects.iter()))
    }

    /// The top-level directories of the layout that belong to clusters (their names).
    pub fn cluster_dirs(&self) -> impl Iterator<Item = &str> {
        self.clusters.iter().map(|c| c.name.as_str())
    }
}

/// Why rendering failed. Validation and planning catch almost everything first; these are
/// the inconsistencies only the renderer can see.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The fleet has a cluster the plan does not know about (stale plan).
    #[error(
        "cluster `{cluster}` is in the fleet but not in the plan\n  hint: plan the fleet again before rendering"
    )]
    NotPlanned {
        /// Cluster name.
        cluster: String,
    },
    /// A version string that does not parse.
    #[error(
        "`{field}` is `{value}`, not a version like `v1.13.9`\n  hint: run `meshfleet validate`"
    )]
    Version {
        /// Field path in the fleet file.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A cluster uses a provider the fleet does not configure.
    #[error(
        "cluster `{cluster}` uses provider `{provider}` but `spec.providers.{provider}` is not set\n  hint: add `spec.providers.{provider}`"
    )]
    ProviderMissing {
        /// Cluster name.
        cluster: String,
        /// Provider name.
        provider: Provider,
    },
    /// A cluster name that collides with a directory of the output layout.
    #[error(
        "cluster name `{cluster}` collides with the output directory `{cluster}/` of the render layout\n  hint: rename the cluster"
    )]
    ReservedName {
        /// Cluster name.
        cluster: String,
    },
    /// Serialisation failed (a bug, reported rather than panicking).
    #[error("cannot serialise `{what}`: {message}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// The serialiser's message.
        message: String,
    },
}

/// Versions parsed once for the whole render.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Versions {
    pub kubernetes: Version,
    pub talos: Version,
}

impl Versions {
    fn parse(fleet: &Fleet) -> Result<Self, RenderError> {
        let v = &fleet.spec.versions;
        let kubernetes = Version::parse(&v.kubernetes).ok_or_else(|| RenderError::Version {
            field: "spec.versions.kubernetes",
            value: v.kubernetes.clone(),
        })?;
        let talos = Version::parse(&v.talos).ok_or_else(|| RenderError::Version {
            field: "spec.versions.talos",
            value: v.talos.clone(),
        })?;
        Ok(Self { kubernetes, talos })
    }

    /// Talos 1.14 moved Kubernetes settings into separate documents.
    pub fn talos_multidoc(self) -> bool {
        (self.talos.major, self.talos.minor) >= (1, 14)
    }
}

/// What every per-cluster renderer needs.
pub(crate) struct Ctx<'a> {
    pub fleet: &'a Fleet,
    pub cluster: &'a Cluster,
    pub plan: &'a ClusterPlan,
    pub versions: Versions,
    /// The firewall rules that open something on this cluster, with the roles they open here.
    pub rules: Vec<(&'a FirewallRule, Vec<Role>)>,
    /// Mesh peers of this cluster (empty when the mesh is off).
    pub peers: &'a [String],
}

impl Ctx<'_> {
    pub fn namespace(&self) -> &str {
        &self.fleet.metadata.name
    }
}

/// The per-cluster contexts of a planned fleet, in fleet-file order.
fn contexts<'a>(fleet: &'a Fleet, plan: &'a Plan) -> Result<Vec<Ctx<'a>>, RenderError> {
    let versions = Versions::parse(fleet)?;
    let by_name: BTreeMap<&str, &ClusterPlan> =
        plan.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut contexts = Vec::new();
    for cluster in &fleet.spec.clusters {
        if cluster.name == FLEET_DIR || cluster.name == PREREQUISITES_DIR {
            return Err(RenderError::ReservedName {
                cluster: cluster.name.clone(),
            });
        }
        let cplan =
            by_name
                .get(cluster.name.as_str())
                .copied()
                .ok_or_else(|| RenderError::NotPlanned {
                    cluster: cluster.name.clone(),
                })?;
        let rules = rules_for(plan, &cluster.name);
        let peers: &[String] = if fleet.spec.mesh.enabled {
            plan.mesh_peers
                .get(&cluster.name)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        } else {
            &[]
        };
        contexts.push(Ctx {
            fleet,
            cluster,
            plan: cplan,
            versions,
            rules,
            peers,
        });
    }
    Ok(contexts)
}

/// The GCP prerequisites of a planned fleet (what `prerequisites/gcp.yaml` holds), or `None`
/// when no cluster runs on GCP. `meshfleet gcp setup` converges exactly this.
pub fn gcp_prerequisites(
    fleet: &Fleet,
    plan: &Plan,
) -> Result<Option<GcpPrerequisites>, RenderError> {
    let contexts = contexts(fleet, plan)?;
    Ok(prereq::gcp(fleet, plan, &contexts))
}

/// The AWS prerequisites of a planned fleet (what `prerequisites/aws.yaml` holds), or `None`
/// when no cluster runs on AWS. `meshfleet aws setup` converges exactly this.
pub fn aws_prerequisites(
    fleet: &Fleet,
    plan: &Plan,
) -> Result<Option<AwsPrerequisites>, RenderError> {
    let contexts = contexts(fleet, plan)?;
    Ok(prereq::aws(fleet, plan, &contexts))
}

/// Render every manifest of a planned fleet. Pure: no file system, network or clock.
pub fn render(fleet: &Fleet, plan: &Plan) -> Result<Rendered, RenderError> {
    let contexts = contexts(fleet, plan)?;
    let mut files = Vec::new();
    let mut clusters = Vec::new();
    let mut proxies = Vec::new();

    for ctx in &contexts {
        let dir = &ctx.cluster.name;
        let patches = talos::Patches::build(ctx)?;
        let objects = match ctx.cluster.provider {
            Provider::Gcp => {
                let gcp = ctx.fleet.spec.providers.gcp.as_ref().ok_or_else(|| {
                    RenderError::ProviderMissing {
                        cluster: ctx.cluster.name.clone(),
                        provider: Provider::Gcp,
                    }
                })?;
                capi::cluster_objects(ctx, &patches, &gcp::Infra::new(ctx, gcp))?
            }
            Provider::Aws => {
                let aws = ctx.fleet.spec.providers.aws.as_ref().ok_or_else(|| {
                    RenderError::ProviderMissing {
                        cluster: ctx.cluster.name.clone(),
                        provider: Provider::Aws,
                    }
                })?;
                capi::cluster_objects(ctx, &patches, &aws::Infra::new(ctx, aws))?
            }
        };
        let values = cilium::values(ctx);
        let values_yaml = yaml::to_yaml(&values, "cilium values")?;
        proxies.push(yaml::emit(
            &cilium::helm_chart_proxy(ctx, &values_yaml),
            "HelmChartProxy",
        )?);

        files.push(RenderedFile {
            path: format!("{dir}/cluster.yaml"),
            contents: yaml::join_docs(&objects),
        });
        files.push(RenderedFile {
            path: format!("{dir}/cilium-values.yaml"),
            contents: values_yaml,
        });
        files.push(RenderedFile {
            path: format!("{dir}/talos-controlplane.patch.yaml"),
            contents: patches.control_plane_file(),
        });
        files.push(RenderedFile {
            path: format!("{dir}/talos-worker.patch.yaml"),
            contents: patches.worker_file(),
        });
        clusters.push(ClusterObjects {
            name: ctx.cluster.name.clone(),
            objects: objects.into_iter().map(|o| o.value).collect(),
        });
    }

    let namespace = yaml::emit(&meta::namespace(fleet), "Namespace")?;
    files.push(RenderedFile {
        path: format!("{FLEET_DIR}/00-namespace.yaml"),
        contents: yaml::join_docs([&namespace]),
    });
    if !proxies.is_empty() {
        files.push(RenderedFile {
            path: format!("{FLEET_DIR}/10-cilium-helmchartproxies.yaml"),
            contents: yaml::join_docs(&proxies),
        });
    }
    let mut fleet_objects = vec![namespace.value];
    fleet_objects.extend(proxies.into_iter().map(|p| p.value));

    if let Some(gcp) = prereq::gcp(fleet, plan, &contexts) {
        files.push(RenderedFile {
            path: format!("{PREREQUISITES_DIR}/gcp.yaml"),
            contents: yaml::to_yaml(&gcp, "GCP prerequisites")?,
        });
    }
    if let Some(aws) = prereq::aws(fleet, plan, &contexts) {
        files.push(RenderedFile {
            path: format!("{PREREQUISITES_DIR}/aws.yaml"),
            contents: yaml::to_yaml(&aws, "AWS prerequisites")?,
        });
    }

    Ok(Rendered {
        files,
        fleet_objects,
        clusters,
    })
}

/// The firewall rules that target `cluster`, each with the roles it opens there (a rule may
/// target several clusters; only this cluster's targets matter here).
fn rules_for<'p>(plan: &'p Plan, cluster: &str) -> Vec<(&'p FirewallRule, Vec<Role>)> {
    plan.firewall
        .iter()
        .filter_map(|rule| {
            let mut roles: Vec<Role> = rule
                .targets
                .iter()
                .filter(|t| t.cluster == cluster)
                .map(|t| t.role)
                .collect();
            roles.sort();
            roles.dedup();
            (!roles.is_empty()).then_some((rule, roles))
        })
        .collect()
}
