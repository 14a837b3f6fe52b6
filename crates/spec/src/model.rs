//! The fleet file's types (`apiVersion: meshfleet.io/v1alpha1`, `kind: Fleet`).
//!
//! Field names are normative (DESIGN.md §2): they are what users write, so none may be renamed.
//! Every struct denies unknown fields; the JSON schema derived from these types drives the
//! structural pass of validation, so a field added here is validated without further work.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "meshfleet.io/v1alpha1";
/// The only `kind` a fleet file may have.
pub const KIND: &str = "Fleet";

/// A whole fleet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fleet {
    /// Always `meshfleet.io/v1alpha1`.
    pub api_version: String,
    /// Always `Fleet`.
    pub kind: String,
    /// The fleet's identity.
    pub metadata: Metadata,
    /// What the fleet should look like.
    pub spec: FleetSpec,
}

/// Fleet identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// DNS-1123 label; becomes the `meshfleet.io/fleet` label and the management namespace.
    pub name: String,
    /// Extra labels copied onto every object meshfleet creates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The desired state of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    /// Kubernetes, Talos and Cilium versions shared by every cluster.
    pub versions: Versions,
    /// Address pools the planner carves per-cluster blocks from.
    #[serde(default)]
    pub network: NetworkPools,
    /// Cilium ClusterMesh settings.
    #[serde(default)]
    pub mesh: Mesh,
    /// Pod Security admission defaults for every cluster.
    #[serde(default)]
    pub pod_security: PodSecurity,
    /// Where the management cluster lives, network-wise.
    #[serde(default)]
    pub management: Management,
    /// How clusters in different networks reach each other.
    #[serde(default)]
    pub interconnect: Interconnect,
    /// Per-cloud settings; a provider used by a cluster must be configured here.
    #[serde(default)]
    pub providers: Providers,
    /// Talos settings shared by every cluster.
    #[serde(default)]
    pub talos: TalosSettings,
    /// How version changes roll through the fleet: waves, parallelism, health timeout.
    #[serde(default)]
    pub rollout: crate::rollout::Rollout,
    /// The clusters of the fleet.
    pub clusters: Vec<Cluster>,
}

/// Component versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Versions {
    /// Kubernetes version with the leading `v`, e.g. `v1.35.4`.
    pub kubernetes: String,
    /// Talos version with the leading `v`, e.g. `v1.13.9`.
    pub talos: String,
    /// Cilium chart version without a `v`, e.g. `1.19.5`.
    pub cilium: String,
}

/// Talos settings shared by every cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TalosSettings {
    /// Form of the strategic patches meshfleet puts into the Talos bootstrap configs.
    #[serde(default)]
    pub patch_format: PatchFormat,
}

/// Form of the Talos strategic patches.
///
/// The v1alpha1 form is the only one the Talos bootstrap provider v0.6.12 can decode (it
/// vendors Talos machinery v1.13.0, which has no `Kube*Config` documents), and Talos 1.14 still
/// accepts it; the multi-document form is for a bootstrap provider built on machinery ≥ 1.14.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PatchFormat {
    /// One `v1alpha1` document (`machine`, `cluster`); valid for every Talos line.
    #[default]
    #[serde(rename = "v1alpha1")]
    V1alpha1,
    /// One document per concern (`KubeNetworkConfig`, `KubeProxyConfig`, …); Talos ≥ 1.14 only.
    #[serde(rename = "multiDocument")]
    MultiDocument,
}

/// The three fleet-wide pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPools {
    /// Pod CIDR pool; one block per cluster, pairwise disjoint across the fleet.
    #[serde(default = "Pool::default_pods")]
    pub pods: Pool,
    /// Service CIDR pool; one block per cluster.
    #[serde(default = "Pool::default_services")]
    pub services: Pool,
    /// Node subnet pool (GCP subnetwork / AWS VPC); disjoint across the fleet.
    #[serde(default = "Pool::default_nodes")]
    pub nodes: Pool,
}

impl Default for NetworkPools {
    fn default() -> Self {
        Self {
            pods: Pool::default_pods(),
            services: Pool::default_services(),
            nodes: Pool::default_nodes(),
        }
    }
}

/// An address pool and the size of the block each cluster gets from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pool {
    /// The pool in CIDR notation, IPv4 or IPv6.
    pub pool: String,
    /// Prefix length of each cluster's block.
    pub prefix_length: u8,
}

impl Pool {
    fn new(pool: &str, prefix_length: u8) -> Self {
        Self {
            pool: pool.to_owned(),
            prefix_length,
        }
    }
    /// 64 blocks of /16 pods.
    pub fn default_pods() -> Self {
        Self::new("10.64.0.0/10", 16)
    }
    /// 256 blocks of /20 services.
    pub fn default_services() -> Self {
        Self::new("10.128.0.0/12", 20)
    }
    /// 64 blocks of /20 node subnets.
    pub fn default_nodes() -> Self {
        Self::new("10.0.0.0/14", 20)
    }
}

