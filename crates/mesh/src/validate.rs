//! Checks over the clusters about to be connected, before anything dials anything.
//!
//! These are the mistakes that make a ClusterMesh silently half-work: two clusters with the same
//! name or ID (identities and service backends collide), an ID outside what
//! `maxConnectedClusters` allows (the agent refuses to start), members that disagree on
//! `maxConnectedClusters` (the identity space is split differently, so Cilium refuses the peer),
//! different CAs (cilium-cli refuses to connect them and the agents reject each other's
//! certificates), and certificates that expire soon (the mesh breaks on a date nobody watches).
//!
//! Pure: the caller passes the current time and every fact; nothing is read or dialled.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

/// The `maxConnectedClusters` values Cilium accepts.
pub const ALLOWED_MAX_CONNECTED_CLUSTERS: [u32; 2] = [255, 511];
/// Cilium's limit on a cluster name's length.
pub const CLUSTER_NAME_MAX_LEN: usize = 32;

/// What is known about one cluster that is to join the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMember {
    /// Cilium `cluster.name`.
    pub name: String,
    /// Cilium `cluster.id`.
    pub cluster_id: u32,
    /// Cilium `clustermesh.maxConnectedClusters`.
    pub max_connected_clusters: u32,
    /// SHA-256 fingerprint of the CA the cluster's `cilium-ca` Secret holds.
    pub ca_fingerprint: String,
    /// The clustermesh-apiserver endpoints other clusters dial (`https://host:port`).
    pub endpoints: Vec<String>,
    /// End of validity of the cluster's clustermesh certificates (server, client, remote), if
    /// known: the earliest matters.
    pub cert_not_after: Vec<OffsetDateTime>,
}

/// Certificates (and CAs) that expire within this window are warned about, by `up` and by
/// `mesh status` alike.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

/// How bad a problem is (serialised in lower case: `error`, `warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The mesh will not work (or will misroute) until it is fixed.
    Error,
    /// The mesh works now but will not for long, or something looks accidental.
    Warning,
}

/// One problem found by [`check_mesh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshProblem {
    /// Fewer than two clusters: there is nothing to mesh.
    TooFewClusters {
        /// How many were given.
        count: usize,
    },
    /// A cluster name Cilium refuses.
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Two or more clusters share a name.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Two or more clusters share a cluster ID.
    DuplicateId {
        /// The ID.
        cluster_id: u32,
        /// The clusters that carry it, in input order.
        clusters: Vec<String>,
    },
    /// A cluster ID outside `1..=maxConnectedClusters` (0 means "not meshed").
    IdOutOfRange {
        /// The cluster.
        cluster: String,
        /// Its ID.
        cluster_id: u32,
        /// The largest ID its `maxConnectedClusters` allows.
        max: u32,
    },
    /// `maxConnectedClusters` other than 255 or 511.
    InvalidMaxConnectedClusters {
        /// The cluster.
        cluster: String,
        /// The value.
        value: u32,
    },
    /// The members disagree on `maxConnectedClusters`.
    UnequalMaxConnectedClusters {
        /// Each value with the clusters that use it.
        values: BTreeMap<u32, Vec<String>>,
    },
    /// More clusters than `maxConnectedClusters` allows.
    TooManyClusters {
        /// How many clusters.
        count: usize,
        /// The limit.
        max: u32,
    },
    /// The members do not share one CA.
    CaMismatch {
        /// Each CA fingerprint with the clusters that use it.
        fingerprints: BTreeMap<String, Vec<String>>,
    },
    /// A cluster lists no clustermesh-apiserver endpoint.
    NoEndpoint {
        /// The cluster.
        cluster: String,
    },
    /// Two clusters list the same endpoint: one of them would be dialled for the other.
    SharedEndpoint {
        /// The endpoint.
        endpoint: String,
        /// The clusters that list it.
        clusters: Vec<String>,
    },
    /// A certificate already expired.
    CertificateExpired {
        /// The cluster.
        cluster: String,
        /// When it expired.
        not_after: OffsetDateTime,
    },
    /// A certificate expires within the warning window.
    CertificateExpiringSoon {
        /// The cluster.
        cluster: String,
        /// When it expires.
        not_after: OffsetDateTime,
        /// Whole days left.
        days_left: i64,
    },
}

