//! The planner: fleet + lock → plan. Pure and deterministic.
//!
//! [`plan`] gives every cluster a Cilium cluster ID (`meshId`) and pod, service and node CIDRs,
//! derives the firewall matrix, the mesh peer list and the network interconnects the mesh
//! needs, and returns the updated [`Lock`]. Stability comes from the lock: an allocation it
//! records is kept for as long as the cluster stays in the fleet, so adding clusters anywhere
//! in the file never moves an existing one, and a removed cluster's mesh ID is retired rather
//! than handed to a newcomer whose pods other clusters could mistake for the old ones.
//!
//! The planner never trusts its input: the spec crate validates fleets, but anything invalid
//! reaching the planner (an unparsable pool, a hand-edited lock) comes back as a located
//! [`Diagnostic`], never as a panic.

#![warn(missing_docs)]

mod alloc;
mod firewall;
mod interconnect;
mod lock;
mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use firewall::summarise;
pub use interconnect::some;
use ipnet::IpNet;
pub use lock::{LOCK_HEADER, Lock, LockError, LockedCluster};
pub use model::*;

use meshfleet_spec::{Diagnostic, Fleet, Pool, Report, parse_cidr};

use crate::alloc::{Span, Taken};

/// The three kinds of CIDR a cluster gets, in the order used everywhere.
const KINDS: [&str; 3] = ["pods", "services", "nodes"];

/// Where a fixed allocation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Written in the fleet file.
    Pin,
    /// Recorded in the lock.
    Lock,
}

/// A CIDR that is decided before any free block is searched for.
#[derive(Debug, Clone, Copy)]
struct Fixed {
    cluster: usize,
    kind: usize,
    net: IpNet,
    span: Span,
    source: Source,
}

