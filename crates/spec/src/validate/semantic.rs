//! The semantic pass: the rules of DESIGN.md §2 on the typed fleet (names, CIDRs and their
//! overlaps, mesh IDs, zones, replicas, versions, Pod Security, providers).

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use crate::diag::{Diagnostic, Report};
use crate::model::{Fleet, Provider, PsaLevel, Routing, Version};
use crate::releases::SupportedVersions;
use crate::source::join_key;

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parse a CIDR strictly: it must parse and have no host bits set. A problem is reported at
/// `path` with the corrected network or the missing prefix length as the hint. Shared with the
/// planner so a CIDR reads the same, and is refused the same way, everywhere.
pub fn parse_cidr(report: &mut Report, path: &str, text: &str) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            report.push(
                Diagnostic::error(path, format!("`{text}` has host bits set"))
                    .with_value(text)
                    .with_hint(format!("did you mean `{}`?", net.trunc())),
            );
            None
        }
        Err(_) => {
            let hint = if text.parse::<std::net::IpAddr>().is_ok() {
                format!("add a prefix length, e.g. `{text}/32`")
            } else {
                "write an IPv4 or IPv6 network in CIDR notation, e.g. `10.64.0.0/16`".to_owned()
            };
            report.push(
                Diagnostic::error(path, format!("`{text}` is not a CIDR"))
                    .with_value(text)
                    .with_hint(hint),
            );
            None
        }
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Directory names of the render layout that a cluster directory must not shadow.
const RESERVED_CLUSTER_NAMES: [&str; 2] = ["fleet", "prerequisites"];

const KINDS: [&str; 3] = ["pods", "services", "nodes"];

