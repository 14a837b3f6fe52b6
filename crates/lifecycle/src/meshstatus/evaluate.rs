//! Judging what [`super::collect`] read against the plan. Pure: tested without a cluster.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use meshfleet_mesh::time::OffsetDateTime;
use meshfleet_mesh::{MeshMember, MeshProblem};
use serde_json::Value;

use super::firewall::{node_cidr, opens_tcp};
use super::{ClusterReport, Facts, MeshReport, PeerState, Planned, Problem};
use crate::mesh;

/// What meshfleet itself can tell about why `a` is not connected to `p`, from the objects it
/// read (Cilium's metrics say only that it is not): `(unreachable, why)`.
fn why_not_connected(a: &Facts, p: &Facts, all: &[Facts]) -> Option<(bool, String)> {
    let Some(e) = p.endpoints.as_ref().filter(|e| !e.ips.is_empty()) else {
        return Some((
            true,
            format!(
                "`{}` publishes no clustermesh-apiserver address (Service `kube-system/clustermesh-apiserver`)",
                p.name
            ),
        ));
    };
    if let (Some((x, _)), Some((y, _))) = (&a.ca, &p.ca)
        && x.fingerprint != y.fingerprint
    {
        return Some((
            false,
            format!(
                "`{}` and `{}` hold different mesh CAs (`kube-system/cilium-ca`)",
                a.name, p.name
            ),
        ));
    }
    // A NodePort is dialled on the nodes themselves, so the nodes' firewall decides.
    if (30000..=32767).contains(&e.port)
        && let (Some(src), Some(pi)) = (a.infra.as_ref().and_then(node_cidr), p.infra.as_ref())
        && !opens_tcp(pi, all, &src, e.port)
    {
        let rules = if pi.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
            format!(
                "the `additionalNodeIngressRules` of `{}`'s AWSCluster",
                p.name
            )
        } else {
            format!("the firewall rules of `{}`'s GCP network", p.name)
        };
        return Some((
            true,
            format!(
                "{rules} open no tcp/{} to `{}`'s nodes (`{src}`)",
                e.port, a.name
            ),
        ));
    }
    None
}

/// Does a reason Cilium gives mean the peer's clustermesh-apiserver cannot be reached?
fn is_unreachable(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "2379",
        "firewall",
        "timed out",
        "timeout",
        "connection refused",
        "no route",
        "no such host",
        "unreachable",
        "no clustermesh-apiserver",
    ]
    .iter()
    .any(|k| r.contains(k))
}

