//! `meshfleet plan` (being written).

use clap::Args;

use crate::cli::{FleetArg, Format};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// Validate, plan, print.
pub fn run(ctx: &Ctx, a: PlanArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let _plan = common::plan_fleet(ctx, &input, lock.as_ref())?;
    Ok(Exit::Failed)
}