/// Apply every semantic rule. Paths are set; positions are filled by the caller.
pub(crate) fn semantic(fleet: &Fleet) -> Report {
    let mut r = Report::default();
    let spec = &fleet.spec;

    if !is_dns_label(&fleet.metadata.name, 63) {
        r.push(
            Diagnostic::error("metadata.name", format!("`{}` is not a DNS-1123 label", fleet.metadata.name))
                .with_value(&fleet.metadata.name)
                .with_hint("use at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"),
        );
    }
    check_labels(&mut r, "metadata.labels", &fleet.metadata.labels);
    check_versions(&mut r, fleet);

    // Pools.
    let mut pools: Vec<Option<IpNet>> = Vec::new();
    for kind in KINDS {
        let pool = match kind {
            "pods" => &spec.network.pods,
            "services" => &spec.network.services,
            _ => &spec.network.nodes,
        };
        let path = format!("spec.network.{kind}");
        let net = parse_cidr(&mut r, &format!("{path}.pool"), &pool.pool);
        if let Some(net) = net {
            let max = net.max_prefix_len();
            if pool.prefix_length < net.prefix_len() || pool.prefix_length > max {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!(
                            "prefix length `{}` does not fit pool `{net}`: it must be between {} and {max}",
                            pool.prefix_length,
                            net.prefix_len()
                        ),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint("each cluster gets one block of this size carved from the pool"),
                );
            } else if kind == "pods" && net.addr().is_ipv4() && pool.prefix_length > 24 {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!("pod blocks of /{} are smaller than one node's /24", pool.prefix_length),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint("Kubernetes gives every node a /24 from the cluster's pod CIDR: use 24 or less (16 is usual)"),
                );
            } else if kind == "services"
                && service_too_big(net.addr().is_ipv4(), pool.prefix_length)
            {
                r.push(
                    Diagnostic::error(
                        format!("{path}.prefixLength"),
                        format!(
                            "service blocks of /{} are larger than the API server accepts",
                            pool.prefix_length
                        ),
                    )
                    .with_value(pool.prefix_length)
                    .with_hint(
                        "kube-apiserver accepts at most a /12 (IPv4) or /108 (IPv6) service range",
                    ),
                );
            }
        }
        pools.push(net);
    }
    for i in 0..3 {
        for j in (i + 1)..3 {
            if let (Some(a), Some(b)) = (pools[i], pools[j])
                && overlaps(&a, &b)
            {
                r.push(
                    Diagnostic::error(
                        format!("spec.network.{}.pool", KINDS[j]),
                        format!("the {} pool `{b}` overlaps the {} pool `{a}`", KINDS[j], KINDS[i]),
                    )
                    .with_value(b)
                    .with_hint("pod, service and node pools must be disjoint so no cluster's blocks can collide"),
                );
            }
        }
    }

    // Mesh.
    let max = spec.mesh.max_connected_clusters;
    if max != 255 && max != 511 {
        r.push(
            Diagnostic::error(
                "spec.mesh.maxConnectedClusters",
                format!("`{max}` is not a value Cilium accepts"),
            )
            .with_value(max)
            .with_hint("use `255` (the default) or `511`; Cilium accepts nothing else"),
        );
    }
    let meshed = if spec.mesh.enabled {
        spec.clusters.len()
    } else {
        0
    };
    if (max == 255 || max == 511) && meshed > usize::from(max) {
        r.push(
            Diagnostic::error(
                "spec.clusters",
                format!("{meshed} meshed clusters exceed `maxConnectedClusters: {max}`"),
            )
            .with_hint(if max == 255 {
                "set `spec.mesh.maxConnectedClusters: 511` (it halves the identities per cluster) or split the fleet"
            } else {
                "Cilium meshes at most 511 clusters: split the fleet"
            }),
        );
    }
    let ttl = &spec.mesh.services.cache_ttl;
    if crate::model::duration_seconds(ttl).is_none() {
        r.push(
            Diagnostic::error(
                "spec.mesh.services.cacheTTL",
                format!("`{ttl}` is not a duration"),
            )
            .with_value(ttl.clone())
            .with_hint("write whole hours, minutes and seconds such as `30s`, `2m` or `1h30m` (`0s` never drops a lost cluster's backends)"),
        );
    }
    if spec.mesh.routing == Routing::Native && spec.clusters.len() > 1 {
        r.push(
            Diagnostic::warning(
                "spec.mesh.routing",
                "with `routing: native` the network between clusters must route every cluster's pod CIDR to its nodes, and meshfleet does not create those routes",
            )
            .with_hint("add the routes (GCP routes or alias IP ranges, AWS route tables, VPN route advertisements), or use `routing: tunnel`"),
        );
    }
    if spec.mesh.routing == Routing::Native && spec.mesh.tunnel_protocol != Default::default() {
        r.push(
            Diagnostic::warning(
                "spec.mesh.tunnelProtocol",
                "`tunnelProtocol` has no effect with `routing: native`",
            )
            .with_hint("remove it, or set `routing: tunnel`"),
        );
    }

    check_pod_security(&mut r, fleet);

    // Management.
    if spec.management.egress_cidrs.is_empty() && !spec.clusters.is_empty() {
        r.push(
            Diagnostic::warning(
                "spec.management.egressCIDRs",
                "no management egress CIDR: nothing opens Talos apid (tcp/50000) to the management cluster",
            )
            .with_hint("add the address the management cluster dials from, e.g. `egressCIDRs: [203.0.113.10/32]`; without it bootstrap hangs with an i/o timeout"),
        );
    }
    for (i, c) in spec.management.egress_cidrs.iter().enumerate() {
        let path = format!("spec.management.egressCIDRs[{i}]");
        if let Some(net) = parse_cidr(&mut r, &path, c)
            && net.prefix_len() == 0
        {
            r.push(
                Diagnostic::warning(
                    &path,
                    format!("`{c}` opens Talos apid (tcp/50000) to the whole internet"),
                )
                .with_value(c)
                .with_hint("narrow it to the management cluster's egress addresses"),
            );
        }
    }

    // Providers.
    if let Some(gcp) = &spec.providers.gcp {
        let p = &gcp.project;
        let ok = p.len() >= 6
            && p.len() <= 30
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && is_dns_label(p, 30);
        if !ok {
            r.push(
                Diagnostic::error(
                    "spec.providers.gcp.project",
                    format!("`{p}` is not a GCP project id"),
                )
                .with_value(p)
                .with_hint("6 to 30 lower-case letters, digits and `-`, starting with a letter"),
            );
        }
        if !(is_dns_label(&gcp.network, 63)
            && gcp.network.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            r.push(
                Diagnostic::error(
                    "spec.providers.gcp.network",
                    format!("`{}` is not a GCP network name", gcp.network),
                )
                .with_value(&gcp.network)
                .with_hint("up to 63 lower-case letters, digits and `-`, starting with a letter"),
            );
        }
        if let Some(b) = &gcp.image_bucket {
            let ok = (3..=63).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
                && b.starts_with(|c: char| c.is_ascii_alphanumeric())
                && b.ends_with(|c: char| c.is_ascii_alphanumeric())
                && !b.starts_with("goog");
            if !ok {
                r.push(
                    Diagnostic::error("spec.providers.gcp.imageBucket", format!("`{b}` is not a valid bucket name"))
                        .with_value(b)
                        .with_hint("3 to 63 lower-case letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, not starting with `goog`"),
                );
            }
        }
    }

    check_clusters(&mut r, fleet, &pools);
    super::stack::check(&mut r, fleet);
    super::rollout::check(&mut r, fleet);
    r
}