fn names(list: &[String]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge what was read against the plan. Pure.
pub fn evaluate(
    fleet: &str,
    planned: &[Planned],
    max_connected: u32,
    facts: Vec<Facts>,
    now: OffsetDateTime,
) -> MeshReport {
    let mut clusters = Vec::new();
    let mut members: Vec<MeshMember> = Vec::new();
    // Which fleet cluster a Cilium name belongs to, for per-cluster mesh-crate problems.
    let mut by_cilium_name: BTreeMap<String, String> = BTreeMap::new();
    for f in &facts {
        let Some(pl) = planned.iter().find(|p| p.name == f.name) else {
            continue;
        };
        let mut problems = f.problems.clone();
        let expected: Vec<String> = pl.peers.clone();
        let configured: Vec<String> = f
            .secret_peers
            .clone()
            .or_else(|| f.proxy_peers.clone())
            .unwrap_or_default();
        let view = f.view.clone().unwrap_or_default();
        // Looked up once per peer: at 511 clusters, scanning the lists made the report cubic.
        let expected_set: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let configured_set: HashSet<&str> = configured.iter().map(String::as_str).collect();
        let connected_set: HashSet<&str> = view.connected.iter().map(String::as_str).collect();
        // Cilium's problems are `peer: reason`, or about the cluster as a whole.
        let mut reasons: BTreeMap<String, String> = BTreeMap::new();
        for p in &view.problems {
            match p.split_once(": ") {
                Some((peer, why))
                    if expected_set.contains(peer) || configured_set.contains(peer) =>
                {
                    reasons.insert(peer.to_string(), why.to_string());
                }
                _ if f.reachable && p.starts_with(mesh::NO_STATUS) => {
                    problems.push(Problem::error(
                        format!("`{}`: {p}", f.name),
                        "`meshfleet up` renders `prometheus.enabled: true`; check the agents with `kubectl -n kube-system get pods -l k8s-app=cilium` in that cluster",
                    ))
                }
                _ if f.reachable => problems.push(Problem::error(
                    format!("`{}`: {p}", f.name),
                    "check Cilium in that cluster (`cilium status`, `cilium clustermesh status`)",
                )),
                _ => {}
            }
        }

        if let Some((cname, cid, _)) = &f.cilium {
            if cname != &f.name {
                problems.push(Problem::error(
                    format!(
                        "Cilium in cluster `{}` calls it `{cname}` (`cilium-config` `cluster-name`)",
                        f.name
                    ),
                    format!(
                        "peers find a cluster by this name; set Cilium's `cluster.name` to `{}` (`meshfleet up` does)",
                        f.name
                    ),
                ));
            }
            match cid {
                Some(id) if *id != pl.mesh_id => problems.push(Problem::warning(
                    format!(
                        "cluster `{}` runs with Cilium cluster ID `{id}`, the plan (`meshfleet.lock`) gives `{}`",
                        f.name, pl.mesh_id
                    ),
                    "an ID cannot change on a running cluster without breaking its identities; keep the lock in step with what runs",
                )),
                None => problems.push(Problem::error(
                    format!("Cilium in `{}` has no `cluster-id` in `cilium-config`", f.name),
                    "a meshed cluster needs a unique ID between 1 and maxConnectedClusters; set `cluster.id` (`meshfleet up` does)",
                )),
                _ => {}
            }
        }

        if f.reachable {
            let missing: Vec<String> = expected
                .iter()
                .filter(|p| !configured_set.contains(p.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                problems.push(Problem::error(
                    format!(
                        "`{}` is not configured to dial {} (`cilium-clustermesh`)",
                        f.name,
                        names(&missing)
                    ),
                    "run `meshfleet up`: it records every peer in the cluster's Cilium values",
                ));
            }
            let extra: Vec<String> = configured
                .iter()
                .filter(|p| !expected_set.contains(p.as_str()))
                .cloned()
                .collect();
            if !extra.is_empty() {
                problems.push(Problem::warning(
                    format!(
                        "`{}` is configured to dial {}, not mesh peers in the fleet file",
                        f.name,
                        names(&extra)
                    ),
                    "`meshfleet up` rewrites the Cilium values to the fleet's peers",
                ));
            }
            if let (Some(s), Some(p)) = (&f.secret_peers, &f.proxy_peers)
                && s != p
            {
                problems.push(Problem::warning(
                    format!(
                        "the Cilium values in the management cluster list peers {} but `{}`'s `cilium-clustermesh` Secret lists {}",
                        names(p),
                        f.name,
                        names(s)
                    ),
                    "the add-on provider has not rolled the values out yet; wait, or look at the HelmChartProxy's conditions",
                ));
            }
        }

        let mut peers = Vec::new();
        let all: BTreeSet<&String> = expected.iter().chain(&configured).collect();
        for p in all {
            let connected = connected_set.contains(p.as_str());
            let reason = if connected {
                None
            } else {
                Some(
                    reasons
                        .get(p)
                        .cloned()
                        .unwrap_or_else(|| "Cilium reports nothing about this peer".to_string()),
                )
            };
            let is_expected = expected_set.contains(p.as_str());
            let is_configured = configured_set.contains(p.as_str());
            if f.reachable
                && f.view.is_some()
                && !connected
                && is_expected
                && is_configured
                && let Some(why) = &reason
            {
                let derived = facts
                    .iter()
                    .find(|g| &g.name == p)
                    .and_then(|pf| why_not_connected(f, pf, &facts));
                problems.push(if let Some((unreachable, known)) = derived {
                    if unreachable {
                        Problem::error(
                            format!("`{}` cannot reach `{p}`'s clustermesh-apiserver: {known} (Cilium: {why})", f.name),
                            format!(
                                "let `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer); `meshfleet plan` lists the firewall rules meshfleet renders",
                                f.name
                            ),
                        )
                    } else {
                        Problem::error(
                            format!("`{}` is not connected to `{p}`: {known} (Cilium: {why})", f.name),
                            "run `meshfleet up`: it delivers the fleet's mesh CA to every cluster; then restart Cilium",
                        )
                    }
                } else if is_unreachable(why) {
                    Problem::error(
                        format!("`{}` cannot reach `{p}`'s clustermesh-apiserver: {why}", f.name),
                        format!(
                            "let `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer); `meshfleet plan` lists the firewall rules meshfleet renders",
                            f.name
                        ),
                    )
                } else {
                    Problem::error(
                        format!("`{}` is not connected to `{p}`: {why}", f.name),
                        format!(
                            "Cilium's metrics do not say why; check that `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer) (`meshfleet plan` lists the firewall rules meshfleet renders), then see `cilium clustermesh status` in `{}`",
                            f.name, f.name
                        ),
                    )
                });
            }
            peers.push(PeerState {
                name: p.clone(),
                expected: is_expected,
                configured: is_configured,
                connected,
                reason,
            });
        }

        let endpoints: Vec<String> = f
            .endpoints
            .as_ref()
            .map(|e| {
                e.ips
                    .iter()
                    .map(|ip| format!("https://{ip}:{}", e.port))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((cname, cid, cmax)) = &f.cilium {
            by_cilium_name
                .entry(cname.clone())
                .or_insert_with(|| f.name.clone());
            members.push(MeshMember {
                name: cname.clone(),
                cluster_id: cid.unwrap_or(0),
                max_connected_clusters: *cmax,
                ca_fingerprint: f
                    .ca
                    .as_ref()
                    .map(|(c, _)| c.fingerprint.clone())
                    .unwrap_or_default(),
                endpoints: endpoints.clone(),
                cert_not_after: f.ca.iter().map(|(_, t)| *t).collect(),
            });
        }

        clusters.push(ClusterReport {
            name: f.name.clone(),
            cluster_id: f.cilium.as_ref().and_then(|c| c.1),
            cilium_name: f.cilium.as_ref().map(|c| c.0.clone()),
            expected_peers: expected,
            configured_peers: configured,
            connected_peers: view.connected.clone(),
            endpoints,
            peers,
            ca: f.ca.as_ref().map(|(c, _)| c.clone()),
            pod_cidrs: f.pod_cidrs.iter().map(ToString::to_string).collect(),
            problems,
        });
    }

    // A cluster without a CA is reported on its own; counting its empty fingerprint as one
    // more CA would turn that into a misleading mismatch.
    if let Some(fp) = members
        .iter()
        .find(|m| !m.ca_fingerprint.is_empty())
        .map(|m| m.ca_fingerprint.clone())
    {
        for m in &mut members {
            if m.ca_fingerprint.is_empty() {
                m.ca_fingerprint = fp.clone();
            }
        }
    }
    let mut fleet_problems = Vec::new();
    let checks = meshfleet_mesh::check_mesh(&members, now, meshfleet_mesh::EXPIRY_WARNING);
    for c in &checks {
        let own = match c {
            // Fewer than two members when the fleet has more: the missing ones are reported.
            MeshProblem::TooFewClusters { .. } if planned.len() >= 2 => continue,
            MeshProblem::InvalidName { name: cluster, .. }
            | MeshProblem::IdOutOfRange { cluster, .. }
            | MeshProblem::InvalidMaxConnectedClusters { cluster, .. }
            | MeshProblem::NoEndpoint { cluster }
            | MeshProblem::CertificateExpired { cluster, .. }
            | MeshProblem::CertificateExpiringSoon { cluster, .. } => by_cilium_name.get(cluster),
            _ => None,
        };
        let p = Problem::from_mesh(c);
        match own.and_then(|n| clusters.iter_mut().find(|c| &c.name == n)) {
            Some(cr) => cr.problems.push(p),
            None => fleet_problems.push(p),
        }
    }
    for m in &members {
        if m.max_connected_clusters != max_connected
            && meshfleet_mesh::validate::ALLOWED_MAX_CONNECTED_CLUSTERS
                .contains(&m.max_connected_clusters)
            && let Some(cr) = by_cilium_name
                .get(&m.name)
                .and_then(|n| clusters.iter_mut().find(|c| &c.name == n))
        {
            cr.problems.push(Problem::warning(
                format!(
                    "`{}` runs with maxConnectedClusters `{}`, the fleet file says `{max_connected}`",
                    cr.name, m.max_connected_clusters
                ),
                "it cannot change on a running cluster; keep the fleet file in step with what runs",
            ));
        }
    }

    // Pod CIDRs: Cilium routes between clusters by pod address, so ranges must be disjoint.
    for (i, a) in facts.iter().enumerate() {
        for b in facts.iter().skip(i + 1) {
            for x in &a.pod_cidrs {
                for y in &b.pod_cidrs {
                    if x.contains(&y.network()) || y.contains(&x.network()) {
                        fleet_problems.push(Problem::error(
                            format!(
                                "pod CIDRs of `{}` (`{x}`) and `{}` (`{y}`) overlap",
                                a.name, b.name
                            ),
                            "meshed clusters route pods by address, so each needs its own range; `meshfleet plan` allocates disjoint ones, and a running cluster's range cannot change in place",
                        ));
                    }
                }
            }
        }
    }

    for c in &mut clusters {
        c.problems.sort_by_key(|p| p.severity);
    }
    fleet_problems.sort_by_key(|p| p.severity);
    MeshReport {
        fleet: fleet.to_string(),
        clusters,
        problems: fleet_problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meshstatus::{CaSummary, Severity, proxy_peers};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn planned(names: &[&str]) -> Vec<Planned> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Planned {
                name: n.to_string(),
                mesh_id: i as u32 + 1,
                peers: names
                    .iter()
                    .filter(|x| *x != n)
                    .map(|x| x.to_string())
                    .collect(),
            })
            .collect()
    }

    /// A healthy cluster `name` with ID `id`, pod CIDR `pods`, connected to `peers`.
    fn healthy(name: &str, id: u32, pods: &str, peers: &[&str]) -> Facts {
        let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        Facts {
            name: name.into(),
            exists: true,
            reachable: true,
            cilium: Some((name.into(), Some(id), 255)),
            secret_peers: Some(peers.clone()),
            proxy_peers: Some(peers.clone()),
            view: Some(mesh::MeshView {
                connected: peers,
                problems: Vec::new(),
            }),
            endpoints: Some(mesh::Endpoints {
                ips: vec![format!("10.0.{id}.2")],
                port: 32379,
            }),
            ca: Some((
                CaSummary {
                    fingerprint: "aa:bb".into(),
                    subject: "CN=meshfleet-mesh-ca".into(),
                    not_after: "2030-01-01T00:00:00Z".into(),
                },
                now() + meshfleet_mesh::time::Duration::days(365),
            )),
            pod_cidrs: vec![pods.parse().unwrap()],
            infra: None,
            problems: Vec::new(),
        }
    }

    fn messages(r: &MeshReport) -> Vec<String> {
        r.problems
            .iter()
            .chain(r.clusters.iter().flat_map(|c| c.problems.iter()))
            .map(|p| p.message.clone())
            .collect()
    }

    #[test]
    fn a_healthy_mesh_has_no_problem() {
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![
                healthy("a", 1, "10.64.0.0/16", &["b"]),
                healthy("b", 2, "10.65.0.0/16", &["a"]),
            ],
            now(),
        );
        assert!(messages(&r).is_empty(), "{:?}", messages(&r));
        assert!(!r.has_error());
        assert_eq!(r.clusters[0].connected_peers, ["b"]);
        assert_eq!(r.clusters[0].endpoints, ["https://10.0.1.2:32379"]);
    }

    #[test]
    fn collisions_overlaps_and_expiry() {
        let mut b = healthy("b", 1, "10.64.128.0/17", &["a"]);
        b.ca.as_mut().unwrap().1 = now() + meshfleet_mesh::time::Duration::days(10);
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r).join("\n");
        assert!(m.contains("cluster ID `1` is used by `a`, `b`"), "{m}");
        assert!(
            m.contains("pod CIDRs of `a` (`10.64.0.0/16`) and `b` (`10.64.128.0/17`) overlap"),
            "{m}"
        );
        let b = &r.clusters[1];
        let exp = b
            .problems
            .iter()
            .find(|p| p.message.contains("expires in 10 day"))
            .unwrap_or_else(|| panic!("{m}"));
        assert_eq!(exp.severity, Severity::Warning);
        assert!(r.has_error());
    }

    #[test]
    fn only_a_warning_exits_0() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.ca.as_mut().unwrap().1 = now() + meshfleet_mesh::time::Duration::days(29);
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        assert_eq!(messages(&r).len(), 1, "{:?}", messages(&r));
        assert!(!r.has_error());
    }

    #[test]
    fn names_and_ca_mismatch() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.cilium = Some(("a".into(), Some(2), 255));
        b.ca.as_mut().unwrap().0.fingerprint = "cc:dd".into();
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r).join("\n");
        assert!(
            m.contains("cluster name `a` is used by more than one"),
            "{m}"
        );
        assert!(m.contains("Cilium in cluster `b` calls it `a`"), "{m}");
        assert!(m.contains("do not share one mesh CA"), "{m}");
    }

    #[test]
    fn unreachable_peers_and_missing_configuration() {
        let mut a = healthy("a", 1, "10.64.0.0/16", &["b", "c"]);
        a.view = Some(mesh::MeshView {
            connected: vec!["c".into()],
            problems: vec!["b: not connected according to Cilium (6 failures on 3 nodes)".into()],
        });
        a.infra = Some(serde_json::json!({"kind": "AWSCluster",
            "spec": {"network": {"vpc": {"cidrBlock": "10.0.0.0/20"}}}}));
        // `b`'s security group opens 32379 to another VPC only.
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a", "c"]);
        b.infra = Some(serde_json::json!({"kind": "AWSCluster",
            "spec": {"network": {"vpc": {"cidrBlock": "10.0.16.0/20"}, "additionalNodeIngressRules": [
                {"protocol": "tcp", "fromPort": 32379, "toPort": 32379, "cidrBlocks": ["10.0.32.0/20"]}]}}}));
        let mut c = healthy("c", 3, "10.66.0.0/16", &["a"]);
        // `c`'s values name `b`, but what its Cilium runs with was never told.
        c.secret_peers = Some(vec!["a".into()]);
        c.proxy_peers = Some(vec!["a".into(), "b".into()]);
        let r = evaluate(
            "f",
            &planned(&["a", "b", "c"]),
            255,
            vec![a.clone(), b.clone(), c],
            now(),
        );
        let ra = &r.clusters[0];
        let p = ra
            .problems
            .iter()
            .find(|p| {
                p.message
                    .contains("cannot reach `b`'s clustermesh-apiserver: the `additionalNodeIngressRules` of `b`'s AWSCluster open no tcp/32379 to `a`'s nodes (`10.0.0.0/20`) (Cilium: not connected according to Cilium (6 failures on 3 nodes))")
            })
            .unwrap_or_else(|| panic!("{:?}", ra.problems));
        assert!(p.hint.as_deref().unwrap().contains("tcp/32379"));
        let pb = ra.peers.iter().find(|p| p.name == "b").unwrap();
        assert!(
            !pb.connected
                && pb
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("according to Cilium")
        );
        // With the port open, meshfleet cannot tell why: it says what Cilium says, and where
        // to look first.
        b.infra.as_mut().unwrap()["spec"]["network"]["additionalNodeIngressRules"][0]["cidrBlocks"] =
            serde_json::json!(["10.0.0.0/14"]);
        let r2 = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![a.clone(), b.clone()],
            now(),
        );
        let p = r2.clusters[0]
            .problems
            .iter()
            .find(|p| {
                p.message
                    .contains("`a` is not connected to `b`: not connected according to Cilium")
            })
            .unwrap_or_else(|| panic!("{:?}", r2.clusters[0].problems));
        assert!(p.hint.as_deref().unwrap().contains("tcp/32379"), "{p:?}");
        // No clustermesh-apiserver address on `b`: that is what is wrong.
        b.endpoints = None;
        let r3 = evaluate("f", &planned(&["a", "b"]), 255, vec![a, b], now());
        assert!(
            r3.clusters[0].problems.iter().any(|p| p
                .message
                .contains("`b` publishes no clustermesh-apiserver address")),
            "{:?}",
            r3.clusters[0].problems
        );
        let c = &r.clusters[2];
        assert!(
            c.problems
                .iter()
                .any(|p| p.message.contains("not configured to dial `b`")),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems.iter().any(|p| p
                .message
                .contains("values in the management cluster list peers")),
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn a_missing_ca_is_not_a_second_ca() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.ca = None;
        b.problems.push(Problem::error("no CA", "deliver it"));
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r);
        assert_eq!(m, ["no CA"], "{m:?}");
    }

    #[test]
    fn peers_from_either_form_of_the_values() {
        let map = serde_json::json!({"spec": {"valuesTemplate": "clustermesh:\n  config:\n    clusters:\n      b: {port: 32379}\n      a: {port: 32379}\n"}});
        assert_eq!(proxy_peers(&map), ["a", "b"]);
        let list = serde_json::json!({"spec": {"valuesTemplate": "clustermesh:\n  config:\n    clusters:\n    - name: c\n      port: 2379\n"}});
        assert_eq!(proxy_peers(&list), ["c"]);
        assert!(proxy_peers(&serde_json::json!({})).is_empty());
    }
}
