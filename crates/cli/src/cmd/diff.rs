//! `meshfleet diff`: what `up` would change on the management cluster, per cluster and field,
//! and what each change will cause. Exit 0 when nothing would change, 1 when something would
//! (like `kubectl diff`), 2 for invalid input.

use std::path::PathBuf;

use clap::Args;
use meshfleet_lifecycle::diff::{self, Action, FleetDiff};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};
use crate::output::Table;
use crate::simproc;

/// Arguments of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Compare with the simulator state kept by `up --sim` (`.meshfleet/sim/<fleet>/`).
    #[arg(long)]
    pub sim: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// `meshfleet diff`.
pub fn run(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<Exit> {
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    let rt = common::runtime()?;
    let d = rt.block_on(async {
        let mgmt =
            simproc::Mgmt::open(ctx, &p.input.path, fleet, a.sim, a.kubeconfig.as_deref()).await?;
        let d = diff::run(&mgmt.kube, fleet, &p.plan, &p.rendered).await;
        mgmt.close(ctx).await;
        d.map_err(common::engine_error)
    })?;
    match a.output {
        TableOrJson::Json => crate::output::json(&d)?,
        TableOrJson::Table => print!("{}", table(&d, ctx.colour_out)),
    }
    Ok(if d.changed() { Exit::Failed } else { Exit::Ok })
}

/// One line per cluster, then each changed field and each effect.
fn table(d: &FleetDiff, colour: bool) -> String {
    let mut t = Table::new(["CLUSTER", "ACTION", "CHANGES"]);
    for c in &d.clusters {
        let action = match c.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unchanged => "unchanged",
        };
        t.row([
            c.name.clone(),
            action.to_string(),
            c.changes.len().to_string(),
        ]);
    }
    let mut out = t.render(colour);
    for c in d.clusters.iter().filter(|c| c.action == Action::Update) {
        out.push_str(&format!("\n{}:\n", c.name));
        for ch in &c.changes {
            if ch.field.is_empty() {
                out.push_str(&format!("  + {} `{}`\n", ch.kind, ch.name));
            } else {
                out.push_str(&format!(
                    "  ~ {} `{}` {}: {} → {}\n",
                    ch.kind,
                    ch.name,
                    ch.field,
                    short(&ch.from),
                    short(&ch.to)
                ));
            }
        }
        for e in &c.effects {
            out.push_str(&format!("  ⇒ {e}\n"));
        }
    }
    out
}

/// A value on one line, long ones cut.
fn short(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.replace('\n', "⏎"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