fn service_too_big(v4: bool, prefix: u8) -> bool {
    if v4 { prefix < 12 } else { prefix < 108 }
}

fn check_versions(r: &mut Report, fleet: &Fleet) {
    let v = &fleet.spec.versions;
    let k8s = version_field(r, "spec.versions.kubernetes", &v.kubernetes, true);
    let talos = version_field(r, "spec.versions.talos", &v.talos, true);
    let cilium = version_field(r, "spec.versions.cilium", &v.cilium, false);
    if let Some(t) = talos {
        let lines = SupportedVersions::TALOS_MINORS;
        if t.major != 1 || !lines.contains(&t.minor) {
            r.push(
                Diagnostic::error(
                    "spec.versions.talos",
                    format!("Talos `v{t}` is not supported"),
                )
                .with_value(&v.talos)
                .with_hint(format!(
                    "use Talos v1.{} to v1.{} (v1.13 is the current stable line)",
                    lines.start(),
                    lines.end()
                )),
            );
        } else if let Some(k) = k8s {
            let range = SupportedVersions::kubernetes_for_talos(t.minor);
            if k.major != 1 || !range.contains(&k.minor) {
                r.push(
                    Diagnostic::error(
                        "spec.versions.kubernetes",
                        format!("Kubernetes `v{k}` is not supported by Talos `v{t}`"),
                    )
                    .with_value(&v.kubernetes)
                    .with_hint(format!(
                        "Talos v1.{} supports Kubernetes v1.{} to v1.{}",
                        t.minor,
                        range.start(),
                        range.end()
                    )),
                );
            }
        }
    }
    if let Some(c) = cilium {
        let lines = SupportedVersions::CILIUM_MINORS;
        if c.major != 1 || c.minor < *lines.start() {
            r.push(
                Diagnostic::error(
                    "spec.versions.cilium",
                    format!("Cilium `{c}` is not supported"),
                )
                .with_value(&v.cilium)
                .with_hint(format!(
                    "use Cilium 1.{} or 1.{}",
                    lines.start(),
                    lines.end()
                )),
            );
        } else if c.minor > *lines.end() {
            r.push(
                Diagnostic::warning(
                    "spec.versions.cilium",
                    format!("Cilium `{c}` is newer than the 1.{} line meshfleet's values are checked against", lines.end()),
                )
                .with_value(&v.cilium)
                .with_hint("render and review the values before rolling it out"),
            );
        }
    }
}

