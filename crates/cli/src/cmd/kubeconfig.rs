//! `meshfleet kubeconfig`: one kubeconfig with a context per workload cluster, written 0600
//! (never to stdout: it holds credentials), optionally merged into an existing file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::cli::FleetArg;
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};

/// Arguments of `kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Merge into the existing file instead of replacing it (other contexts are kept).
    #[arg(long)]
    pub merge: bool,
    /// Where to write (default: stdout is never used for credentials; `./<fleet>.kubeconfig`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `meshfleet kubeconfig`.
pub fn run(ctx: &Ctx, a: KubeconfigArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let fleet = &input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.kubeconfig")));
    let clusters: Vec<String> = fleet.spec.clusters.iter().map(|c| c.name.clone()).collect();
    let rt = common::runtime()?;
    let collected = rt.block_on(async {
        let mgmt = common::connect(a.kubeconfig.as_deref()).await?;
        meshfleet_lifecycle::kubeconfig::collect(&mgmt, &name, &clusters)
            .await
            .map_err(common::engine_error)
    })?;
    let (parts, absent) = (collected.parts, collected.absent);
    for c in &absent {
        ctx.warn(&format!(
            "cluster `{c}` has no kubeconfig yet (not created or still bootstrapping); skipped"
        ));
    }
    if parts.is_empty() {
        ctx.error("no cluster of the fleet has a kubeconfig yet\n  hint: run `meshfleet up` first");
        return Ok(Exit::Failed);
    }
    let n = parts.len();
    let ours = meshfleet_kube::kubeconfig::combine(parts);
    let merged = if a.merge {
        match std::fs::read_to_string(&out) {
            Ok(text) => {
                let existing =
                    meshfleet_kube::kubeconfig::parse(&text, &format!("`{}`", out.display()))
                        .map_err(|e| {
                            Invalid::new(format!(
                                "{e}\n  hint: fix it, or write elsewhere with `--out FILE`"
                            ))
                        })?;
                meshfleet_kube::kubeconfig::merge(existing, ours)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ours,
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", out.display())),
        }
    } else {
        ours
    };
    let text = meshfleet_kube::kubeconfig::to_yaml(&merged)?;
    crate::fsutil::write_atomic(&out, text.as_bytes(), 0o600)?;
    ctx.info(&format!(
        "wrote {} ({n} context{}{})",
        out.display(),
        if n == 1 { "" } else { "s" },
        if a.merge { ", merged" } else { "" }
    ));
    Ok(if absent.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
