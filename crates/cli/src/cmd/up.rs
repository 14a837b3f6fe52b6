//! `meshfleet up`: validate, plan, render in memory, then let the lifecycle engine converge the
//! fleet on a management cluster — or on the embedded simulator with `--sim`, whose GCP project
//! is prepared alongside as `gcp setup` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use meshfleet_lifecycle::{Progress, up};

use crate::cli::FleetArg;
use crate::cmd::common::{self, Prepared, parse_duration};
use crate::cmd::status;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::simproc;

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Start the embedded simulator (in-process) as the management cluster for this run. Its
    /// state is kept in `.meshfleet/sim/<fleet>/` beside the fleet file, so a re-run resumes;
    /// `MESHFLEET_SIM_SPEED=10` makes its simulated time ten times faster.
    #[arg(long)]
    pub sim: bool,
    /// How long one cluster may take before it fails the run (e.g. 20m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many clusters converge at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Also delete the clusters the management cluster holds for this fleet that the fleet
    /// file no longer names (after the others have dropped them from their mesh).
    #[arg(long)]
    pub prune: bool,
}

/// `meshfleet up`.
pub fn run(ctx: &Ctx, a: UpArgs) -> anyhow::Result<Exit> {
    if a.concurrency == 0 {
        return Err(Invalid::new(
            "`--concurrency` is `0`: nothing could converge\n  hint: use `--concurrency 1` or more",
        ));
    }
    let speed = if a.sim { simproc::speed()? } else { 1.0 };
    let p = common::prepare(ctx, &a.fleet.file, true)?;
    let rt = common::runtime()?;
    rt.block_on(async {
        let sim = if a.sim {
            let fleet = &p.input.loaded.fleet;
            let dir = simproc::sim_dir(&p.input.path, &fleet.metadata.name);
            let egress = simproc::egress_ip(&fleet.spec.management.egress_cidrs)?;
            let (sim, kc) = simproc::start(&dir, egress, speed).await?;
            ctx.info(&format!(
                "simulator: management cluster at https://{} (egress {egress}), kubeconfig {}, state {} (kept: a re-run resumes from it)",
                sim.addr(),
                kc.display(),
                dir.join("state").display()
            ));
            Some((sim, kc, dir))
        } else {
            None
        };
        let (gcp, aws) = match &sim {
            Some(_) => (
                meshfleet_render::gcp_prerequisites(&p.input.loaded.fleet, &p.plan)
                    .map_err(|e| Invalid::new(e.to_string()))?,
                meshfleet_render::aws_prerequisites(&p.input.loaded.fleet, &p.plan)
                    .map_err(|e| Invalid::new(e.to_string()))?,
            ),
            None => (None, None),
        };
        // The simulated project and account are prepared alongside the apply, as CAPG and
        // CAPA on real ones wait for what is still being made: the infrastructure waits overlap.
        let cloud = async {
            let Some((sim, _, dir)) = &sim else {
                return std::future::pending::<anyhow::Error>().await;
            };
            let started = Instant::now();
            if let Some(prereq) = &gcp {
                match simproc::gcp_setup(sim, dir, prereq).await {
                    Ok(changed) => ctx.info(&format!(
                        "simulator: GCP project `{}` prepared as `meshfleet gcp setup` would ({changed} changes, {:.1}s; Google APIs at {})",
                        prereq.project,
                        started.elapsed().as_secs_f64(),
                        sim.gcp_url()
                    )),
                    Err(e) => return e,
                }
            }
            if let Some(prereq) = &aws {
                match simproc::aws_setup(sim, dir, prereq).await {
                    Ok(changed) => ctx.info(&format!(
                        "simulator: AWS account prepared as `meshfleet aws setup` would ({changed} changes, {:.1}s; AWS APIs at {})",
                        started.elapsed().as_secs_f64(),
                        sim.aws_url()
                    )),
                    Err(e) => return e,
                }
            }
            // The links, once CAPA has made the VPCs they attach to (`net setup` on a real
            // management cluster, where the user runs it after `up`).
            if !p.plan.interconnects.is_empty() {
                let fleet_dir = p.input.path.parent().unwrap_or(Path::new("."));
                match simproc::net_setup(sim, fleet_dir, &p.input.loaded.fleet, &p.plan).await {
                    Ok(0) => {}
                    Ok(changed) => ctx.info(&format!(
                        "simulator: links between node networks created as `meshfleet net setup` would ({changed} changes, {:.1}s)",
                        started.elapsed().as_secs_f64()
                    )),
                    Err(e) => return e,
                }
            }
            std::future::pending::<anyhow::Error>().await
        };
        let kubeconfig = sim.as_ref().map(|(_, k, _)| k.clone()).or(a.kubeconfig.clone());
        // Ctrl-C stops at once: every step is a convergent apply, so a re-run picks up here.
        // The simulator (when embedded) is still shut down cleanly so its state is saved.
        let result = tokio::select! {
            r = converge(ctx, &a, &p, kubeconfig.as_deref()) => r,
            e = cloud => Err(e),
            _ = tokio::signal::ctrl_c() => {
                ctx.error("interrupted\n  hint: run `meshfleet up` again: it converges from where this run stopped");
                Ok(Exit::Failed)
            }
        };
        if let Some((sim, _, dir)) = sim {
            if let Err(e) = sim.shutdown().await {
                ctx.warn(&format!("the simulator did not stop cleanly: {e}"));
            }
            ctx.info(&format!(
                "simulator stopped (state kept); to reach it again: `meshfleet sim serve --state {} --kubeconfig {}`, then e.g. `meshfleet status --kubeconfig {}` in another terminal",
                dir.join("state").display(),
                dir.join("kubeconfig").display(),
                dir.join("kubeconfig").display()
            ));
        }
        result
    })
}