/// ClusterMesh settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mesh {
    /// Join every cluster into one ClusterMesh.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cilium's `maxConnectedClusters`: 255 or 511, nothing else.
    #[serde(default = "default_max_connected")]
    pub max_connected_clusters: u16,
    /// How each clustermesh-apiserver is exposed.
    #[serde(default)]
    pub apiserver_service: ApiserverService,
    /// Datapath routing mode.
    #[serde(default)]
    pub routing: Routing,
    /// Encapsulation when `routing: tunnel`.
    #[serde(default)]
    pub tunnel_protocol: TunnelProtocol,
    /// Transparent encryption between nodes.
    #[serde(default)]
    pub encryption: Encryption,
    /// Multi-cluster services across the mesh.
    #[serde(default)]
    pub services: MeshServices,
}

/// Multi-cluster service settings (Cilium 1.19).
///
/// Global services need no switch: with the mesh on, a Service annotated
/// `service.cilium.io/global: "true"` in several clusters is load-balanced across all of them
/// (`service.cilium.io/shared`, `service.cilium.io/affinity: local|remote|none` tune it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshServices {
    /// The Kubernetes Multi-Cluster Services API (`ServiceExport`/`ServiceImport`, names
    /// under `clusterset.local`), with CoreDNS configured for it by Cilium's chart.
    #[serde(default)]
    pub mcs_api: bool,
    /// How long an agent keeps a remote cluster's services and endpoints after losing its
    /// connection (Cilium's `clustermesh.cacheTTL`, a Go duration such as `30s`, `2m` or
    /// `1h30m`); after that the remote backends are dropped, so global services fail over.
    /// `0s` keeps them forever (Cilium's own default).
    #[serde(default = "default_cache_ttl", rename = "cacheTTL")]
    pub cache_ttl: String,
}

/// Default of [`MeshServices::cache_ttl`].
pub const DEFAULT_CACHE_TTL: &str = "1m";

fn default_cache_ttl() -> String {
    DEFAULT_CACHE_TTL.to_owned()
}

impl Default for MeshServices {
    fn default() -> Self {
        Self {
            mcs_api: false,
            cache_ttl: default_cache_ttl(),
        }
    }
}

/// Seconds in a Go duration made of `<integer><unit>` parts with units `h`, `m`, `s` (what
/// [`MeshServices::cache_ttl`] accepts); `None` when `text` is not one.
pub fn duration_seconds(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        parts += 1;
    }
    (digits.is_empty() && parts > 0).then_some(total)
}

fn yes() -> bool {
    true
}
fn default_max_connected() -> u16 {
    255
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            enabled: true,
            max_connected_clusters: 255,
            apiserver_service: ApiserverService::default(),
            routing: Routing::default(),
            tunnel_protocol: TunnelProtocol::default(),
            encryption: Encryption::default(),
            services: MeshServices::default(),
        }
    }
}

/// Service type of the clustermesh-apiserver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ApiserverService {
    /// NodePort 32379 on every node.
    #[default]
    NodePort,
    /// A cloud load balancer on 2379.
    LoadBalancer,
}

/// Cilium routing mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Encapsulated (VXLAN or Geneve).
    #[default]
    Tunnel,
    /// Native routing; the underlay must route pod CIDRs.
    Native,
}

/// Tunnel encapsulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TunnelProtocol {
    /// udp/8472.
    #[default]
    Vxlan,
    /// udp/6081.
    Geneve,
}

/// Node-to-node encryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// No transparent encryption.
    #[default]
    None,
    /// WireGuard, udp/51871.
    Wireguard,
    /// IPsec, IP protocol 50 (ESP).
    Ipsec,
}

/// Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PsaLevel {
    /// No restrictions.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Hardened best practice.
    Restricted,
}

impl PsaLevel {
    /// The level as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// Pod Security admission configuration applied to every cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurity {
    /// Level that rejects violating pods.
    #[serde(default = "baseline")]
    pub enforce: PsaLevel,
    /// Level recorded in the audit log.
    #[serde(default = "restricted")]
    pub audit: PsaLevel,
    /// Level that warns the client.
    #[serde(default = "restricted")]
    pub warn: PsaLevel,
    /// What is exempt from all three.
    #[serde(default)]
    pub exemptions: Exemptions,
}

fn baseline() -> PsaLevel {
    PsaLevel::Baseline
}
fn restricted() -> PsaLevel {
    PsaLevel::Restricted
}

impl Default for PodSecurity {
    fn default() -> Self {
        Self {
            enforce: PsaLevel::Baseline,
            audit: PsaLevel::Restricted,
            warn: PsaLevel::Restricted,
            exemptions: Exemptions::default(),
        }
    }
}

/// Pod Security exemptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemptions {
    /// Namespaces exempt from Pod Security (Cilium runs in `kube-system`).
    #[serde(default = "default_exempt_namespaces")]
    pub namespaces: Vec<String>,
    /// Authenticated usernames exempt from Pod Security.
    #[serde(default)]
    pub usernames: Vec<String>,
    /// Runtime class names exempt from Pod Security.
    #[serde(default)]
    pub runtime_classes: Vec<String>,
}

