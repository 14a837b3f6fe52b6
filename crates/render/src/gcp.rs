//! GCP through CAPG v1.12 (`infrastructure.cluster.x-k8s.io/v1beta1`): GCPCluster and
//! GCPMachineTemplates on the fleet's custom network (a subnet per cluster), with the plan's
//! firewall rules, the Talos image from the project, and the zones as failure domains.

use std::collections::{BTreeMap, BTreeSet};

use meshfleet_plan::{FirewallRule, Protocol, Purpose, Role};
use meshfleet_spec::GcpProvider;
use serde::Serialize;

use crate::capi::{Infra as InfraTrait, MachineRole};
use crate::meta::{self, Object};
use crate::yaml::Emitted;
use crate::{Ctx, RenderError};

pub const API_VERSION: &str = crate::api::CAPG_V1BETA1;

/// The tag CAPG puts on a cluster's control-plane instances.
pub fn control_plane_tag(cluster: &str) -> String {
    format!("{cluster}-control-plane")
}

/// The tag CAPG puts on a cluster's worker instances.
pub fn node_tag(cluster: &str) -> String {
    format!("{cluster}-node")
}

/// The subnetwork of a cluster in the fleet's network (also named in `prerequisites/gcp.yaml`).
pub fn subnet_name(network: &str, cluster: &str) -> String {
    format!("{network}-{cluster}")
}

/// The GCE image name of a Talos release: dots become dashes (`v1.13.9` →
/// `talos-v1-13-9-amd64`), as GCE names allow only `[-a-z0-9]`.
pub fn image_name(talos: &str) -> String {
    format!("talos-{}-amd64", talos.replace('.', "-"))
}

/// A firewall rule in CAPG's (and the Compute API's) shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpFirewallRule {
    /// Rule name, unique in the project (`<cluster>-mf-<purpose>-<protocol>`).
    pub name: String,
    /// Human-readable purpose.
    pub description: String,
    /// `INGRESS`.
    pub direction: &'static str,
    /// Source CIDRs.
    pub source_ranges: Vec<String>,
    /// Instance tags the rule applies to.
    pub target_tags: Vec<String>,
    /// Protocols and ports allowed.
    pub allowed: Vec<Allowed>,
}

/// One protocol (and ports) a firewall rule allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allowed {
    /// `TCP`, `UDP`, `ICMP` or `ESP`.
    #[serde(rename = "IPProtocol")]
    pub ip_protocol: &'static str,
    /// Ports or port ranges (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

fn purpose_code(p: Purpose) -> &'static str {
    match p {
        Purpose::TalosApiManagement => "talos-mgmt",
        Purpose::TalosApiNodes => "talos-nodes",
        Purpose::TalosTrustd => "trustd",
        Purpose::KubeApiserver => "apiserver",
        Purpose::CiliumTunnel => "tunnel",
        Purpose::CiliumHealth => "health",
        Purpose::CiliumWireguard => "wireguard",
        Purpose::CiliumIpsec => "ipsec",
        Purpose::ClustermeshApiserver => "clustermesh",
        Purpose::Hubble => "hubble",
        Purpose::CiliumNativeRouting => "native",
    }
}

fn gcp_protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Icmp => "ICMP",
        Protocol::Esp => "ESP",
    }
}

/// The GCP firewall rules that implement the plan's rules for one cluster: every one of them
/// targets only this cluster's instance tags, so the cluster owns them. CAPG creates the
/// GCPCluster's `firewallRules` and deletes them with the cluster, keeping a name that starts
/// with the cluster name and prefixing `<cluster>-` to any other, then cutting it to 63
/// characters (`cloud/scope/firewall.go`@v1.12.0, `createFirewallRules`;
/// `cloud/services/compute/firewalls/reconcile.go`@v1.12.0). So names are
/// `<cluster>-mf-<purpose>-<protocol>` (a numeric suffix when a purpose repeats), at most
/// 32 + 26 characters, which CAPG keeps as they are; GCE names start with a letter, which
/// validation demands of GCP cluster names.
pub fn firewall_rules(cluster: &str, rules: &[(&FirewallRule, Vec<Role>)]) -> Vec<GcpFirewallRule> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (rule, roles) in rules {
        let base = format!(
            "{cluster}-mf-{}-{}",
            purpose_code(rule.purpose),
            rule.protocol.as_str()
        );
        let mut name = base.clone();
        let mut n = 2;
        while !seen.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let mut target_tags = vec![control_plane_tag(cluster)];
        if roles.contains(&Role::Nodes) {
            target_tags.push(node_tag(cluster));
        }
        out.push(GcpFirewallRule {
            name,
            description: format!("meshfleet: {} to {cluster}", kebab(rule.purpose)),
            direction: "INGRESS",
            source_ranges: rule.sources.iter().map(ToString::to_string).collect(),
            target_tags,
            allowed: vec![Allowed {
                ip_protocol: gcp_protocol(rule.protocol),
                ports: rule.ports.iter().map(ToString::to_string).collect(),
            }],
        });
    }
    out
}