/// Plan a validated fleet against the lock it was last planned with (if any).
///
/// Errors name the field they concern (`spec.network.pods.pool`, `spec.clusters[2].meshId`…)
/// so the CLI can point into the fleet file; nothing here panics on bad input.
pub fn plan(fleet: &Fleet, lock: Option<&Lock>) -> Result<Plan, Report> {
    let mut r = Report::default();
    let spec = &fleet.spec;
    let clusters = &spec.clusters;
    let name = &fleet.metadata.name;

    if let Some(l) = lock
        && l.fleet != *name
    {
        r.push(
            Diagnostic::error(
                "metadata.name",
                format!("meshfleet.lock belongs to fleet `{}`, not `{name}`", l.fleet),
            )
            .with_value(name)
            .with_hint(format!(
                "keep each fleet file in its own directory; if you renamed the fleet, restore `metadata.name: {}`, or move meshfleet.lock away to plan from scratch (every allocation may move)",
                l.fleet
            )),
        );
        return Err(r);
    }
    let empty = Lock::default();
    let lock = lock.unwrap_or(&empty);

    let max_id = spec.mesh.max_connected_clusters;
    if max_id == 0 {
        r.push(
            Diagnostic::error(
                "spec.mesh.maxConnectedClusters",
                "`maxConnectedClusters` is `0`: no mesh ID can be given",
            )
            .with_value(max_id)
            .with_hint("use `255` (the default) or `511`"),
        );
    }
    let pools = parse_pools(&mut r, fleet);

    // Names key the lock, so they must be unique before anything else.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(clusters.len());
    for (i, c) in clusters.iter().enumerate() {
        if let Some(first) = index.insert(c.name.as_str(), i) {
            r.push(
                Diagnostic::error(
                    format!("spec.clusters[{i}].name"),
                    format!("duplicate cluster name `{}`", c.name),
                )
                .with_value(&c.name)
                .with_hint(format!(
                    "`spec.clusters[{first}]` already uses it; cluster names are unique in a fleet"
                )),
            );
            index.insert(c.name.as_str(), first);
        }
    }

    check_lock(&mut r, lock, &index);

    // Fixed CIDRs: pins first, then what the lock records.
    let mut fixed: Vec<Fixed> = Vec::new();
    let mut nets: Vec<[Option<IpNet>; 3]> = vec![[None; 3]; clusters.len()];
    for (i, c) in clusters.iter().enumerate() {
        let locked = held(lock, &c.name).map(|l| l.network);
        let pins = c.network.clone().unwrap_or_default();
        for (k, pin) in [&pins.pods, &pins.services, &pins.nodes]
            .into_iter()
            .enumerate()
        {
            let (net, source) = if let Some(text) = pin {
                let path = format!("spec.clusters[{i}].network.{}", KINDS[k]);
                match parse_cidr(&mut r, &path, text) {
                    Some(n) => (n, Source::Pin),
                    None => continue,
                }
            } else if let Some(l) = locked {
                (cidr_of(&l, k), Source::Lock)
            } else {
                continue;
            };
            nets[i][k] = Some(net);
            fixed.push(Fixed {
                cluster: i,
                kind: k,
                net,
                span: Span::of(&net),
                source,
            });
        }
    }
    check_fixed_overlaps(&mut r, fleet, &fixed);

    // Clusters the lock holds (live before, or retired) that the fleet no longer names: they
    // may still run, so their mesh IDs and CIDRs stay theirs until meshfleet sees them deleted.
    let still_held: Vec<(&String, &LockedCluster)> = lock
        .clusters
        .iter()
        .chain(&lock.retired)
        .filter(|(n, _)| !index.contains_key(n.as_str()))
        .collect();

    // A pin may not take a block a retired cluster still holds: that cluster may still run and
    // be meshed, so its pods and nodes must stay unique until meshfleet sees it deleted.
    for f in fixed.iter().filter(|f| f.source == Source::Pin) {
        for (gone, held) in &still_held {
            if let Some(k) =
                (0..3).find(|&k| f.span.overlaps(&Span::of(&cidr_of(&held.network, k))))
            {
                let c = &clusters[f.cluster];
                r.push(
                    Diagnostic::error(
                        format!("spec.clusters[{}].network.{}", f.cluster, KINDS[f.kind]),
                        format!(
                            "{} `{}` of cluster `{}` overlaps {} `{}` of retired cluster `{gone}`, which may still run",
                            KINDS[f.kind],
                            f.net,
                            c.name,
                            KINDS[k],
                            cidr_of(&held.network, k)
                        ),
                    )
                    .with_value(f.net)
                    .with_hint(format!(
                        "pin another block, or delete `{gone}` first (`meshfleet down --cluster {gone}`): meshfleet.lock frees its blocks once it has seen it deleted"
                    )),
                );
            }
        }
    }

    // Fixed mesh IDs.
    let retired_by: HashMap<u16, &str> = lock
        .retired_mesh_ids
        .iter()
        .map(|(n, &id)| (id, n.as_str()))
        .chain(still_held.iter().map(|(n, c)| (c.mesh_id, n.as_str())))
        .collect();
    let mut ids: Vec<Option<u16>> = vec![None; clusters.len()];
    let mut id_owner: BTreeMap<u16, (usize, Source)> = BTreeMap::new();
    for (i, c) in clusters.iter().enumerate() {
        let (id, source) = match (c.mesh_id, held(lock, &c.name)) {
            (Some(id), _) => (id, Source::Pin),
            (None, Some(l)) => (l.mesh_id, Source::Lock),
            (None, None) => continue,
        };
        let path = format!("spec.clusters[{i}].meshId");
        if source == Source::Lock && id > max_id {
            r.push(
                Diagnostic::error(
                    "spec.mesh.maxConnectedClusters",
                    format!(
                        "meshfleet.lock gives cluster `{}` mesh ID `{id}`, above `maxConnectedClusters: {max_id}`",
                        c.name
                    ),
                )
                .with_value(max_id)
                .with_hint(format!(
                    "keep `maxConnectedClusters: 511`, or pin `spec.clusters[{i}].meshId` to an ID up to {max_id}"
                )),
            );
            continue;
        }
        if source == Source::Pin && (id == 0 || id > max_id) {
            r.push(
                Diagnostic::error(&path, format!("mesh ID `{id}` is outside 1..={max_id}"))
                    .with_value(id)
                    .with_hint(format!("Cilium cluster IDs run from 1 to `maxConnectedClusters` ({max_id}); remove the pin to let the planner choose")),
            );
            continue;
        }
        if let Some(&(j, other)) = id_owner.get(&id) {
            r.push(id_clash(clusters, i, source, j, other, id));
            continue;
        }
        if source == Source::Pin
            && let Some(old) = retired_by.get(&id).filter(|old| **old != c.name.as_str())
        {
            r.push(
                Diagnostic::error(
                    &path,
                    format!("mesh ID `{id}` belonged to removed cluster `{old}` and stays retired while meshfleet.lock remembers it"),
                )
                .with_value(id)
                .with_hint("pin an unused mesh ID or remove the pin to let the planner choose: other clusters may still hold identities of the removed one"),
            );
            continue;
        }
        id_owner.insert(id, (i, source));
        ids[i] = Some(id);
    }

    if !r.is_ok() {
        return Err(r);
    }

    // Free CIDRs: first fit in each pool, kind by kind, in fleet order.
    let mut taken = Taken::default();
    for f in &fixed {
        taken.insert(f.span);
    }
    for (_, c) in &still_held {
        for k in 0..3 {
            taken.insert(Span::of(&cidr_of(&c.network, k)));
        }
    }
    for k in 0..3 {
        let Some((pool, prefix)) = pools[k] else {
            continue;
        };
        let needing: Vec<usize> = (0..clusters.len())
            .filter(|&i| nets[i][k].is_none())
            .collect();
        for (n, &i) in needing.iter().enumerate() {
            match taken.first_free(&pool, prefix) {
                Some(net) => {
                    taken.insert(Span::of(&net));
                    nets[i][k] = Some(net);
                }
                None => {
                    let short = needing.len() - n;
                    r.push(
                        Diagnostic::error(
                            format!("spec.network.{}.pool", KINDS[k]),
                            format!(
                                "the {} pool `{pool}` is exhausted: {short} more /{prefix} block{} needed",
                                KINDS[k],
                                if short == 1 { " is" } else { "s are" }
                            ),
                        )
                        .with_value(pool)
                        .with_hint(format!(
                            "the pool holds {} blocks of /{prefix}; widen `spec.network.{}.pool`, raise `prefixLength` for smaller blocks, or pin blocks outside the pool under `spec.clusters[].network.{}`",
                            alloc::block_count(&pool, prefix),
                            KINDS[k],
                            KINDS[k]
                        )),
                    );
                    break;
                }
            }
        }
    }

    // Free mesh IDs: a re-added cluster gets its old ID back; the others take the lowest free.
    let retired: BTreeSet<u16> = lock
        .retired_mesh_ids
        .values()
        .copied()
        .chain(still_held.iter().map(|(_, c)| c.mesh_id))
        .collect();
    let mut reclaimed: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in clusters.iter().enumerate() {
        if ids[i].is_none()
            && let Some(&old) = lock.retired_mesh_ids.get(&c.name)
            && (1..=max_id).contains(&old)
            && !id_owner.contains_key(&old)
        {
            ids[i] = Some(old);
            id_owner.insert(old, (i, Source::Lock));
            reclaimed.insert(c.name.as_str());
        }
    }
    let mut next: u16 = 1;
    for (i, c) in clusters.iter().enumerate() {
        if ids[i].is_some() {
            continue;
        }
        while next <= max_id && (id_owner.contains_key(&next) || retired.contains(&next)) {
            next += 1;
        }
        if next > max_id {
            let missing = ids.iter().filter(|id| id.is_none()).count();
            r.push(
                Diagnostic::error(
                    format!("spec.clusters[{i}].meshId"),
                    format!(
                        "no free mesh ID for cluster `{}`: {} of 1..={max_id} are in use and {} retired, {missing} more needed",
                        c.name,
                        id_owner.len(),
                        retired.len()
                    ),
                )
                .with_hint(if max_id < 511 {
                    "set `spec.mesh.maxConnectedClusters: 511`, or split the fleet"
                } else {
                    "split the fleet; retired IDs stay reserved while meshfleet.lock lists them under `retiredMeshIds`"
                }),
            );
            break;
        }
        ids[i] = Some(next);
        id_owner.insert(next, (i, Source::Lock));
    }

    if !r.is_ok() {
        return Err(r);
    }

    // Assemble.
    let mut out_clusters = Vec::with_capacity(clusters.len());
    let mut new_lock = Lock {
        fleet: name.clone(),
        clusters: BTreeMap::new(),
        retired: BTreeMap::new(),
        retired_mesh_ids: lock.retired_mesh_ids.clone(),
    };
    let mut changes = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let (Some(mesh_id), [Some(pods), Some(services), Some(nodes)]) = (ids[i], nets[i]) else {
            // Unreachable after the checks above, but an error beats a panic.
            r.push(
                Diagnostic::error(
                    format!("spec.clusters[{i}]"),
                    format!("cluster `{}` could not be given every allocation", c.name),
                )
                .with_hint("this is a planner bug: please report it with the fleet file and meshfleet.lock"),
            );
            continue;
        };
        let network = ClusterCidrs {
            pods,
            services,
            nodes,
        };
        out_clusters.push(ClusterPlan {
            name: c.name.clone(),
            provider: c.provider,
            region: c.region.clone(),
            mesh_id,
            network,
        });
        let entry = LockedCluster { mesh_id, network };
        match held(lock, &c.name) {
            Some(old) if lock.retired.contains_key(&c.name) && *old == entry => {
                changes.push(Change {
                    kind: ChangeKind::Added,
                    cluster: c.name.clone(),
                    detail: format!(
                        "back from retired: meshId `{mesh_id}`, pods `{pods}`, services `{services}`, nodes `{nodes}`, as before"
                    ),
                });
            }
            None => {
                let again = if reclaimed.contains(c.name.as_str()) {
                    " (its mesh ID before it was removed)"
                } else {
                    ""
                };
                changes.push(Change {
                    kind: ChangeKind::Added,
                    cluster: c.name.clone(),
                    detail: format!(
                        "meshId `{mesh_id}`{again}, pods `{pods}`, services `{services}`, nodes `{nodes}`"
                    ),
                });
            }
            Some(old) if *old != entry => {
                let mut parts = Vec::new();
                if old.mesh_id != mesh_id {
                    parts.push(format!("meshId `{}` → `{mesh_id}`", old.mesh_id));
                }
                for (k, kind) in KINDS.iter().enumerate() {
                    let (a, b) = (cidr_of(&old.network, k), cidr_of(&network, k));
                    if a != b {
                        parts.push(format!("{kind} `{a}` → `{b}`"));
                    }
                }
                changes.push(Change {
                    kind: ChangeKind::Changed,
                    cluster: c.name.clone(),
                    detail: format!("{} (pinned)", parts.join(", ")),
                });
            }
            Some(_) => {}
        }
        if lock.retired_mesh_ids.get(&c.name) == Some(&mesh_id) {
            new_lock.retired_mesh_ids.remove(&c.name);
        }
        new_lock.clusters.insert(c.name.clone(), entry);
    }
    for (gone, old) in &still_held {
        new_lock.retired.insert((*gone).clone(), (*old).clone());
        if !lock.clusters.contains_key(gone.as_str()) {
            continue; // retired before: no change
        }
        changes.push(Change {
            kind: ChangeKind::Removed,
            cluster: (*gone).clone(),
            detail: format!(
                "retired: keeps meshId `{}`, pods `{}`, services `{}`, nodes `{}` until meshfleet sees it deleted (`meshfleet down --cluster {gone}`)",
                old.mesh_id, old.network.pods, old.network.services, old.network.nodes
            ),
        });
    }
    if !r.is_ok() {
        return Err(r);
    }

    let firewall = firewall::matrix(fleet, &out_clusters, &mut r);
    let mesh_peers = mesh_peers(fleet, &out_clusters);
    let interconnects = interconnect::needs(fleet, &out_clusters, &mut r);
    if !r.is_ok() {
        return Err(r);
    }

    Ok(Plan {
        fleet: name.clone(),
        clusters: out_clusters,
        firewall,
        mesh_peers,
        interconnects,
        changes,
        warnings: r.warnings,
        lock: new_lock,
    })
}

