//! `meshfleet gcp setup`: plan the fleet in memory, take its GCP prerequisites (the same data
//! `render` writes to `prerequisites/gcp.yaml`) and converge the project with `meshfleet-gcp`.
//!
//! stdout carries only the report (table or JSON); progress goes to stderr. The service-account
//! key is written to `<fleet dir>/.meshfleet/gcp/` (0600) and never printed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meshfleet_gcp::{Report, SetupOptions};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};

/// Arguments of `gcp`.
#[derive(Debug, Args)]
pub struct GcpArgs {
    #[command(subcommand)]
    pub command: GcpCommand,
}

/// `gcp` subcommands.
#[derive(Debug, Subcommand)]
pub enum GcpCommand {
    /// Create the GCP prerequisites (APIs, service account, bucket, image, network, NAT, firewall).
    Setup(GcpSetupArgs),
}

/// Arguments of `gcp setup`.
#[derive(Debug, Args)]
pub struct GcpSetupArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Google API endpoint override (plain HTTP, anonymous credentials), e.g. the simulator's.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Talos GCP image to upload (file path or URL).
    #[arg(long)]
    pub image_source: Option<String>,
    /// Also hand CAPG's key to the management cluster of this kubeconfig: its credentials
    /// Secret `capg-system/capg-manager-bootstrap-credentials` is made to hold the key (and
    /// CAPG's Deployment restarted to read it), instead of a `clusterctl init` environment.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// `meshfleet gcp …`.
pub fn run(ctx: &Ctx, a: GcpArgs) -> anyhow::Result<Exit> {
    match a.command {
        GcpCommand::Setup(s) => setup(ctx, s),
    }
}

/// Where the CAPG key of a fleet is kept: `.meshfleet/gcp` beside the fleet file.
pub fn key_dir(fleet_file: &Path) -> PathBuf {
    let dir = fleet_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(".meshfleet").join("gcp")
}

