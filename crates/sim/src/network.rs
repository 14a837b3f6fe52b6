//! Which node networks reach which: the simulator's model of separate networks.
//!
//! A node network is a GCP VPC network (`project/network`, one for every region: meshfleet
//! creates it with global routing) or the VPC the simulated CAPA made for one AWSCluster. Nodes
//! reach nodes of their own network; another network only through a link that exists in the
//! cloud fakes and is consistent on both sides:
//!
//! - **GCP ↔ AWS (HA VPN to a Transit Gateway)**: at least one GCP `vpnTunnels` entry on an HA
//!   VPN gateway of the network whose peer external-gateway interface is the outside address of
//!   a tunnel of an AWS VPN connection on a Transit Gateway the VPC is attached to, with equal
//!   pre-shared keys and IKEv2; the connection's customer gateway has the address of the HA
//!   gateway interface the tunnel leaves from and the Cloud Router's ASN; the router has an
//!   interface for the tunnel on the customer half of the tunnel's inside /30 and a BGP peer on
//!   it towards AWS's half with the Transit Gateway's ASN. Routes: the VPN attachment
//!   propagates into the Transit Gateway's table (what BGP learns from GCP), the VPC's
//!   attachment propagates (or a static route covers its CIDR, which BGP advertises to GCP), and
//!   the VPC routes the GCP node CIDR to the Transit Gateway.
//! - **AWS ↔ AWS, VPC peering**: an `active` peering connection and in each VPC a route to the
//!   other's CIDR through it.
//! - **AWS ↔ AWS, Transit Gateway**: both VPCs attached (`available`) to one Transit Gateway
//!   whose table routes both CIDRs, or to two whose `available` peering attachment carries
//!   static routes both ways; each VPC routes the other's CIDR to its Transit Gateway.
//!
//! Field names follow the Compute API (`VpnGateway.vpnInterfaces[].ipAddress`,
//! `ExternalVpnGateway.interfaces[]`, `VpnTunnel.{vpnGateway,vpnGatewayInterface,
//! peerExternalGateway,peerExternalGatewayInterface,sharedSecret,ikeVersion,router}`,
//! `Router.{bgp.asn,interfaces[].{name,linkedVpnTunnel,ipRange},bgpPeers[].{interfaceName,
//! peerIpAddress,peerAsn}}`) and, for AWS, [`crate::aws::ec2net`].
//!
//! With [`crate::SimConfig::separate_networks`] off (an opt-out: `sim serve --shared-networks`;
//! on by default now that `meshfleet net setup` creates the links) every network reaches every
//! other, as before; outages marked with [`set_outage`] apply either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use ipnet::IpNet;
use serde_json::Value;

use crate::World;
use crate::aws::ec2net::{Attached, Ec2Net, Vpc};
use crate::controllers::s;

/// A node network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeNet {
    /// A GCP VPC network.
    Gcp {
        /// Project id.
        project: String,
        /// Network name.
        network: String,
    },
    /// The VPC of one AWSCluster.
    Aws {
        /// Region.
        region: String,
        /// `namespace/name` of the AWSCluster.
        cluster: String,
    },
}

impl NodeNet {
    /// The network of an infrastructure object (GCPCluster, AWSCluster).
    pub fn of(infra: &Value) -> Option<Self> {
        match s(infra, "/kind") {
            "GCPCluster" => Some(NodeNet::Gcp {
                project: s(infra, "/spec/project").to_string(),
                network: match s(infra, "/spec/network/name") {
                    "" => "default".to_string(),
                    n => n.to_string(),
                },
            }),
            "AWSCluster" => Some(NodeNet::Aws {
                region: s(infra, "/spec/region").to_string(),
                cluster: format!(
                    "{}/{}",
                    s(infra, "/metadata/namespace"),
                    s(infra, "/metadata/name")
                ),
            }),
            _ => None,
        }
    }

    /// How people name it: `gcp:<project>/<network>` or `aws:<region>/<cluster>`.
    pub fn id(&self) -> String {
        match self {
            NodeNet::Gcp { project, network } => format!("gcp:{project}/{network}"),
            NodeNet::Aws { region, cluster } => {
                let name = cluster.rsplit('/').next().unwrap_or(cluster);
                format!("aws:{region}/{name}")
            }
        }
    }
}

