//! `meshfleet render` (being written).

use std::path::PathBuf;

use clap::Args;

use crate::cli::FleetArg;
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty directory that meshfleet did not write.
    #[arg(long)]
    pub force: bool,
}

/// Validate, plan, render, write.
pub fn run(ctx: &Ctx, a: RenderArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let _plan = common::plan_fleet(ctx, &input, lock.as_ref())?;
    ctx.error("`meshfleet render` is not available yet in this build");
    Ok(Exit::Failed)
}