/// The options the engine needs, from the fleet file and the plan.
pub fn options(p: &Prepared, timeout: Duration, concurrency: usize) -> up::UpOptions {
    let fleet = &p.input.loaded.fleet;
    let mut labels = fleet.metadata.labels.clone();
    labels.insert(
        meshfleet_render::FLEET_LABEL.to_string(),
        fleet.metadata.name.clone(),
    );
    up::UpOptions {
        fleet: fleet.metadata.name.clone(),
        timeout,
        concurrency,
        mesh: fleet.spec.mesh.enabled,
        ipsec: fleet.spec.mesh.encryption == meshfleet_spec::Encryption::Ipsec,
        labels,
        mesh_ids: p
            .plan
            .clusters
            .iter()
            .map(|c| (c.name.clone(), u32::from(c.mesh_id)))
            .collect(),
        max_connected: u32::from(fleet.spec.mesh.max_connected_clusters),
        peers: p.plan.mesh_peers.clone(),
    }
}

async fn converge(
    ctx: &Ctx,
    a: &UpArgs,
    p: &Prepared,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let fleet = &p.input.loaded.fleet;
    let mgmt = common::connect(kubeconfig).await?;
    let names: Vec<String> = p.rendered.clusters.iter().map(|c| c.name.clone()).collect();
    let display = Arc::new(crate::progress::Progress::new(ctx.quiet, &names));
    let sink = display.clone();
    let progress = Arc::new(Progress::new(move |e| sink.show(e)));
    let opts = options(p, a.timeout, a.concurrency);
    let mesh_on = opts.mesh;
    let report = match up::run(&mgmt, fleet, &p.plan, &p.rendered, opts, progress).await {
        Ok(r) => r,
        // A version jump the clusters cannot take: located in the fleet file like any other
        // invalid input, found before anything was written.
        Err(meshfleet_lifecycle::Error::UpgradePath(mut ds)) => {
            display.clear();
            for d in &mut ds {
                p.input.loaded.map.locate(d);
            }
            let report = meshfleet_spec::Report {
                errors: ds,
                warnings: Vec::new(),
            };
            common::print_report(ctx, &p.input.path, &p.input.text, &report);
            return Ok(Exit::Invalid);
        }
        Err(e @ meshfleet_lifecycle::Error::ProvidersMissing { .. }) => {
            display.clear();
            ctx.error(&e.to_string());
            return Ok(Exit::Failed);
        }
        Err(e) => {
            display.clear();
            return Err(common::engine_error(e));
        }
    };
    display.clear();

    let expected = meshfleet_lifecycle::status::expected(fleet, &p.plan.mesh_peers);
    let st =
        meshfleet_lifecycle::status::collect(&mgmt, &fleet.metadata.name, &expected, mesh_on).await;
    print!("{}", status::table(&st, mesh_on, ctx.colour_out));
    if mesh_on && let Some(partial) = p.plan.partial_mesh() {
        ctx.warn(&format!(
            "{partial}\n  hint: set `spec.interconnect` in `{}` (see `meshfleet plan`) and run `meshfleet net setup -f {}`, or `existing` when a network team provides the links",
            p.input.path.display(),
            p.input.path.display()
        ));
    }
    // On a real management cluster the links are a step of their own: they attach to the
    // VPCs CAPA has just made (`up --sim` runs them itself).
    if mesh_on && !a.sim && !meshfleet_net::desired::made_links(&p.plan).is_empty() {
        ctx.info(&format!(
            "the links between node networks ({}) are created by `meshfleet net setup -f {}`: run it now that CAPA has made the AWS VPCs (it is idempotent); until they carry traffic the mesh across them is partial",
            meshfleet_plan::some(&meshfleet_net::desired::made_links(&p.plan)),
            p.input.path.display()
        ));
    }

    let mut pruned = Vec::new();
    if a.prune {
        for c in &report.not_in_file {
            // The remaining clusters' Cilium values no longer name it (this run applied them),
            // so its mesh peers are gone first; then Cluster API deletes it.
            let opts = meshfleet_lifecycle::down::DownOptions {
                fleet: fleet.metadata.name.clone(),
                cluster: Some(c.clone()),
                timeout: a.timeout,
            };
            let c2 = ctx.clone();
            let sink = Arc::new(Progress::new(move |e| {
                if let meshfleet_lifecycle::Event::Info(m) = e {
                    c2.info(m)
                }
            }));
            let r = meshfleet_lifecycle::down::run(&mgmt, &p.rendered, &opts, sink)
                .await
                .map_err(common::engine_error)?;
            for (n, e) in &r.failures {
                ctx.error(&format!("cluster `{n}` could not be pruned: {e}"));
            }
            if r.ok() {
                pruned.extend(r.deleted);
            }
        }
        let lock_file = common::load_lock(&p.input)?;
        if let Some(mut lock) = lock_file.lock.clone() {
            let freed = pruned.iter().filter(|n| lock.seen_deleted(n)).count();
            if freed > 0 {
                lock_file.write(ctx, &lock)?;
            }
        }
    }
    for c in report.not_in_file.iter().filter(|c| !pruned.contains(c)) {
        ctx.warn(&format!(
            "cluster `{c}` runs for fleet `{}` but is no longer in `{}`: `up` does not delete it\n  hint: `meshfleet diff` shows it as `delete`; `meshfleet up --prune` or `meshfleet down --cluster {c}` deletes it (or put it back in the file)",
            fleet.metadata.name,
            p.input.path.display()
        ));
    }
    for (c, f) in &report.failures {
        ctx.error(&format!("cluster `{c}`: {f}"));
    }
    for (c, ps) in &report.mesh_problems {
        for p in ps {
            ctx.error(&format!("mesh `{c}`: {p}"));
        }
    }
    let ok = report.ok() && (!a.prune || pruned.len() == report.not_in_file.len());
    ctx.info(&format!(
        "{} in {:.1}s",
        if ok { "converged" } else { "failed" },
        started.elapsed().as_secs_f64()
    ));
    Ok(if ok { Exit::Ok } else { Exit::Failed })
}