fn version_field(r: &mut Report, path: &str, text: &str, want_v: bool) -> Option<Version> {
    let Some(v) = Version::parse(text) else {
        let example = if want_v { "v1.35.4" } else { "1.19.5" };
        r.push(
            Diagnostic::error(path, format!("`{text}` is not a MAJOR.MINOR.PATCH version"))
                .with_value(text)
                .with_hint(format!("write a full version such as `{example}`")),
        );
        return None;
    };
    match (want_v, text.starts_with('v')) {
        (true, false) => {
            r.push(
                Diagnostic::error(path, format!("`{text}` lacks the leading `v`"))
                    .with_value(text)
                    .with_hint(format!("write `v{text}`")),
            );
            None
        }
        (false, true) => {
            r.push(
                Diagnostic::error(path, format!("`{text}` must not have a leading `v`"))
                    .with_value(text)
                    .with_hint(format!("write `{}` (the Helm chart version)", &text[1..])),
            );
            None
        }
        _ => Some(v),
    }
}

fn check_pod_security(r: &mut Report, fleet: &Fleet) {
    let ps = &fleet.spec.pod_security;
    for (i, ns) in ps.exemptions.namespaces.iter().enumerate() {
        if !is_dns_label(ns, 63) {
            r.push(
                Diagnostic::error(
                    format!("spec.podSecurity.exemptions.namespaces[{i}]"),
                    format!("`{ns}` is not a namespace name"),
                )
                .with_value(ns)
                .with_hint("namespace names are DNS-1123 labels"),
            );
        }
    }
    let exempt = ps.exemptions.namespaces.iter().any(|n| n == "kube-system");
    if ps.enforce != PsaLevel::Privileged && !exempt {
        r.push(
            Diagnostic::error(
                "spec.podSecurity.exemptions.namespaces",
                format!(
                    "enforcing `{}` without exempting `kube-system` blocks Cilium's privileged pods, so no node becomes Ready",
                    ps.enforce.as_str()
                ),
            )
            .with_hint("add `kube-system` to `spec.podSecurity.exemptions.namespaces`"),
        );
    }
    if ps.enforce == PsaLevel::Privileged {
        r.push(
            Diagnostic::warning(
                "spec.podSecurity.enforce",
                "Pod Security enforces nothing with `privileged`",
            )
            .with_hint(
                "`baseline` blocks known privilege escalations and runs almost every workload",
            ),
        );
    }
    let rank = |l: PsaLevel| match l {
        PsaLevel::Privileged => 0,
        PsaLevel::Baseline => 1,
        PsaLevel::Restricted => 2,
    };
    for (field, level) in [("audit", ps.audit), ("warn", ps.warn)] {
        if rank(level) < rank(ps.enforce) {
            r.push(
                Diagnostic::warning(
                    format!("spec.podSecurity.{field}"),
                    format!(
                        "`{field}: {}` is looser than `enforce: {}`, so it never reports anything",
                        level.as_str(),
                        ps.enforce.as_str()
                    ),
                )
                .with_hint(format!(
                    "set `{field}` to `{}` or stricter",
                    ps.enforce.as_str()
                )),
            );
        }
    }
}

pub(super) fn check_labels(r: &mut Report, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = join_key(path, k);
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        let prefix_ok =
            prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(|l| is_dns_label(l, 63)));
        if !name_ok(name) || !prefix_ok {
            r.push(
                Diagnostic::error(&p, format!("`{k}` is not a valid label key"))
                    .with_value(k)
                    .with_hint("an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` and `.`"),
            );
        } else if prefix.is_some_and(|p| p == "meshfleet.io" || p.ends_with(".meshfleet.io")) {
            r.push(
                Diagnostic::error(&p, format!("`{k}` uses the reserved `meshfleet.io` prefix"))
                    .with_value(k)
                    .with_hint(
                        "meshfleet sets `meshfleet.io/*` labels itself: choose another prefix",
                    ),
            );
        }
        if !(v.is_empty() || name_ok(v)) {
            r.push(
                Diagnostic::error(&p, format!("`{v}` is not a valid label value"))
                    .with_value(v)
                    .with_hint("up to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"),
            );
        }
    }
}

