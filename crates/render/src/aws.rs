//! AWS through CAPA v2.11 (`infrastructure.cluster.x-k8s.io/v1beta2` only; `v1beta1` is no
//! longer served): AWSCluster with a VPC on the planned node CIDR, one private and one public
//! subnet per zone, Cilium's ports instead of CAPA's Calico defaults, the plan's rules as extra
//! ingress, an NLB in front of the API servers; AWSMachineTemplates on Sidero's public AMIs.

use std::collections::BTreeMap;

use ipnet::IpNet;
use meshfleet_plan::{FirewallRule, Protocol, Purpose, Role};
use meshfleet_spec::{AwsProvider, Encryption, Routing, TunnelProtocol};
use serde::Serialize;

use crate::capi::{Infra as InfraTrait, MachineRole};
use crate::meta::{self, CLUSTER_LABEL, FLEET_LABEL, Object};
use crate::yaml::Emitted;
use crate::{Ctx, RenderError};

pub const API_VERSION: &str = crate::api::CAPA_V1BETA2;

/// Sidero Labs' AWS account, owner of the public Talos AMIs.
pub const TALOS_AMI_OWNER: &str = "540036508848";

/// The architecture of the Talos AMIs the machines use (Talos' naming).
pub const TALOS_AMI_ARCH: &str = "amd64";

/// Name of the public Talos AMI of a release in a region (Sidero's uploader naming).
pub fn ami_name(talos: &str, region: &str) -> String {
    format!("talos-{talos}-{region}-{TALOS_AMI_ARCH}")
}