fn cidr_of(c: &ClusterCidrs, kind: usize) -> IpNet {
    match kind {
        0 => c.pods,
        1 => c.services,
        _ => c.nodes,
    }
}

/// The three pools with their block sizes; `None` where the pool is unusable (reported).
fn parse_pools(r: &mut Report, fleet: &Fleet) -> [Option<(IpNet, u8)>; 3] {
    let n = &fleet.spec.network;
    let pools: [&Pool; 3] = [&n.pods, &n.services, &n.nodes];
    let mut out = [None; 3];
    for (k, pool) in pools.into_iter().enumerate() {
        let path = format!("spec.network.{}", KINDS[k]);
        let Some(net) = parse_cidr(r, &format!("{path}.pool"), &pool.pool) else {
            continue;
        };
        let p = pool.prefix_length;
        if p < net.prefix_len() || p > net.max_prefix_len() {
            r.push(
                Diagnostic::error(
                    format!("{path}.prefixLength"),
                    format!(
                        "prefix length `{p}` does not fit pool `{net}`: it must be between {} and {}",
                        net.prefix_len(),
                        net.max_prefix_len()
                    ),
                )
                .with_value(p)
                .with_hint("each cluster gets one block of this size carved from the pool"),
            );
            continue;
        }
        out[k] = Some((net, p));
    }
    for i in 0..3 {
        for j in (i + 1)..3 {
            if let (Some((a, _)), Some((b, _))) = (out[i], out[j])
                && Span::of(&a).overlaps(&Span::of(&b))
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
    out
}

/// A lock that is not what `plan` writes (hand-edited or corrupted) is refused with a hint.
/// What the lock holds for `name`: its live entry, or its retired one (a cluster put back in
/// the file gets its allocation back).
fn held<'l>(lock: &'l Lock, name: &str) -> Option<&'l LockedCluster> {
    lock.clusters.get(name).or_else(|| lock.retired.get(name))
}

