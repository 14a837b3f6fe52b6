//! `meshfleet aws setup`: plan the fleet in memory, take its AWS prerequisites (the same data
//! `render` writes to `prerequisites/aws.yaml`) and converge the account with `meshfleet-aws`.
//!
//! stdout carries only the report (table or JSON); progress goes to stderr. Credentials come
//! from the default AWS chain and are never printed.

use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meshfleet_aws::{Report, SetupOptions};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};

/// `meshfleet aws …`.
#[derive(Debug, Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub command: AwsCommand,
}

/// `aws` subcommands.
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the AWS prerequisites (CAPA's IAM stack) and check the Talos AMIs and key pairs.
    Setup(AwsSetupArgs),
}

/// Arguments of `aws setup`.
#[derive(Debug, Args)]
pub struct AwsSetupArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// AWS API endpoint override for every service and region, e.g. moto's or the simulator's.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// `meshfleet aws …`.
pub fn run(ctx: &Ctx, a: AwsArgs) -> anyhow::Result<Exit> {
    match a.command {
        AwsCommand::Setup(s) => setup(ctx, s),
    }
}

/// The region the caller configured through the environment, which the SDK's chain would also
/// use: where an existing CAPA stack is expected to live.
fn configured_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
}

fn setup(ctx: &Ctx, a: AwsSetupArgs) -> anyhow::Result<Exit> {
    if let Some(e) = &a.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(Invalid::new(format!(
            "--endpoint `{e}` is not an http(s) URL\n  hint: e.g. --endpoint http://127.0.0.1:5000 (moto), or the simulator's `aws` entry in <kubeconfig>.endpoints.json"
        )));
    }
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.lock.as_ref())?;
    let prereq = meshfleet_render::aws_prerequisites(&input.loaded.fleet, &plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let Some(prereq) = prereq else {
        ctx.info("no cluster of this fleet runs on AWS: nothing to do");
        common::print_steps(ctx, a.output, &Report::default())?;
        return Ok(Exit::Ok);
    };
    let opts = SetupOptions {
        endpoint: a.endpoint.clone(),
        dry_run: a.dry_run,
        stack_region: configured_region(),
        retry: Default::default(),
    };
    ctx.info(&format!(
        "aws setup: fleet {} in {}{}{}",
        prereq.fleet,
        prereq
            .regions
            .iter()
            .map(|r| r.region.as_str())
            .collect::<Vec<_>>()
            .join(", "),
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
    match rt.block_on(meshfleet_aws::setup(&prereq, &opts, progress)) {
        Ok(report) => {
            common::step_summary(ctx, a.dry_run, &report, started);
            common::print_steps(ctx, a.output, &report)?;
            if !a.dry_run {
                ctx.info(meshfleet_aws::CAPA_CREDENTIALS_HINT);
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
