//! Firewall evaluation (GCP firewall rules, AWS security-group ingress rules) and the
//! ClusterMesh view of each workload cluster with Cilium.
//!
//! A link from cluster A to peer P is up only when everything Cilium and the network need holds:
//! P is a cluster with Cilium named as configured; names and IDs are unique; IDs are within
//! `maxConnectedClusters`, which both use alike; both hold the same `kube-system/cilium-ca`; P's
//! firewall lets A's nodes reach the clustermesh-apiserver (tcp/2379 for a LoadBalancer, the
//! NodePort, default tcp/32379, otherwise); and with tunnel routing both let the other's nodes
//! reach the tunnel port (udp/8472 VXLAN, udp/6081 Geneve). The result is what A's Cilium
//! agents export on their Prometheus endpoint ([`metrics`]): readiness per peer and a failure
//! count. Why a link is down stays inside the simulator, as it does in a real agent's metrics.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value;

use crate::controllers::{CAPI, cluster_infra, s, ty};
use crate::store::Key;
use crate::{Api, World};

/// The node CIDR of an infrastructure object (GCP subnet, AWS VPC).
pub fn node_cidr(infra: &Value) -> Option<IpNet> {
    let text = match s(infra, "/kind") {
        "AWSCluster" => s(infra, "/spec/network/vpc/cidrBlock").to_string(),
        _ => infra
            .pointer("/spec/network/subnets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|x| s(x, "/cidrBlock")).find(|c| !c.is_empty()))
            .unwrap_or("")
            .to_string(),
    };
    text.parse().ok()
}

/// Whether an address is private, i.e. not routable from the internet: RFC 1918, shared
/// (100.64.0.0/10), loopback and link-local for IPv4; unique-local, loopback and link-local for
/// IPv6. Everything else counts as public.
pub fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        std::net::IpAddr::V6(v) => {
            v.is_loopback()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn cidr_covers(ranges: &[&str], src: &IpNet) -> bool {
    ranges.iter().any(|r| {
        r.parse::<IpNet>()
            .ok()
            .or_else(|| r.parse::<std::net::IpAddr>().ok().map(IpNet::from))
            .is_some_and(|n| n.contains(src))
    })
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The sources CAPA admits to an AWSCluster's NodePorts (tcp 30000-32767) in the node security
/// group: `spec.network.nodePortIngressRuleCidrBlocks`, and when that is unset or empty
/// `0.0.0.0/0` (kubernetes-sigs/cluster-api-provider-aws@v2.11.1,
/// `pkg/cloud/services/securitygroup/securitygroups.go`, the `SecurityGroupNode` case of
/// `getSecurityGroupIngressRules`). A hand-written AWSCluster without the field is open too.
fn node_port_sources(infra: &Value) -> Vec<&str> {
    let set = strs(infra.pointer("/spec/network/nodePortIngressRuleCidrBlocks"));
    if set.is_empty() {
        vec!["0.0.0.0/0"]
    } else {
        set
    }
}

/// Whether `infra`'s firewall lets `src` reach `proto`/`port` on the cluster's nodes
/// (`control_plane`: also the control-plane-only rules).
pub fn allows(infra: &Value, src: &IpNet, proto: &str, port: u16, control_plane: bool) -> bool {
    match s(infra, "/kind") {
        "AWSCluster" => {
            let mut rules: Vec<&Value> = Vec::new();
            let pick = |p: &str| {
                infra
                    .pointer(p)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let cp = pick("/spec/network/additionalControlPlaneIngressRules");
            let nodes = pick("/spec/network/additionalNodeIngressRules");
            if control_plane {
                rules.extend(cp.iter());
            }
            rules.extend(nodes.iter());
            let by_rule = rules.iter().any(|r| {
                let p = s(r, "/protocol");
                let from = r.get("fromPort").and_then(Value::as_i64).unwrap_or(-1);
                let to = r.get("toPort").and_then(Value::as_i64).unwrap_or(-1);
                (p == "-1" || p.eq_ignore_ascii_case(proto))
                    && (p == "-1" || (from <= port as i64 && port as i64 <= to))
                    && cidr_covers(&strs(r.get("cidrBlocks")), src)
            });
            let node_port = proto == "tcp"
                && (30000..=32767).contains(&port)
                && cidr_covers(&node_port_sources(infra), src);
            by_rule || node_port
        }
        _ => {
            let tags = gcp_tags(infra, control_plane);
            compile_rules(own_rules(infra))
                .iter()
                .any(|r| r.admits(&tags, src, proto, port))
        }
    }
}

/// CAPG tags instances `<cluster>`, `<cluster>-control-plane` or `<cluster>-node`; a rule with
/// targetTags applies only to instances carrying one of them.
fn gcp_tags(infra: &Value, control_plane: bool) -> Vec<String> {
    let cluster = infra
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|r| s(r, "/kind") == "Cluster"))
        .map(|r| s(r, "/name"))
        .unwrap_or_else(|| s(infra, "/metadata/name"))
        .to_string();
    let mut tags = vec![cluster.clone(), format!("{cluster}-control-plane")];
    if !control_plane {
        tags.push(format!("{cluster}-node"));
    }
    tags
}

/// A GCP ingress rule parsed once per controller pass: checking hundreds of mesh links against
/// a network's rules re-parsed from JSON each time made passes quadratic in allocations.
#[derive(Debug, Default)]
struct GcpRule {
    targets: Vec<String>,
    any_source: bool,
    sources: Vec<IpNet>,
    allowed: Vec<(String, Vec<(u16, u16)>)>,
}

impl GcpRule {
    fn compile(r: &Value) -> Option<Self> {
        if s(r, "/direction").eq_ignore_ascii_case("egress") {
            return None;
        }
        let ranges = strs(r.get("sourceRanges"));
        let allowed = r
            .get("allowed")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let ports = strs(a.get("ports"))
                    .into_iter()
                    .filter_map(|p| match p.split_once('-') {
                        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                        None => p.trim().parse().ok().map(|x| (x, x)),
                    })
                    .collect::<Vec<_>>();
                // A rule naming only unparsable ports admits nothing, not everything.
                let unparsable = ports.is_empty() && !strs(a.get("ports")).is_empty();
                (
                    if unparsable {
                        String::new()
                    } else {
                        s(a, "/IPProtocol").to_ascii_lowercase()
                    },
                    ports,
                )
            })
            .collect();
        Some(Self {
            targets: strs(r.get("targetTags"))
                .into_iter()
                .map(str::to_string)
                .collect(),
            // GCP: no source ranges and no source tags means any source.
            any_source: ranges.is_empty() && strs(r.get("sourceTags")).is_empty(),
            sources: ranges
                .iter()
                .filter_map(|r| {
                    r.parse::<IpNet>()
                        .ok()
                        .or_else(|| r.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                })
                .collect(),
            allowed,
        })
    }

    fn admits(&self, tags: &[String], src: &IpNet, proto: &str, port: u16) -> bool {
        (self.targets.is_empty() || self.targets.iter().any(|t| tags.contains(t)))
            && (self.any_source || self.sources.iter().any(|n| n.contains(src)))
            && self.allowed.iter().any(|(p, ports)| {
                (p.eq_ignore_ascii_case(proto) || p == "all")
                    && (ports.is_empty() || ports.iter().any(|(a, b)| *a <= port && port <= *b))
            })
    }
}

fn compile_rules<'a>(rules: impl IntoIterator<Item = &'a Value>) -> Vec<GcpRule> {
    rules.into_iter().filter_map(GcpRule::compile).collect()
}

