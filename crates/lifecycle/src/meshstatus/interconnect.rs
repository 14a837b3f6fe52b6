//! Which interconnect a down mesh link crosses, and what fixes it.
//!
//! Cilium's metrics say a peer is not connected, not why; when the two clusters sit on node
//! networks the plan joins with a link (GCP ↔ an AWS VPC, two AWS VPCs), the network between
//! them is a cause to name: the link the fleet file leaves unset, or the one it says to provide.

use std::collections::BTreeMap;

use meshfleet_plan::InterconnectNeed;

use super::{MeshReport, Problem};

/// Add one problem per planned link that down mesh links cross: the link's name, kind and
/// networks, the cluster pairs it leaves apart, and the fix for how the fleet file says to
/// provide it (`file` is the fleet file, for the hint). Pairs whose link is fine elsewhere
/// (Cilium connected) are not counted.
pub fn explain_interconnects(report: &mut MeshReport, links: &[InterconnectNeed], file: &str) {
    let mut down: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for c in &report.clusters {
        for p in c.peers.iter().filter(|p| p.expected && !p.connected) {
            // Each pair once, in name order.
            let (a, b) = if c.name <= p.name {
                (&c.name, &p.name)
            } else {
                (&p.name, &c.name)
            };
            if let Some(i) = links.iter().position(|l| l.joins(a, b)) {
                let pairs = down.entry(i).or_default();
                let pair = (a.clone(), b.clone());
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
    }
    for (i, pairs) in down {
        let l = &links[i];
        let shown: Vec<String> = pairs
            .iter()
            .take(4)
            .map(|(a, b)| format!("`{a}` ↔ `{b}`"))
            .collect();
        let more = if pairs.len() > 4 {
            format!(" and {} more", pairs.len() - 4)
        } else {
            String::new()
        };
        let across = format!(
            "`{}` ↔ `{}` (link `{}`)",
            l.between[0], l.between[1], l.name
        );
        let field = l.kind.field();
        let (message, hint) = match l.via.as_deref() {
            None => (
                format!(
                    "mesh links {}{more} are down, and nothing joins their node networks {across}: `{field}` is not set",
                    shown.join(", ")
                ),
                format!(
                    "set `{field}` in `{file}` and create the link with `meshfleet net setup -f {file}` (or set `existing` when a network team provides it); until then the mesh is partial"
                ),
            ),
            Some("existing") => (
                format!(
                    "mesh links {}{more} are down across the existing interconnect {across}, which a network team provides",
                    shown.join(", ")
                ),
                format!(
                    "ask the network team to check the link: routes to {} and back to {}, firewall rules admitting both node ranges; meshfleet creates nothing for `existing` links",
                    cidrs(l, 1),
                    cidrs(l, 0)
                ),
            ),
            Some(via) => (
                format!(
                    "mesh links {}{more} are down across the `{via}` interconnect {across}: it may be missing or broken",
                    shown.join(", ")
                ),
                format!(
                    "create or repair it with `meshfleet net setup -f {file}` (after `up`, once CAPA has made the AWS VPCs; it reports the step that is missing or differs); it must route {} ↔ {} (set `{field}: existing` if a network team provides it)",
                    cidrs(l, 0),
                    cidrs(l, 1)
                ),
            ),
        };
        report.problems.push(Problem::error(message, hint));
    }
}

fn cidrs(l: &InterconnectNeed, end: usize) -> String {
    let n = &l.ends[end].nodes;
    if n.is_empty() {
        format!("`{}`", l.between[end])
    } else {
        n.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meshstatus::{ClusterReport, PeerState};
    use meshfleet_plan::{LinkEnd, LinkKind};
    use meshfleet_spec::Provider;

    fn link(via: Option<&str>) -> InterconnectNeed {
        let end = |provider, network: &str, clusters: &[&str], nodes: &[&str]| LinkEnd {
            provider,
            network: network.into(),
            region: None,
            clusters: clusters.iter().map(|c| (*c).to_string()).collect(),
            nodes: nodes.iter().map(|n| n.parse().unwrap()).collect(),
        };
        InterconnectNeed {
            name: "meshfleet--aws-euw1".into(),
            kind: LinkKind::GcpToAws,
            between: ["gcp:meshfleet".into(), "aws:eu-west-1/aws-euw1".into()],
            ends: [
                end(
                    Provider::Gcp,
                    "gcp:meshfleet",
                    &["gcp-euw1", "gcp-use1"],
                    &["10.0.0.0/20"],
                ),
                end(
                    Provider::Aws,
                    "aws:eu-west-1/aws-euw1",
                    &["aws-euw1"],
                    &["10.0.32.0/20"],
                ),
            ],
            via: via.map(str::to_string),
        }
    }

    fn cluster(name: &str, peers: &[(&str, bool)]) -> ClusterReport {
        ClusterReport {
            name: name.into(),
            cluster_id: None,
            cilium_name: None,
            expected_peers: vec![],
            configured_peers: vec![],
            connected_peers: vec![],
            endpoints: vec![],
            peers: peers
                .iter()
                .map(|(p, up)| PeerState {
                    name: (*p).into(),
                    expected: true,
                    configured: true,
                    connected: *up,
                    reason: None,
                })
                .collect(),
            ca: None,
            pod_cidrs: vec![],
            problems: vec![],
        }
    }

    fn report() -> MeshReport {
        MeshReport {
            fleet: "f".into(),
            clusters: vec![
                cluster("gcp-euw1", &[("gcp-use1", true), ("aws-euw1", false)]),
                cluster("gcp-use1", &[("gcp-euw1", true), ("aws-euw1", false)]),
                cluster("aws-euw1", &[("gcp-euw1", false), ("gcp-use1", false)]),
            ],
            problems: vec![],
        }
    }

    #[test]
    fn an_unset_link_is_named_with_its_field() {
        let mut r = report();
        explain_interconnects(&mut r, &[link(None)], "fleet.yaml");
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        let p = &r.problems[0];
        assert!(
            p.message
                .contains("`aws-euw1` ↔ `gcp-euw1`, `aws-euw1` ↔ `gcp-use1`"),
            "{}",
            p.message
        );
        assert!(p.message.contains("link `meshfleet--aws-euw1`"));
        assert!(
            p.message
                .contains("`spec.interconnect.gcpToAws` is not set")
        );
        assert!(p.hint.as_deref().unwrap().contains("fleet.yaml"));
    }

    #[test]
    fn a_set_or_existing_link_says_what_to_check() {
        let mut r = report();
        explain_interconnects(&mut r, &[link(Some("haVpn"))], "fleet.yaml");
        assert!(r.problems[0].message.contains("`haVpn` interconnect"));
        assert!(
            r.problems[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("`10.0.0.0/20` ↔ `10.0.32.0/20`")
        );
        let mut r = report();
        explain_interconnects(&mut r, &[link(Some("existing"))], "fleet.yaml");
        assert!(r.problems[0].message.contains("network team"));
    }

    #[test]
    fn links_within_one_network_are_not_blamed_on_an_interconnect() {
        let mut r = report();
        for c in &mut r.clusters {
            for p in &mut c.peers {
                p.connected = p.name.starts_with("aws") || c.name.starts_with("aws");
            }
        }
        // Only gcp-euw1 ↔ gcp-use1 is down: no link joins them.
        explain_interconnects(&mut r, &[link(None)], "fleet.yaml");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
}
