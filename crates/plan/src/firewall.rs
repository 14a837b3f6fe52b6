//! The firewall matrix (DESIGN.md §3): who must reach whom on which port.
//!
//! The matrix stays linear in the number of clusters: a port every meshed node must reach on
//! every other meshed node is one rule whose sources are the fleet's pools (see [`summarise`])
//! and whose targets are every meshed cluster's nodes, never one rule per pair. Ports used only
//! inside a cluster get one rule per cluster. Order is fixed: fleet-wide rules first, then each
//! cluster's rules in fleet-file order.

use ipnet::IpNet;
use meshfleet_spec::TunnelProtocol;
use meshfleet_spec::{ApiserverService, Diagnostic, Encryption, Fleet, Provider, Report, Routing};

use crate::model::{ClusterPlan, FirewallRule, Protocol, Purpose, Role, Target};

/// Ranges Google Cloud load-balancer health checks come from (CAPG's API server LB).
pub const GCP_HEALTH_CHECK_RANGES: [&str; 2] = ["35.191.0.0/16", "130.211.0.0/22"];

/// Talos apid.
const TALOS_APID: u16 = 50000;
/// Talos trustd.
const TALOS_TRUSTD: u16 = 50001;
/// kube-apiserver.
const KUBE_APISERVER: u16 = 6443;
/// cilium-health.
const CILIUM_HEALTH: u16 = 4240;
/// Hubble server on every node.
const HUBBLE: u16 = 4244;
/// Cilium's WireGuard port.
const WIREGUARD: u16 = 51871;
/// clustermesh-apiserver behind a LoadBalancer.
const CLUSTERMESH_LB: u16 = 2379;
/// clustermesh-apiserver NodePort.
const CLUSTERMESH_NODEPORT: u16 = 32379;

fn rule(
    protocol: Protocol,
    ports: &[u16],
    sources: &[IpNet],
    targets: Vec<Target>,
    purpose: Purpose,
) -> FirewallRule {
    FirewallRule {
        protocol,
        ports: ports.to_vec(),
        sources: IpNet::aggregate(&sources.to_vec()),
        targets,
        purpose,
    }
}

fn target(c: &ClusterPlan, role: Role) -> Target {
    Target {
        cluster: c.name.clone(),
        role,
    }
}

/// The datapath rules between `sources` (node CIDRs) and `targets`: tunnel or, with native
/// routing, pod traffic from `pods`; cilium-health; encryption.
fn datapath(
    fleet: &Fleet,
    sources: &[IpNet],
    pods: &[IpNet],
    targets: &[Target],
    out: &mut Vec<FirewallRule>,
) {
    let mesh = &fleet.spec.mesh;
    if mesh.routing == Routing::Native {
        // No ports: the rule opens every port of the protocol, as pod traffic may use any.
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp] {
            out.push(rule(
                protocol,
                &[],
                pods,
                targets.to_vec(),
                Purpose::CiliumNativeRouting,
            ));
        }
    }
    if mesh.routing == Routing::Tunnel {
        let port = match mesh.tunnel_protocol {
            TunnelProtocol::Vxlan => 8472,
            TunnelProtocol::Geneve => 6081,
        };
        out.push(rule(
            Protocol::Udp,
            &[port],
            sources,
            targets.to_vec(),
            Purpose::CiliumTunnel,
        ));
    }
    out.push(rule(
        Protocol::Tcp,
        &[CILIUM_HEALTH],
        sources,
        targets.to_vec(),
        Purpose::CiliumHealth,
    ));
    out.push(rule(
        Protocol::Icmp,
        &[],
        sources,
        targets.to_vec(),
        Purpose::CiliumHealth,
    ));
    match mesh.encryption {
        Encryption::None => {}
        Encryption::Wireguard => out.push(rule(
            Protocol::Udp,
            &[WIREGUARD],
            sources,
            targets.to_vec(),
            Purpose::CiliumWireguard,
        )),
        Encryption::Ipsec => out.push(rule(
            Protocol::Esp,
            &[],
            sources,
            targets.to_vec(),
            Purpose::CiliumIpsec,
        )),
    }
}