fn kebab(p: Purpose) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// GCE labels (no dots or slashes allowed in keys).
fn gce_labels(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "meshfleet-fleet".to_owned(),
            ctx.fleet.metadata.name.clone(),
        ),
        ("meshfleet-cluster".to_owned(), ctx.cluster.name.clone()),
    ])
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpClusterSpec {
    project: String,
    region: String,
    failure_domains: Vec<String>,
    network: Network,
    additional_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Network {
    name: String,
    auto_create_subnetworks: bool,
    subnets: Vec<Subnet>,
    firewall: Firewall,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Subnet {
    name: String,
    cidr_block: String,
    region: String,
    private_google_access: bool,
    description: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Firewall {
    firewall_rules: Vec<CapgFirewallRule>,
}

/// CAPG names the direction `Ingress`, the Compute API `INGRESS`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CapgFirewallRule {
    name: String,
    description: String,
    direction: &'static str,
    source_ranges: Vec<String>,
    target_tags: Vec<String>,
    allowed: Vec<Allowed>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpMachineTemplateSpec {
    template: GcpMachineTemplateResource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpMachineTemplateResource {
    spec: GcpMachineSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpMachineSpec {
    instance_type: String,
    image: String,
    root_device_size: u32,
    subnet: String,
    #[serde(rename = "publicIP", skip_serializing_if = "Option::is_none")]
    public_ip: Option<bool>,
    additional_labels: BTreeMap<String, String>,
}

/// CAPG objects of one cluster.
pub struct Infra<'a> {
    provider: &'a GcpProvider,
}

impl<'a> Infra<'a> {
    /// For a GCP cluster.
    pub fn new(_ctx: &Ctx<'_>, provider: &'a GcpProvider) -> Self {
        Self { provider }
    }
}

impl InfraTrait for Infra<'_> {
    fn api_version(&self) -> &'static str {
        API_VERSION
    }
    fn cluster_kind(&self) -> &'static str {
        crate::api::GCP_CLUSTER
    }
    fn template_kind(&self) -> &'static str {
        crate::api::GCP_MACHINE_TEMPLATE
    }

    fn cluster(&self, ctx: &Ctx<'_>) -> Result<Emitted, RenderError> {
        let name = &ctx.cluster.name;
        let rules = firewall_rules(name, &ctx.rules)
            .into_iter()
            .map(|r| CapgFirewallRule {
                name: r.name,
                description: r.description,
                direction: "Ingress",
                source_ranges: r.source_ranges,
                target_tags: r.target_tags,
                allowed: r.allowed,
            })
            .collect();
        let obj = Object {
            api_version: API_VERSION,
            kind: crate::api::GCP_CLUSTER,
            metadata: meta::cluster_meta(ctx, name.clone()),
            spec: GcpClusterSpec {
                project: self.provider.project.clone(),
                region: ctx.cluster.region.clone(),
                failure_domains: ctx.cluster.zones.clone(),
                network: Network {
                    // The fleet's custom network: one global VPC across regions gives the mesh
                    // its node-to-node reachability, and avoids the default network's
                    // bootstrap timeout.
                    name: self.provider.network.clone(),
                    auto_create_subnetworks: false,
                    subnets: vec![Subnet {
                        name: subnet_name(&self.provider.network, name),
                        cidr_block: ctx.plan.network.nodes.to_string(),
                        region: ctx.cluster.region.clone(),
                        private_google_access: true,
                        description: format!("meshfleet: nodes of {name}"),
                    }],
                    firewall: Firewall {
                        firewall_rules: rules,
                    },
                },
                additional_labels: gce_labels(ctx),
            },
        };
        ctx.emit(&obj, "GCPCluster")
    }

    fn machine_template(
        &self,
        ctx: &Ctx<'_>,
        base: &str,
        machine_type: &str,
        disk_gib: u32,
        role: MachineRole,
    ) -> Result<(Emitted, String), RenderError> {
        // CACPPT dials apid (50000) on the control-plane machines' addresses from the
        // management cluster; through a public egress that needs a public address, which CAPG
        // gives only with `publicIP: true` (`api/v1beta1/gcpmachine_types.go`@v1.12.0,
        // `cloud/scope/machine.go`@v1.12.0 `InstanceNetworkInterfaceSpec`). Workers keep
        // private addresses and reach out through Cloud NAT.
        let public_ip = (role == MachineRole::ControlPlane
            && crate::management_is_public(ctx.fleet))
        .then_some(true);
        let spec = GcpMachineTemplateSpec {
            template: GcpMachineTemplateResource {
                spec: GcpMachineSpec {
                    instance_type: machine_type.to_owned(),
                    image: format!(
                        "projects/{}/global/images/{}",
                        self.provider.project,
                        image_name(&ctx.fleet.spec.versions.talos)
                    ),
                    root_device_size: disk_gib,
                    subnet: subnet_name(&self.provider.network, &ctx.cluster.name),
                    public_ip,
                    additional_labels: gce_labels(ctx),
                },
            },
        };
        let name = meta::content_name(base, &spec);
        let obj = Object {
            api_version: API_VERSION,
            kind: crate::api::GCP_MACHINE_TEMPLATE,
            metadata: meta::cluster_meta(ctx, name.clone()),
            spec,
        };
        Ok((ctx.emit(&obj, "GCPMachineTemplate")?, name))
    }
}
