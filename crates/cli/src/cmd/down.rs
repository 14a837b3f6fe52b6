//! `meshfleet down`: delete the fleet's clusters (or one) in order, through the lifecycle
//! engine, and say what went.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use meshfleet_lifecycle::down::{self, DownOptions};
use meshfleet_lifecycle::{Event, Progress};

use crate::cli::FleetArg;
use crate::cmd::common::{self, parse_duration};
use crate::ctx::{Ctx, Exit, Invalid};

/// Arguments of `down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Delete only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// How long one cluster may take to be gone before it fails the run (e.g. 20m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `meshfleet down`.
pub fn run(ctx: &Ctx, a: DownArgs) -> anyhow::Result<Exit> {
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;

    let opts = DownOptions {
        fleet: fleet.metadata.name.clone(),
        cluster: a.cluster.clone(),
        timeout: a.timeout,
    };
    let rt = common::runtime()?;
    let report = rt.block_on(async {
        let mgmt = common::connect(a.kubeconfig.as_deref()).await?;
        // A cluster the file no longer names can still be deleted by name, when the
        // management cluster holds it for this fleet.
        if let Some(c) = &a.cluster
            && !p.rendered.clusters.iter().any(|x| &x.name == c)
        {
            let orphans = meshfleet_lifecycle::up::not_in_file(&mgmt, &opts.fleet, &p.rendered)
                .await
                .map_err(common::engine_error)?;
            if !orphans.contains(c) {
                let mut known: Vec<String> = p
                    .rendered
                    .clusters
                    .iter()
                    .map(|x| format!("`{}`", x.name))
                    .collect();
                known.extend(orphans.iter().map(|o| format!("`{o}` (not in the file)")));
                return Err(Invalid::new(format!(
                    "`--cluster {c}` is not a cluster of fleet `{}`\n  hint: one of {}",
                    fleet.metadata.name,
                    known.join(", ")
                )));
            }
        }
        let c = ctx.clone();
        let progress = Arc::new(Progress::new(move |e: &Event| match e {
            Event::Warning(m) => c.warn(m),
            Event::Info(m)
            | Event::Step { message: m, .. }
            | Event::Finished { message: m, .. } => c.info(m),
        }));
        down::run(&mgmt, &p.rendered, &opts, progress)
            .await
            .map_err(common::engine_error)
    })?;
    // meshfleet has now seen these clusters deleted: those the lock held as retired free their
    // CIDRs (their mesh IDs stay retired).
    let lock_file = common::load_lock(&p.input)?;
    if let Some(mut lock) = lock_file.lock.clone() {
        let mut freed = Vec::new();
        for name in &report.deleted {
            if lock.seen_deleted(name) {
                freed.push(name.as_str());
            }
        }
        if !freed.is_empty() && lock_file.write(ctx, &lock)? {
            ctx.info(&format!(
                "freed the CIDRs of {} in meshfleet.lock (their mesh IDs stay retired)",
                freed.join(", ")
            ));
        }
    }
    for (name, e) in &report.failures {
        ctx.error(&format!("cluster `{name}`: {e}"));
    }
    for e in &report.errors {
        ctx.error(e);
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Failed })
}
