//! `meshfleet sim serve`: run the embedded simulator until SIGTERM/SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::ctx::{Ctx, Exit, Invalid};

/// Arguments of `sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: SimCommand,
}

/// Simulator subcommands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated management cluster (Kubernetes API over HTTPS) until interrupted.
    Serve(ServeArgs),
    /// Rehearse an outage: a cluster, every cluster of a region, or the link between two
    /// clusters stops answering (simulator only; undo with `sim heal`).
    Fail(crate::cmd::outage::OutageArgs),
    /// End an outage `sim fail` started (`--all` for every one).
    Heal(crate::cmd::outage::OutageArgs),
}

/// Arguments of `sim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed to stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig (0600) once the server is ready.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Simulated-time factor: 10 makes every provisioning delay ten times shorter.
    #[arg(long, env = "MESHFLEET_SIM_SPEED", default_value_t = 1.0)]
    pub speed: f64,
    /// The management cluster's egress IP; Talos bootstrap then needs tcp/50000 open from it.
    #[arg(long)]
    pub egress_ip: Option<IpAddr>,
    /// Persist objects in this directory so a restart loses nothing (default: memory only).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Load CustomResourceDefinitions (schemas for strict validation) from this directory, recursively.
    #[arg(long)]
    pub crds: Option<PathBuf>,
    /// Probability (0–1) of an injected fault per request: 500, 429 with Retry-After, or a slow answer.
    #[arg(long, default_value_t = 0.0)]
    pub faults: f64,
    /// Address of the plain-HTTP Google Cloud API fake (its URL goes to `<kubeconfig>.endpoints.json`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub gcp_listen: SocketAddr,
    /// Address of the plain-HTTP AWS API fake (its URL goes to `<kubeconfig>.endpoints.json`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub aws_listen: SocketAddr,
    /// Join every node network to every other, as if the links existed (the old behaviour).
    /// By default node networks are separate: GCP and AWS nodes (and two AWS VPCs) reach each
    /// other only through interconnects that exist, consistent on both sides, in the cloud
    /// fakes.
    #[arg(long, env = "MESHFLEET_SIM_SHARED_NETWORKS")]
    pub shared_networks: bool,
    /// The default now; accepted so older scripts keep working.
    #[arg(long, hide = true, conflicts_with = "shared_networks")]
    pub separate_networks: bool,
}

/// Run a sim subcommand.
pub fn run(ctx: &Ctx, a: SimArgs) -> anyhow::Result<Exit> {
    match a.command {
        SimCommand::Serve(s) => serve(ctx, s),
        SimCommand::Fail(a) => crate::cmd::outage::run(ctx, a, false),
        SimCommand::Heal(a) => crate::cmd::outage::run(ctx, a, true),
    }
}

fn serve(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<Exit> {
    if !(0.0..=1.0).contains(&a.faults) {
        return Err(Invalid::new(format!(
            "`--faults {}` is out of range; hint: give a probability between 0 and 1",
            a.faults
        )));
    }
    if a.speed.is_nan() || a.speed <= 0.0 {
        return Err(Invalid::new(format!(
            "`--speed {}` must be a positive number; hint: 1 is real time, 10 is ten times faster",
            a.speed
        )));
    }
    if let Some(d) = &a.crds
        && !d.is_dir()
    {
        return Err(Invalid::new(format!(
            "`--crds {}` is not a directory; hint: point it at a folder of CustomResourceDefinition YAML files",
            d.display()
        )));
    }
    let mut cfg = meshfleet_sim::SimConfig::new(a.listen, a.kubeconfig.clone());
    cfg.speed = a.speed;
    cfg.egress_ip = a.egress_ip;
    cfg.state_dir = a.state;
    cfg.crds_dir = a.crds;
    cfg.faults = a.faults;
    cfg.gcp_listen = a.gcp_listen;
    cfg.aws_listen = a.aws_listen;
    cfg.separate_networks = !a.shared_networks;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sim = match meshfleet_sim::start(cfg).await {
            Ok(s) => s,
            // Unreadable CRD files and bad settings are the user's input: exit 2.
            Err(e @ (meshfleet_sim::SimError::Crds(_) | meshfleet_sim::SimError::Config(_))) => {
                return Err(Invalid::new(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        ctx.info(&format!(
            "simulator listening on https://{} (kubeconfig `{}`), Google Cloud APIs on {}, AWS APIs on {}",
            sim.addr(),
            a.kubeconfig.display(),
            sim.gcp_url(),
            sim.aws_url()
        ));
        // The address line is printed even with --quiet: scripts that pass port 0 need it.
        if ctx.quiet {
            eprintln!("listening on {}", sim.addr());
        }
        wait_for_signal().await?;
        let counts = sim.world().request_counts();
        let total: u64 = counts.values().sum();
        ctx.info(&format!(
            "simulator stopping; served {total} Kubernetes API requests: {}",
            counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        sim.shutdown().await?;
        anyhow::Ok(Exit::Ok)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
