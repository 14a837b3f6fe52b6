//! The command-line surface (clap). Argument structs of a command live with the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;

/// One declarative fleet file to many Talos Kubernetes clusters on GCP and AWS, created through
/// Cluster API and joined into one Cilium ClusterMesh.
#[derive(Debug, Parser)]
#[command(
    name = "meshfleet",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// When to use colour: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Print only data and errors: no progress, no warnings.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The fleet file to read.
#[derive(Debug, Args, Clone)]
pub struct FleetArg {
    /// Fleet file.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "fleet.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

/// Output format for commands whose output is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Table,
    /// For programs.
    Json,
    /// For programs and people.
    Yaml,
}

/// Output format for commands that offer only table and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TableOrJson {
    /// For people.
    #[default]
    Table,
    /// For programs.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example fleet.yaml in the current directory.
    Init(cmd::init::InitArgs),
    /// Check a fleet file and report every problem with its location.
    Validate(cmd::validate::ValidateArgs),
    /// Allocate CIDRs and mesh IDs, derive the firewall matrix and mesh peers; record meshfleet.lock.
    Plan(cmd::plan::PlanArgs),
    /// Write every manifest of the fleet: Cluster API, Talos, GCP/AWS, Cilium, Pod Security.
    Render(cmd::render::RenderArgs),
    /// Create or converge the fleet on a management cluster (or the embedded simulator).
    Up(cmd::up::UpArgs),
    /// Show what `up` would change on the management cluster, per cluster and field.
    Diff(cmd::diff::DiffArgs),
    /// Show the fleet at a glance: clusters, conditions, nodes, mesh.
    Status(cmd::status::StatusArgs),
    /// Delete the fleet's clusters in the right order and wait until they are gone.
    Down(cmd::down::DownArgs),
    /// Write one kubeconfig with a context per workload cluster.
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Run the embedded simulator: a local management cluster with simulated controllers.
    Sim(cmd::sim::SimArgs),
    /// ClusterMesh tools: the mesh CA, certificates, probes and status.
    Mesh(cmd::mesh::MeshArgs),
    /// Google Cloud prerequisites.
    Gcp(cmd::gcp::GcpArgs),
    /// AWS prerequisites.
    Aws(cmd::aws::AwsArgs),
    /// The links between node networks (HA VPN, Transit Gateway, VPC peering), both clouds.
    Net(cmd::net::NetArgs),
    /// Check, reading only, that every cloud the fleet uses is ready (dry runs of gcp/aws setup).
    Doctor(cmd::doctor::DoctorArgs),
}