fn own_rules(infra: &Value) -> impl Iterator<Item = &Value> {
    infra
        .pointer("/spec/network/firewall/firewallRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Every GCP network's firewall for one controller pass, built from one listing of the
/// GCPClusters: rules belong to the VPC network, so each cluster on a project and network
/// contributes to all of them. AWS security groups are per cluster and read directly.
#[derive(Debug, Default)]
pub struct Firewalls {
    gcp: HashMap<(String, String), Arc<Vec<GcpRule>>>,
}

impl Firewalls {
    /// Index the management cluster's GCPClusters with the firewall rules of their networks as
    /// the simulated project holds them: those CAPG created from each GCPCluster (prefixed
    /// names, its default rules) and those `meshfleet gcp setup` made. Without a project
    /// (`gcp: None`, unit tests) the GCPClusters' own `firewallRules` stand in.
    pub fn build(api: &Api, gcp: Option<&crate::gcp::Gcp>) -> Self {
        let mut by_net: HashMap<(String, String), Vec<GcpRule>> = HashMap::new();
        for o in crate::controllers::list(api, crate::controllers::INFRA, "GCPCluster", None) {
            let key = (
                s(&o, "/spec/project").to_string(),
                s(&o, "/spec/network/name").to_string(),
            );
            let rules = by_net.entry(key).or_default();
            if gcp.is_none() {
                rules.extend(compile_rules(own_rules(&o)));
            }
        }
        if let Some(g) = gcp {
            for ((project, network), rules) in &mut by_net {
                let net = if network.is_empty() {
                    "default"
                } else {
                    network
                };
                let project_rules = g.network_firewalls(project, net);
                rules.extend(compile_rules(&project_rules));
            }
        }
        Self {
            gcp: by_net.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        }
    }

    /// Whether `infra`'s firewall as the cloud applies it lets `src` reach `proto`/`port` on
    /// the cluster's nodes (`control_plane`: also the control-plane-only rules): for GCP, every
    /// rule of its project's network; otherwise [`allows`] on the object itself.
    pub fn allows(
        &self,
        infra: &Value,
        src: &IpNet,
        proto: &str,
        port: u16,
        control_plane: bool,
    ) -> bool {
        let key = (
            s(infra, "/spec/project").to_string(),
            s(infra, "/spec/network/name").to_string(),
        );
        match self.gcp.get(&key) {
            Some(rules) if s(infra, "/kind") == "GCPCluster" => {
                let tags = gcp_tags(infra, control_plane);
                rules.iter().any(|r| r.admits(&tags, src, proto, port))
            }
            // AWS, or a GCPCluster not indexed yet (created during this pass): its own rules
            // are all we know.
            _ => allows(infra, src, proto, port, control_plane),
        }
    }
}

/// One cluster's firewall towards its nodes (not the control-plane-only rules), compiled once
/// per pass: every mesh link checks its peer's firewall, and at Cilium's maximum a pass checks
/// 511 × 510 links against networks of hundreds of rules.
#[derive(Debug)]
enum FwView {
    /// GCP: the network's rules that apply to this cluster's node tags (by index).
    Gcp {
        rules: Arc<Vec<GcpRule>>,
        applicable: Vec<usize>,
    },
    /// AWS: the node ingress rules, (protocol, from, to, sources), and the NodePort sources.
    Aws {
        rules: Vec<(String, i64, i64, Vec<IpNet>)>,
        node_port: Vec<IpNet>,
    },
}

fn nets(ranges: &[&str]) -> Vec<IpNet> {
    ranges
        .iter()
        .filter_map(|r| {
            r.parse::<IpNet>()
                .ok()
                .or_else(|| r.parse::<std::net::IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

impl FwView {
    /// The view [`Firewalls::allows`] would take of `infra` for its nodes.
    fn of(fw: &Firewalls, infra: &Value) -> Self {
        let key = (
            s(infra, "/spec/project").to_string(),
            s(infra, "/spec/network/name").to_string(),
        );
        let gcp = |rules: Arc<Vec<GcpRule>>| {
            let tags = gcp_tags(infra, false);
            let applicable = (0..rules.len())
                .filter(|&i| {
                    let r = &rules[i];
                    r.targets.is_empty() || r.targets.iter().any(|t| tags.contains(t))
                })
                .collect();
            FwView::Gcp { rules, applicable }
        };
        match fw.gcp.get(&key) {
            Some(rules) if s(infra, "/kind") == "GCPCluster" => gcp(rules.clone()),
            _ if s(infra, "/kind") == "AWSCluster" => FwView::Aws {
                rules: infra
                    .pointer("/spec/network/additionalNodeIngressRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            s(r, "/protocol").to_string(),
                            r.get("fromPort").and_then(Value::as_i64).unwrap_or(-1),
                            r.get("toPort").and_then(Value::as_i64).unwrap_or(-1),
                            nets(&strs(r.get("cidrBlocks"))),
                        )
                    })
                    .collect(),
                node_port: nets(&node_port_sources(infra)),
            },
            _ => gcp(Arc::new(compile_rules(own_rules(infra)))),
        }
    }

    /// [`allows`] with `control_plane` false, on the compiled rules.
    fn allows(&self, src: &IpNet, proto: &str, port: u16) -> bool {
        let covered = |ns: &[IpNet]| ns.iter().any(|n| n.contains(src));
        match self {
            FwView::Gcp { rules, applicable } => applicable.iter().any(|&i| {
                let r = &rules[i];
                (r.any_source || covered(&r.sources))
                    && r.allowed.iter().any(|(p, ports)| {
                        (p.eq_ignore_ascii_case(proto) || p == "all")
                            && (ports.is_empty()
                                || ports.iter().any(|(a, b)| *a <= port && port <= *b))
                    })
            }),
            FwView::Aws { rules, node_port } => {
                let port = i64::from(port);
                rules.iter().any(|(p, from, to, sources)| {
                    (p == "-1" || p.eq_ignore_ascii_case(proto))
                        && (p == "-1" || (*from <= port && port <= *to))
                        && covered(sources)
                }) || (proto == "tcp" && (30000..=32767).contains(&port) && covered(node_port))
            }
        }
    }
}

/// What the mesh pass knows of a member's infrastructure, worked out once per pass.
#[derive(Debug)]
struct Prepared {
    cidr: Option<IpNet>,
    net: Option<crate::network::NodeNet>,
    fw: FwView,
}

/// What a workload cluster's Cilium is configured with.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    name: String,
    id: i64,
    max: i64,
    tunnel: Option<(String, u16)>,
    peers: Vec<String>,
    ca: Option<String>,
    mesh_port: Option<u16>,
    infra: Option<Value>,
    /// Filled by [`reconcile`] (tests check links without it).
    prepared: Option<Arc<Prepared>>,
}

fn member(world: &World, api: &Arc<Api>) -> Option<Member> {
    let cm = api
        .store
        .get(&Key::new("/configmaps", "kube-system", "cilium-config"))?;
    let d = |k: &str| s(&cm, &format!("/data/{k}")).to_string();
    let tunnel = if d("routing-mode") == "native" {
        None
    } else if d("tunnel-protocol") == "geneve" {
        Some(("udp".to_string(), 6081))
    } else {
        Some(("udp".to_string(), 8472))
    };
    // Read in place: the Secret holds an entry per peer, and only their names matter here.
    let peers = api
        .store
        .read(
            &Key::new("/secrets", "kube-system", "cilium-clustermesh"),
            |sec| {
                sec.get("data")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
            },
        )
        .flatten()
        .unwrap_or_default();
    let ca = api
        .store
        .get(&Key::new("/secrets", "kube-system", "cilium-ca"))
        .and_then(|sec| {
            sec.pointer("/data/ca.crt")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let mesh_port = api
        .store
        .get(&Key::new(
            "/services",
            "kube-system",
            "clustermesh-apiserver",
        ))
        .map(|svc| {
            if s(&svc, "/spec/type") == "LoadBalancer" {
                svc.pointer("/spec/ports/0/port")
                    .and_then(Value::as_u64)
                    .unwrap_or(2379) as u16
            } else {
                svc.pointer("/spec/ports/0/nodePort")
                    .and_then(Value::as_u64)
                    .unwrap_or(32379) as u16
            }
        });
    let (ns, name) = api.name.split_once('/')?;
    let m = &world.management;
    let infra = ty(m, CAPI, "Cluster")
        .and_then(|t| m.store.get(&Key::new(&t.key(), ns, name)))
        .and_then(|c| cluster_infra(m, &c))
        .map(|(_, v)| v);
    Some(Member {
        key: api.name.clone(),
        name: d("cluster-name"),
        id: d("cluster-id").parse().unwrap_or(0),
        max: d("max-connected-clusters").parse().unwrap_or(255),
        tunnel,
        peers,
        ca,
        mesh_port,
        infra,
        prepared: None,
    })
}

/// The members by Cilium cluster name (several when a name is not unique).
type ByName<'a> = BTreeMap<&'a str, Vec<&'a Member>>;

fn by_name(all: &[Member]) -> ByName<'_> {
    let mut m: ByName<'_> = BTreeMap::new();
    for x in all {
        m.entry(x.name.as_str()).or_default().push(x);
    }
    m
}

#[cfg(test)]
fn link(
    a: &Member,
    p: &str,
    all: &[Member],
    fw: &Firewalls,
    net: &crate::network::Paths,
) -> Result<(), String> {
    link_in(a, p, &by_name(all), fw, net)
}

/// Whether `a`'s link to peer `p` comes up. The members come indexed by name: one pass checks
/// every link of every cluster (511 × 510 at Cilium's maximum), and scanning all members for
/// each made the pass cubic in the fleet.
fn link_in(
    a: &Member,
    p: &str,
    all: &ByName<'_>,
    fw: &Firewalls,
    net: &crate::network::Paths,
) -> Result<(), String> {
    let no_one = Vec::new();
    let same = all.get(p).unwrap_or(&no_one);
    let Some(peer) = same.first() else {
        return Err(format!("no cluster with Cilium has cluster.name `{p}`"));
    };
    if same.len() > 1 || all.get(a.name.as_str()).map_or(0, Vec::len) > 1 {
        return Err(format!(
            "cluster name `{}` is not unique in the mesh",
            if same.len() > 1 { p } else { &a.name }
        ));
    }
    if peer.key == a.key {
        return Err("a cluster cannot peer with itself".into());
    }
    for m in [a, *peer] {
        if m.id < 1 || m.id > m.max {
            return Err(format!(
                "cluster `{}` has cluster.id `{}`, outside 1..={}",
                m.name, m.id, m.max
            ));
        }
    }
    if a.id == peer.id {
        return Err(format!(
            "clusters `{}` and `{}` share cluster.id `{}`",
            a.name, peer.name, a.id
        ));
    }
    if a.max != peer.max {
        return Err(format!(
            "maxConnectedClusters differs: `{}` uses {}, `{}` uses {}",
            a.name, a.max, peer.name, peer.max
        ));
    }
    match (&a.ca, &peer.ca) {
        (None, _) => {
            return Err(format!(
                "no `cilium-ca` Secret in kube-system of `{}`",
                a.name
            ));
        }
        (_, None) => {
            return Err(format!(
                "no `cilium-ca` Secret in kube-system of `{}`",
                peer.name
            ));
        }
        (Some(x), Some(y)) if x != y => {
            return Err(format!(
                "`{}` and `{}` have different ClusterMesh CAs (kube-system/cilium-ca)",
                a.name, peer.name
            ));
        }
        _ => {}
    }
    let Some(port) = peer.mesh_port else {
        return Err(format!(
            "`{}` has no clustermesh-apiserver Service",
            peer.name
        ));
    };
    let (Some(ai), Some(pi)) = (&a.infra, &peer.infra) else {
        return Err("infrastructure of one side is unknown".into());
    };
    let cidr = |m: &Member, infra: &Value| match &m.prepared {
        Some(p) => p.cidr,
        None => node_cidr(infra),
    };
    let (Some(acidr), Some(pcidr)) = (cidr(a, ai), cidr(peer, pi)) else {
        return Err("node CIDR of one side is unknown".into());
    };
    let reach = match (&a.prepared, &peer.prepared) {
        (Some(x), Some(y)) => match (&x.net, &y.net) {
            (Some(na), Some(nb)) => net.reach_between(na, &acidr, nb, &pcidr),
            _ => Ok(()),
        },
        _ => net.reach(ai, &acidr, pi, &pcidr),
    };
    let allows = |m: &Member, infra: &Value, src: &IpNet, proto: &str, port: u16| match &m.prepared
    {
        Some(p) => p.fw.allows(src, proto, port),
        None => fw.allows(infra, src, proto, port, false),
    };
    if let Err(cause) = reach {
        return Err(format!(
            "no network path between `{}` nodes {acidr} and `{}` nodes {pcidr}: {cause}",
            a.name, peer.name
        ));
    }
    if !allows(peer, pi, &acidr, "tcp", port) {
        return Err(format!(
            "`{}` firewall does not allow tcp/{port} (clustermesh-apiserver) from `{}` nodes {acidr}: connection timed out",
            peer.name, a.name
        ));
    }
    if let Some((proto, tport)) = &a.tunnel {
        for (dst, dm, dinfra, src, scidr) in [
            (&peer.name, *peer, pi, &a.name, &acidr),
            (&a.name, a, ai, &peer.name, &pcidr),
        ] {
            if !allows(dm, dinfra, scidr, proto, *tport) {
                return Err(format!(
                    "`{dst}` firewall does not allow {proto}/{tport} (tunnel) from `{src}` nodes {scidr}"
                ));
            }
        }
    }
    Ok(())
}

/// One link of a cluster's mesh as its agents see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The peer's Cilium cluster name.
    pub peer: String,
    /// Connected now.
    pub ready: bool,
    /// How many times the link was seen failing (counted per failure, as the agent does).
    pub failures: u64,
    /// Why it is down (kept for the simulator's logs and tests; never served).
    pub reason: Option<String>,
}

/// A cluster's Cilium name and its links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// `cluster-name` of `cilium-config`.
    pub cluster: String,
    /// One entry per configured peer.
    pub links: Vec<Link>,
}

/// What the last mesh pass computed its links from: a fingerprint of what every link depends
/// on beyond its two ends (the clouds' links, simulated outages, which names are not unique),
/// and one per member of what its links depend on of it ([`Member::fingerprint`]).
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    shared: u64,
    members: HashMap<String, u64>,
}

impl Prepared {
    /// Hash what a link reads of this side. A GCP view hashes only the rules that apply to
    /// its nodes: the network's whole rule list is the same for every member.
    fn hash_into(&self, h: &mut impl Hasher) {
        format!("{:?}{:?}", self.cidr, self.net).hash(h);
        match &self.fw {
            FwView::Gcp { rules, applicable } => {
                for &i in applicable {
                    format!("{:?}", rules[i]).hash(h);
                }
            }
            FwView::Aws { rules, node_port } => format!("{rules:?}{node_port:?}").hash(h),
        }
    }
}

impl Member {
    /// Everything [`link_in`] reads of this member, hashed (its peer list is not: a link's
    /// verdict does not depend on the other names configured beside it).
    fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.key,
            &self.name,
            self.id,
            self.max,
            &self.tunnel,
            &self.ca,
            self.mesh_port,
            self.infra.is_some(),
        )
            .hash(&mut h);
        match &self.prepared {
            Some(p) => p.hash_into(&mut h),
            None => self.infra.as_ref().map(Value::to_string).hash(&mut h),
        }
        h.finish()
    }
}