impl MeshProblem {
    /// How bad it is.
    pub fn severity(&self) -> Severity {
        match self {
            Self::TooFewClusters { .. } | Self::CertificateExpiringSoon { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// A one-line explanation with a hint, values in backticks.
    pub fn message(&self) -> String {
        fn list(names: &[String]) -> String {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        match self {
            Self::TooFewClusters { count } => format!(
                "only {count} cluster(s) to mesh\n  hint: a ClusterMesh needs at least two clusters"
            ),
            Self::InvalidName { name, reason } => format!(
                "cluster name `{name}` is not accepted by Cilium: {reason}\n  hint: use at most {CLUSTER_NAME_MAX_LEN} lower-case letters, digits and `-`, starting and ending with a letter or digit"
            ),
            Self::DuplicateName { name } => format!(
                "cluster name `{name}` is used by more than one cluster\n  hint: every cluster in a mesh needs its own name"
            ),
            Self::DuplicateId {
                cluster_id,
                clusters,
            } => format!(
                "cluster ID `{cluster_id}` is used by {}\n  hint: give each cluster its own ID; identities of clusters sharing an ID collide",
                list(clusters)
            ),
            Self::IdOutOfRange {
                cluster,
                cluster_id,
                max,
            } => format!(
                "cluster `{cluster}` has ID `{cluster_id}`, outside `1..={max}`\n  hint: ID 0 means \"not meshed\"; pick an unused ID between 1 and {max}"
            ),
            Self::InvalidMaxConnectedClusters { cluster, value } => format!(
                "cluster `{cluster}` sets maxConnectedClusters `{value}`\n  hint: Cilium accepts only `255` or `511`"
            ),
            Self::UnequalMaxConnectedClusters { values } => format!(
                "clusters disagree on maxConnectedClusters: {}\n  hint: every member must use the same value; it cannot be changed on a running cluster",
                values
                    .iter()
                    .map(|(v, c)| format!("`{v}` ({})", list(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::TooManyClusters { count, max } => format!(
                "{count} clusters exceed maxConnectedClusters `{max}`\n  hint: use `511` (before Cilium is installed) or split the mesh"
            ),
            Self::CaMismatch { fingerprints } => format!(
                "clusters do not share one mesh CA: {}\n  hint: deliver the same `cilium-ca` Secret to every cluster before Cilium starts",
                fingerprints
                    .iter()
                    .map(|(f, c)| format!("`{}` ({})", short_fp(f), list(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::NoEndpoint { cluster } => format!(
                "cluster `{cluster}` has no clustermesh-apiserver endpoint\n  hint: expose clustermesh-apiserver (LoadBalancer or NodePort) and record its address"
            ),
            Self::SharedEndpoint { endpoint, clusters } => format!(
                "endpoint `{endpoint}` is listed by {}\n  hint: each cluster's agents must dial that cluster's own clustermesh-apiserver",
                list(clusters)
            ),
            Self::CertificateExpired { cluster, not_after } => format!(
                "a clustermesh certificate of cluster `{cluster}` expired at `{}`\n  hint: issue new certificates from the mesh CA",
                crate::pki::rfc3339(*not_after)
            ),
            Self::CertificateExpiringSoon {
                cluster,
                not_after,
                days_left,
            } => format!(
                "a clustermesh certificate of cluster `{cluster}` expires in {days_left} day(s), at `{}`\n  hint: renew it before then",
                crate::pki::rfc3339(*not_after)
            ),
        }
    }
}

fn short_fp(fp: &str) -> &str {
    // The first 8 bytes identify a CA well enough in a message; the full value is in the data.
    fp.get(..23).unwrap_or(fp)
}

/// Why Cilium would refuse a cluster name, or `None` when it is fine.
pub fn cluster_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > CLUSTER_NAME_MAX_LEN {
        return Some(format!(
            "it has {} characters, more than {CLUSTER_NAME_MAX_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("it contains `{c}`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it starts or ends with `-`".into());
    }
    None
}

/// Check the members of a mesh. Returns every problem found, errors first, in a stable order;
/// an empty list means the mesh can be connected. Certificates expiring within `warn_within` of
/// `now` are warnings; expired ones are errors.
pub fn check_mesh(
    members: &[MeshMember],
    now: OffsetDateTime,
    warn_within: Duration,
) -> Vec<MeshProblem> {
    let mut out = Vec::new();
    if members.len() < 2 {
        out.push(MeshProblem::TooFewClusters {
            count: members.len(),
        });
    }

    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for m in members {
        if let Some(reason) = cluster_name_problem(&m.name) {
            out.push(MeshProblem::InvalidName {
                name: m.name.clone(),
                reason,
            });
        }
        *by_name.entry(&m.name).or_default() += 1;
    }
    for (name, n) in by_name {
        if n > 1 {
            out.push(MeshProblem::DuplicateName {
                name: name.to_owned(),
            });
        }
    }

    let mut by_id: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut by_max: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for m in members {
        by_id.entry(m.cluster_id).or_default().push(m.name.clone());
        by_max
            .entry(m.max_connected_clusters)
            .or_default()
            .push(m.name.clone());
        if ALLOWED_MAX_CONNECTED_CLUSTERS.contains(&m.max_connected_clusters) {
            if m.cluster_id == 0 || m.cluster_id > m.max_connected_clusters {
                out.push(MeshProblem::IdOutOfRange {
                    cluster: m.name.clone(),
                    cluster_id: m.cluster_id,
                    max: m.max_connected_clusters,
                });
            }
        } else {
            out.push(MeshProblem::InvalidMaxConnectedClusters {
                cluster: m.name.clone(),
                value: m.max_connected_clusters,
            });
        }
    }
    for (cluster_id, clusters) in by_id {
        if clusters.len() > 1 {
            out.push(MeshProblem::DuplicateId {
                cluster_id,
                clusters,
            });
        }
    }
    if by_max.len() > 1 {
        out.push(MeshProblem::UnequalMaxConnectedClusters { values: by_max });
    } else if let Some(&max) = by_max.keys().next()
        && members.len() > max as usize
    {
        out.push(MeshProblem::TooManyClusters {
            count: members.len(),
            max,
        });
    }

    let mut by_ca: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        by_ca
            .entry(m.ca_fingerprint.to_ascii_lowercase().replace('-', ":"))
            .or_default()
            .push(m.name.clone());
    }
    if by_ca.len() > 1 {
        out.push(MeshProblem::CaMismatch {
            fingerprints: by_ca,
        });
    }

    let mut by_endpoint: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        if m.endpoints.is_empty() {
            out.push(MeshProblem::NoEndpoint {
                cluster: m.name.clone(),
            });
        }
        for e in &m.endpoints {
            let list = by_endpoint
                .entry(e.trim_end_matches('/').to_owned())
                .or_default();
            if !list.contains(&m.name) {
                list.push(m.name.clone());
            }
        }
    }
    for (endpoint, clusters) in by_endpoint {
        if clusters.len() > 1 {
            out.push(MeshProblem::SharedEndpoint { endpoint, clusters });
        }
    }

    for m in members {
        if let Some(&not_after) = m.cert_not_after.iter().min() {
            if not_after < now {
                out.push(MeshProblem::CertificateExpired {
                    cluster: m.name.clone(),
                    not_after,
                });
            } else if not_after - now <= warn_within {
                out.push(MeshProblem::CertificateExpiringSoon {
                    cluster: m.name.clone(),
                    not_after,
                    days_left: (not_after - now).whole_days(),
                });
            }
        }
    }

    // Stable sort keeps the discovery order within a severity.
    out.sort_by_key(MeshProblem::severity);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99";
    const FP_B: &str = "11:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn member(name: &str, id: u32) -> MeshMember {
        MeshMember {
            name: name.into(),
            cluster_id: id,
            max_connected_clusters: 255,
            ca_fingerprint: FP_A.into(),
            endpoints: vec![format!("https://{name}.mesh.example:2379")],
            cert_not_after: vec![now() + Duration::days(300)],
        }
    }

    fn check(ms: &[MeshMember]) -> Vec<MeshProblem> {
        check_mesh(ms, now(), Duration::days(30))
    }

    #[test]
    fn a_good_mesh_has_no_problem() {
        assert_eq!(check(&[member("gcp-eu", 1), member("aws-us", 2)]), vec![]);
    }

    #[test]
    fn name_and_id_collisions() {
        let p = check(&[
            member("a", 1),
            member("a", 2),
            member("b", 2),
            member("c", 2),
        ]);
        assert!(p.contains(&MeshProblem::DuplicateName { name: "a".into() }));
        assert!(p.contains(&MeshProblem::DuplicateId {
            cluster_id: 2,
            clusters: vec!["a".into(), "b".into(), "c".into()],
        }));
        assert!(p.iter().all(|x| x.severity() == Severity::Error));
    }

    #[test]
    fn ids_out_of_range_depend_on_max() {
        let mut big = member("b", 300);
        big.max_connected_clusters = 511;
        let mut also_big = member("c", 511);
        also_big.max_connected_clusters = 511;
        assert_eq!(check(&[big.clone(), also_big]), vec![]);
        let p = check(&[member("a", 0), member("d", 256)]);
        assert_eq!(
            p,
            vec![
                MeshProblem::IdOutOfRange {
                    cluster: "a".into(),
                    cluster_id: 0,
                    max: 255
                },
                MeshProblem::IdOutOfRange {
                    cluster: "d".into(),
                    cluster_id: 256,
                    max: 255
                },
            ]
        );
    }

    #[test]
    fn unequal_and_invalid_max_connected_clusters() {
        let mut b = member("b", 2);
        b.max_connected_clusters = 511;
        let mut c = member("c", 3);
        c.max_connected_clusters = 100;
        let p = check(&[member("a", 1), b, c]);
        assert!(p.contains(&MeshProblem::InvalidMaxConnectedClusters {
            cluster: "c".into(),
            value: 100
        }));
        let unequal = p
            .iter()
            .find_map(|x| match x {
                MeshProblem::UnequalMaxConnectedClusters { values } => Some(values.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(unequal.len(), 3);
        assert_eq!(unequal[&511], vec!["b".to_string()]);
    }

    #[test]
    fn ca_mismatch_names_each_side() {
        let mut b = member("b", 2);
        b.ca_fingerprint = FP_B.into();
        let mut c = member("c", 3);
        c.ca_fingerprint = FP_A.to_uppercase();
        let p = check(&[member("a", 1), b, c]);
        assert_eq!(p.len(), 1);
        let MeshProblem::CaMismatch { fingerprints } = &p[0] else {
            panic!("expected a CA mismatch, got {p:?}")
        };
        assert_eq!(fingerprints[FP_A], vec!["a".to_string(), "c".to_string()]);
        assert_eq!(fingerprints[FP_B], vec!["b".to_string()]);
        assert!(
            p[0].message()
                .contains("`aa:bb:cc:dd:ee:ff:00:11` (`a`, `c`)")
        );
    }

    #[test]
    fn expiring_soon_is_a_warning_and_expired_an_error() {
        let mut a = member("a", 1);
        a.cert_not_after = vec![now() + Duration::days(300), now() + Duration::days(10)];
        let mut b = member("b", 2);
        b.cert_not_after = vec![now() - Duration::hours(1)];
        let p = check(&[a, b]);
        assert_eq!(
            p,
            vec![
                MeshProblem::CertificateExpired {
                    cluster: "b".into(),
                    not_after: now() - Duration::hours(1)
                },
                MeshProblem::CertificateExpiringSoon {
                    cluster: "a".into(),
                    not_after: now() + Duration::days(10),
                    days_left: 10
                },
            ]
        );
        assert_eq!(p[1].severity(), Severity::Warning);
    }

    #[test]
    fn endpoints_missing_or_shared() {
        let mut a = member("a", 1);
        a.endpoints.clear();
        let mut b = member("b", 2);
        let mut c = member("c", 3);
        b.endpoints = vec!["https://10.0.0.1:2379".into()];
        c.endpoints = vec!["https://10.0.0.1:2379/".into()];
        let p = check(&[a, b, c]);
        assert_eq!(
            p,
            vec![
                MeshProblem::NoEndpoint {
                    cluster: "a".into()
                },
                MeshProblem::SharedEndpoint {
                    endpoint: "https://10.0.0.1:2379".into(),
                    clusters: vec!["b".into(), "c".into()],
                },
            ]
        );
    }

    #[test]
    fn names_cilium_refuses() {
        assert_eq!(cluster_name_problem("gcp-europe-1"), None);
        assert!(cluster_name_problem("").is_some());
        assert!(cluster_name_problem("Upper").unwrap().contains("`U`"));
        assert!(cluster_name_problem("-lead").is_some());
        assert!(cluster_name_problem("trail-").is_some());
        assert!(cluster_name_problem(&"a".repeat(33)).is_some());
        assert!(cluster_name_problem(&"a".repeat(32)).is_none());
        let p = check(&[member("Bad_Name", 1), member("ok", 2)]);
        assert!(matches!(&p[0], MeshProblem::InvalidName { name, .. } if name == "Bad_Name"));
    }

    #[test]
    fn too_few_and_too_many() {
        assert_eq!(
            check(&[member("a", 1)]),
            vec![MeshProblem::TooFewClusters { count: 1 }]
        );
        let many: Vec<_> = (1..=256u32)
            .map(|i| member(&format!("c{i}"), i.min(255)))
            .collect();
        let p = check(&many);
        assert!(p.contains(&MeshProblem::TooManyClusters {
            count: 256,
            max: 255
        }));
    }
}
