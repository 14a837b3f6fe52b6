//! Cloud prerequisites as declarative data (`prerequisites/gcp.yaml`, `prerequisites/aws.yaml`):
//! what must exist before Cluster API can create machines. `meshfleet gcp setup` (and a future
//! `aws setup`) converge these; a platform team can also feed them to its own tooling.

use std::collections::BTreeMap;

use meshfleet_plan::{InterconnectNeed, Plan};
use meshfleet_spec::{Fleet, Provider};
use serde::Serialize;

use crate::{Ctx, aws, gcp};

const API_VERSION: &str = "meshfleet.io/v1alpha1";

/// Roles of CAPG's controller service account (shared/docs/CLOUD-SETUP.md §GCP): least
/// privilege for a network meshfleet owns, so no `compute.networkAdmin`.
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpPrerequisites {
    api_version: &'static str,
    kind: &'static str,
    fleet: String,
    project: String,
    apis: Vec<&'static str>,
    network: GcpNetwork,
    subnetworks: Vec<GcpSubnetwork>,
    routers: Vec<GcpRouter>,
    firewall_rules: Vec<gcp::GcpFirewallRule>,
    image: GcpImage,
    service_account: ServiceAccount,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interconnects: Vec<Interconnect>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpNetwork {
    name: String,
    auto_create_subnetworks: bool,
    routing_mode: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpSubnetwork {
    name: String,
    cluster: String,
    region: String,
    ip_cidr_range: String,
    private_ip_google_access: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpRouter {
    name: String,
    region: String,
    nat: GcpNat,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpNat {
    name: String,
    nat_ip_allocate_option: &'static str,
    source_subnetwork_ip_ranges_to_nat: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GcpImage {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    object: String,
    /// Where the raw disk comes from (Talos Image Factory, vanilla schematic).
    source: String,
    architecture: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceAccount {
    name: &'static str,
    roles: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Interconnect {
    between: [String; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
}

/// The vanilla Talos Image Factory schematic (no extensions).
const VANILLA_SCHEMATIC: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

fn interconnects<'a>(needs: impl Iterator<Item = &'a InterconnectNeed>) -> Vec<Interconnect> {
    needs
        .map(|n| Interconnect {
            between: n.between.clone(),
            via: n.via.clone(),
        })
        .collect()
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
        firewall_rules: clusters
            .iter()
            .flat_map(|c| gcp::firewall_rules(&c.cluster.name, &c.rules))
            .collect(),
        image: GcpImage {
            name: gcp::image_name(talos),
            bucket: provider.image_bucket.clone(),
            object: format!("talos-{talos}-gcp-amd64.raw.tar.gz"),
            source: format!(
                "https://factory.talos.dev/image/{VANILLA_SCHEMATIC}/{talos}/gcp-amd64.raw.tar.gz"
            ),
            architecture: "X86_64",
        },
        service_account: ServiceAccount {
            name: "meshfleet-capg",
            roles: CAPG_ROLES.to_vec(),
        },
        interconnects: interconnects(
            plan.interconnects
                .iter()
                .filter(|n| n.between.iter().any(|b| b.starts_with("gcp"))),
        ),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsPrerequisites {
    api_version: &'static str,
    kind: &'static str,
    fleet: String,
    iam: AwsIam,
    regions: Vec<AwsRegion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interconnects: Vec<Interconnect>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsIam {
    /// The stack `clusterawsadm bootstrap iam create-cloudformation-stack` creates.
    cloud_formation_stack: &'static str,
    instance_profiles: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsRegion {
    region: String,
    ami: AwsAmi,
    vpcs: Vec<AwsVpc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsAmi {
    owner: &'static str,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsVpc {
    cluster: String,
    cidr_block: String,
    zones: Vec<String>,
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
        regions: regions
            .into_iter()
            .map(|(region, vpcs)| AwsRegion {
                region: region.to_owned(),
                ami: AwsAmi {
                    owner: aws::TALOS_AMI_OWNER,
                    name: aws::ami_name(&fleet.spec.versions.talos, region),
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
