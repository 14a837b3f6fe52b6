//! Cloud prerequisites as declarative data (`prerequisites/gcp.yaml`, `prerequisites/aws.yaml`):
//! what must exist before Cluster API can create machines. `meshfleet gcp setup` (and a future
//! `aws setup`) converge these; a platform team can also feed them to its own tooling.

use std::collections::BTreeMap;

use meshfleet_plan::{InterconnectNeed, LinkEnd, LinkKind, Plan};
use meshfleet_spec::{Fleet, Provider};
use serde::Serialize;

use crate::{Ctx, aws, gcp};

const API_VERSION: &str = "meshfleet.io/v1alpha1";

/// Roles of CAPG's controller service account (shared/docs/CLOUD-SETUP.md §GCP): least
/// privilege. No `roles/compute.networkAdmin`: meshfleet owns the network, subnetworks and
/// routers (CAPG only creates those for networks it created itself).
const CAPG_ROLES: [&str; 4] = [
    "roles/compute.instanceAdmin.v1",
    "roles/compute.loadBalancerAdmin",
    "roles/compute.securityAdmin",
    "roles/iam.serviceAccountUser",
];

const GCP_APIS: [&str; 5] = [
    "compute.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "storage.googleapis.com",
    "serviceusage.googleapis.com",
];

/// `prerequisites/gcp.yaml`: everything that must exist in the GCP project before CAPG can
/// create machines. Public so `meshfleet-gcp` converges the same data render writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpPrerequisites {
    /// `meshfleet.io/v1alpha1`.
    pub api_version: &'static str,
    /// `GcpPrerequisites`.
    pub kind: &'static str,
    /// Fleet name.
    pub fleet: String,
    /// GCP project id (`providers.gcp.project`).
    pub project: String,
    /// Service names to enable, e.g. `compute.googleapis.com`.
    pub apis: Vec<&'static str>,
    /// The fleet's custom VPC.
    pub network: GcpNetwork,
    /// One subnetwork per GCP cluster.
    pub subnetworks: Vec<GcpSubnetwork>,
    /// One Cloud Router (with Cloud NAT) per region.
    pub routers: Vec<GcpRouter>,
    /// Firewall rules `gcp setup` owns, in the Compute API's shape. Empty today: every rule the
    /// plan derives targets one cluster's instance tags, so it belongs to that cluster and CAPG
    /// owns it (the GCPCluster's `firewallRules`, created and deleted with the cluster); a rule
    /// listed here as well would exist twice and outlive the cluster (REAL-STACK.md §7).
    pub firewall_rules: Vec<gcp::GcpFirewallRule>,
    /// The Talos image.
    pub image: GcpImage,
    /// CAPG's controller service account.
    pub service_account: GcpServiceAccount,
    /// The links between node networks this cloud takes part in (informational; `net setup`
    /// works from the plan).
    #[serde(skip_serializing_if = "Interconnects::is_empty")]
    pub interconnects: Interconnects,
}

/// The fleet's VPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpNetwork {
    /// Network name (`providers.gcp.network`).
    pub name: String,
    /// Always false: meshfleet creates one subnetwork per cluster.
    pub auto_create_subnetworks: bool,
    /// `GLOBAL`.
    pub routing_mode: &'static str,
}

/// A cluster's subnetwork.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpSubnetwork {
    /// Subnetwork name (`<network>-<cluster>`).
    pub name: String,
    /// Cluster it belongs to.
    pub cluster: String,
    /// Region.
    pub region: String,
    /// The cluster's planned node CIDR.
    pub ip_cidr_range: String,
    /// Nodes without public addresses reach Google APIs.
    pub private_ip_google_access: bool,
}

/// A Cloud Router carrying the region's Cloud NAT.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpRouter {
    /// Router name (`<network>-<region>`).
    pub name: String,
    /// Region.
    pub region: String,
    /// Its NAT.
    pub nat: GcpNat,
}

/// A Cloud NAT configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpNat {
    /// NAT name (`<network>-<region>-nat`).
    pub name: String,
    /// `AUTO_ONLY`.
    pub nat_ip_allocate_option: &'static str,
    /// `ALL_SUBNETWORKS_ALL_IP_RANGES`.
    pub source_subnetwork_ip_ranges_to_nat: &'static str,
}

/// The Talos image CAPG boots.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpImage {
    /// Compute image name (named after the Talos version).
    pub name: String,
    /// Bucket the raw disk is uploaded to (`providers.gcp.imageBucket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Object name of the raw disk in the bucket.
    pub object: String,
    /// Where the raw disk comes from (Talos Image Factory, vanilla schematic).
    pub source: String,
    /// `X86_64` or `ARM64`.
    pub architecture: &'static str,
}