fn check_lock(r: &mut Report, lock: &Lock, index: &HashMap<&str, usize>) {
    let hint = "meshfleet.lock is written by `meshfleet plan`: restore it from version control";
    for (name, c) in &lock.clusters {
        let path = index
            .get(name.as_str())
            .map(|i| format!("spec.clusters[{i}]"))
            .unwrap_or_default();
        for (k, kind) in KINDS.iter().enumerate() {
            let net = cidr_of(&c.network, k);
            if net.trunc() != net {
                r.push(
                    Diagnostic::error(
                        &path,
                        format!("meshfleet.lock gives cluster `{name}` {kind} `{net}`, which has host bits set"),
                    )
                    .with_value(net)
                    .with_hint(hint),
                );
            }
        }
        // An ID above the limit only matters for a cluster still in the fleet that does not
        // pin a new one; the mesh-ID pass checks that.
        if c.mesh_id == 0 {
            r.push(
                Diagnostic::error(
                    &path,
                    format!("meshfleet.lock gives cluster `{name}` mesh ID `0`"),
                )
                .with_value(0)
                .with_hint(hint),
            );
        }
    }
}

/// Two clusters claim the same mesh ID.
fn id_clash(
    clusters: &[meshfleet_spec::Cluster],
    i: usize,
    src_i: Source,
    j: usize,
    src_j: Source,
    id: u16,
) -> Diagnostic {
    let (me, other) = (&clusters[i].name, &clusters[j].name);
    match (src_i, src_j) {
        (Source::Pin, Source::Pin) => Diagnostic::error(
            format!("spec.clusters[{i}].meshId"),
            format!("mesh ID `{id}` is also pinned by `spec.clusters[{j}]`"),
        )
        .with_value(id)
        .with_hint("Cilium cluster IDs must be unique across the mesh; remove one pin to let the planner choose"),
        (Source::Pin, Source::Lock) | (Source::Lock, Source::Pin) => {
            let (pinner, pin_idx, holder, holder_idx) = if src_i == Source::Pin {
                (me, i, other, j)
            } else {
                (other, j, me, i)
            };
            Diagnostic::error(
                format!("spec.clusters[{pin_idx}].meshId"),
                format!("cluster `{pinner}` pins mesh ID `{id}`, which meshfleet.lock gives cluster `{holder}`"),
            )
            .with_value(id)
            .with_hint(format!(
                "pin another ID, or also pin `spec.clusters[{holder_idx}].meshId` to a free one (changing a live cluster's ID reconnects it to the mesh)"
            ))
        }
        (Source::Lock, Source::Lock) => Diagnostic::error(
            format!("spec.clusters[{i}]"),
            format!("meshfleet.lock gives mesh ID `{id}` to both `{other}` and `{me}`"),
        )
        .with_value(id)
        .with_hint("meshfleet.lock was edited by hand: restore it from version control, or pin one of the two clusters' `meshId`"),
    }
}