/// Interconnect outages the simulator was told about (`sim fail --link`), by network pair.
#[derive(Debug, Default)]
pub struct Outages(Mutex<BTreeSet<(NodeNet, NodeNet)>>);

fn pair(a: NodeNet, b: NodeNet) -> (NodeNet, NodeNet) {
    if a <= b { (a, b) } else { (b, a) }
}

/// The node network of the workload cluster `cluster` (the CAPI Cluster's name, any
/// namespace), from its infrastructure object in the management cluster.
pub fn network_of(world: &World, cluster: &str) -> Option<NodeNet> {
    let m = &world.management;
    let t = crate::controllers::ty(m, crate::controllers::CAPI, "Cluster")?;
    let c = m
        .store
        .list(&t.key(), None)
        .0
        .into_iter()
        .find(|c| s(c, "/metadata/name") == cluster)?;
    let (_, infra) = crate::controllers::cluster_infra(m, &c)?;
    NodeNet::of(&infra)
}

/// Mark the interconnect between the networks of clusters `a` and `b` down (`down`) or back
/// up: every mesh link between nodes of those two networks goes down with it, whatever the
/// clouds hold. Returns the two network ids; an error when a cluster's network is unknown or
/// both are on one network (nothing between them can fail).
pub fn set_outage(world: &World, a: &str, b: &str, down: bool) -> Result<[String; 2], String> {
    let na = network_of(world, a).ok_or_else(|| format!("no cluster `{a}` with infrastructure"))?;
    let nb = network_of(world, b).ok_or_else(|| format!("no cluster `{b}` with infrastructure"))?;
    if na == nb {
        return Err(format!(
            "`{a}` and `{b}` share network `{}`: no interconnect joins them",
            na.id()
        ));
    }
    let ids = [na.id(), nb.id()];
    let mut set = world.outages.0.lock().unwrap_or_else(|e| e.into_inner());
    let key = pair(na, nb);
    if down {
        set.insert(key);
    } else {
        set.remove(&key);
    }
    Ok(ids)
}

/// Two ends of a verdict, in order.
type CacheKey = ((NodeNet, IpNet), (NodeNet, IpNet));

/// The GCP resources an HA VPN involves, per project: relative path → resource.
type GcpVpn = BTreeMap<String, Value>;

/// The networks' links as the clouds hold them, read once per controller pass, with the
/// verdict per pair of (network, node CIDR) cached (a mesh has many links over few networks;
/// the CIDR matters because every GCP cluster's subnet needs its own route into a VPC).
pub struct Paths {
    separate: bool,
    ec2: Ec2Net,
    gcp: HashMap<String, GcpVpn>,
    down: BTreeSet<(NodeNet, NodeNet)>,
    cache: Mutex<HashMap<CacheKey, Result<(), String>>>,
    /// GCP ↔ AWS: the VPN connections whose tunnels are up, per (GCP network, VPC) pair. They
    /// do not depend on the GCP cluster's subnet, and every GCP cluster of a network would
    /// otherwise check every tunnel again.
    tunnels: Mutex<HashMap<(NodeNet, NodeNet), UpVpns>>,
}

/// The VPN connections of a GCP ↔ AWS link whose tunnels are up, (connection, Transit Gateway),
/// or why none is.
type UpVpns = Result<Vec<(String, String)>, String>;

impl Paths {
    /// From what the clouds hold: `separate` as [`crate::SimConfig::separate_networks`], the
    /// AWS fake's EC2 networking, per GCP project its Compute resources by relative path
    /// (`regions/r/vpnTunnels/t`, …), and the network pairs that are out.
    pub fn new(
        separate: bool,
        ec2: Ec2Net,
        gcp: HashMap<String, BTreeMap<String, Value>>,
        down: BTreeSet<(NodeNet, NodeNet)>,
    ) -> Self {
        Self {
            separate,
            ec2,
            gcp,
            down,
            cache: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
        }
    }