/// CAPG's controller service account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpServiceAccount {
    /// Account id (the part of the email before `@`).
    pub name: &'static str,
    /// Project roles it gets.
    pub roles: Vec<&'static str>,
}

/// The links a cloud's side takes part in, in a form that grows with the fleet and not with its
/// pairs: CAPA makes one VPC per cluster, so a fleet of N AWS clusters needs N·(N−1)/2 links,
/// and listing each with its ends made `prerequisites/*.yaml` quadratic (a 511-cluster fleet
/// wrote 48 kB per cluster instead of 18). Every node network appears once; the links are
/// counted per kind and transport, and `meshfleet plan -o json` names each one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interconnects {
    /// The node networks the links join: their clusters and node CIDRs (the routes and firewall
    /// sources of the other ends).
    pub networks: Vec<LinkEnd>,
    /// The links, per kind and transport.
    pub links: Vec<LinkGroup>,
}

impl Interconnects {
    /// No link at all (a fleet on one network).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// Links of one kind provided one way.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkGroup {
    /// What they join (GCP ↔ AWS, AWS across regions, AWS in one region).
    pub kind: LinkKind,
    /// How the fleet file says to provide them (absent: unset, a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// How many.
    pub count: usize,
}

/// The vanilla Talos Image Factory schematic (no extensions).
const VANILLA_SCHEMATIC: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

fn interconnects<'a>(needs: impl Iterator<Item = &'a InterconnectNeed>) -> Interconnects {
    let mut networks: BTreeMap<&str, &LinkEnd> = BTreeMap::new();
    let mut links: BTreeMap<(LinkKind, Option<&str>), usize> = BTreeMap::new();
    for n in needs {
        for e in &n.ends {
            networks.entry(e.network.as_str()).or_insert(e);
        }
        *links.entry((n.kind, n.via.as_deref())).or_default() += 1;
    }
    Interconnects {
        networks: networks.into_values().cloned().collect(),
        links: links
            .into_iter()
            .map(|((kind, via), count)| LinkGroup {
                kind,
                via: via.map(str::to_owned),
                count,
            })
            .collect(),
    }
}

/// `prerequisites/gcp.yaml`, when any cluster runs on GCP.
pub fn gcp(fleet: &Fleet, plan: &Plan, contexts: &[Ctx<'_>]) -> Option<GcpPrerequisites> {
    let provider = fleet.spec.providers.gcp.as_ref()?;
    let clusters: Vec<&Ctx<'_>> = contexts
        .iter()
        .filter(|c| c.cluster.provider == Provider::Gcp)
        .collect();
    if clusters.is_empty() {
        return None;
    }
    let network = &provider.network;
    let regions: BTreeMap<&str, ()> = clusters
        .iter()
        .map(|c| (c.cluster.region.as_str(), ()))
        .collect();
    let talos = &fleet.spec.versions.talos;
    Some(GcpPrerequisites {
        api_version: API_VERSION,
        kind: "GcpPrerequisites",
        fleet: fleet.metadata.name.clone(),
        project: provider.project.clone(),
        apis: GCP_APIS.to_vec(),
        network: GcpNetwork {
            name: network.clone(),
            auto_create_subnetworks: false,
            // One VPC routes every region: GCP clusters reach each other without peering, and
            // HA VPN advertises every region's subnets.
            routing_mode: "GLOBAL",
        },
        subnetworks: clusters
            .iter()
            .map(|c| GcpSubnetwork {
                name: gcp::subnet_name(network, &c.cluster.name),
                cluster: c.cluster.name.clone(),
                region: c.cluster.region.clone(),
                ip_cidr_range: c.plan.network.nodes.to_string(),
                private_ip_google_access: true,
            })
            .collect(),
        // CAPG creates a router and NAT only for networks it created itself; nodes without
        // public addresses need NAT for image pulls, so meshfleet provides one per region.
        routers: regions
            .keys()
            .map(|r| GcpRouter {
                name: format!("{network}-{r}"),
                region: (*r).to_owned(),
                nat: GcpNat {
                    name: format!("{network}-{r}-nat"),
                    nat_ip_allocate_option: "AUTO_ONLY",
                    source_subnetwork_ip_ranges_to_nat: "ALL_SUBNETWORKS_ALL_IP_RANGES",
                },
            })
            .collect(),
        // One owner per rule: CAPG (see the field's documentation).
        firewall_rules: Vec::new(),
        image: GcpImage {
            name: gcp::image_name(talos),
            bucket: provider.image_bucket.clone(),
            object: format!("talos-{talos}-gcp-amd64.raw.tar.gz"),
            source: format!(
                "https://factory.talos.dev/image/{VANILLA_SCHEMATIC}/{talos}/gcp-amd64.raw.tar.gz"
            ),
            architecture: "X86_64",
        },
        service_account: GcpServiceAccount {
            name: "capg-controller",
            roles: CAPG_ROLES.to_vec(),
        },
        interconnects: interconnects(
            plan.interconnects
                .iter()
                .filter(|n| n.between.iter().any(|b| b.starts_with("gcp"))),
        ),
    })
}

/// `prerequisites/aws.yaml`: everything that must exist in the AWS account before CAPA can
/// create machines. Public so `meshfleet-aws` converges the same data render writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsPrerequisites {
    /// `meshfleet.io/v1alpha1`.
    pub api_version: &'static str,
    /// `AwsPrerequisites`.
    pub kind: &'static str,
    /// Fleet name.
    pub fleet: String,
    /// CAPA's IAM (roles, instance profiles, managed policies).
    pub iam: AwsIam,
    /// The EC2 key pair every region must already have (`providers.aws.sshKeyName`): CAPA
    /// passes it to RunInstances, which fails when it is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key_name: Option<String>,
    /// One entry per region an AWS cluster runs in, sorted by region.
    pub regions: Vec<AwsRegion>,
    /// The links between node networks this cloud takes part in (informational; `net setup`
    /// works from the plan).
    #[serde(skip_serializing_if = "Interconnects::is_empty")]
    pub interconnects: Interconnects,
}