fn setup(ctx: &Ctx, a: GcpSetupArgs) -> anyhow::Result<Exit> {
    if let Some(e) = &a.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(Invalid::new(format!(
            "--endpoint `{e}` is not an http(s) URL\n  hint: e.g. --endpoint http://127.0.0.1:8089 (the simulator writes it to <kubeconfig>.endpoints.json)"
        )));
    }
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.lock.as_ref())?;
    let prereq = meshfleet_render::gcp_prerequisites(&input.loaded.fleet, &plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let Some(prereq) = prereq else {
        ctx.info("no cluster of this fleet runs on GCP: nothing to do");
        common::print_steps(ctx, a.output, &Report::default())?;
        return Ok(Exit::Ok);
    };
    let opts = SetupOptions {
        endpoint: a.endpoint.clone(),
        dry_run: a.dry_run,
        image_source: a.image_source.clone(),
        key_dir: key_dir(&input.path),
        retry: Default::default(),
    };
    ctx.info(&format!(
        "gcp setup: project {}{}{}",
        prereq.project,
        a.endpoint
            .as_deref()
            .map(|e| format!(" via {e}"))
            .unwrap_or_default(),
        if a.dry_run {
            " (dry run: reads only)"
        } else {
            ""
        }
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = Instant::now();
    let progress = common::step_progress(ctx);
    match rt.block_on(meshfleet_gcp::setup(&prereq, &opts, progress)) {
        Ok(report) => {
            common::step_summary(ctx, a.dry_run, &report, started);
            let key = opts.key_dir.join(format!(
                "{}-{}.json",
                prereq.project, prereq.service_account.name
            ));
            let mut report = report;
            if let Some(kc) = &a.kubeconfig {
                let row = rt.block_on(hand_over(kc, &key, a.dry_run));
                let failed = row.status == meshfleet_gcp::Status::Failed;
                ctx.info(&format!(
                    "  {:<15} {:<50} {:<9} {}",
                    row.kind,
                    row.name,
                    row.action.as_str(),
                    row.status.as_str()
                ));
                let detail = row.detail.clone();
                report.steps.push(row);
                if failed {
                    common::print_steps(ctx, a.output, &report)?;
                    ctx.error(&detail);
                    return Ok(Exit::Failed);
                }
            }
            common::print_steps(ctx, a.output, &report)?;
            if !a.dry_run && key.exists() && a.kubeconfig.is_none() {
                // The key file is the hand-over point: CAPG reads its credentials from the
                // Secret clusterctl makes of this variable.
                ctx.info(&format!(
                    "CAPG's key is in `{}` (0600); hand it to CAPG with `meshfleet gcp setup --kubeconfig K`, or before `clusterctl init --infrastructure gcp` with GCP_B64ENCODED_CREDENTIALS=\"$(base64 -w0 {})\"",
                    key.display(),
                    key.display()
                ));
            }
            Ok(Exit::Ok)
        }
        Err(failure) => {
            common::print_steps(ctx, a.output, &failure.report)?;
            if failure.error.is_invalid_input() {
                return Err(Invalid::new(failure.error.to_string()));
            }
            ctx.error(&failure.error.to_string());
            Ok(Exit::Failed)
        }
    }
}

/// The last step of `gcp setup --kubeconfig`: CAPG's credentials Secret holds the key file.
async fn hand_over(kubeconfig: &Path, key: &Path, dry_run: bool) -> meshfleet_gcp::StepRow {
    use meshfleet_gcp::{Action, Status, StepRow};
    use meshfleet_lifecycle::credentials::{self, GCP, Installed};
    let name = format!("{}/{}", GCP.default_namespace, GCP.name);
    let row = |action, status, detail: String| StepRow {
        kind: "credentials",
        name: name.clone(),
        action,
        status,
        detail,
    };
    let bytes = match std::fs::read(key) {
        Ok(b) => b,
        // A dry run before the first real one: the key does not exist yet.
        Err(_) if dry_run => {
            return row(
                Action::Create,
                Status::Planned,
                format!("from `{}` once setup made it", key.display()),
            );
        }
        Err(e) => {
            return row(
                Action::Unchanged,
                Status::Failed,
                format!("cannot read CAPG's key `{}`: {e}", key.display()),
            );
        }
    };
    let kube = match meshfleet_kube::Kube::from_path(Some(kubeconfig)).await {
        Ok(k) => k,
        Err(e) => {
            return row(
                Action::Unchanged,
                Status::Failed,
                format!("management cluster `{}`: {e}", kubeconfig.display()),
            );
        }
    };
    match credentials::install(&kube, &GCP, GCP.default_namespace, &bytes, dry_run).await {
        Ok(done) => {
            let action = match done {
                Installed::Created => Action::Create,
                Installed::Updated => Action::Update,
                Installed::Unchanged => Action::Unchanged,
            };
            let status = if dry_run && action != Action::Unchanged {
                Status::Planned
            } else {
                Status::Done
            };
            let detail = match done {
                Installed::Updated => {
                    "the key of `gcp setup`; CAPG's Deployment restarted to read it"
                }
                _ => "the key of `gcp setup`",
            };
            row(action, status, detail.to_owned())
        }
        Err(e) => row(
            Action::Unchanged,
            Status::Failed,
            format!(
                "cannot write CAPG's credentials into {}: {e}\n  hint: is CAPG installed (`clusterctl init --infrastructure gcp`)? the namespace `{}` must exist",
                kube.server(),
                GCP.default_namespace
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_dir_is_beside_the_fleet_file() {
        assert_eq!(
            key_dir(Path::new("fleet.yaml")),
            Path::new("./.meshfleet/gcp")
        );
        assert_eq!(
            key_dir(Path::new("/x/y/fleet.yaml")),
            Path::new("/x/y/.meshfleet/gcp")
        );
    }
}