fn zone_matches(provider: Provider, region: &str, zone: &str) -> bool {
    match provider {
        // europe-west1-b
        Provider::Gcp => zone
            .strip_prefix(region)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|z| z.len() == 1 && z.bytes().all(|b| b.is_ascii_lowercase())),
        // eu-west-1a, and local zones such as us-west-2-lax-1a
        Provider::Aws => zone.strip_prefix(region).is_some_and(|z| {
            (z.len() == 1 && z.bytes().all(|b| b.is_ascii_lowercase()))
                || (z.starts_with('-')
                    && z.len() > 2
                    && z.ends_with(|c: char| c.is_ascii_lowercase()))
        }),
    }
}

fn region_ok(provider: Provider, region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    match provider {
        // europe-west1, us-central1, northamerica-northeast2
        Provider::Gcp => {
            parts.len() == 2
                && parts[0].bytes().all(|b| b.is_ascii_lowercase())
                && !parts[0].is_empty()
                && parts[1].ends_with(|c: char| c.is_ascii_digit())
                && parts[1].starts_with(|c: char| c.is_ascii_lowercase())
                && parts[1]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
        // eu-west-1, us-gov-west-1, ap-southeast-2
        Provider::Aws => {
            (3..=4).contains(&parts.len())
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
                && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        }
    }
}

fn example_zone(provider: Provider, region: &str) -> String {
    match provider {
        Provider::Gcp => format!("{region}-b"),
        Provider::Aws => format!("{region}a"),
    }
}

fn check_clusters(r: &mut Report, fleet: &Fleet, pools: &[Option<IpNet>]) {
    let spec = &fleet.spec;
    if spec.clusters.is_empty() {
        r.push(
            Diagnostic::error("spec.clusters", "the fleet has no clusters").with_hint(
                "add at least one entry under `spec.clusters`; `meshfleet init` writes an example",
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<u16, usize> = HashMap::new();
    // Pinned CIDRs: (kind index, net, cluster index).
    let mut pins: Vec<(usize, IpNet, usize)> = Vec::new();
    let max = spec.mesh.max_connected_clusters;

    for (i, c) in spec.clusters.iter().enumerate() {
        let base = format!("spec.clusters[{i}]");
        // Name.
        let name_ok = c.name.len() <= 32
            && !c.name.is_empty()
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && c.name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.name.ends_with(|ch: char| ch.is_ascii_alphanumeric());
        if !name_ok {
            let fixed: String = c
                .name
                .to_lowercase()
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                .take(32)
                .collect::<String>()
                .trim_matches('-')
                .to_owned();
            let mut d = Diagnostic::error(
                format!("{base}.name"),
                format!("`{}` is not a valid cluster name", c.name),
            )
            .with_value(&c.name);
            d = if c.name.len() > 32 {
                d.with_hint(format!(
                    "Cilium limits cluster names to 32 characters (this one has {})",
                    c.name.len()
                ))
            } else if fixed.is_empty() {
                d.with_hint("use lower-case letters, digits and `-`, starting and ending with a letter or digit")
            } else {
                d.with_hint(format!(
                    "use lower-case letters, digits and `-`, e.g. `{fixed}`"
                ))
            };
            r.push(d);
        } else if c.name == "default" {
            r.push(
                Diagnostic::error(format!("{base}.name"), "`default` is reserved by Cilium")
                    .with_value(&c.name)
                    .with_hint("Cilium refuses to mesh a cluster named `default`: pick a name that says where it runs"),
            );
        } else if RESERVED_CLUSTER_NAMES.contains(&c.name.as_str()) {
            r.push(
                Diagnostic::error(
                    format!("{base}.name"),
                    format!("`{}` is reserved for meshfleet's render layout", c.name),
                )
                .with_value(&c.name)
                .with_hint("`render` writes fleet-wide files under `fleet/` and `prerequisites/`: pick another name"),
            );
        }
        if let Some(first) = names.insert(c.name.as_str(), i) {
            r.push(
                Diagnostic::error(
                    format!("{base}.name"),
                    format!("duplicate cluster name `{}`", c.name),
                )
                .with_value(&c.name)
                .with_hint(format!(
                    "`spec.clusters[{first}]` already uses it; cluster names are unique in a fleet"
                )),
            );
        }
        check_labels(r, &format!("{base}.labels"), &c.labels);

        // Provider configured.
        let configured = match c.provider {
            Provider::Gcp => spec.providers.gcp.is_some(),
            Provider::Aws => spec.providers.aws.is_some(),
        };
        if !configured {
            let example = match c.provider {
                Provider::Gcp => {
                    "`spec.providers.gcp: { project: my-project, network: meshfleet }`"
                }
                Provider::Aws => "`spec.providers.aws: {}`",
            };
            r.push(
                Diagnostic::error(
                    format!("{base}.provider"),
                    format!("provider `{}` is used but not configured", c.provider),
                )
                .with_value(c.provider)
                .with_hint(format!("add {example}")),
            );
        }

        // Region and zones.
        if !region_ok(c.provider, &c.region) {
            let example = match c.provider {
                Provider::Gcp => "`europe-west1`",
                Provider::Aws => "`eu-west-1`",
            };
            r.push(
                Diagnostic::error(
                    format!("{base}.region"),
                    format!("`{}` is not a {} region name", c.region, c.provider),
                )
                .with_value(&c.region)
                .with_hint(format!("{} regions look like {example}", c.provider)),
            );
        } else {
            if c.zones.is_empty() {
                r.push(
                    Diagnostic::error(format!("{base}.zones"), "a cluster needs at least one zone")
                        .with_hint(format!(
                            "e.g. `zones: [{}]`",
                            example_zone(c.provider, &c.region)
                        )),
                );
            }
            let mut seen = HashMap::new();
            for (z, zone) in c.zones.iter().enumerate() {
                let path = format!("{base}.zones[{z}]");
                if !zone_matches(c.provider, &c.region, zone) {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("zone `{zone}` is not in region `{}`", c.region),
                        )
                        .with_value(zone)
                        .with_hint(format!(
                            "zones of `{}` look like `{}`",
                            c.region,
                            example_zone(c.provider, &c.region)
                        )),
                    );
                }
                if let Some(prev) = seen.insert(zone, z) {
                    r.push(
                        Diagnostic::error(&path, format!("zone `{zone}` is listed twice"))
                            .with_value(zone)
                            .with_hint(format!("it is already `{base}.zones[{prev}]`")),
                    );
                }
            }
        }

        // Machines.
        let cp = &c.control_plane;
        if cp.replicas == 0 || cp.replicas % 2 == 0 {
            let up = cp.replicas + 1;
            r.push(
                Diagnostic::error(
                    format!("{base}.controlPlane.replicas"),
                    format!("control-plane replicas must be odd, got `{}`", cp.replicas),
                )
                .with_value(cp.replicas)
                .with_hint(format!(
                    "etcd needs a majority: use {} (an even count adds no fault tolerance)",
                    if cp.replicas == 0 { 1 } else { up }
                )),
            );
        } else if cp.replicas == 1 {
            r.push(
                Diagnostic::warning(
                    format!("{base}.controlPlane.replicas"),
                    "one control-plane node: losing it loses the cluster's etcd",
                )
                .with_hint("use 3 for production"),
            );
        }
        machine_type(
            r,
            &format!("{base}.controlPlane"),
            &cp.machine_type,
            cp.disk_gib,
        );
        let mut pool_names = HashMap::new();
        for (p, pool) in c.worker_pools.iter().enumerate() {
            let pbase = format!("{base}.workerPools[{p}]");
            if !is_dns_label(&pool.name, 63) {
                r.push(
                    Diagnostic::error(
                        format!("{pbase}.name"),
                        format!("`{}` is not a valid pool name", pool.name),
                    )
                    .with_value(&pool.name)
                    .with_hint(
                        "pool names are DNS-1123 labels: lower-case letters, digits and `-`",
                    ),
                );
            }
            if let Some(prev) = pool_names.insert(pool.name.as_str(), p) {
                r.push(
                    Diagnostic::error(
                        format!("{pbase}.name"),
                        format!("duplicate pool name `{}`", pool.name),
                    )
                    .with_value(&pool.name)
                    .with_hint(format!("`{base}.workerPools[{prev}]` already uses it")),
                );
            }
            machine_type(r, &pbase, &pool.machine_type, pool.disk_gib);
        }

        // Mesh ID pin.
        if let Some(id) = c.mesh_id {
            if id == 0 || id > max {
                r.push(
                    Diagnostic::error(
                        format!("{base}.meshId"),
                        format!("mesh ID `{id}` is outside 1..={max}"),
                    )
                    .with_value(id)
                    .with_hint(format!("Cilium cluster IDs run from 1 to `maxConnectedClusters` ({max}); remove the pin to let the planner choose")),
                );
            } else if let Some(first) = ids.insert(id, i) {
                r.push(
                    Diagnostic::error(format!("{base}.meshId"), format!("mesh ID `{id}` is also pinned by `spec.clusters[{first}]`"))
                        .with_value(id)
                        .with_hint("Cilium cluster IDs must be unique across the mesh; remove one pin to let the planner choose"),
                );
            }
        }

        // CIDR pins.
        if let Some(net) = &c.network {
            let mut mine: Vec<(usize, IpNet)> = Vec::new();
            for (k, text) in [&net.pods, &net.services, &net.nodes]
                .into_iter()
                .enumerate()
            {
                let Some(text) = text else { continue };
                let path = format!("{base}.network.{}", KINDS[k]);
                let Some(cidr) = parse_cidr(r, &path, text) else {
                    continue;
                };
                // A pinned block may sit outside its own pool, but never inside another kind's
                // pool: the planner would hand that space to another cluster.
                for (o, pool) in pools.iter().enumerate() {
                    if o != k
                        && let Some(pool) = pool
                        && overlaps(&cidr, pool)
                    {
                        r.push(
                            Diagnostic::error(
                                &path,
                                format!(
                                    "pinned {} CIDR `{cidr}` overlaps the {} pool `{pool}`",
                                    KINDS[k], KINDS[o]
                                ),
                            )
                            .with_value(cidr)
                            .with_hint(format!("pick a {} block outside `{pool}`", KINDS[k])),
                        );
                    }
                }
                if k == 0 && cidr.addr().is_ipv4() && cidr.prefix_len() > 24 {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("pod CIDR `{cidr}` is smaller than one node's /24"),
                        )
                        .with_value(cidr)
                        .with_hint("use a /24 or larger (a /16 is usual)"),
                    );
                }
                if k == 1 && service_too_big(cidr.addr().is_ipv4(), cidr.prefix_len()) {
                    r.push(
                        Diagnostic::error(
                            &path,
                            format!("service CIDR `{cidr}` is larger than the API server accepts"),
                        )
                        .with_value(cidr)
                        .with_hint("use at most a /12 (IPv4) or /108 (IPv6)"),
                    );
                }
                for (ok, other) in &mine {
                    if overlaps(&cidr, other) {
                        r.push(
                            Diagnostic::error(
                                &path,
                                format!(
                                    "{} CIDR `{cidr}` overlaps this cluster's {} CIDR `{other}`",
                                    KINDS[k], KINDS[*ok]
                                ),
                            )
                            .with_value(cidr)
                            .with_hint("pods, services and nodes of a cluster must not overlap"),
                        );
                    }
                }
                mine.push((k, cidr));
                pins.push((k, cidr, i));
            }
        }
    }

    // Fleet-wide pin overlaps: pods with pods, nodes with nodes, pods with nodes.
    for (a_idx, (ka, a, ca)) in pins.iter().enumerate() {
        for (kb, b, cb) in &pins[..a_idx] {
            if ca == cb || !overlaps(a, b) {
                continue;
            }
            let clash = matches!((*ka, *kb), (0, 0) | (2, 2) | (0, 2) | (2, 0));
            if clash {
                let other = &spec.clusters[*cb].name;
                r.push(
                    Diagnostic::error(
                        format!("spec.clusters[{ca}].network.{}", KINDS[*ka]),
                        format!("{} CIDR `{a}` overlaps the {} CIDR `{b}` of cluster `{other}`", KINDS[*ka], KINDS[*kb]),
                    )
                    .with_value(a)
                    .with_hint(if *ka == 0 && *kb == 0 {
                        "pod CIDRs must be disjoint across a mesh, or Cilium routes pods to the wrong cluster; remove the pin to let the planner choose"
                    } else {
                        "node subnets and pod CIDRs must be disjoint across the fleet; remove the pin to let the planner choose"
                    }),
                );
            }
        }
    }
}

