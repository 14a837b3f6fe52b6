//! `meshfleet status`: the fleet at a glance, collected by the lifecycle engine and shown as a
//! table (or JSON); `--watch` redraws on change.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use meshfleet_lifecycle::status::{self as engine, FleetStatus};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};
use crate::output::Table;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
    /// Keep watching and redraw on change.
    #[arg(long)]
    pub watch: bool,
}

/// `meshfleet status`.
pub fn run(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<Exit> {
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let rt = common::runtime()?;
    rt.block_on(async {
        let fleet = &p.input.loaded.fleet;
        let mgmt = common::connect(a.kubeconfig.as_deref()).await?;
        let expected = engine::expected(fleet, &p.plan.mesh_peers);
        let mesh_on = fleet.spec.mesh.enabled;
        if mesh_on && let Some(partial) = p.plan.partial_mesh() {
            ctx.warn(&format!(
                "{partial}\n  hint: set `spec.interconnect` in `{}` and run `meshfleet net setup -f {}`",
                p.input.path.display(),
                p.input.path.display()
            ));
        }
        let mut last = String::new();
        loop {
            let st = engine::collect(&mgmt, &fleet.metadata.name, &expected, mesh_on).await;
            let text = match a.output {
                TableOrJson::Json => serde_json::to_string_pretty(&st)? + "\n",
                TableOrJson::Table => table(&st, mesh_on, ctx.colour_out),
            };
            if text != last {
                if a.watch && !last.is_empty() && matches!(a.output, TableOrJson::Table) {
                    println!();
                }
                print!("{text}");
                last = text;
            }
            if !a.watch {
                return Ok(Exit::Ok);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// The Kubernetes version a cluster runs, or `current → desired` for every component a
/// rollout has not finished.
fn version_cell(c: &meshfleet_lifecycle::status::ClusterStatus) -> String {
    let Some(v) = &c.versions else {
        return "-".into();
    };
    if !v.rolling() {
        return v.kubernetes.desired.clone();
    }
    [
        ("", &v.kubernetes),
        ("talos ", &v.talos),
        ("cilium ", &v.cilium),
    ]
    .iter()
    .filter(|(_, p)| !p.settled())
    .map(|(what, p)| format!("{what}{} → {}", p.current.join("+"), p.desired))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The table for people: problems first, one line each, then the details of each problem.
pub fn table(s: &FleetStatus, mesh_on: bool, colour: bool) -> String {
    let mut t = Table::new([
        "CLUSTER", "PROVIDER", "REGION", "READY", "PHASE", "NODES", "MESH", "VERSION",
    ]);
    for c in &s.clusters {
        let mesh = if !mesh_on {
            "off".to_string()
        } else if c.mesh.problems.is_empty() && !c.mesh.connected.is_empty() {
            format!("{} peers", c.mesh.connected.len())
        } else if c.mesh.problems.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{} peers, {} problems",
                c.mesh.connected.len(),
                c.mesh.problems.len()
            )
        };
        // Plain cells: escape codes would throw the column widths off.
        let ready = if c.ready { "yes" } else { "no" }.to_string();
        t.row([
            c.name.clone(),
            c.provider.clone(),
            c.region.clone(),
            ready,
            c.phase.clone(),
            format!("{}/{}", c.nodes.ready, c.nodes.total),
            mesh,
            version_cell(c),
        ]);
    }
    let mut out = t.render(colour);
    let troubled: Vec<_> = s
        .clusters
        .iter()
        .filter(|c| c.problem.is_some() || !c.mesh.problems.is_empty())
        .collect();
    if !troubled.is_empty() {
        out.push('\n');
        for c in troubled {
            if let Some(p) = &c.problem {
                out.push_str(&format!("{}: {p}\n", c.name));
            }
            for p in &c.mesh.problems {
                out.push_str(&format!("{}: mesh: {p}\n", c.name));
            }
        }
    }
    out
}
