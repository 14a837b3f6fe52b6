//! `up`, `status`, `down`, `kubeconfig` and `gcp setup`: their surface is final, their
//! implementation lands with the lifecycle and cloud-setup work. Until then they say so and
//! exit 1, without pretending to do anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::{FleetArg, TableOrJson};
use crate::ctx::{Ctx, Exit};

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Start the embedded simulator as the management cluster for this run.
    #[arg(long)]
    pub sim: bool,
    /// How long one cluster may take before it fails the run (e.g. 20m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many clusters converge at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
    /// Keep watching and redraw on change.
    #[arg(long)]
    pub watch: bool,
}

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
}

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
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// Parse `90s`, `20m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 90s, 20m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}` has an unknown unit `{unit}`: use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn not_yet(ctx: &Ctx, what: &str) -> anyhow::Result<Exit> {
    ctx.error(&format!(
        "`meshfleet {what}` is not available yet in this build: it needs the lifecycle engine, which has not landed"
    ));
    Ok(Exit::Failed)
}

/// `meshfleet up`.
pub fn up(ctx: &Ctx, _a: UpArgs) -> anyhow::Result<Exit> {
    not_yet(ctx, "up")
}
/// `meshfleet status`.
pub fn status(ctx: &Ctx, _a: StatusArgs) -> anyhow::Result<Exit> {
    not_yet(ctx, "status")
}
/// `meshfleet down`.
pub fn down(ctx: &Ctx, _a: DownArgs) -> anyhow::Result<Exit> {
    not_yet(ctx, "down")
}
/// `meshfleet kubeconfig`.
pub fn kubeconfig(ctx: &Ctx, _a: KubeconfigArgs) -> anyhow::Result<Exit> {
    not_yet(ctx, "kubeconfig")
}
/// `meshfleet gcp setup`.
pub fn gcp(ctx: &Ctx, _a: GcpArgs) -> anyhow::Result<Exit> {
    not_yet(ctx, "gcp setup")
}