    /// Read the fakes.
    pub fn build(world: &World) -> Self {
        let separate = world.cfg.separate_networks;
        let ec2 = if separate {
            world.aws.read(|st| st.ec2.clone())
        } else {
            Ec2Net::default()
        };
        let gcp = if separate {
            world.gcp.read(|st| {
                st.projects
                    .iter()
                    .map(|(p, proj)| {
                        let vpn: GcpVpn = proj
                            .compute
                            .iter()
                            .filter(|(k, _)| {
                                k.contains("/vpnGateways/")
                                    || k.contains("/externalVpnGateways/")
                                    || k.contains("/vpnTunnels/")
                                    || k.contains("/routers/")
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        (p.clone(), vpn)
                    })
                    .collect()
            })
        } else {
            HashMap::new()
        };
        let down = world
            .outages
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Self::new(separate, ec2, gcp, down)
    }

    /// A hash of everything a verdict of [`Paths::reach_between`] reads (the caches aside), so
    /// the mesh pass can tell the clouds' links have not changed since its last pass.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.separate.hash(&mut h);
        // Debug output of ordered maps is deterministic; the GCP projects are sorted first.
        format!("{:?}", self.ec2).hash(&mut h);
        let gcp: BTreeMap<&String, &GcpVpn> = self.gcp.iter().collect();
        format!("{gcp:?}").hash(&mut h);
        format!("{:?}", self.down).hash(&mut h);
        h.finish()
    }

    /// Whether nodes of `a` (node CIDR `acidr`) reach nodes of `b` (`bcidr`) and back; the
    /// cause when not.
    pub fn reach(&self, a: &Value, acidr: &IpNet, b: &Value, bcidr: &IpNet) -> Result<(), String> {
        let (Some(na), Some(nb)) = (NodeNet::of(a), NodeNet::of(b)) else {
            return Ok(());
        };
        self.reach_between(&na, acidr, &nb, bcidr)
    }

    /// [`Paths::reach`] between networks already known ([`NodeNet::of`] once per cluster, not
    /// once per link: a pass checks 511 × 510 links at Cilium's maximum).
    pub fn reach_between(
        &self,
        na: &NodeNet,
        acidr: &IpNet,
        nb: &NodeNet,
        bcidr: &IpNet,
    ) -> Result<(), String> {
        if na == nb {
            return Ok(());
        }
        if !self.down.is_empty() {
            let key = pair(na.clone(), nb.clone());
            if self.down.contains(&key) {
                return Err(format!(
                    "the interconnect between `{}` and `{}` is down (simulated outage)",
                    key.0.id(),
                    key.1.id()
                ));
            }
        }
        if !self.separate {
            return Ok(());
        }
        let key = if (na, acidr) <= (nb, bcidr) {
            ((na.clone(), *acidr), (nb.clone(), *bcidr))
        } else {
            ((nb.clone(), *bcidr), (na.clone(), *acidr))
        };
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return v.clone();
        }
        let verdict = match (na, nb) {
            (NodeNet::Gcp { .. }, NodeNet::Gcp { .. }) => Err(format!(
                "`{}` and `{}` are separate GCP networks and nothing joins them",
                na.id(),
                nb.id()
            )),
            (NodeNet::Gcp { project, network }, NodeNet::Aws { region, cluster }) => {
                self.gcp_aws(project, network, acidr, region, cluster, nb)
            }
            (NodeNet::Aws { region, cluster }, NodeNet::Gcp { project, network }) => {
                self.gcp_aws(project, network, bcidr, region, cluster, na)
            }
            (NodeNet::Aws { cluster: ca, .. }, NodeNet::Aws { cluster: cb, .. }) => {
                self.aws_aws((ca, na), (cb, nb))
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, verdict.clone());
        verdict
    }

    fn vpc(&self, cluster: &str, net: &NodeNet) -> Result<(&String, &Vpc), String> {
        self.ec2
            .vpc_of(cluster)
            .ok_or_else(|| format!("`{}` has no VPC yet (CAPA creates it)", net.id()))
    }

    /// The Transit Gateways a VPC is attached to (`available` attachments): (tgw, attachment).
    fn tgws_of(&self, vpc: &str) -> Vec<(&String, &String)> {
        self.ec2
            .tgw_attachments
            .iter()
            .filter(|(_, a)| {
                a.state == "available" && a.attached == Attached::Vpc { vpc: vpc.into() }
            })
            .map(|(id, a)| (&a.transit_gateway, id))
            .collect()
    }

    /// Does Transit Gateway `tgw`'s table route `cidr` (a static route covering it, or a
    /// propagating attachment of a VPC whose CIDR covers it)?
    fn tgw_routes(&self, tgw: &str, cidr: &IpNet) -> bool {
        let Some(t) = self.ec2.transit_gateways.get(tgw) else {
            return false;
        };
        let statics = t.static_routes.iter().any(|r| covers(&r.destination, cidr));
        let propagated = t.propagations.iter().any(|att| {
            matches!(self.ec2.tgw_attachments.get(att), Some(a) if a.state == "available"
                && matches!(&a.attached, Attached::Vpc { vpc }
                    if self.ec2.vpcs.get(vpc).is_some_and(|v| covers(&v.cidr, cidr))))
        });
        statics || propagated
    }

    /// Does the VPC send `cidr` to `target`? EC2 uses the most specific route that matches
    /// (the longest prefix: Amazon VPC User Guide, "Route priority",
    /// docs.aws.amazon.com/vpc/latest/userguide/route-tables.html), so a summary route to a
    /// Transit Gateway carries a peer only while no longer prefix sends it elsewhere.
    fn vpc_route(vpc: &Vpc, cidr: &IpNet, target: &str) -> bool {
        vpc.routes
            .iter()
            .filter_map(|r| {
                let d = r.destination.parse::<IpNet>().ok()?;
                d.contains(cidr).then_some((d.prefix_len(), r))
            })
            .max_by_key(|(len, _)| *len)
            .is_some_and(|(_, r)| r.target == target)
    }

    fn aws_aws(
        &self,
        (ca, na): (&str, &NodeNet),
        (cb, nb): (&str, &NodeNet),
    ) -> Result<(), String> {
        let (ida, va) = self.vpc(ca, na)?;
        let (idb, vb) = self.vpc(cb, nb)?;
        let (Ok(cidra), Ok(cidrb)) = (va.cidr.parse::<IpNet>(), vb.cidr.parse::<IpNet>()) else {
            return Err("a VPC has no valid CIDR".into());
        };
        let (a, b) = (na.id(), nb.id());
        // VPC peering first: it is the direct path when both exist.
        if let Some((pcx, p)) = self.ec2.vpc_peerings.iter().find(|(_, p)| {
            (&p.requester_vpc == ida && &p.accepter_vpc == idb)
                || (&p.requester_vpc == idb && &p.accepter_vpc == ida)
        }) {
            if p.status != "active" {
                return Err(format!(
                    "VPC peering {pcx} between `{a}` and `{b}` is `{}`, not active (the accepter's region must accept it)",
                    p.status
                ));
            }
            for (v, id, who, other, ocidr) in [(va, ida, &a, &b, &cidrb), (vb, idb, &b, &a, &cidra)]
            {
                if !Self::vpc_route(v, ocidr, pcx) {
                    return Err(format!(
                        "VPC {id} of `{who}` has no route to `{other}` ({ocidr}) through peering {pcx}"
                    ));
                }
            }
            return Ok(());
        }
        let ta = self.tgws_of(ida);
        let tb = self.tgws_of(idb);
        if ta.is_empty() || tb.is_empty() {
            let missing = if ta.is_empty() { &a } else { &b };
            return Err(format!(
                "no VPC peering between `{a}` and `{b}`, and `{missing}` is attached to no Transit Gateway"
            ));
        }
        let mut first_err = None;
        for (tga, _) in &ta {
            for (tgb, _) in &tb {
                match self.tgw_path((tga, va, ida, &a, &cidra), (tgb, vb, idb, &b, &cidrb)) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        Err(first_err.unwrap_or_else(|| "no Transit Gateway path".into()))
    }

    #[allow(clippy::type_complexity)]
    fn tgw_path(
        &self,
        (ta, va, ida, a, cidra): (&str, &Vpc, &str, &str, &IpNet),
        (tb, vb, idb, b, cidrb): (&str, &Vpc, &str, &str, &IpNet),
    ) -> Result<(), String> {
        for (v, id, who, t, other, ocidr) in
            [(va, ida, a, ta, b, cidrb), (vb, idb, b, tb, a, cidra)]
        {
            if !Self::vpc_route(v, ocidr, t) {
                return Err(format!(
                    "VPC {id} of `{who}` has no route to `{other}` ({ocidr}) through Transit Gateway {t}"
                ));
            }
        }
        if ta == tb {
            for (cidr, who) in [(cidra, a), (cidrb, b)] {
                if !self.tgw_routes(ta, cidr) {
                    return Err(format!(
                        "Transit Gateway {ta} has no route to `{who}` ({cidr}): its VPC attachment does not propagate and no static route covers it"
                    ));
                }
            }
            return Ok(());
        }
        let peering = self.ec2.tgw_attachments.iter().find(|(_, x)| {
            (x.transit_gateway == ta
                && x.attached
                    == Attached::Peering {
                        peer_transit_gateway: tb.into(),
                    })
                || (x.transit_gateway == tb
                    && x.attached
                        == Attached::Peering {
                            peer_transit_gateway: ta.into(),
                        })
        });
        let Some((pid, p)) = peering else {
            return Err(format!(
                "no Transit Gateway peering attachment between {ta} (`{a}`) and {tb} (`{b}`)"
            ));
        };
        if p.state != "available" {
            return Err(format!(
                "Transit Gateway peering attachment {pid} between {ta} and {tb} is `{}`, not accepted",
                p.state
            ));
        }
        for (t, cidr, who, own, owho) in [(ta, cidrb, b, cidra, a), (tb, cidra, a, cidrb, b)] {
            let static_via_peering = self.ec2.transit_gateways.get(t).is_some_and(|g| {
                g.static_routes
                    .iter()
                    .any(|r| r.target == *pid && covers(&r.destination, cidr))
            });
            if !static_via_peering {
                return Err(format!(
                    "Transit Gateway {t} has no static route to `{who}` ({cidr}) through peering attachment {pid} (peering attachments do not propagate)"
                ));
            }
            if !self.tgw_routes(t, own) {
                return Err(format!(
                    "Transit Gateway {t} has no route to `{owho}` ({own}): its VPC attachment does not propagate"
                ));
            }
        }
        Ok(())
    }

    fn gcp_aws(
        &self,
        project: &str,
        network: &str,
        gcidr: &IpNet,
        region: &str,
        cluster: &str,
        anet: &NodeNet,
    ) -> Result<(), String> {
        let gid = format!("gcp:{project}/{network}");
        let aid = anet.id();
        let (vid, vpc) = self.vpc(cluster, anet)?;
        let nets = (
            NodeNet::Gcp {
                project: project.to_string(),
                network: network.to_string(),
            },
            anet.clone(),
        );
        let cached = self
            .tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&nets)
            .cloned();
        let up_vpns = match cached {
            Some(v) => v,
            None => {
                let v = self.gcp_aws_tunnels(project, network, region, vid, &gid, &aid);
                self.tunnels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(nets, v.clone());
                v
            }
        }?;
        // Routes, both ways, through one working VPN.
        let mut route_err = None;
        for (vpn_id, tgw) in &up_vpns {
            let att = self
                .ec2
                .tgw_attachments
                .iter()
                .find(|(_, a)| {
                    a.attached
                        == Attached::Vpn {
                            vpn: vpn_id.clone(),
                        }
                })
                .map(|(id, _)| id);
            let t = self.ec2.transit_gateways.get(tgw);
            let vcidr: IpNet = match vpc.cidr.parse() {
                Ok(c) => c,
                Err(_) => return Err(format!("VPC {vid} has no valid CIDR")),
            };
            let err = if !att.is_some_and(|a| t.is_some_and(|t| t.propagations.contains(a))) {
                Some(format!(
                    "what BGP learns from `{gid}` over VPN connection {vpn_id} does not propagate into Transit Gateway {tgw}'s route table"
                ))
            } else if !self.tgw_routes(tgw, &vcidr) {
                Some(format!(
                    "Transit Gateway {tgw} does not route (nor advertise to `{gid}`) VPC {vid} ({vcidr}): its attachment does not propagate"
                ))
            } else if !Self::vpc_route(vpc, gcidr, tgw) {
                Some(format!(
                    "VPC {vid} of `{aid}` has no route to `{gid}` nodes ({gcidr}) through Transit Gateway {tgw}"
                ))
            } else {
                None
            };
            match err {
                None => return Ok(()),
                Some(e) => {
                    route_err.get_or_insert(e);
                }
            }
        }
        Err(route_err.unwrap_or_default())
    }

    /// The part of a GCP ↔ AWS link that does not depend on the GCP cluster's subnet: the HA
    /// VPN's tunnels, checked on both sides; the VPN connections with a tunnel up.
    fn gcp_aws_tunnels(
        &self,
        project: &str,
        network: &str,
        region: &str,
        vid: &str,
        gid: &str,
        aid: &str,
    ) -> UpVpns {
        let empty = GcpVpn::new();
        let res = self.gcp.get(project).unwrap_or(&empty);
        let on_net = |v: &Value| rel(s(v, "/network")) == format!("global/networks/{network}");
        let gateways: BTreeMap<&String, &Value> = res
            .iter()
            .filter(|(k, v)| k.contains("/vpnGateways/") && on_net(v))
            .collect();
        let tgws = self.tgws_of(vid);
        let vpns: Vec<_> = self
            .ec2
            .vpn_connections
            .iter()
            .filter(|(_, c)| {
                c.region == region && tgws.iter().any(|(t, _)| **t == c.transit_gateway)
            })
            .collect();
        if gateways.is_empty() && vpns.is_empty() {
            return Err(format!(
                "no link between `{gid}` and `{aid}`: no HA VPN gateway on the GCP network, no VPN connection on a Transit Gateway of the VPC"
            ));
        }
        if gateways.is_empty() {
            return Err(format!(
                "the link between `{gid}` and `{aid}` is missing its GCP side: no HA VPN gateway on network `{network}`"
            ));
        }
        if tgws.is_empty() {
            return Err(format!(
                "the link between `{gid}` and `{aid}` is missing its AWS side: VPC {vid} is attached to no Transit Gateway"
            ));
        }
        if vpns.is_empty() {
            return Err(format!(
                "the link between `{gid}` and `{aid}` is missing its AWS side: no VPN connection on Transit Gateway {}",
                tgws[0].0
            ));
        }
        // Tunnels on the GCP side, by their peer address.
        let tunnels: Vec<(&String, &Value)> = res
            .iter()
            .filter(|(k, v)| {
                k.contains("/vpnTunnels/") && gateways.contains_key(&rel(s(v, "/vpnGateway")))
            })
            .collect();
        let mut first_err: Option<String> = None;
        let mut note = |e: String| {
            first_err.get_or_insert(e);
        };
        let mut up_vpns = Vec::new();
        for (vpn_id, vpn) in &vpns {
            let cgw = self.ec2.customer_gateways.get(&vpn.customer_gateway);
            let asn = self
                .ec2
                .transit_gateways
                .get(&vpn.transit_gateway)
                .map_or(0, |t| t.amazon_side_asn);
            let mut up = false;
            for t in &vpn.tunnels {
                let matching: Vec<_> = tunnels
                    .iter()
                    .filter(|(_, g)| peer_ip(res, g).as_deref() == Some(t.outside_ip.as_str()))
                    .collect();
                if matching.is_empty() {
                    note(format!(
                        "tunnel {} of VPN connection {vpn_id} (`{aid}`) has no GCP tunnel: no external VPN gateway interface of `{gid}` points at it",
                        t.outside_ip
                    ));
                    continue;
                }
                for (gk, g) in matching {
                    match tunnel_check(res, gk, g, t, cgw, asn) {
                        Ok(()) => up = true,
                        Err(e) => note(format!("{e} (link `{gid}` ↔ `{aid}`)")),
                    }
                }
            }
            if up {
                up_vpns.push(((*vpn_id).clone(), vpn.transit_gateway.clone()));
            }
        }
        if up_vpns.is_empty() {
            return Err(
                first_err.unwrap_or_else(|| format!("no tunnel between `{gid}` and `{aid}` is up"))
            );
        }
        Ok(up_vpns)
    }
}

/// `https://…/compute/v1/projects/p/regions/r/x/n` (or `projects/p/…`) → `regions/r/x/n`;
/// a path without a project is kept as it is.
fn rel(link: &str) -> String {
    match link.find("projects/") {
        Some(i) => link[i + "projects/".len()..]
            .split_once('/')
            .map_or(String::new(), |(_, r)| r.to_string()),
        None => link.trim_start_matches('/').to_string(),
    }
}

fn covers(range: &str, cidr: &IpNet) -> bool {
    range.parse::<IpNet>().is_ok_and(|r| r.contains(cidr))
}

fn num(v: &Value, p: &str) -> Option<i64> {
    v.pointer(p).and_then(|x| {
        x.as_i64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
    })
}

/// The address a GCP tunnel dials: its external VPN gateway's interface.
fn peer_ip(res: &GcpVpn, tunnel: &Value) -> Option<String> {
    let ext = res.get(&rel(s(tunnel, "/peerExternalGateway")))?;
    let want = num(tunnel, "/peerExternalGatewayInterface").unwrap_or(0);
    ext.get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| num(i, "/id").unwrap_or(0) == want)
        .map(|i| s(i, "/ipAddress").to_string())
}

/// The two halves of a tunnel's inside /30: (AWS, customer).
fn inside_pair(cidr: &str) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    let net: ipnet::Ipv4Net = cidr.parse().ok()?;
    let base = u32::from(net.network());
    Some((
        std::net::Ipv4Addr::from(base + 1),
        std::net::Ipv4Addr::from(base + 2),
    ))
}

