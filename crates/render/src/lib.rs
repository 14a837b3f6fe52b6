//! The renderer: fleet + plan → every manifest meshfleet hands to a management cluster.
//!
//! Rendering is pure (no file system, network or clock) so the same fleet and plan always give
//! byte-identical output, and so tests can check every object against the upstream schemas.
//! Each object is a typed Rust struct (never a string template): a misspelt field is a compile
//! error here and a schema failure in the conformance tests, not a silent drop by the API server.
//!
//! [`render`] returns the files of the `render --out DIR` layout (DESIGN.md §4) and the same
//! objects as JSON values in apply order, for `meshfleet up` to server-side-apply, with each
//! cluster's add-ons (Cilium, the cloud controller managers) also as data
//! ([`ClusterObjects::cilium`], [`ClusterObjects::addons`]). [`cilium_proxy_with_peers`] gives
//! a cluster's Cilium proxy naming the peers whose endpoints `up` has learnt, and
//! [`required_providers`] the provider versions a management cluster must run.

#![warn(missing_docs)]

pub mod api;
mod aws;
mod capi;
mod ccm;
mod cilium;
mod gcp;
mod meta;
mod prereq;
mod providers;
mod talos;
mod yaml;

use std::collections::BTreeMap;

use ipnet::IpNet;
use meshfleet_plan::{ClusterPlan, FirewallRule, Plan, Role};
use meshfleet_spec::{Cluster, Fleet, Provider, Version};
use serde_json::Value;

pub use ccm::{
    AWS_CCM_CHART, AWS_CCM_REPO, AWS_CCM_VERSION, AddonKind, TALOS_CCM_CHART, TALOS_CCM_REPO,
    TALOS_CCM_VERSION, addon_proxy_name,
};
pub use cilium::{
    AWS_CROSS_REGION_MTU, CA_SECRET_NAME, CILIUM_CHART, CILIUM_REPO, CLUSTERMESH_LB_PORT,
    CLUSTERMESH_NODE_PORT, CROSS_CLOUD_MTU, IPSEC_SECRET_NAME, MESH_CA_DELIVERED, MESH_CA_LABEL,
    PeerEndpoint, clustermesh_port, pinned_mtu, proxy_name,
};
pub use gcp::{Allowed, GcpFirewallRule};
pub use meta::{CLUSTER_LABEL, FLEET_LABEL, POOL_LABEL};
pub use prereq::{
    AwsAmi, AwsIam, AwsPrerequisites, AwsRegion, AwsVpc, GcpImage, GcpNat, GcpNetwork,
    GcpPrerequisites, GcpRouter, GcpServiceAccount, GcpSubnetwork, Interconnects, LinkGroup,
};
pub use providers::{ProviderRequirement, ProviderType, required_providers};

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

/// The objects of one workload cluster, in apply order, and its add-ons as data.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterObjects {
    /// Cluster name.
    pub name: String,
    /// Cluster API, Talos and infrastructure objects, in the order `cluster.yaml` lists them.
    pub objects: Vec<Value>,
    /// The cluster's Cilium release (also in [`Rendered::fleet_objects`]).
    pub cilium: CiliumRelease,
    /// The cluster's other add-ons, the cloud controller managers, in apply order (also in
    /// [`Rendered::fleet_objects`]).
    pub addons: Vec<Addon>,
}

impl ClusterObjects {
    /// A cluster known only by name (no objects, no add-ons): what `down` needs for a cluster
    /// the fleet file no longer names.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            objects: Vec::new(),
            cilium: CiliumRelease::default(),
            addons: Vec::new(),
        }
    }
}

/// One cluster's Cilium release as data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CiliumRelease {
    /// The Helm values (what `cilium-values.yaml` holds), naming no peer.
    pub values: Value,
    /// The `HelmChartProxy` that installs them.
    pub proxy: Value,
    /// True when the proxy also selects [`MESH_CA_LABEL`]` = `[`MESH_CA_DELIVERED`]: `up` sets
    /// that label on the Cluster once the mesh CA (and IPsec keys) are in the workload cluster.
    pub held_back: bool,
}

/// One add-on release of a cluster as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Addon {
    /// Which add-on.
    pub kind: AddonKind,
    /// The Helm values.
    pub values: Value,
    /// The `HelmChartProxy` that installs them (named [`addon_proxy_name`]).
    pub proxy: Value,
}

/// Everything [`render`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The files of the output directory, in a stable order.
    pub files: Vec<RenderedFile>,
    /// Fleet-wide management-cluster objects in apply order: the Namespace first, then one
    /// Cilium `HelmChartProxy` per cluster, then the clusters' CCM `HelmChartProxy`s.
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
    /// A cluster name the fleet does not have.
    #[error(
        "the fleet has no cluster `{cluster}`\n  hint: use a cluster name from `spec.clusters`"
    )]
    UnknownCluster {
        /// The name asked for.
        cluster: String,
    },
    /// A peer that cannot be named in a cluster's Cilium values.
    #[error(
        "cannot name peer `{peer}` in the Cilium values of `{cluster}`: {why}\n  hint: pass only the cluster's mesh peers from the plan, each with node IPs or an address"
    )]
    Peer {
        /// The cluster whose values were asked for.
        cluster: String,
        /// The peer.
        peer: String,
        /// Why.
        why: &'static str,
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
}

