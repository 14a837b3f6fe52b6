//! `meshfleet plan`: validate, plan against `meshfleet.lock`, print the plan, record the lock.
//!
//! The lock is written (atomically, 0644) only when its bytes would change, so an unchanged
//! fleet leaves the file and its timestamp alone. `--locked` works like cargo's: the lock must
//! exist and must not change, and nothing is written; CI uses it to catch an allocation that
//! was never committed.

use std::collections::HashMap;
use std::fmt::Write as _;

use clap::Args;
use meshfleet_plan::{ChangeKind, FirewallRule, Lock, Plan, Role};

use crate::cli::{FleetArg, Format};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::output::{self, Table};

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    /// Require meshfleet.lock to exist and stay unchanged; write nothing (exit 2 otherwise).
    #[arg(long)]
    pub locked: bool,
}

/// Validate, plan, print; record the lock when it changed.
pub fn run(ctx: &Ctx, a: PlanArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock_file = common::load_lock(&input)?;
    let lock_path = &lock_file.path;
    let plan = common::plan_fleet(ctx, &input, lock_file.lock.as_ref())?;
    let changed = lock_file.text.as_deref() != Some(lock_file.new_text(&plan)?.as_str());

    if a.locked && changed {
        let what = match &lock_file.text {
            None => format!(
                "`{}` is missing and `--locked` forbids creating it\n  hint: run `meshfleet plan -f {}` without `--locked` and commit meshfleet.lock",
                lock_path.display(),
                input.path.display()
            ),
            Some(_) => {
                let mut m = format!(
                    "`{}` would change and `--locked` forbids writing it",
                    lock_path.display()
                );
                if plan.changes.is_empty() {
                    m.push_str(
                        "\n  (its allocations stay the same; only its text would be rewritten)",
                    );
                }
                for c in &plan.changes {
                    let _ = write!(m, "\n  {} {}: {}", c.kind.sigil(), c.cluster, c.detail);
                }
                let _ = write!(
                    m,
                    "\n  hint: run `meshfleet plan -f {}` without `--locked`, review the changes and commit meshfleet.lock",
                    input.path.display()
                );
                m
            }
        };
        return Err(Invalid::new(what));
    }

    if !a.locked {
        lock_file.record(ctx, &plan)?;
    }

    match a.output {
        Format::Json => output::json(&plan)?,
        Format::Yaml => output::yaml(&plan)?,
        Format::Table => {
            print!("{}", table(&plan, lock_file.lock.as_ref(), ctx.colour_out));
        }
    }
    Ok(Exit::Ok)
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// The plan for people: allocations with changes marked, changed details, interconnects and a
/// firewall summary.
fn table(plan: &Plan, old: Option<&Lock>, colour: bool) -> String {
    let mut out = String::new();
    let kinds: HashMap<&str, ChangeKind> = plan
        .changes
        .iter()
        .map(|c| (c.cluster.as_str(), c.kind))
        .collect();
    let sigil = |k: Option<ChangeKind>| match k {
        Some(ChangeKind::Added) => paint(colour, "32", "+"),
        Some(ChangeKind::Changed) => paint(colour, "33", "~"),
        Some(ChangeKind::Removed) => paint(colour, "31", "-"),
        None => " ".to_owned(),
    };
    // Table pads by characters, so the sigil column is filled plain and coloured afterwards.
    let plain = |k: Option<ChangeKind>| k.map_or(' ', ChangeKind::sigil).to_string();

    let _ = writeln!(
        out,
        "fleet {}: {} cluster{}",
        plan.fleet,
        plan.clusters.len(),
        if plan.clusters.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out);
    let mut t = Table::new([
        "", "CLUSTER", "PROVIDER", "REGION", "MESH ID", "PODS", "SERVICES", "NODES",
    ]);
    for c in &plan.clusters {
        t.row([
            plain(kinds.get(c.name.as_str()).copied()),
            c.name.clone(),
            c.provider.to_string(),
            c.region.clone(),
            c.mesh_id.to_string(),
            c.network.pods.to_string(),
            c.network.services.to_string(),
            c.network.nodes.to_string(),
        ]);
    }
    for ch in plan
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
    {
        let gone = old.and_then(|l| l.clusters.get(&ch.cluster));
        let cell =
            |f: &dyn Fn(&meshfleet_plan::LockedCluster) -> String| gone.map(f).unwrap_or_default();
        t.row([
            plain(Some(ChangeKind::Removed)),
            ch.cluster.clone(),
            String::new(),
            "(retired)".to_string(),
            cell(&|g| g.mesh_id.to_string()),
            cell(&|g| g.network.pods.to_string()),
            cell(&|g| g.network.services.to_string()),
            cell(&|g| g.network.nodes.to_string()),
        ]);
    }
    // Clusters retired by an earlier plan, still holding their ID and blocks until meshfleet
    // sees them deleted.
    for (name, g) in &plan.lock.retired {
        if plan.changes.iter().any(|c| &c.cluster == name) {
            continue;
        }
        t.row([
            plain(Some(ChangeKind::Removed)),
            name.clone(),
            String::new(),
            "(retired)".to_string(),
            g.mesh_id.to_string(),
            g.network.pods.to_string(),
            g.network.services.to_string(),
            g.network.nodes.to_string(),
        ]);
    }
    for (i, line) in t.render(colour).lines().enumerate() {
        let kind = match line.chars().next() {
            Some('+') if i > 0 => Some(ChangeKind::Added),
            Some('~') if i > 0 => Some(ChangeKind::Changed),
            Some('-') if i > 0 => Some(ChangeKind::Removed),
            _ => None,
        };
        match kind {
            Some(k) => {
                out.push_str(&sigil(Some(k)));
                out.push_str(&line[1..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }

    let changed: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Added)
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Changes against meshfleet.lock:");
        for c in changed {
            let _ = writeln!(out, "  {} {}: {}", sigil(Some(c.kind)), c.cluster, c.detail);
        }
    }

    let _ = writeln!(out);
    if plan.mesh_peers.is_empty() {
        let _ = writeln!(out, "Mesh: disabled");
    } else {
        let _ = writeln!(
            out,
            "Mesh: {} clusters, each peering with the other {}",
            plan.mesh_peers.len(),
            plan.mesh_peers.len() - 1
        );
    }

    if !plan.interconnects.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Interconnects:");
        let mut t = Table::new(["BETWEEN", "AND", "VIA"]);
        for n in &plan.interconnects {
            t.row([
                n.between[0].clone(),
                n.between[1].clone(),
                n.via
                    .clone()
                    .unwrap_or_else(|| paint(colour, "33", "not set (see warning)")),
            ]);
        }
        out.push_str(&t.render(colour));
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Firewall: {} rule{}",
        plan.firewall.len(),
        if plan.firewall.len() == 1 { "" } else { "s" }
    );
    out.push_str(&firewall_summary(plan).render(colour));
    out
}

/// One row per purpose and port: a fleet-wide rule shows its sources, a per-cluster family of
/// rules shows what its sources are relative to each cluster.
fn firewall_summary(plan: &Plan) -> Table {
    let mut groups: Vec<(String, Vec<&FirewallRule>)> = Vec::new();
    for r in &plan.firewall {
        let key = format!("{} {}", r.purpose, r.port_label());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rules)) => rules.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    // Fleet-wide sources are the fleet's pools (`meshfleet_plan::summarise`); say which.
    let covers = |sources: &[ipnet::IpNet],
                  of: fn(&meshfleet_plan::ClusterPlan) -> ipnet::IpNet| {
        !plan.clusters.is_empty()
            && plan
                .clusters
                .iter()
                .all(|c| sources.iter().any(|s| s.contains(&of(c))))
    };
    let mut t = Table::new(["PURPOSE", "PROTOCOL", "SCOPE", "FROM", "TO"]);
    for (_, rules) in groups {
        let first = rules[0];
        let fleet_wide = rules.len() == 1 && first.targets.len() > 1;
        let role = |r: Role| match (r, fleet_wide) {
            (Role::ControlPlane, true) => "control planes",
            (Role::ControlPlane, false) => "control plane",
            (Role::Nodes, _) => "nodes",
        };
        let roles: Vec<&str> = {
            let mut v: Vec<&str> = first.targets.iter().map(|t| role(t.role)).collect();
            v.dedup();
            v
        };
        let (scope, from, to) = if fleet_wide {
            let n = first.targets.len();
            let list = if first.sources.len() <= 3 {
                first
                    .sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                format!("{} CIDRs", first.sources.len())
            };
            let from = if covers(&first.sources, |c| c.network.nodes) {
                format!("every node: {list}")
            } else if covers(&first.sources, |c| c.network.pods) {
                format!("every pod: {list}")
            } else {
                list
            };
            (
                "fleet".to_owned(),
                from,
                format!("{} of {n} clusters", roles.join(", ")),
            )
        } else {
            (
                format!("per cluster ({})", rules.len()),
                relative_sources(plan, &rules),
                format!("own {}", roles.join(", ")),
            )
        };
        t.row([
            first.purpose.to_string(),
            first.port_label(),
            scope,
            from,
            to,
        ]);
    }
    t
}

/// Describe the sources of per-cluster rules: the cluster's own CIDRs by name, others as
/// written; a source that only some rules have says how many.
fn relative_sources(plan: &Plan, rules: &[&FirewallRule]) -> String {
    let mut tokens: Vec<(String, usize)> = Vec::new();
    for r in rules {
        let own = r
            .targets
            .first()
            .and_then(|t| plan.cluster(&t.cluster))
            .map(|c| c.network);
        let mut seen = Vec::new();
        for s in &r.sources {
            let token = match own {
                Some(n) if n.nodes == *s => "own nodes".to_owned(),
                Some(n) if n.pods == *s => "own pods".to_owned(),
                _ => s.to_string(),
            };
            if seen.contains(&token) {
                continue;
            }
            seen.push(token.clone());
            match tokens.iter_mut().find(|(t, _)| *t == token) {
                Some((_, n)) => *n += 1,
                None => tokens.push((token, 1)),
            }
        }
    }
    // The cluster's own CIDRs first: the order of the rest follows the addresses.
    tokens.sort_by_key(|(t, _)| !t.starts_with("own "));
    tokens
        .into_iter()
        .map(|(t, n)| {
            if n == rules.len() {
                t
            } else {
                format!("{t} ({n} of {})", rules.len())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
