//! Cilium: the Helm values of each cluster (DESIGN.md §4) and the CAAPH `HelmChartProxy`
//! (`addons.cluster.x-k8s.io/v1alpha1`) that installs them.
//!
//! # One mesh CA
//!
//! cilium-cli refuses to connect clusters whose ClusterMesh CAs differ, so every cluster must
//! issue its clustermesh certificates from the same CA, and no private key may appear in a
//! rendered file. meshfleet creates the `cilium-ca` Secret (`ca.crt`, `ca.key`) in
//! `kube-system` of each workload cluster before Cilium starts; the values then make the chart
//! reuse it instead of minting one:
//!
//! - `clustermesh.apiserver.tls.auto.method: cronJob`. The chart then runs `cilium-certgen` in
//!   the cluster with `--ca-generate --ca-reuse-secret` and the default CA Secret name
//!   `cilium-ca`: it loads the existing Secret and only generates a CA when none exists
//!   (chart template `clustermesh-apiserver/tls-cronjob/_job-spec.tpl`, certgen option
//!   `CAReuseSecret`: "store and load the Cilium CA from the secret if it exists"). The
//!   server, admin and remote certificates are issued in-cluster, so keys never leave it.
//! - `method: helm` is unsuitable: its `cilium.ca.setup` helper does `lookup` the existing
//!   `cilium-ca`, but then renders that Secret (CA key included) as part of the release; a
//!   Secret meshfleet created is not owned by the release, so the install fails on ownership,
//!   and `lookup` returns nothing under `helm template`/dry-run, which silently mints a new CA.
//! - `hubble.tls.auto.method: cronJob` for the same reason: with Hubble's default `helm` method
//!   the chart would render the `cilium-ca` Secret through the same helper.
//! - `tls.ca.cert`/`tls.ca.key` stay empty: setting them would put the key in the values.
//!
//! # Peers
//!
//! `clustermesh.config.clusters` uses the map form keyed by peer name. The chart `required`s an
//! `ips` or `address` for every enabled entry (`templates/clustermesh-config/_helpers.tpl` in
//! the 1.19.5 chart, run by `kvstoremesh-secret.yaml` with KVStoreMesh on, the 1.19 default),
//! and those endpoints only exist once each peer runs (NodePort node IPs, or the load balancer's
//! address — with a LoadBalancer clustermesh-apiserver the address appears only after the
//! install). So the first install names no peer: `clustermesh.config.enabled: true` with an
//! empty `clusters` map. Rendered with the real chart that gives the `cilium-clustermesh` and
//! `cilium-kvstoremesh` Secrets with no entries (where `enabled: false` would render neither),
//! so adding peers later only changes those Secrets' data, which the agents' mounted volumes
//! pick up without a restart. `meshfleet up` adds peers through
//! [`crate::cilium_proxy_with_peers`] as their endpoints become known.
//!
//! # Held back until the mesh CA is there
//!
//! CAAPH installs as soon as the Cluster matches the proxy's selector and its control plane is
//! initialised; certgen would then mint a CA of its own when `cilium-ca` is missing. The proxy
//! therefore also selects [`MESH_CA_LABEL`]` = `[`MESH_CA_DELIVERED`], which `meshfleet up` puts
//! on the Cluster after it has written the shared CA (and, with IPsec, the keys) into the
//! workload cluster.
//!
//! # IPsec
//!
//! `encryption.type: ipsec` makes the agent read its keys from the `cilium-ipsec-keys` Secret
//! in `kube-system`; like the CA, that key material is created by `meshfleet up` in each
//! workload cluster and never rendered.

use std::collections::{BTreeMap, BTreeSet};

use meshfleet_spec::{ApiserverService, Encryption, Fleet, Provider, Routing, TunnelProtocol};
use serde::{Deserialize, Serialize};

use crate::meta::{self, CLUSTER_LABEL, FLEET_LABEL, Object};
use crate::talos::KUBEPRISM_PORT;
use crate::{Ctx, RenderError, api};

/// Label on a workload `Cluster` saying that `meshfleet up` has delivered the shared mesh CA
/// (and any other Secret Cilium needs before it starts) to that cluster.
pub const MESH_CA_LABEL: &str = "meshfleet.io/mesh-ca";
/// The value of [`MESH_CA_LABEL`] once the Secrets are in place.
pub const MESH_CA_DELIVERED: &str = "delivered";