fn machine_type(r: &mut Report, base: &str, machine_type: &str, disk: u32) {
    if machine_type.trim().is_empty() {
        r.push(
            Diagnostic::error(format!("{base}.machineType"), "the machine type is empty")
                .with_hint("e.g. `n2-standard-2` on GCP or `m6i.large` on AWS"),
        );
    }
    if disk < 10 {
        r.push(
            Diagnostic::error(
                format!("{base}.diskGiB"),
                format!("a `{disk}` GiB disk is too small for Talos"),
            )
            .with_value(disk)
            .with_hint("Talos needs at least 10 GiB; 50 is a good default"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::structural::suggest;
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("v1.35.4").map(|v| v.line()), Some((1, 35)));
        assert_eq!(Version::parse("1.19.5-rc.1").map(|v| v.patch), Some(5));
        for bad in ["1.19", "v1..2", "v1.2.3.4", "x1.2.3", "1.2.+3", ""] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn suggestions_catch_case_separators_and_typos() {
        let known = vec![
            "workerPools".to_owned(),
            "zones".to_owned(),
            "region".to_owned(),
        ];
        assert_eq!(
            suggest("worker_pools", &known).as_deref(),
            Some("workerPools")
        );
        assert_eq!(
            suggest("workerPool", &known).as_deref(),
            Some("workerPools")
        );
        assert_eq!(suggest("zone", &known).as_deref(), Some("zones"));
        assert_eq!(suggest("regoin", &known).as_deref(), Some("region"));
        assert_eq!(suggest("banana", &known), None);
    }

    #[test]
    fn zones_belong_to_regions() {
        assert!(zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west1-b"
        ));
        assert!(!zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west4-b"
        ));
        assert!(!zone_matches(
            Provider::Gcp,
            "europe-west1",
            "europe-west1b"
        ));
        assert!(zone_matches(Provider::Aws, "eu-west-1", "eu-west-1a"));
        assert!(zone_matches(Provider::Aws, "us-west-2", "us-west-2-lax-1a"));
        assert!(!zone_matches(Provider::Aws, "eu-west-1", "eu-west-2a"));
    }

    #[test]
    fn kubernetes_range_follows_talos_line() {
        assert_eq!(SupportedVersions::kubernetes_for_talos(12), 30..=35);
        assert_eq!(SupportedVersions::kubernetes_for_talos(13), 31..=36);
    }
}
