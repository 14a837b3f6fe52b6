//! `meshfleet mesh …` (being written).

use clap::Args;

use crate::ctx::{Ctx, Exit};

/// Arguments of `mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {}

/// Run a mesh subcommand.
pub fn run(ctx: &Ctx, _a: MeshArgs) -> anyhow::Result<Exit> {
    ctx.error("`meshfleet mesh` is not available yet in this build");
    Ok(Exit::Failed)
}