/// Recompute every workload cluster's mesh links.
///
/// A link's verdict depends only on its two ends and on what [`Inputs::shared`] covers, so a
/// link whose ends and shared inputs are as they were in the last pass keeps its state: the
/// same verdict, and no new failure (a failure counts only when the reason changes). Checking
/// all 511 × 510 links on every pass took most of the simulator's time once the fleet meshed.
pub fn reconcile(world: &World, fw: &Firewalls) {
    let apis = world.workloads();
    let mut members: Vec<Member> = apis.iter().filter_map(|a| member(world, a)).collect();
    for m in &mut members {
        m.prepared = m.infra.as_ref().map(|i| {
            Arc::new(Prepared {
                cidr: node_cidr(i),
                net: crate::network::NodeNet::of(i),
                fw: FwView::of(fw, i),
            })
        });
    }
    let net = crate::network::Paths::build(world);
    let outages = crate::outage::current(world);
    let index = by_name(&members);
    let shared = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        net.fingerprint().hash(&mut h);
        format!("{outages:?}").hash(&mut h);
        let mut taken: Vec<(&str, usize)> = index
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (*k, v.len()))
            .collect();
        taken.sort_unstable();
        taken.hash(&mut h);
        h.finish()
    };
    let now = Inputs {
        shared,
        members: members
            .iter()
            .map(|m| (m.key.clone(), m.fingerprint()))
            .collect(),
    };
    let mut last = world.mesh_inputs.lock().unwrap_or_else(|e| e.into_inner());
    let same_shared = last.shared == now.shared;
    let unchanged = |key: &str| {
        same_shared
            && last
                .members
                .get(key)
                .is_some_and(|f| now.members.get(key) == Some(f))
    };
    let mut state = world.mesh.lock().unwrap_or_else(|e| e.into_inner());
    let mut next = BTreeMap::new();
    for me in &members {
        let before = state.remove(&me.key).unwrap_or_default();
        let was_by_peer: BTreeMap<&str, &Link> =
            before.links.iter().map(|l| (l.peer.as_str(), l)).collect();
        let links = me
            .peers
            .iter()
            .map(|p| {
                let was = was_by_peer.get(p.as_str()).copied();
                if let Some(was) = was
                    && unchanged(&me.key)
                    && let Some([peer]) = index.get(p.as_str()).map(Vec::as_slice)
                    && unchanged(&peer.key)
                {
                    return was.clone();
                }
                let failures = was.map_or(0, |l| l.failures);
                // A simulated outage or partition (crate::outage) blocks the link first.
                let blocked = index
                    .get(p.as_str())
                    .and_then(|v| v.first())
                    .and_then(|peer| crate::outage::link_blocked(&outages, &me.key, &peer.key));
                match blocked.map_or_else(|| link_in(me, p, &index, fw, &net), Err) {
                    Ok(()) => Link {
                        peer: p.clone(),
                        ready: true,
                        failures,
                        reason: None,
                    },
                    Err(reason) => {
                        // A failure is counted when the link goes (or starts) down, or the
                        // reason changes: each is a new failed attempt in the agent's terms.
                        let new = was.is_none_or(|l| l.ready || l.reason.as_ref() != Some(&reason));
                        if new {
                            tracing::debug!(cluster = %me.name, peer = %p, %reason, "clustermesh link down");
                        }
                        Link {
                            peer: p.clone(),
                            ready: false,
                            failures: failures + u64::from(new),
                            reason: Some(reason),
                        }
                    }
                }
            })
            .collect();
        next.insert(
            me.key.clone(),
            Links {
                cluster: me.name.clone(),
                links,
            },
        );
    }
    *state = next;
    *last = now;
}

