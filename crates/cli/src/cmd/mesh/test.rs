//! `meshfleet mesh test`: pod-to-pod traffic between every ordered pair of clusters and the
//! global service from each (`meshfleet_lifecycle::meshtest`), as a matrix or JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use meshfleet_lifecycle::Progress;
use meshfleet_lifecycle::meshtest::{self, Options, Report};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common::{self, parse_duration};
use crate::ctx::{Ctx, Exit};
use crate::output::Table;
use crate::simproc;

/// Arguments of `mesh test`.
#[derive(Debug, Args)]
pub struct MeshTestArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the simulator state kept by `up --sim` (`.meshfleet/sim/<fleet>/`) for this run.
    #[arg(long)]
    pub sim: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
    /// How long to wait for the echo Pods (and for the namespace to be gone afterwards).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The namespace created in every cluster for the test (deleted afterwards).
    #[arg(long, default_value = "meshfleet-mesh-test")]
    pub namespace: String,
    /// The echo image (agnhost; pin a digest for air-gapped registries).
    #[arg(long, default_value = meshtest::ECHO_IMAGE)]
    pub image: String,
}

/// `meshfleet mesh test`.
pub(super) fn run(ctx: &Ctx, a: MeshTestArgs) -> anyhow::Result<Exit> {
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    if !fleet.spec.mesh.enabled {
        return Err(crate::ctx::Invalid::new(format!(
            "the mesh is not enabled in fleet `{name}`: there is nothing to test\n  hint: set `spec.mesh.enabled: true` and run `meshfleet up`"
        )));
    }
    let clusters: Vec<String> = p.plan.clusters.iter().map(|c| c.name.clone()).collect();
    let opts = Options {
        namespace: a.namespace.clone(),
        image: a.image.clone(),
        timeout: a.timeout,
        mcs_api: fleet.spec.mesh.services.mcs_api,
        ..Options::default()
    };
    let rt = common::runtime()?;
    let report = rt.block_on(async {
        let mgmt =
            simproc::Mgmt::open(ctx, &p.input.path, fleet, a.sim, a.kubeconfig.as_deref()).await?;
        let display = Arc::new(crate::progress::Progress::new(ctx.quiet, &clusters));
        let sink = display.clone();
        let progress = Progress::new(move |e| sink.show(e));
        // Ctrl-C stops the test and still removes what it created.
        let r = tokio::select! {
            r = meshtest::run(&mgmt.kube, &name, &clusters, &opts, &progress) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        display.clear();
        if r.is_none() {
            ctx.error("interrupted: removing the test namespace (Ctrl-C again to leave it)");
            // A second Ctrl-C gives up the cleanup (a cluster may be slow to answer); the next
            // run removes what is left before it starts.
            tokio::select! {
                ws = meshtest::cleanup(&mgmt.kube, &name, &clusters, &opts) => {
                    for w in ws {
                        ctx.warn(&w);
                    }
                }
                _ = tokio::signal::ctrl_c() => ctx.warn(&format!(
                    "cleanup interrupted: namespace `{}` may be left in some clusters; the next `meshfleet mesh test` removes it",
                    opts.namespace
                )),
            }
        }
        mgmt.close(ctx).await;
        anyhow::Ok(r)
    })?;
    let Some(report) = report else {
        return Ok(Exit::Failed);
    };
    match a.output {
        TableOrJson::Json => crate::output::json(&report)?,
        TableOrJson::Table => print!("{}", table(&report, &clusters, ctx.colour_out)),
    }
    let failed = report.matrix.iter().filter(|x| !x.ok).count()
        + report.global_services.iter().filter(|g| !g.ok).count();
    if failed == 0 {
        ctx.info(&format!(
            "mesh test of `{name}`: {} pair(s) and {} global-service check(s) passed",
            report.matrix.len(),
            report.global_services.len()
        ));
        Ok(Exit::Ok)
    } else {
        ctx.error(&format!("mesh test of `{name}`: {failed} check(s) failed"));
        Ok(Exit::Failed)
    }
}

/// The matrix for people: one row per client cluster, a mark per target, then the global
/// service from each cluster, then every failure with its cause.
pub fn table(r: &Report, clusters: &[String], colour: bool) -> String {
    let mark = |ok: bool| match (ok, colour) {
        (true, true) => "\x1b[32m✓\x1b[0m".to_string(),
        (true, false) => "✓".to_string(),
        (false, true) => "\x1b[1;31m✗\x1b[0m".to_string(),
        (false, false) => "✗".to_string(),
    };
    let mut header = vec!["FROM \\ TO".to_string()];
    header.extend(clusters.iter().cloned());
    header.push("GLOBAL SERVICE SERVED BY".into());
    let mcs = r
        .global_services
        .iter()
        .any(|g| g.service.ends_with(".clusterset.local"));
    if mcs {
        header.push("CLUSTERSET (MCS-API) SERVED BY".into());
    }
    let cell = |from: &str, clusterset: bool| {
        r.global_services
            .iter()
            .find(|g| g.from == from && g.service.ends_with(".clusterset.local") == clusterset)
            .map_or_else(
                || "?".into(),
                |g| {
                    let who = if g.served_by.is_empty() {
                        "none".to_string()
                    } else {
                        g.served_by.join(",")
                    };
                    format!("{} {who}", mark(g.ok))
                },
            )
    };
    let mut t = Table::new(header);
    for from in clusters {
        let mut row = vec![from.clone()];
        for to in clusters {
            row.push(if from == to {
                "-".into()
            } else {
                r.matrix
                    .iter()
                    .find(|p| &p.from == from && &p.to == to)
                    .map_or_else(
                        || "?".into(),
                        |p| match p.latency_ms {
                            Some(ms) if p.ok => format!("{} {ms}ms", mark(true)),
                            _ => mark(p.ok),
                        },
                    )
            });
        }
        row.push(cell(from, false));
        if mcs {
            row.push(cell(from, true));
        }
        t.row(row);
    }
    let mut out = t.render(colour);
    let failures: Vec<String> = r
        .matrix
        .iter()
        .filter(|p| !p.ok)
        .map(|p| {
            format!(
                "{} → {}: {}",
                p.from,
                p.to,
                p.error.as_deref().unwrap_or("failed")
            )
        })
        .chain(r.global_services.iter().filter(|g| !g.ok).map(|g| {
            format!(
                "{} → {}: {}",
                g.from,
                g.service,
                g.error.as_deref().unwrap_or("failed")
            )
        }))
        .collect();
    if !failures.is_empty() {
        out.push('\n');
        for f in failures {
            out.push_str(&format!("✗ {f}\n"));
        }
    }
    out
}
