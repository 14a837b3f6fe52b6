//! `meshfleet net setup`: create the links between the fleet's node networks (GCP HA VPN ↔ AWS
//! Transit Gateway, AWS ↔ AWS) with `meshfleet-net`, both clouds in one run, in the order they
//! require.
//!
//! Order on a real management cluster: `gcp setup` and `aws setup`, then `up` (CAPA makes each
//! AWSCluster's VPC; `up` reports the mesh as partial and names this command), then `net setup`
//! (a run before the VPCs exist makes what it can and stops at the first step that needs one,
//! naming it; re-run it). The mesh converges by itself once the links carry traffic: Cilium
//! retries its peers. `up --sim` runs the same steps against the simulator as soon as the VPCs
//! exist.
//!
//! stdout carries only the report (table or JSON); progress goes to stderr. The pre-shared keys
//! are kept in `meshfleet.net.json` beside the fleet file (0600) and never printed.

use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meshfleet_net::exec::Options;
use meshfleet_net::setup::{Endpoints, SetupError};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::simproc;

/// `meshfleet net …`.
#[derive(Debug, Args)]
pub struct NetArgs {
    #[command(subcommand)]
    pub command: NetCommand,
}

/// `net` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Create the links between node networks the fleet's `spec.interconnect` asks for.
    Setup(NetSetupArgs),
}

/// Arguments of `net setup`.
#[derive(Debug, Args)]
pub struct NetSetupArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The simulator `up --sim` kept for the fleet file: its Google and AWS APIs.
    #[arg(long, conflicts_with_all = ["gcp_endpoint", "aws_endpoint"])]
    pub sim: bool,
    /// Compute API endpoint override (a stand-in such as the simulator's `gcp` URL).
    #[arg(long, value_name = "URL")]
    pub gcp_endpoint: Option<String>,
    /// EC2/STS endpoint override (moto, or the simulator's `aws` URL).
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// `meshfleet net …`.
pub fn run(ctx: &Ctx, a: NetArgs) -> anyhow::Result<Exit> {
    match a.command {
        NetCommand::Setup(s) => setup(ctx, s),
    }
}

fn check_url(flag: &str, u: &Option<String>) -> anyhow::Result<()> {
    if let Some(e) = u
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(Invalid::new(format!(
            "{flag} `{e}` is not an http(s) URL\n  hint: e.g. {flag} http://127.0.0.1:5000, or `--sim` for the simulator `up --sim` kept"
        )));
    }
    Ok(())
}

fn setup(ctx: &Ctx, a: NetSetupArgs) -> anyhow::Result<Exit> {
    check_url("--gcp-endpoint", &a.gcp_endpoint)?;
    check_url("--aws-endpoint", &a.aws_endpoint)?;
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.lock.as_ref())?;
    let fleet = &input.loaded.fleet;
    let dir = input
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let opts = Options {
        dry_run: a.dry_run,
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let (mgmt, ep) = if a.sim {
            let m = simproc::Mgmt::open(ctx, &input.path, fleet, true, None).await?;
            let (g, w) = m.cloud_urls().unwrap_or_default();
            let ep = Endpoints {
                gcp: Some(g),
                aws: Some(w),
                aws_static_key: Some(simproc::SIM_AWS_KEY.to_owned()),
            };
            (Some(m), ep)
        } else {
            (
                None,
                Endpoints {
                    gcp: a.gcp_endpoint.clone(),
                    aws: a.aws_endpoint.clone(),
                    aws_static_key: None,
                },
            )
        };
        ctx.info(&format!(
            "net setup: fleet {}, {} link(s) with steps{}",
            fleet.metadata.name,
            plan.interconnects
                .iter()
                .filter(|n| matches!(
                    n.via.as_deref(),
                    Some("haVpn" | "transitGateway" | "vpcPeering")
                ))
                .count(),
            if a.dry_run {
                " (dry run: reads only)"
            } else {
                ""
            }
        ));
        let started = Instant::now();
        let result = meshfleet_net::setup::run(fleet, &plan, &dir, &ep, &opts).await;
        if let Some(m) = mgmt {
            m.close(ctx).await;
        }
        match result {
            Ok(report) => {
                if report.steps.is_empty() {
                    ctx.info("no link of this fleet needs a step (none set, or all `existing`/`publicAddresses`)");
                } else {
                    common::step_summary(ctx, a.dry_run, &report, started);
                }
                common::print_steps(ctx, a.output, &report)?;
                Ok(Exit::Ok)
            }
            Err(SetupError::Failed(f)) => {
                common::print_steps(ctx, a.output, &f.report)?;
                ctx.error(&f.to_string());
                Ok(Exit::Failed)
            }
            Err(SetupError::Net(e)) => Err(Invalid::new(e.to_string())),
            Err(e @ SetupError::Client(_)) => {
                ctx.error(&e.to_string());
                Ok(Exit::Failed)
            }
        }
    })
}