impl Versions {
    fn parse(fleet: &Fleet) -> Result<Self, RenderError> {
        let v = &fleet.spec.versions;
        let kubernetes = Version::parse(&v.kubernetes).ok_or_else(|| RenderError::Version {
            field: "spec.versions.kubernetes",
            value: v.kubernetes.clone(),
        })?;
        // Checked although nothing branches on it: image and AMI names are built from it.
        Version::parse(&v.talos).ok_or_else(|| RenderError::Version {
            field: "spec.versions.talos",
            value: v.talos.clone(),
        })?;
        Ok(Self { kubernetes })
    }
}

/// Whether the management cluster dials the nodes from a public address: some
/// `management.egressCIDRs` entry lies outside the private, shared (CGNAT), loopback and
/// link-local ranges. Control-plane machines then get public addresses (apid on 50000 must be
/// reachable from there); with only private egress the management cluster is taken to reach
/// the node networks privately, and the firewall opens 50000 to those private ranges.
pub fn management_is_public(fleet: &Fleet) -> bool {
    const NON_PUBLIC: [&str; 10] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
        "0.0.0.0/32",
    ];
    let non_public: Vec<IpNet> = NON_PUBLIC.iter().filter_map(|n| n.parse().ok()).collect();
    fleet
        .spec
        .management
        .egress_cidrs
        .iter()
        .filter_map(|c| c.parse::<IpNet>().ok())
        .any(|c| !non_public.iter().any(|p| p.contains(&c)))
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
    /// Whether objects are also wanted as JSON values (false for [`render_files`]).
    pub values: bool,
}

impl Ctx<'_> {
    pub fn namespace(&self) -> &str {
        &self.fleet.metadata.name
    }

    /// Serialise an object as YAML, and as a JSON value when this render wants values.
    pub fn emit<T: serde::Serialize>(
        &self,
        t: &T,
        what: &str,
    ) -> Result<yaml::Emitted, RenderError> {
        yaml::emit_as(t, what, self.values)
    }
}

/// The per-cluster contexts of a planned fleet, in fleet-file order.
fn contexts<'a>(fleet: &'a Fleet, plan: &'a Plan) -> Result<Vec<Ctx<'a>>, RenderError> {
    contexts_as(fleet, plan, true, None)
}

/// [`contexts`], saying whether JSON values are wanted, and of every cluster or only of the
/// one named `only` (the whole fleet is still checked). Only one: `up` asks for each cluster's
/// Cilium proxy in turn, and building every cluster's context (its firewall rules are a walk
/// over the fleet's) for each made that quadratic in the fleet — 12 ms a proxy at 511.
fn contexts_as<'a>(
    fleet: &'a Fleet,
    plan: &'a Plan,
    values: bool,
    only: Option<&str>,
) -> Result<Vec<Ctx<'a>>, RenderError> {
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
        if only.is_some_and(|o| o != cluster.name) {
            continue;
        }
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
            values,
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
    render_as(fleet, plan, true)
}

/// The files of [`render`] alone (what `render --out` writes), byte-identical to
/// [`Rendered::files`], without building the objects as JSON values: those trees of maps are
/// most of a large render's memory and time, and writing files needs none of them.
pub fn render_files(fleet: &Fleet, plan: &Plan) -> Result<RenderedFiles, RenderError> {
    let r = render_as(fleet, plan, false)?;
    Ok(RenderedFiles {
        objects: r.fleet_objects.len() + r.clusters.iter().map(|c| c.objects.len()).sum::<usize>(),
        files: r.files,
    })
}

/// What [`render_files`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFiles {
    /// The files of the output directory, in a stable order (as [`Rendered::files`]).
    pub files: Vec<RenderedFile>,
    /// How many objects the files hold (as `Rendered::all_objects().count()`).
    pub objects: usize,
}

