//! The firewall evaluator `mesh status` uses to say why a link is down: does a cluster's
//! infrastructure object (GCP firewall rules, AWS ingress rules) let a peer's nodes reach a port.

use ipnet::IpNet;
use serde_json::Value;

use super::Facts;

/// The node CIDR of an infrastructure object: the GCP subnet or the AWS VPC.
pub(crate) fn node_cidr(infra: &Value) -> Option<IpNet> {
    let text = if infra.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
        infra.pointer("/spec/network/vpc/cidrBlock")?.as_str()?
    } else {
        infra
            .pointer("/spec/network/subnets")?
            .as_array()?
            .iter()
            .find_map(|s| s.get("cidrBlock")?.as_str())?
    };
    text.parse().ok()
}

fn covers(ranges: Option<&Value>, src: &IpNet) -> bool {
    ranges
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|r| r.parse::<IpNet>().ok())
        .any(|n| n.contains(src))
}

/// Does the firewall in `infra` (with every GCPCluster of `all` on the same GCP network, whose
/// rules apply network-wide) let `src` reach tcp/`port` on the nodes?
pub(crate) fn opens_tcp(infra: &Value, all: &[Facts], src: &IpNet, port: u16) -> bool {
    let p = i64::from(port);
    if infra.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
        // Peers dial the NodePort on every node, workers included, whose security group
        // takes `additionalNodeIngressRules` only.
        let by_rule = infra
            .pointer("/spec/network/additionalNodeIngressRules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|r| {
                let proto = r.get("protocol").and_then(Value::as_str).unwrap_or("");
                let from = r.get("fromPort").and_then(Value::as_i64).unwrap_or(-1);
                let to = r.get("toPort").and_then(Value::as_i64).unwrap_or(-1);
                (proto == "-1" || (proto.eq_ignore_ascii_case("tcp") && from <= p && p <= to))
                    && covers(r.get("cidrBlocks"), src)
            });
        return by_rule
            || ((30000..=32767).contains(&port)
                && covers(
                    infra.pointer("/spec/network/nodePortIngressRuleCidrBlocks"),
                    src,
                ));
    }
    let net = |i: &Value| {
        (
            i.pointer("/spec/project").cloned(),
            i.pointer("/spec/network/name").cloned(),
        )
    };
    let mine = net(infra);
    std::iter::once(infra)
        .chain(
            all.iter()
                .filter_map(|f| f.infra.as_ref())
                .filter(|i| i.get("kind").and_then(Value::as_str) == Some("GCPCluster"))
                .filter(|i| net(i) == mine),
        )
        .filter_map(|i| {
            i.pointer("/spec/network/firewall/firewallRules")?
                .as_array()
        })
        .flatten()
        .filter(|r| r.get("direction").and_then(Value::as_str) != Some("Egress"))
        .filter(|r| {
            r.get("sourceRanges")
                .is_none_or(|_| covers(r.get("sourceRanges"), src))
        })
        .flat_map(|r| {
            r.get("allowed")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .any(|a| {
            let proto = a.get("IPProtocol").and_then(Value::as_str).unwrap_or("");
            let ports: Vec<&str> = a
                .get("ports")
                .and_then(Value::as_array)
                .map(|x| x.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (proto.eq_ignore_ascii_case("tcp") || proto.eq_ignore_ascii_case("all"))
                && (ports.is_empty()
                    || ports.iter().any(|x| match x.split_once('-') {
                        Some((lo, hi)) => {
                            lo.trim().parse::<u16>().is_ok_and(|lo| lo <= port)
                                && hi.trim().parse::<u16>().is_ok_and(|hi| port <= hi)
                        }
                        None => x.trim().parse::<u16>() == Ok(port),
                    }))
        })
}