fn default_exempt_namespaces() -> Vec<String> {
    vec!["kube-system".to_owned()]
}

impl Default for Exemptions {
    fn default() -> Self {
        Self {
            namespaces: default_exempt_namespaces(),
            usernames: Vec::new(),
            runtime_classes: Vec::new(),
        }
    }
}

/// The management cluster's network position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Management {
    /// CIDRs the management cluster dials Talos apid (tcp/50000) from.
    #[serde(default, rename = "egressCIDRs")]
    pub egress_cidrs: Vec<String>,
}

/// How node networks in different clouds or AWS regions are joined. ClusterMesh needs
/// node-to-node IP reachability; the planner warns for every needed link left unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interconnect {
    /// How AWS VPCs are joined to each other: every AWS cluster has its own VPC (CAPA creates
    /// one per AWSCluster), so this covers VPCs in one region as well as across regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_cross_region: Option<AwsCrossRegion>,
    /// How the GCP network and AWS VPCs are joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_to_aws: Option<GcpToAws>,
}

/// AWS cross-region connectivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AwsCrossRegion {
    /// Pairwise VPC peering (non-transitive).
    VpcPeering,
    /// A Transit Gateway per region, peered.
    TransitGateway,
    /// A network team provides the links outside meshfleet: it creates nothing for them, but
    /// still checks that they carry traffic.
    Existing,
}

/// GCP ↔ AWS connectivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GcpToAws {
    /// GCP HA VPN to AWS site-to-site VPN.
    HaVpn,
    /// Nodes get public addresses and talk over the internet.
    PublicAddresses,
    /// A network team provides the links outside meshfleet: it creates nothing for them, but
    /// still checks that they carry traffic.
    Existing,
}

/// Cloud provider settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Providers {
    /// Google Cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpProvider>,
    /// Amazon Web Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
}

/// GCP settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpProvider {
    /// Project id.
    pub project: String,
    /// The fleet's custom VPC network (global routing, a subnet per cluster).
    #[serde(default = "default_gcp_network")]
    pub network: String,
    /// Bucket holding the Talos GCP image (globally unique name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bucket: Option<String>,
}

fn default_gcp_network() -> String {
    "meshfleet".to_owned()
}

/// AWS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsProvider {
    /// EC2 key pair name for the instances (Talos does not use SSH; CAPA requires a name or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_name: Option<String>,
}

/// Cloud a cluster runs in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Google Cloud, through CAPG.
    Gcp,
    /// Amazon Web Services, through CAPA.
    Aws,
}

impl Provider {
    /// Lower-case name as written in the fleet file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gcp => "gcp",
            Self::Aws => "aws",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cluster of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// ≤ 32 chars of `[a-z0-9-]`, not `default`; also Cilium's `cluster.name`.
    pub name: String,
    /// Cloud.
    pub provider: Provider,
    /// Cloud region, e.g. `europe-west1` or `eu-west-1`.
    pub region: String,
    /// Zones (failure domains) inside the region.
    pub zones: Vec<String>,
    /// Control-plane machines.
    pub control_plane: ControlPlane,
    /// Worker machine pools.
    #[serde(default)]
    pub worker_pools: Vec<WorkerPool>,
    /// Labels put on the Cluster object (and usable by selectors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pinned Cilium cluster ID; the planner allocates one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_id: Option<u16>,
    /// Pinned CIDRs; the planner fills what is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ClusterNetwork>,
}

/// Control-plane machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlPlane {
    /// Odd number of control-plane nodes (etcd quorum).
    #[serde(default = "three")]
    pub replicas: u32,
    /// Instance type, e.g. `n2-standard-2` or `m6i.large`.
    pub machine_type: String,
    /// Root disk size in GiB.
    #[serde(default = "default_disk", rename = "diskGiB")]
    pub disk_gib: u32,
}

fn three() -> u32 {
    3
}
fn default_disk() -> u32 {
    50
}

/// A pool of identical worker machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPool {
    /// Pool name, unique in the cluster (DNS-1123 label).
    pub name: String,
    /// Number of machines.
    pub replicas: u32,
    /// Instance type.
    pub machine_type: String,
    /// Root disk size in GiB.
    #[serde(default = "default_disk", rename = "diskGiB")]
    pub disk_gib: u32,
}

/// Pinned CIDRs of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterNetwork {
    /// Pod CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<String>,
    /// Service CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<String>,
    /// Node subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
}

/// A `MAJOR.MINOR.PATCH` version, with or without a leading `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parse `v1.35.4` or `1.19.5`; a pre-release or build suffix (`-rc.1`, `+meta`) is dropped.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let mut num = || -> Option<u32> {
            let part = it.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let v = Self {
            major: num()?,
            minor: num()?,
            patch: num()?,
        };
        if it.next().is_some() {
            return None;
        }
        Some(v)
    }

    /// `MAJOR.MINOR` as a pair, for support-matrix lookups.
    pub fn line(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