/// The instance profiles `clusterawsadm bootstrap iam` creates.
const CONTROL_PLANE_PROFILE: &str = "control-plane.cluster-api-provider-aws.sigs.k8s.io";
const NODES_PROFILE: &str = "nodes.cluster-api-provider-aws.sigs.k8s.io";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct CniIngressRule {
    description: String,
    protocol: &'static str,
    from_port: i32,
    to_port: i32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressRule {
    description: String,
    protocol: &'static str,
    from_port: i32,
    to_port: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cidr_blocks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ipv6_cidr_blocks: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsClusterSpec {
    region: String,
    ssh_key_name: String,
    network: Network,
    control_plane_load_balancer: LoadBalancer,
    additional_tags: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Network {
    vpc: Vpc,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subnets: Vec<Subnet>,
    cni: Cni,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additional_control_plane_ingress_rules: Vec<IngressRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additional_node_ingress_rules: Vec<IngressRule>,
    /// Who reaches the nodes' NodePorts (30000-32767). Unset, CAPA opens them to 0.0.0.0/0
    /// (cluster-api-provider-aws:`pkg/cloud/services/securitygroup/securitygroups.go`@v2.11.1,
    /// `getSecurityGroupIngressRules`, role `node`: `services.AnyIPv4CidrBlock` unless
    /// `NodePortIngressRuleCidrBlocks` is given; field of `api/v1beta2/network_types.go`).
    node_port_ingress_rule_cidr_blocks: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Vpc {
    cidr_block: String,
    availability_zone_usage_limit: usize,
    availability_zone_selection: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Subnet {
    id: String,
    cidr_block: String,
    availability_zone: String,
    is_public: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cni {
    cni_ingress_rules: Vec<CniIngressRule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer {
    load_balancer_type: &'static str,
    scheme: &'static str,
    /// TCP: an HTTPS probe would need anonymous access to `/readyz` (see the talos module).
    health_check_protocol: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsMachineTemplateSpec {
    template: AwsMachineTemplateResource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsMachineTemplateResource {
    spec: AwsMachineSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsMachineSpec {
    instance_type: String,
    iam_instance_profile: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_key_name: Option<String>,
    #[serde(rename = "publicIP", skip_serializing_if = "Option::is_none")]
    public_ip: Option<bool>,
    image_lookup_org: &'static str,
    image_lookup_format: String,
    root_volume: RootVolume,
    cloud_init: CloudInit,
    additional_tags: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RootVolume {
    size: u32,
    #[serde(rename = "type")]
    type_: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudInit {
    /// Talos reads its machine config straight from user data; it has no cloud-init to fetch
    /// it from Secrets Manager.
    insecure_skip_secrets_manager: bool,
}

/// Cilium's (and Talos') node-to-node ports inside one cluster. CAPA opens these between the
/// cluster's own security groups; without them CAPA would open Calico's (BGP, IP-in-IP).
fn cni_rules(ctx: &Ctx<'_>) -> Vec<CniIngressRule> {
    let rule = |d: &str, protocol, from_port, to_port| CniIngressRule {
        description: format!("meshfleet: {d}"),
        protocol,
        from_port,
        to_port,
    };
    let mesh = &ctx.fleet.spec.mesh;
    let mut out = Vec::new();
    if mesh.routing == Routing::Tunnel {
        match mesh.tunnel_protocol {
            TunnelProtocol::Vxlan => out.push(rule("cilium VXLAN", "udp", 8472, 8472)),
            TunnelProtocol::Geneve => out.push(rule("cilium Geneve", "udp", 6081, 6081)),
        }
    }
    out.push(rule("cilium-health", "tcp", 4240, 4240));
    // ICMP: type 8 (echo request), any code.
    out.push(rule("cilium-health echo", "icmp", 8, -1));
    match mesh.encryption {
        Encryption::None => {}
        Encryption::Wireguard => out.push(rule("cilium WireGuard", "udp", 51871, 51871)),
        Encryption::Ipsec => out.push(rule("cilium IPsec (ESP)", "50", -1, -1)),
    }
    out.push(rule("hubble", "tcp", 4244, 4244));
    out.push(rule("talos apid", "tcp", 50000, 50000));
    out.push(rule("talos trustd", "tcp", 50001, 50001));
    out
}

fn aws_protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Esp => "50",
    }
}

/// The plan's rules as CIDR-based ingress: management → apid, and every cross-cluster mesh
/// port (security groups cannot be referenced across regions or clouds).
fn plan_rules(rules: &[(&FirewallRule, Vec<Role>)]) -> (Vec<IngressRule>, Vec<IngressRule>) {
    let mut cp = Vec::new();
    let mut nodes = Vec::new();
    for (rule, roles) in rules {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
            rule.sources.iter().partition(|n| matches!(n, IpNet::V4(_)));
        let purpose = serde_json::to_value(rule.purpose)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let ranges: Vec<(i32, i32)> = match rule.protocol {
            Protocol::Icmp => vec![(8, -1)],
            Protocol::Esp => vec![(-1, -1)],
            // A TCP or UDP rule without ports opens them all (native-routed pod traffic).
            _ if rule.ports.is_empty() => vec![(0, 65535)],
            _ => rule
                .ports
                .iter()
                .map(|p| (i32::from(*p), i32::from(*p)))
                .collect(),
        };
        for (from_port, to_port) in ranges {
            let r = IngressRule {
                description: format!("meshfleet: {purpose}"),
                protocol: aws_protocol(rule.protocol),
                from_port,
                to_port,
                cidr_blocks: v4.iter().map(ToString::to_string).collect(),
                ipv6_cidr_blocks: v6.iter().map(ToString::to_string).collect(),
            };
            // `Nodes` means every machine, control plane included.
            cp.push(r.clone());
            if roles.contains(&Role::Nodes) {
                nodes.push(r);
            }
        }
    }
    (cp, nodes)
}

/// The node CIDRs that may reach this cluster's NodePorts: its own, and its mesh peers' where
/// the clustermesh-apiserver is a NodePort (the plan's rule for it lists them). Never empty,
/// so CAPA never falls back to 0.0.0.0/0.
fn node_port_sources(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = vec![ctx.plan.network.nodes];
    for (rule, _) in &ctx.rules {
        if rule.purpose == Purpose::ClustermeshApiserver
            && rule.ports.iter().all(|p| (30000..=32767).contains(p))
        {
            for s in rule.sources.iter().filter(|n| matches!(n, IpNet::V4(_))) {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
        }
    }
    out.iter().map(ToString::to_string).collect()
}

/// One private and one public subnet per zone, carved from the node CIDR in zone order.
/// Returns nothing when the node block is too small to split (CAPA then lays out subnets
/// itself inside the VPC).
fn subnets(cluster: &str, nodes: IpNet, zones: &[String]) -> Vec<Subnet> {
    let wanted = zones.len() * 2;
    if wanted == 0 {
        return Vec::new();
    }
    let bits = usize::BITS - (wanted - 1).leading_zeros();
    let Ok(bits) = u8::try_from(bits) else {
        return Vec::new();
    };
    let new_prefix = nodes.prefix_len().saturating_add(bits);
    // AWS subnets are at most /28.
    if matches!(nodes, IpNet::V4(_)) && new_prefix > 28 {
        return Vec::new();
    }
    let Ok(blocks) = nodes.subnets(new_prefix) else {
        return Vec::new();
    };
    let blocks: Vec<IpNet> = blocks.take(wanted).collect();
    let mut out = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        out.push(Subnet {
            id: format!("{cluster}-private-{zone}"),
            cidr_block: blocks[i].to_string(),
            availability_zone: zone.clone(),
            is_public: false,
        });
    }
    for (i, zone) in zones.iter().enumerate() {
        out.push(Subnet {
            id: format!("{cluster}-public-{zone}"),
            cidr_block: blocks[zones.len() + i].to_string(),
            availability_zone: zone.clone(),
            is_public: true,
        });
    }
    out
}

fn tags(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FLEET_LABEL.to_owned(), ctx.fleet.metadata.name.clone()),
        (CLUSTER_LABEL.to_owned(), ctx.cluster.name.clone()),
    ])
}

/// CAPA objects of one cluster.
pub struct Infra<'a> {
    provider: &'a AwsProvider,
}

impl<'a> Infra<'a> {
    /// For an AWS cluster.
    pub fn new(_ctx: &Ctx<'_>, provider: &'a AwsProvider) -> Self {
        Self { provider }
    }

    /// The AWSCluster's key pair. CAPA takes the AWSMachine's `sshKeyName`, else the
    /// AWSCluster's, else a key pair called `default`, and an empty string means none
    /// (`pkg/cloud/services/ec2/instances.go`@v2.11.1, `CreateInstance`). A key pair that does
    /// not exist in the region fails RunInstances (`InvalidKeyPair.NotFound`), and Talos has no
    /// SSH, so without `providers.aws.sshKeyName` the cluster says "none" and the machine
    /// templates say nothing (they inherit the cluster's).
    fn ssh_key(&self) -> String {
        self.provider.ssh_key_name.clone().unwrap_or_default()
    }
}

impl InfraTrait for Infra<'_> {
    fn api_version(&self) -> &'static str {
        API_VERSION
    }
    fn cluster_kind(&self) -> &'static str {
        crate::api::AWS_CLUSTER
    }
    fn template_kind(&self) -> &'static str {
        crate::api::AWS_MACHINE_TEMPLATE
    }

    fn cluster(&self, ctx: &Ctx<'_>) -> Result<Emitted, RenderError> {
        let name = &ctx.cluster.name;
        let (cp_rules, node_rules) = plan_rules(&ctx.rules);
        let obj = Object {
            api_version: API_VERSION,
            kind: crate::api::AWS_CLUSTER,
            metadata: meta::cluster_meta(ctx, name.clone()),
            spec: AwsClusterSpec {
                region: ctx.cluster.region.clone(),
                ssh_key_name: self.ssh_key(),
                network: Network {
                    vpc: Vpc {
                        cidr_block: ctx.plan.network.nodes.to_string(),
                        availability_zone_usage_limit: ctx.cluster.zones.len().max(1),
                        availability_zone_selection: "Ordered",
                    },
                    subnets: subnets(name, ctx.plan.network.nodes, &ctx.cluster.zones),
                    cni: Cni {
                        cni_ingress_rules: cni_rules(ctx),
                    },
                    additional_control_plane_ingress_rules: cp_rules,
                    additional_node_ingress_rules: node_rules,
                    node_port_ingress_rule_cidr_blocks: node_port_sources(ctx),
                },
                control_plane_load_balancer: LoadBalancer {
                    load_balancer_type: "nlb",
                    scheme: "internet-facing",
                    health_check_protocol: "TCP",
                },
                additional_tags: tags(ctx),
            },
        };
        ctx.emit(&obj, "AWSCluster")
    }

    fn machine_template(
        &self,
        ctx: &Ctx<'_>,
        base: &str,
        machine_type: &str,
        disk_gib: u32,
        role: MachineRole,
    ) -> Result<(Emitted, String), RenderError> {
        let spec = AwsMachineTemplateSpec {
            template: AwsMachineTemplateResource {
                spec: AwsMachineSpec {
                    instance_type: machine_type.to_owned(),
                    iam_instance_profile: match role {
                        MachineRole::ControlPlane => CONTROL_PLANE_PROFILE,
                        MachineRole::Worker => NODES_PROFILE,
                    },
                    ssh_key_name: self.provider.ssh_key_name.clone(),
                    // Control-plane machines need an address the management cluster can dial
                    // on 50000. With `publicIP` CAPA launches into a public subnet of the
                    // machine's failure domain (`FilterPublic().FilterByZone`, `findSubnet`,
                    // `pkg/cloud/services/ec2/instances.go`@v2.11.1), which the AWSCluster
                    // provides in every zone (see `subnets`).
                    public_ip: (role == MachineRole::ControlPlane
                        && crate::management_is_public(ctx.fleet))
                    .then_some(true),
                    image_lookup_org: TALOS_AMI_OWNER,
                    // A literal name: CAPA treats the format as a template, and the exact
                    // AMI name pins the Talos release per region.
                    image_lookup_format: ami_name(
                        &ctx.fleet.spec.versions.talos,
                        &ctx.cluster.region,
                    ),
                    root_volume: RootVolume {
                        size: disk_gib,
                        type_: "gp3",
                    },
                    cloud_init: CloudInit {
                        insecure_skip_secrets_manager: true,
                    },
                    additional_tags: tags(ctx),
                },
            },
        };
        let name = meta::content_name(base, &spec);
        let obj = Object {
            api_version: API_VERSION,
            kind: crate::api::AWS_MACHINE_TEMPLATE,
            metadata: meta::cluster_meta(ctx, name.clone()),
            spec,
        };
        Ok((ctx.emit(&obj, "AWSMachineTemplate")?, name))
    }
}