/// The fleet-wide sources for `cidrs` (every cluster's block of one kind): the fleet's `pool`
/// once for every block inside it, and a block pinned outside the pool as itself, aggregated.
///
/// Why the pool and not the blocks: every rule of the mesh names all clusters, and each
/// cluster's infrastructure object (AWSCluster, GCPCluster) carries the rules that target its
/// nodes. Listing the blocks made adding one cluster change every other cluster's
/// infrastructure object (510 of them at 511 clusters) to add one source; with the pool the
/// sources stay the same as the fleet grows inside it. The pool is the fleet's own address
/// space (the planner allocates every block from it and keeps the three pools apart), so it
/// admits nothing the blocks would not, beyond addresses no cluster holds yet. `net setup`
/// routes the same pool through each Transit Gateway for the same reason.
pub fn summarise(pool: Option<IpNet>, cidrs: &[IpNet]) -> Vec<IpNet> {
    let each: std::collections::BTreeSet<IpNet> = cidrs
        .iter()
        .map(|c| match pool {
            Some(p) if p.contains(c) => p.trunc(),
            _ => *c,
        })
        .collect();
    IpNet::aggregate(&each.into_iter().collect())
}

/// Build the matrix. Unparsable management CIDRs are reported as errors.
pub(crate) fn matrix(fleet: &Fleet, clusters: &[ClusterPlan], r: &mut Report) -> Vec<FirewallRule> {
    let spec = &fleet.spec;
    let mut management = Vec::new();
    for (i, text) in spec.management.egress_cidrs.iter().enumerate() {
        match text.trim().parse::<IpNet>() {
            Ok(n) => management.push(n.trunc()),
            Err(_) => r.push(
                Diagnostic::error(
                    format!("spec.management.egressCIDRs[{i}]"),
                    format!("`{text}` is not a CIDR"),
                )
                .with_value(text)
                .with_hint("write the management cluster's egress address in CIDR notation, e.g. `203.0.113.10/32`"),
            ),
        }
    }
    let health_checks: Vec<IpNet> = GCP_HEALTH_CHECK_RANGES
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();

    let mut out = Vec::new();
    if !management.is_empty() && !clusters.is_empty() {
        out.push(rule(
            Protocol::Tcp,
            &[TALOS_APID],
            &management,
            clusters
                .iter()
                .map(|c| target(c, Role::ControlPlane))
                .collect(),
            Purpose::TalosApiManagement,
        ));
    }

    let meshed = spec.mesh.enabled && !clusters.is_empty();
    if meshed {
        let pool = |p: &meshfleet_spec::Pool| p.pool.trim().parse::<IpNet>().ok();
        let nodes: Vec<IpNet> = clusters.iter().map(|c| c.network.nodes).collect();
        let sources = summarise(pool(&spec.network.nodes), &nodes);
        let pods: Vec<IpNet> = clusters.iter().map(|c| c.network.pods).collect();
        let pods = summarise(pool(&spec.network.pods), &pods);
        let targets: Vec<Target> = clusters.iter().map(|c| target(c, Role::Nodes)).collect();
        datapath(fleet, &sources, &pods, &targets, &mut out);
        let port = match spec.mesh.apiserver_service {
            ApiserverService::LoadBalancer => CLUSTERMESH_LB,
            ApiserverService::NodePort => CLUSTERMESH_NODEPORT,
        };
        out.push(rule(
            Protocol::Tcp,
            &[port],
            &sources,
            targets,
            Purpose::ClustermeshApiserver,
        ));
    }

    for c in clusters {
        let own = [c.network.nodes];
        let nodes = || vec![target(c, Role::Nodes)];
        let control_plane = || vec![target(c, Role::ControlPlane)];
        if !meshed {
            // Without the mesh, Cilium still tunnels and health-checks between a cluster's nodes.
            datapath(fleet, &own, &[c.network.pods], &nodes(), &mut out);
        }
        out.push(rule(
            Protocol::Tcp,
            &[TALOS_APID],
            &own,
            nodes(),
            Purpose::TalosApiNodes,
        ));
        out.push(rule(
            Protocol::Tcp,
            &[TALOS_TRUSTD],
            &own,
            control_plane(),
            Purpose::TalosTrustd,
        ));
        let mut api_sources = vec![c.network.nodes];
        api_sources.extend_from_slice(&management);
        if c.provider == Provider::Gcp {
            api_sources.extend_from_slice(&health_checks);
        }
        out.push(rule(
            Protocol::Tcp,
            &[KUBE_APISERVER],
            &api_sources,
            control_plane(),
            Purpose::KubeApiserver,
        ));
        // hubble-relay is a pod: with native routing its packets carry a pod address.
        out.push(rule(
            Protocol::Tcp,
            &[HUBBLE],
            &[c.network.nodes, c.network.pods],
            nodes(),
            Purpose::Hubble,
        ));
    }
    out
}
