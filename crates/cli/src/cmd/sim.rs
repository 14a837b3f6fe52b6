//! `meshfleet sim …` (being written).

use clap::Args;

use crate::ctx::{Ctx, Exit};

/// Arguments of `sim`.
#[derive(Debug, Args)]
pub struct SimArgs {}

/// Run a sim subcommand.
pub fn run(ctx: &Ctx, _a: SimArgs) -> anyhow::Result<Exit> {
    ctx.error("`meshfleet sim` is not available yet in this build");
    Ok(Exit::Failed)
}