/// Is GCP tunnel `g` (path `gk`) consistent with AWS tunnel `t`, its customer gateway and the
/// Transit Gateway's ASN?
fn tunnel_check(
    res: &GcpVpn,
    gk: &str,
    g: &Value,
    t: &crate::aws::ec2net::VpnTunnel,
    cgw: Option<&crate::aws::ec2net::CustomerGateway>,
    aws_asn: u32,
) -> Result<(), String> {
    let name = gk.rsplit('/').next().unwrap_or(gk);
    if num(g, "/ikeVersion") != Some(2) {
        return Err(format!("GCP tunnel `{name}` does not use IKEv2"));
    }
    if s(g, "/sharedSecret") != t.psk || t.psk.is_empty() {
        return Err(format!(
            "pre-shared keys differ between GCP tunnel `{name}` and AWS tunnel {}",
            t.outside_ip
        ));
    }
    let Some(cgw) = cgw else {
        return Err(format!(
            "the AWS VPN connection of tunnel {} has no customer gateway",
            t.outside_ip
        ));
    };
    let gw = res.get(&rel(s(g, "/vpnGateway")));
    let want = num(g, "/vpnGatewayInterface").unwrap_or(0);
    let own_ip = gw
        .and_then(|gw| gw.get("vpnInterfaces"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|i| num(i, "/id").unwrap_or(0) == want))
        .map(|i| s(i, "/ipAddress").to_string())
        .unwrap_or_default();
    if own_ip != cgw.ip {
        return Err(format!(
            "GCP tunnel `{name}` leaves from HA VPN interface {want} ({own_ip}), but AWS's customer gateway says {}",
            cgw.ip
        ));
    }
    let Some(router) = res.get(&rel(s(g, "/router"))) else {
        return Err(format!(
            "GCP tunnel `{name}` names no existing Cloud Router"
        ));
    };
    let rname = s(router, "/name");
    let gasn = num(router, "/bgp/asn").unwrap_or(0);
    if gasn != i64::from(cgw.bgp_asn) {
        return Err(format!(
            "Cloud Router `{rname}` has ASN {gasn}, AWS's customer gateway {} says {}",
            cgw.ip, cgw.bgp_asn
        ));
    }
    let Some((aws_in, cust_in)) = inside_pair(&t.inside_cidr) else {
        return Err(format!("AWS tunnel {} has no inside CIDR", t.outside_ip));
    };
    let iface = router
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| rel(s(i, "/linkedVpnTunnel")) == gk);
    let Some(iface) = iface else {
        return Err(format!(
            "Cloud Router `{rname}` has no interface for tunnel `{name}`"
        ));
    };
    if s(iface, "/ipRange") != format!("{cust_in}/30") {
        return Err(format!(
            "Cloud Router `{rname}` interface for tunnel `{name}` is {}, the tunnel's inside CIDR {} wants {cust_in}/30",
            s(iface, "/ipRange"),
            t.inside_cidr
        ));
    }
    let iname = s(iface, "/name");
    let peer = router
        .get("bgpPeers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| s(p, "/interfaceName") == iname);
    let Some(peer) = peer else {
        return Err(format!(
            "Cloud Router `{rname}` has no BGP peer on interface `{iname}` (tunnel `{name}`)"
        ));
    };
    if s(peer, "/peerIpAddress") != aws_in.to_string() {
        return Err(format!(
            "BGP peer on `{iname}` of Cloud Router `{rname}` dials {}, AWS's side of the tunnel is {aws_in}",
            s(peer, "/peerIpAddress")
        ));
    }
    if num(peer, "/peerAsn") != Some(i64::from(aws_asn)) {
        return Err(format!(
            "BGP peer on `{iname}` of Cloud Router `{rname}` expects ASN {}, the Transit Gateway has {aws_asn}",
            num(peer, "/peerAsn").unwrap_or(0)
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