/// The chart repository.
pub const CILIUM_REPO: &str = "https://helm.cilium.io/";
/// The chart name.
pub const CILIUM_CHART: &str = "cilium";
/// The Secret (in `kube-system` of every workload cluster) holding the shared mesh CA.
pub const CA_SECRET_NAME: &str = "cilium-ca";

/// The Secret (in `kube-system`) the agent reads IPsec keys from when `encryption: ipsec`.
pub const IPSEC_SECRET_NAME: &str = "cilium-ipsec-keys";

/// NodePort of the clustermesh-apiserver when exposed as a NodePort Service.
pub const CLUSTERMESH_NODE_PORT: u16 = 32379;
/// Port of the clustermesh-apiserver behind a LoadBalancer Service.
pub const CLUSTERMESH_LB_PORT: u16 = 2379;

/// The chart's default agent capabilities minus `SYS_MODULE`: Talos does not let workloads
/// load kernel modules.
pub const AGENT_CAPABILITIES: [&str; 12] = [
    "CHOWN",
    "KILL",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "SYS_ADMIN",
    "SYS_RESOURCE",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
    "SYSLOG",
];
/// The chart's default `cleanCiliumState` capabilities minus `SYS_MODULE`.
pub const CLEAN_STATE_CAPABILITIES: [&str; 3] = ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"];

/// The values of one cluster's Cilium release.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    cluster: ClusterId,
    ipam: Ipam,
    kube_proxy_replacement: bool,
    k8s_service_host: &'static str,
    k8s_service_port: u16,
    cgroup: Cgroup,
    security_context: SecurityContext,
    routing_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel_protocol: Option<&'static str>,
    #[serde(
        rename = "ipv4NativeRoutingCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    ipv4_native_routing_cidr: Option<String>,
    encryption: EncryptionValues,
    #[serde(rename = "MTU", skip_serializing_if = "Option::is_none")]
    mtu: Option<u16>,
    hubble: Hubble,
    prometheus: Prometheus,
    clustermesh: Clustermesh,
}

/// The agent's Prometheus endpoint: meshfleet reads each agent's ClusterMesh gauges
/// (`cilium_clustermesh_remote_cluster_readiness_status`, …) from it through the API server's
/// pod proxy, the only mesh status Cilium publishes without its CLI.
#[derive(Debug, Clone, Serialize)]
struct Prometheus {
    enabled: bool,
    port: u16,
}

/// Port of the agent's Prometheus metrics (the chart's `prometheus.port` default).
pub const AGENT_METRICS_PORT: u16 = 9962;

#[derive(Debug, Clone, Serialize)]
struct ClusterId {
    name: String,
    id: u16,
}