/// Fixed CIDRs must respect the fleet's disjointness rules: pods and nodes disjoint across the
/// fleet (and from each other), a cluster's three CIDRs disjoint, and no pin may take a block
/// the lock gives another cluster.
fn check_fixed_overlaps(r: &mut Report, fleet: &Fleet, fixed: &[Fixed]) {
    let clusters = &fleet.spec.clusters;
    let mut order: Vec<&Fixed> = fixed.iter().collect();
    order.sort_by_key(|f| (f.span.v6, f.span.start, f.cluster, f.kind));
    for (n, a) in order.iter().enumerate() {
        for b in &order[n + 1..] {
            if b.span.v6 != a.span.v6 || b.span.start > a.span.end {
                break;
            }
            // Report at the later of the two in the file, which reads naturally.
            let (first, second) = if (a.cluster, a.kind) <= (b.cluster, b.kind) {
                (*a, *b)
            } else {
                (*b, *a)
            };
            if let Some(d) = overlap_diagnostic(clusters, first, second) {
                r.push(d);
            }
        }
    }
}

fn overlap_diagnostic(
    clusters: &[meshfleet_spec::Cluster],
    a: &Fixed,
    b: &Fixed,
) -> Option<Diagnostic> {
    let (ka, kb) = (KINDS[a.kind], KINDS[b.kind]);
    let pin_path = |f: &Fixed| format!("spec.clusters[{}].network.{}", f.cluster, KINDS[f.kind]);
    if a.cluster == b.cluster {
        let path = if b.source == Source::Pin {
            pin_path(b)
        } else {
            pin_path(a)
        };
        let hint = if a.source == Source::Pin && b.source == Source::Pin {
            "pods, services and nodes of a cluster must not overlap".to_owned()
        } else {
            format!(
                "the lock keeps this cluster's {} at `{}`: pin it as well, or pin a block that does not overlap it",
                if a.source == Source::Lock { ka } else { kb },
                if a.source == Source::Lock {
                    a.net
                } else {
                    b.net
                },
            )
        };
        return Some(
            Diagnostic::error(
                path,
                format!(
                    "{kb} CIDR `{}` overlaps this cluster's {ka} CIDR `{}`",
                    b.net, a.net
                ),
            )
            .with_value(b.net)
            .with_hint(hint),
        );
    }
    let fleet_wide = a.kind != 1 && b.kind != 1;
    let (other_a, other_b) = (&clusters[a.cluster].name, &clusters[b.cluster].name);
    match (a.source, b.source) {
        (Source::Pin, Source::Pin) => fleet_wide.then(|| {
            Diagnostic::error(
                pin_path(b),
                format!(
                    "{kb} CIDR `{}` overlaps the {ka} CIDR `{}` of cluster `{other_a}`",
                    b.net, a.net
                ),
            )
            .with_value(b.net)
            .with_hint("pod CIDRs and node subnets must be disjoint across the fleet; remove one pin to let the planner choose")
        }),
        (Source::Pin, Source::Lock) | (Source::Lock, Source::Pin) => {
            let (pin, held) = if a.source == Source::Pin { (a, b) } else { (b, a) };
            let holder = &clusters[held.cluster].name;
            Some(
                Diagnostic::error(
                    pin_path(pin),
                    format!(
                        "pinned {} CIDR `{}` overlaps {} `{}`, which meshfleet.lock gives cluster `{holder}`",
                        KINDS[pin.kind], pin.net, KINDS[held.kind], held.net
                    ),
                )
                .with_value(pin.net)
                .with_hint(format!(
                    "pin a free block, or also pin `spec.clusters[{}].network.{}` elsewhere (that moves it), or remove `{holder}` from the fleet so the lock frees its blocks",
                    held.cluster, KINDS[held.kind]
                )),
            )
        }
        (Source::Lock, Source::Lock) => fleet_wide.then(|| {
            Diagnostic::error(
                format!("spec.clusters[{}]", b.cluster),
                format!(
                    "meshfleet.lock gives cluster `{other_b}` {kb} `{}`, which overlaps {ka} `{}` of cluster `{other_a}`",
                    b.net, a.net
                ),
            )
            .with_value(b.net)
            .with_hint(format!(
                "meshfleet.lock was edited by hand: restore it from version control, or pin `spec.clusters[{}].network.{kb}` to a free block",
                b.cluster
            ))
        }),
    }
}

/// Every meshed cluster peers with every other; nothing when the mesh is off.
fn mesh_peers(fleet: &Fleet, clusters: &[ClusterPlan]) -> BTreeMap<String, Vec<String>> {
    let mut peers = BTreeMap::new();
    if !fleet.spec.mesh.enabled {
        return peers;
    }
    let mut names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    for (i, me) in names.iter().enumerate() {
        let mut others = Vec::with_capacity(names.len().saturating_sub(1));
        others.extend(names[..i].iter().map(|s| (*s).to_owned()));
        others.extend(names[i + 1..].iter().map(|s| (*s).to_owned()));
        peers.insert((*me).to_owned(), others);
    }
    peers
}
