//! `meshfleet init`: write the commented example fleet file, never over an existing one.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::ctx::{Ctx, Exit, Invalid};

/// The example fleet shipped with the binary (the same file the README and tests use).
pub const EXAMPLE: &str = include_str!("../../../../examples/fleet.yaml");

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the example.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "fleet.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

/// Write the example with create-new semantics, so a concurrent or existing file is never
/// clobbered.
pub fn run(ctx: &Ctx, a: InitArgs) -> anyhow::Result<Exit> {
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Invalid::new(format!(
                "`{}` already exists; meshfleet init never overwrites a fleet file\n  hint: pass `-f OTHER.yaml` or move the existing file away",
                a.file.display()
            )));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create `{}`", a.file.display())),
    };
    if let Err(e) = f.write_all(EXAMPLE.as_bytes()).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(&a.file);
        return Err(e).with_context(|| format!("cannot write `{}`", a.file.display()));
    }
    ctx.info(&format!(
        "wrote `{}`; next: `meshfleet validate -f {0}` then `meshfleet plan -f {0}`",
        a.file.display()
    ));
    Ok(Exit::Ok)
}
