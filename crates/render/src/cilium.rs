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
//! `clustermesh.config.clusters` uses the map form keyed by peer name. The clustermesh-apiserver
//! addresses are not known at render time (NodePort node IPs or the load balancer's address
//! appear only once the peer runs), so each entry carries what is known — enabled, port — and
//! `meshfleet up` fills `ips`/`address` in the proxy's values when it connects the mesh.
//!
//! # IPsec
//!
//! `encryption.type: ipsec` makes the agent read its keys from the `cilium-ipsec-keys` Secret
//! in `kube-system`; like the CA, that key material is created by `meshfleet up` in each
//! workload cluster and never rendered.

use std::collections::BTreeMap;

use meshfleet_spec::{ApiserverService, Encryption, Routing, TunnelProtocol};
use serde::Serialize;

use crate::Ctx;
use crate::meta::{self, CLUSTER_LABEL, FLEET_LABEL, Object};
use crate::talos::KUBEPRISM_PORT;

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
}

#[derive(Debug, Clone, Serialize)]
struct MeshConfig {
    enabled: bool,
    clusters: BTreeMap<String, Peer>,
}

/// What is known of a peer at render time; `up` adds `ips` or `address`.
#[derive(Debug, Clone, Serialize)]
struct Peer {
    enabled: bool,
    port: u16,
}

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

/// One cluster's Cilium values.
pub fn values(ctx: &Ctx<'_>) -> Values {
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
        let port = clustermesh_port(mesh.apiserver_service);
        let clusters = ctx
            .peers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Peer {
                        enabled: true,
                        port,
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
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HelmChartProxySpec {
    cluster_selector: Selector,
    #[serde(rename = "repoURL")]
    repo_url: &'static str,
    chart_name: &'static str,
    version: String,
    namespace: &'static str,
    release_name: &'static str,
    values_template: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

/// Name of a cluster's Cilium HelmChartProxy.
pub fn proxy_name(cluster: &str) -> String {
    format!("cilium-{cluster}")
}

/// The `HelmChartProxy` installing Cilium on exactly one cluster (selected by its
/// `meshfleet.io/fleet` and `meshfleet.io/cluster` labels). One proxy per cluster because the
/// values differ per cluster (name, ID, peers).
pub fn helm_chart_proxy(ctx: &Ctx<'_>, values_yaml: &str) -> impl Serialize + use<> {
    Object {
        api_version: "addons.cluster.x-k8s.io/v1alpha1",
        kind: "HelmChartProxy",
        metadata: meta::cluster_meta(ctx, proxy_name(&ctx.cluster.name)),
        spec: HelmChartProxySpec {
            cluster_selector: Selector {
                match_labels: BTreeMap::from([
                    (FLEET_LABEL.to_owned(), ctx.fleet.metadata.name.clone()),
                    (CLUSTER_LABEL.to_owned(), ctx.cluster.name.clone()),
                ]),
            },
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