/// The Prometheus text exposition an agent on `node` of workload cluster `key` serves on
/// `:9962/metrics`: the ClusterMesh gauges. `None` when that cluster runs no Cilium.
pub fn metrics(world: &World, key: &str, node: &str) -> Option<String> {
    let state = world.mesh.lock().unwrap_or_else(|e| e.into_inner());
    let l = state.get(key)?;
    Some(exposition(l, node))
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Render `links` as the agent on `node` exports them.
pub fn exposition(l: &Links, node: &str) -> String {
    use std::fmt::Write;
    let (c, n) = (esc(&l.cluster), esc(node));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP cilium_clustermesh_remote_clusters The total number of remote clusters meshed with the local cluster\n# TYPE cilium_clustermesh_remote_clusters gauge\ncilium_clustermesh_remote_clusters{{source_cluster=\"{c}\",source_node_name=\"{n}\"}} {}",
        l.links.len()
    );
    out.push_str("# HELP cilium_clustermesh_remote_cluster_failures The total number of failures related to the remote cluster\n# TYPE cilium_clustermesh_remote_cluster_failures gauge\n");
    for k in &l.links {
        let _ = writeln!(
            out,
            "cilium_clustermesh_remote_cluster_failures{{source_cluster=\"{c}\",source_node_name=\"{n}\",target_cluster=\"{}\"}} {}",
            esc(&k.peer),
            k.failures
        );
    }
    out.push_str("# HELP cilium_clustermesh_remote_cluster_readiness_status The readiness status of the remote cluster\n# TYPE cilium_clustermesh_remote_cluster_readiness_status gauge\n");
    for k in &l.links {
        let _ = writeln!(
            out,
            "cilium_clustermesh_remote_cluster_readiness_status{{source_cluster=\"{c}\",source_node_name=\"{n}\",target_cluster=\"{}\"}} {}",
            esc(&k.peer),
            u8::from(k.ready)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agents_export_readiness_and_failures() {
        let l = Links {
            cluster: "a".into(),
            links: vec![
                Link {
                    peer: "b".into(),
                    ready: true,
                    failures: 0,
                    reason: None,
                },
                Link {
                    peer: "c".into(),
                    ready: false,
                    failures: 2,
                    reason: Some("firewall".into()),
                },
            ],
        };
        let t = exposition(&l, "n-1");
        assert!(t.contains("cilium_clustermesh_remote_clusters{source_cluster=\"a\",source_node_name=\"n-1\"} 2\n"), "{t}");
        assert!(t.contains("cilium_clustermesh_remote_cluster_readiness_status{source_cluster=\"a\",source_node_name=\"n-1\",target_cluster=\"b\"} 1\n"), "{t}");
        assert!(t.contains("cilium_clustermesh_remote_cluster_readiness_status{source_cluster=\"a\",source_node_name=\"n-1\",target_cluster=\"c\"} 0\n"), "{t}");
        assert!(t.contains("cilium_clustermesh_remote_cluster_failures{source_cluster=\"a\",source_node_name=\"n-1\",target_cluster=\"c\"} 2\n"), "{t}");
        // The reason is the simulator's own knowledge, never exported.
        assert!(!t.contains("firewall"), "{t}");
        assert_eq!(esc("q\"\\\n"), "q\\\"\\\\\\n");
    }

    #[test]
    fn gcp_rules() {
        let infra = json!({"kind": "GCPCluster", "spec": {"network": {"firewall": {"firewallRules": [
            {"name": "talos", "allowed": [{"IPProtocol": "TCP", "ports": ["50000-50001"]}], "sourceRanges": ["203.0.113.10/32"]}]}}}});
        let src: IpNet = "203.0.113.10/32".parse().unwrap();
        assert!(allows(&infra, &src, "tcp", 50000, true));
        assert!(!allows(&infra, &src, "tcp", 2379, true));
        assert!(!allows(
            &infra,
            &"203.0.113.11/32".parse().unwrap(),
            "tcp",
            50000,
            true
        ));
    }

    fn member(key: &str, name: &str, id: i64) -> Member {
        let infra = json!({"kind": "GCPCluster", "spec": {"network": {
            "subnets": [{"cidrBlock": format!("10.0.{}.0/20", id * 16)}],
            "firewall": {"firewallRules": [{"allowed": [{"IPProtocol": "TCP", "ports": ["32379"]}, {"IPProtocol": "UDP", "ports": ["8472"]}],
                "sourceRanges": ["10.0.0.0/14"]}]}}}});
        Member {
            key: key.into(),
            name: name.into(),
            id,
            max: 255,
            tunnel: Some(("udp".into(), 8472)),
            peers: vec![],
            ca: Some("ca".into()),
            mesh_port: Some(32379),
            infra: Some(infra),
            prepared: None,
        }
    }

    /// Networks as before the model: everything reaches everything.
    fn open() -> crate::network::Paths {
        crate::network::Paths::new(
            false,
            Default::default(),
            Default::default(),
            Default::default(),
        )
    }

    #[test]
    fn cilium_rules_decide_links() {
        let a = member("f/a", "a", 1);
        let b = member("f/b", "b", 2);
        assert_eq!(
            link(
                &a,
                "b",
                &[a.clone(), b.clone()],
                &Firewalls::default(),
                &open()
            ),
            Ok(())
        );
        let mut dup = b.clone();
        dup.id = 1;
        assert!(
            link(&a, "b", &[a.clone(), dup], &Firewalls::default(), &open())
                .unwrap_err()
                .contains("share cluster.id")
        );
        let mut big = b.clone();
        big.max = 511;
        assert!(
            link(&a, "b", &[a.clone(), big], &Firewalls::default(), &open())
                .unwrap_err()
                .contains("maxConnectedClusters")
        );
        let mut other_ca = b.clone();
        other_ca.ca = Some("other".into());
        assert!(
            link(
                &a,
                "b",
                &[a.clone(), other_ca],
                &Firewalls::default(),
                &open()
            )
            .unwrap_err()
            .contains("different ClusterMesh CAs")
        );
        let twin = member("f/c", "b", 3);
        assert!(
            link(
                &a,
                "b",
                &[a.clone(), b.clone(), twin],
                &Firewalls::default(),
                &open()
            )
            .unwrap_err()
            .contains("not unique")
        );
        assert!(
            link(
                &a,
                "zz",
                &[a.clone(), b.clone()],
                &Firewalls::default(),
                &open()
            )
            .unwrap_err()
            .contains("`zz`")
        );
        let mut zero = b.clone();
        zero.id = 0;
        assert!(
            link(&a, "b", &[a.clone(), zero], &Firewalls::default(), &open())
                .unwrap_err()
                .contains("outside")
        );
        let mut closed = b.clone();
        closed.infra = Some(
            json!({"kind": "GCPCluster", "spec": {"network": {"subnets": [{"cidrBlock": "10.0.32.0/20"}]}}}),
        );
        assert!(
            link(
                &a,
                "b",
                &[a.clone(), closed],
                &Firewalls::default(),
                &open()
            )
            .unwrap_err()
            .contains("tcp/32379")
        );
    }

    #[test]
    fn gcp_rules_are_network_wide() {
        let api = Api {
            name: "management".into(),
            store: std::sync::Arc::new(crate::store::Store::open(None).unwrap()),
            registry: std::sync::Arc::new(crate::resources::Registry::management()),
            token: String::new(),
        };
        let gcp = |name: &str, net: &str, src: &str| {
            json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "GCPCluster",
                "metadata": {"name": name, "namespace": "f"},
                "spec": {"project": "p", "network": {"name": net, "firewall": {"firewallRules": [
                    {"allowed": [{"IPProtocol": "TCP", "ports": ["50000"]}], "sourceRanges": [src]}]}}}})
        };
        let t = api
            .registry
            .by_kind(crate::controllers::INFRA, "GCPCluster")
            .unwrap()
            .key();
        for (n, net, src) in [
            ("a", "shared", "203.0.113.10/32"),
            ("b", "shared", "198.18.0.1/32"),
            ("c", "own", "198.18.0.1/32"),
        ] {
            let o = gcp(n, net, src);
            api.store
                .mutate(&Key::new(&t, "f", n), |_| Ok(crate::store::Change::Put(o)))
                .unwrap();
        }
        let egress: IpNet = "203.0.113.10/32".parse().unwrap();
        let b = api.store.get(&Key::new(&t, "f", "b")).unwrap();
        let c = api.store.get(&Key::new(&t, "f", "c")).unwrap();
        assert!(!allows(&b, &egress, "tcp", 50000, true));
        // The per-pass index answers the same from one listing.
        let fw = Firewalls::build(&api, None);
        assert!(fw.allows(&b, &egress, "tcp", 50000, true));
        assert!(!fw.allows(&c, &egress, "tcp", 50000, true));
        assert!(!fw.allows(&b, &egress, "tcp", 50001, true));
        // targetTags scope a rule to the instances of one cluster (CAPG's instance tags).
        let mut scoped = gcp("d", "tagged", "203.0.113.10/32");
        scoped["spec"]["network"]["firewall"]["firewallRules"][0]["targetTags"] =
            json!(["d-control-plane"]);
        let d = scoped.clone();
        api.store
            .mutate(&Key::new(&t, "f", "d"), |_| {
                Ok(crate::store::Change::Put(scoped))
            })
            .unwrap();
        let mut e = gcp("e", "tagged", "198.18.0.1/32");
        api.store
            .mutate(&Key::new(&t, "f", "e"), |_| {
                Ok(crate::store::Change::Put(e.clone()))
            })
            .unwrap();
        e = api.store.get(&Key::new(&t, "f", "e")).unwrap();
        let fw = Firewalls::build(&api, None);
        assert!(fw.allows(&d, &egress, "tcp", 50000, true));
        assert!(!fw.allows(&e, &egress, "tcp", 50000, true));
    }

    #[test]
    fn aws_rules() {
        let infra = json!({"kind": "AWSCluster", "spec": {"network": {"additionalControlPlaneIngressRules": [
            {"protocol": "tcp", "fromPort": 50000, "toPort": 50000, "cidrBlocks": ["203.0.113.0/24"]}]}}});
        let src: IpNet = "203.0.113.10/32".parse().unwrap();
        assert!(allows(&infra, &src, "tcp", 50000, true));
        assert!(!allows(&infra, &src, "tcp", 50000, false));
    }
}