/// CAPA's IAM, as `clusterawsadm bootstrap iam create-cloudformation-stack` lays it out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsIam {
    /// The stack `clusterawsadm bootstrap iam create-cloudformation-stack` creates.
    pub cloud_formation_stack: &'static str,
    /// The instance profiles the AWSMachineTemplates name.
    pub instance_profiles: Vec<&'static str>,
}

/// One AWS region of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsRegion {
    /// Region name, e.g. `eu-west-1`.
    pub region: String,
    /// The Talos AMI the AWSMachineTemplates look up there.
    pub ami: AwsAmi,
    /// One VPC per cluster in the region.
    pub vpcs: Vec<AwsVpc>,
}

/// The public Talos AMI a region must have.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsAmi {
    /// Owning account (Sidero Labs).
    pub owner: &'static str,
    /// Exact AMI name, `talos-<version>-<region>-<arch>`.
    pub name: String,
    /// Architecture in Talos' naming (`amd64`).
    pub arch: &'static str,
}

/// A cluster's VPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpc {
    /// Cluster name.
    pub cluster: String,
    /// The planned node CIDR.
    pub cidr_block: String,
    /// Availability zones.
    pub zones: Vec<String>,
}

/// `prerequisites/aws.yaml`, when any cluster runs on AWS.
pub fn aws(fleet: &Fleet, plan: &Plan, contexts: &[Ctx<'_>]) -> Option<AwsPrerequisites> {
    let mut regions: BTreeMap<&str, Vec<AwsVpc>> = BTreeMap::new();
    for c in contexts
        .iter()
        .filter(|c| c.cluster.provider == Provider::Aws)
    {
        regions.entry(&c.cluster.region).or_default().push(AwsVpc {
            cluster: c.cluster.name.clone(),
            cidr_block: c.plan.network.nodes.to_string(),
            zones: c.cluster.zones.clone(),
        });
    }
    if regions.is_empty() {
        return None;
    }
    Some(AwsPrerequisites {
        api_version: API_VERSION,
        kind: "AwsPrerequisites",
        fleet: fleet.metadata.name.clone(),
        iam: AwsIam {
            cloud_formation_stack: "cluster-api-provider-aws-sigs-k8s-io",
            instance_profiles: vec![
                "control-plane.cluster-api-provider-aws.sigs.k8s.io",
                "nodes.cluster-api-provider-aws.sigs.k8s.io",
            ],
        },
        ssh_key_name: fleet
            .spec
            .providers
            .aws
            .as_ref()
            .and_then(|a| a.ssh_key_name.clone())
            .filter(|k| !k.is_empty()),
        regions: regions
            .into_iter()
            .map(|(region, vpcs)| AwsRegion {
                region: region.to_owned(),
                ami: AwsAmi {
                    owner: aws::TALOS_AMI_OWNER,
                    name: aws::ami_name(&fleet.spec.versions.talos, region),
                    arch: aws::TALOS_AMI_ARCH,
                },
                vpcs,
            })
            .collect(),
        interconnects: interconnects(
            plan.interconnects
                .iter()
                .filter(|n| n.between.iter().any(|b| b.starts_with("aws"))),
        ),
    })
}