#[derive(Debug, Clone, Serialize)]
struct Ipam {
    mode: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Cgroup {
    auto_mount: Enabled,
    host_root: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
struct SecurityContext {
    capabilities: Capabilities,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    cilium_agent: Vec<&'static str>,
    clean_cilium_state: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
struct EncryptionValues {
    enabled: bool,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
struct Hubble {
    tls: HubbleTls,
}

#[derive(Debug, Clone, Serialize)]
struct HubbleTls {
    auto: HubbleTlsAuto,
}

#[derive(Debug, Clone, Serialize)]
struct HubbleTlsAuto {
    enabled: bool,
    method: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Clustermesh {
    #[serde(rename = "useAPIServer")]
    use_api_server: bool,
    max_connected_clusters: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<MeshConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apiserver: Option<MeshApiserver>,
    /// `clustermesh.cacheTTL` (chart `values.yaml`, rendered into `cilium-config` as
    /// `clustermesh-cache-ttl` by `templates/cilium-configmap.yaml` and passed to the
    /// clustermesh-apiserver as `--clustermesh-cache-ttl` by
    /// `templates/clustermesh-apiserver/deployment.yaml`, 1.19.5 chart): how long a lost
    /// cluster's services and endpoints stay cached before they are revoked.
    #[serde(rename = "cacheTTL", skip_serializing_if = "Option::is_none")]
    cache_ttl: Option<String>,
    /// `clustermesh.mcsapi`, only when the fleet turns the MCS-API on.
    #[serde(skip_serializing_if = "Option::is_none")]
    mcsapi: Option<Mcsapi>,
}

/// `clustermesh.mcsapi` of the 1.19.5 chart: `enabled` turns on `clustermesh-enable-mcs-api`
/// in `cilium-config` (`templates/cilium-configmap.yaml`) and the MCS-API controllers of the
/// clustermesh-apiserver (`templates/clustermesh-apiserver/deployment.yaml`), with the
/// `multicluster.x-k8s.io` CRDs installed (`installCRDs`, default `true`);
/// `corednsAutoConfigure.enabled` adds the `cilium-coredns-mcsapi-autoconfig` Job
/// (`templates/clustermesh-coredns-mcsapi/job.yaml`) that adds the `multicluster` plugin for
/// `clusterset.local` to the cluster's CoreDNS (Deployment, ConfigMap and ServiceAccount
/// `coredns` in `kube-system`, the chart's defaults; Talos names its CoreDNS the same,
/// `siderolabs/talos:internal/app/machined/pkg/controllers/k8s/internal/k8stemplates/testdata/coredns-deployment.yaml`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Mcsapi {
    enabled: bool,
    coredns_auto_configure: Enabled,
}

#[derive(Debug, Clone, Serialize)]
struct MeshConfig {
    enabled: bool,
    clusters: BTreeMap<String, Peer>,
}

/// One peer entry of `clustermesh.config.clusters`.
#[derive(Debug, Clone, Serialize)]
struct Peer {
    enabled: bool,
    port: u16,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

/// Where a peer's clustermesh-apiserver answers, as `meshfleet up` learns it: node IPs (a
/// NodePort Service; the chart maps `<peer>.<domain>` to them with host aliases) and/or an
/// address (a load balancer's IP or host name), and the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEndpoint {
    /// Node IPs of the peer (NodePort).
    pub ips: Vec<String>,
    /// Address of the peer's load balancer.
    pub address: Option<String>,
    /// Port: [`CLUSTERMESH_NODE_PORT`] or [`CLUSTERMESH_LB_PORT`].
    pub port: u16,
}

/// Peers for the values: name → endpoint.
pub(crate) type Peers<'a> = &'a BTreeMap<String, PeerEndpoint>;

#[derive(Debug, Clone, Serialize)]
struct MeshApiserver {
    service: MeshService,
    tls: MeshTls,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct MeshService {
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
struct MeshTls {
    auto: MeshTlsAuto,
}

#[derive(Debug, Clone, Serialize)]
struct MeshTlsAuto {
    enabled: bool,
    method: &'static str,
}

/// Port a peer's clustermesh-apiserver answers on, by Service type.
pub fn clustermesh_port(service: ApiserverService) -> u16 {
    match service {
        ApiserverService::NodePort => CLUSTERMESH_NODE_PORT,
        ApiserverService::LoadBalancer => CLUSTERMESH_LB_PORT,
    }
}

/// The underlay MTU to pin for the whole fleet, or `None` to let each agent detect it.
///
/// Cilium detects the MTU of the node's own interface and subtracts its tunnel and encryption
/// overhead itself (the chart's `MTU` is "the underlying network MTU", `values.yaml` of the
/// 1.19.5 chart). Detection is right inside one network and wrong across one: AWS instances
/// report 9001 (jumbo frames) and GCP VMs 1460, while the paths between them carry less.
/// - GCP ↔ AWS (HA VPN or the internet): AWS Site-to-Site VPN tunnels carry at most 1446 bytes
///   (AWS "Site-to-Site VPN quotas": MTU 1446, MSS 1406) and Cloud VPN recommends 1460 minus
///   the IPsec overhead; 1400 leaves room for either path, and Cilium subtracts VXLAN's or
///   Geneve's 50 bytes from it.
/// - AWS only, several regions: inter-Region VPC peering and Transit Gateway peering carry at
///   most 1500 bytes (AWS "Network maximum transmission unit (MTU) for your EC2 instance").
pub fn pinned_mtu(fleet: &Fleet) -> Option<u16> {
    if !fleet.spec.mesh.enabled {
        return None;
    }
    let clusters = &fleet.spec.clusters;
    let has = |p| clusters.iter().any(|c| c.provider == p);
    if has(Provider::Gcp) && has(Provider::Aws) {
        return Some(CROSS_CLOUD_MTU);
    }
    let aws_regions: BTreeSet<&str> = clusters
        .iter()
        .filter(|c| c.provider == Provider::Aws)
        .map(|c| c.region.as_str())
        .collect();
    (aws_regions.len() > 1).then_some(AWS_CROSS_REGION_MTU)
}

/// Underlay MTU pinned when the mesh spans GCP and AWS (see [`pinned_mtu`]).
pub const CROSS_CLOUD_MTU: u16 = 1400;
/// Underlay MTU pinned when the mesh spans AWS regions (see [`pinned_mtu`]).
pub const AWS_CROSS_REGION_MTU: u16 = 1500;

/// One cluster's Cilium values, naming exactly `peers` in `clustermesh.config.clusters`.
pub fn values(ctx: &Ctx<'_>, peers: Peers<'_>) -> Values {
    let mesh = &ctx.fleet.spec.mesh;
    let (routing_mode, tunnel_protocol, native_cidr) = match mesh.routing {
        Routing::Tunnel => (
            "tunnel",
            Some(match mesh.tunnel_protocol {
                TunnelProtocol::Vxlan => "vxlan",
                TunnelProtocol::Geneve => "geneve",
            }),
            None,
        ),
        // The whole pods pool: traffic to any cluster's pods is routed, not masqueraded.
        Routing::Native => (
            "native",
            None,
            Some(ctx.fleet.spec.network.pods.pool.clone()),
        ),
    };
    let encryption = match mesh.encryption {
        Encryption::None => EncryptionValues {
            enabled: false,
            type_: None,
        },
        Encryption::Wireguard => EncryptionValues {
            enabled: true,
            type_: Some("wireguard"),
        },
        Encryption::Ipsec => EncryptionValues {
            enabled: true,
            type_: Some("ipsec"),
        },
    };
    let (config, apiserver) = if mesh.enabled {
        let clusters = peers
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    Peer {
                        enabled: true,
                        port: e.port,
                        ips: e.ips.clone(),
                        address: e.address.clone(),
                    },
                )
            })
            .collect();
        let service = match mesh.apiserver_service {
            ApiserverService::NodePort => MeshService {
                type_: "NodePort",
                node_port: Some(CLUSTERMESH_NODE_PORT),
            },
            ApiserverService::LoadBalancer => MeshService {
                type_: "LoadBalancer",
                node_port: None,
            },
        };
        (
            Some(MeshConfig {
                enabled: true,
                clusters,
            }),
            Some(MeshApiserver {
                service,
                tls: MeshTls {
                    auto: MeshTlsAuto {
                        enabled: true,
                        method: "cronJob",
                    },
                },
            }),
        )
    } else {
        (None, None)
    };
    Values {
        cluster: ClusterId {
            name: ctx.cluster.name.clone(),
            id: ctx.plan.mesh_id,
        },
        ipam: Ipam { mode: "kubernetes" },
        kube_proxy_replacement: true,
        // KubePrism: a node-local load balancer to the API servers, up before any CNI.
        k8s_service_host: "localhost",
        k8s_service_port: KUBEPRISM_PORT,
        cgroup: Cgroup {
            // Talos mounts cgroup v2 itself.
            auto_mount: Enabled { enabled: false },
            host_root: "/sys/fs/cgroup",
        },
        security_context: SecurityContext {
            capabilities: Capabilities {
                cilium_agent: AGENT_CAPABILITIES.to_vec(),
                clean_cilium_state: CLEAN_STATE_CAPABILITIES.to_vec(),
            },
        },
        routing_mode,
        tunnel_protocol,
        ipv4_native_routing_cidr: native_cidr,
        encryption,
        mtu: pinned_mtu(ctx.fleet),
        hubble: Hubble {
            tls: HubbleTls {
                auto: HubbleTlsAuto {
                    enabled: true,
                    method: "cronJob",
                },
            },
        },
        prometheus: Prometheus {
            enabled: true,
            port: AGENT_METRICS_PORT,
        },
        clustermesh: Clustermesh {
            use_api_server: mesh.enabled,
            max_connected_clusters: mesh.max_connected_clusters,
            config,
            apiserver,
            cache_ttl: mesh.enabled.then(|| mesh.services.cache_ttl.clone()),
            mcsapi: (mesh.enabled && mesh.services.mcs_api).then_some(Mcsapi {
                enabled: true,
                coredns_auto_configure: Enabled { enabled: true },
            }),
        },
    }
}

/// Check the peers `up` wants to name against the plan: each must be a mesh peer of this
/// cluster and come with an endpoint the chart accepts.
pub fn check_peers(ctx: &Ctx<'_>, peers: Peers<'_>) -> Result<(), RenderError> {
    // A set: looking each of up to 510 peers up in the plan's list was quadratic per cluster.
    let planned: BTreeSet<&str> = ctx.peers.iter().map(String::as_str).collect();
    for (name, e) in peers {
        let problem = if !ctx.fleet.spec.mesh.enabled {
            Some("the fleet's mesh is off")
        } else if !planned.contains(name.as_str()) {
            Some("it is not a mesh peer of this cluster in the plan")
        } else if e.ips.is_empty() && e.address.as_deref().is_none_or(str::is_empty) {
            Some("it has neither `ips` nor `address`, which the Cilium chart requires")
        } else if e
            .ips
            .iter()
            .any(|ip| ip.parse::<std::net::IpAddr>().is_err())
        {
            Some("one of its `ips` is not an IP address")
        } else if e.port == 0 {
            Some("its port is 0")
        } else {
            None
        };
        if let Some(why) = problem {
            return Err(RenderError::Peer {
                cluster: ctx.cluster.name.clone(),
                peer: name.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// A CAAPH `HelmChartProxy` spec, as much as meshfleet sets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartProxySpec {
    pub cluster_selector: Selector,
    #[serde(rename = "repoURL")]
    pub repo_url: &'static str,
    pub chart_name: &'static str,
    pub version: String,
    pub namespace: &'static str,
    pub release_name: &'static str,
    pub values_template: String,
}

/// A label selector.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

/// Name of a cluster's Cilium HelmChartProxy.
pub fn proxy_name(cluster: &str) -> String {
    format!("cilium-{cluster}")
}

/// Whether the Cilium proxy waits for [`MESH_CA_LABEL`]: when the mesh is on (the shared CA)
/// or IPsec is on (the keys `up` creates); otherwise Cilium has nothing to wait for.
pub fn held_back(fleet: &Fleet) -> bool {
    fleet.spec.mesh.enabled || fleet.spec.mesh.encryption == Encryption::Ipsec
}

/// The selector of one cluster's proxies: its fleet and cluster labels.
pub fn cluster_selector(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FLEET_LABEL.to_owned(), ctx.fleet.metadata.name.clone()),
        (CLUSTER_LABEL.to_owned(), ctx.cluster.name.clone()),
    ])
}

/// The `HelmChartProxy` installing Cilium on exactly one cluster (selected by its
/// `meshfleet.io/fleet` and `meshfleet.io/cluster` labels, and held back by
/// [`MESH_CA_LABEL`] when [`held_back`]). One proxy per cluster because the values differ per
/// cluster (name, ID, peers).
pub fn helm_chart_proxy(ctx: &Ctx<'_>, values_yaml: &str) -> impl Serialize + use<> {
    let mut match_labels = cluster_selector(ctx);
    if held_back(ctx.fleet) {
        match_labels.insert(MESH_CA_LABEL.to_owned(), MESH_CA_DELIVERED.to_owned());
    }
    Object {
        api_version: api::CAAPH_V1ALPHA1,
        kind: api::HELM_CHART_PROXY,
        metadata: meta::cluster_meta(ctx, proxy_name(&ctx.cluster.name)),
        spec: HelmChartProxySpec {
            cluster_selector: Selector { match_labels },
            repo_url: CILIUM_REPO,
            chart_name: CILIUM_CHART,
            version: ctx.fleet.spec.versions.cilium.clone(),
            namespace: "kube-system",
            release_name: "cilium",
            // CAAPH treats this as a Go template; the values hold no `{{`, so it is literal.
            values_template: values_yaml.to_owned(),
        },
    }
}
