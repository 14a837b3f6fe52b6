//! `meshfleet mesh status`: collect the mesh of a running fleet and judge it against the plan
//! (both in `meshfleet_lifecycle::meshstatus`), then print the report.

use std::path::PathBuf;

use clap::Args;
use meshfleet_lifecycle::meshstatus::{self, MeshReport, Planned, Problem, Severity};
use meshfleet_mesh::time::OffsetDateTime;

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};
use crate::output::Table;
use crate::simproc;

/// Arguments of `mesh status`.
#[derive(Debug, Args)]
pub struct MeshStatusArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the simulator state kept by `up --sim` (`.meshfleet/sim/<fleet>/`) for this run.
    #[arg(long)]
    pub sim: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// `meshfleet mesh status`.
pub(super) fn run(ctx: &Ctx, a: MeshStatusArgs) -> anyhow::Result<Exit> {
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    let planned: Vec<Planned> = if fleet.spec.mesh.enabled {
        p.plan
            .clusters
            .iter()
            .map(|c| Planned {
                name: c.name.clone(),
                mesh_id: u32::from(c.mesh_id),
                peers: p.plan.mesh_peers.get(&c.name).cloned().unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let max = u32::from(fleet.spec.mesh.max_connected_clusters);
    let rt = common::runtime()?;
    let report = rt.block_on(async {
        let mgmt =
            simproc::Mgmt::open(ctx, &p.input.path, fleet, a.sim, a.kubeconfig.as_deref()).await?;
        let facts = meshstatus::collect(&mgmt.kube, &name, &planned).await;
        mgmt.close(ctx).await;
        anyhow::Ok(meshstatus::evaluate(
            &name,
            &planned,
            max,
            facts,
            OffsetDateTime::now_utc(),
        ))
    })?;
    let mut report = report;
    meshstatus::explain_interconnects(
        &mut report,
        &p.plan.interconnects,
        &p.input.path.display().to_string(),
    );
    if !fleet.spec.mesh.enabled {
        report.problems.push(Problem::warning(
            format!("the mesh is not enabled in fleet `{name}`"),
            "set `spec.mesh.enabled: true` and run `meshfleet up`",
        ));
    }
    match a.output {
        TableOrJson::Json => crate::output::json(&report)?,
        TableOrJson::Table => print!("{}", table(&report, ctx.colour_out)),
    }
    let n = report.problems.len()
        + report
            .clusters
            .iter()
            .map(|c| c.problems.len())
            .sum::<usize>();
    if n == 0 {
        ctx.info(&format!(
            "mesh of `{name}`: {} cluster(s), every expected peer connected, no problem found",
            report.clusters.len()
        ));
    }
    Ok(if report.has_error() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The report for people: problems first, then one line per cluster.
pub fn table(r: &MeshReport, colour: bool) -> String {
    let mut out = String::new();
    let mut all: Vec<(&str, &Problem)> = r.problems.iter().map(|p| ("(fleet)", p)).collect();
    for c in &r.clusters {
        all.extend(c.problems.iter().map(|p| (c.name.as_str(), p)));
    }
    all.sort_by_key(|(_, p)| p.severity);
    for (who, p) in &all {
        let label = match (p.severity, colour) {
            (Severity::Error, true) => "\x1b[1;31mERROR\x1b[0m  ",
            (Severity::Error, false) => "ERROR  ",
            (Severity::Warning, true) => "\x1b[1;33mWARNING\x1b[0m",
            (Severity::Warning, false) => "WARNING",
        };
        out.push_str(&format!("{label} {who}: {}\n", p.message));
        if let Some(h) = &p.hint {
            out.push_str(&format!("        hint: {h}\n"));
        }
    }
    if !all.is_empty() {
        out.push('\n');
    }
    let mut t = Table::new([
        "CLUSTER",
        "ID",
        "CONNECTED",
        "NOT CONNECTED",
        "ENDPOINTS",
        "CA",
        "CA EXPIRES",
    ]);
    for c in &r.clusters {
        let down: Vec<&str> = c
            .peers
            .iter()
            .filter(|p| !p.connected)
            .map(|p| p.name.as_str())
            .collect();
        t.row([
            c.name.clone(),
            c.cluster_id.map_or_else(|| "-".into(), |i| i.to_string()),
            format!("{}/{}", c.connected_peers.len(), c.expected_peers.len()),
            if down.is_empty() {
                "-".into()
            } else {
                down.join(",")
            },
            // One address and a count keep the line readable; `-o json` has them all.
            match c.endpoints.as_slice() {
                [] => "-".into(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{})", rest.len()),
            },
            c.ca.as_ref().map_or_else(
                || "-".into(),
                |ca| ca.fingerprint.chars().take(11).collect(),
            ),
            c.ca.as_ref()
                .map_or_else(|| "-".into(), |ca| ca.not_after.clone()),
        ]);
    }
    out.push_str(&t.render(colour));
    out
}