/// [`render`], with the objects as JSON values only when `values` (otherwise each is `Null`).
fn render_as(fleet: &Fleet, plan: &Plan, values: bool) -> Result<Rendered, RenderError> {
    let contexts = contexts_as(fleet, plan, values, None)?;
    let mut files = Vec::new();
    let mut clusters = Vec::new();
    let mut cilium_proxies = Vec::new();
    let mut ccm_proxies = Vec::new();
    let no_peers = BTreeMap::new();

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
        let (values, values_yaml, proxy) = cilium_release(ctx, &no_peers)?;
        let cilium = CiliumRelease {
            values,
            proxy: proxy.value.clone(),
            held_back: cilium::held_back(fleet),
        };
        cilium_proxies.push(proxy);
        let mut addons = Vec::new();
        for (kind, values) in ccm_values(ctx)? {
            let yaml_text = yaml::to_yaml(&values, "CCM values")?;
            let proxy = ctx.emit(
                &ccm::helm_chart_proxy(ctx, kind, &yaml_text),
                api::HELM_CHART_PROXY,
            )?;
            addons.push(Addon {
                kind,
                values,
                proxy: proxy.value.clone(),
            });
            ccm_proxies.push(proxy);
        }

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
            cilium,
            addons,
        });
    }

    let namespace = yaml::emit(&meta::namespace(fleet), api::NAMESPACE)?;
    files.push(RenderedFile {
        path: format!("{FLEET_DIR}/00-namespace.yaml"),
        contents: yaml::join_docs([&namespace]),
    });
    if !cilium_proxies.is_empty() {
        files.push(RenderedFile {
            path: format!("{FLEET_DIR}/10-cilium-helmchartproxies.yaml"),
            contents: yaml::join_docs(&cilium_proxies),
        });
    }
    if !ccm_proxies.is_empty() {
        files.push(RenderedFile {
            path: format!("{FLEET_DIR}/20-ccm-helmchartproxies.yaml"),
            contents: yaml::join_docs(&ccm_proxies),
        });
    }
    let mut fleet_objects = vec![namespace.value];
    fleet_objects.extend(cilium_proxies.into_iter().map(|p| p.value));
    fleet_objects.extend(ccm_proxies.into_iter().map(|p| p.value));

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

/// One cluster's Cilium values (as a value and as YAML) and its proxy.
fn cilium_release(
    ctx: &Ctx<'_>,
    peers: &BTreeMap<String, PeerEndpoint>,
) -> Result<(Value, String, yaml::Emitted), RenderError> {
    let values = cilium::values(ctx, peers);
    let values_yaml = yaml::to_yaml(&values, "cilium values")?;
    let proxy = ctx.emit(
        &cilium::helm_chart_proxy(ctx, &values_yaml),
        api::HELM_CHART_PROXY,
    )?;
    let values = if ctx.values {
        yaml::to_value(&values, "cilium values")?
    } else {
        Value::Null
    };
    Ok((values, values_yaml, proxy))
}

/// The CCMs of one cluster with their values: the Talos CCM always, the AWS CCM where
/// LoadBalancer Services are needed.
fn ccm_values(ctx: &Ctx<'_>) -> Result<Vec<(AddonKind, Value)>, RenderError> {
    let mut out = vec![(
        AddonKind::TalosCcm,
        yaml::to_value(&ccm::talos_ccm_values(ctx), "Talos CCM values")?,
    )];
    if ccm::needs_aws_ccm(ctx) {
        out.push((
            AddonKind::AwsCcm,
            yaml::to_value(&ccm::aws_ccm_values(ctx), "AWS CCM values")?,
        ));
    }
    Ok(out)
}

fn context_of<'a>(contexts: &'a [Ctx<'a>], cluster: &str) -> Result<&'a Ctx<'a>, RenderError> {
    contexts
        .iter()
        .find(|c| c.cluster.name == cluster)
        .ok_or_else(|| RenderError::UnknownCluster {
            cluster: cluster.to_owned(),
        })
}

/// `cluster`'s Cilium values naming exactly `peers` (each with its `ips` or `address` and
/// port), everything else as [`render`] gives it. Pure.
pub fn cilium_values_with_peers(
    fleet: &Fleet,
    plan: &Plan,
    cluster: &str,
    peers: &BTreeMap<String, PeerEndpoint>,
) -> Result<Value, RenderError> {
    let contexts = contexts_as(fleet, plan, true, Some(cluster))?;
    let ctx = context_of(&contexts, cluster)?;
    cilium::check_peers(ctx, peers)?;
    Ok(cilium_release(ctx, peers)?.0)
}

/// `cluster`'s Cilium `HelmChartProxy` whose values name exactly `peers`, for `meshfleet up`
/// to apply as the peers' clustermesh-apiserver endpoints become known. With no peers it is
/// the proxy [`render`] gives. Every peer must be a mesh peer of `cluster` in the plan and
/// have node IPs or an address (the chart refuses an entry with neither). Pure.
pub fn cilium_proxy_with_peers(
    fleet: &Fleet,
    plan: &Plan,
    cluster: &str,
    peers: &BTreeMap<String, PeerEndpoint>,
) -> Result<Value, RenderError> {
    let contexts = contexts_as(fleet, plan, true, Some(cluster))?;
    let ctx = context_of(&contexts, cluster)?;
    cilium::check_peers(ctx, peers)?;
    Ok(cilium_release(ctx, peers)?.2.value)
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
