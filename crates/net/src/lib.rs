//! The links between node networks, as steps (issue #15).
//!
//! **Where the steps live.** One place owns them: this crate, for a `meshfleet net setup` that
//! drives both clouds. The ordering crosses clouds — the GCP HA VPN gateway's addresses go into
//! AWS's customer gateways, AWS's tunnel addresses into GCP's external VPN gateway — and the AWS
//! side attaches to the VPC CAPA creates for each AWSCluster (meshfleet does not own AWS VPCs:
//! render leaves `vpc.id` unset, and CAPA's route-table reconcile only replaces the routes it
//! wants itself, cluster-api-provider-aws:`pkg/cloud/services/network/routetables.go`@v2.11.1
//! `fixMismatchedRouting`, so routes meshfleet adds survive). `gcp setup` and `aws setup` run
//! before `up`; the links can only be finished once CAPA has made the VPCs, so they are a step
//! of their own.
//!
//! [`desired::steps`] is the pure part: every request in order, with values only known at run
//! time as `${step-id.field}` references and pre-shared keys as `${secret:tunnel}` (never in a
//! body, a report or a golden). [`secrets`] keeps the keys and inside ranges beside the fleet.
//! [`exec`] runs the steps against a [`exec::NetApi`] seam (idempotent, resumable, dry run);
//! [`aws`] is the seam's EC2 half through `aws-sdk-ec2`, [`gcp`] its Compute half through
//! `google-cloud-compute-v1`, and [`Clouds`] joins the two, sending each step to its cloud.

pub mod aws;
pub mod desired;
pub mod exec;
pub mod gcp;
pub mod secrets;
pub mod setup;

pub use gcp::Clouds;

use std::path::PathBuf;

/// Errors of the interconnect steps.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The secrets file cannot be read or written.
    #[error("{}: {why}\n  hint: the file holds the VPN pre-shared keys; restore it from a backup, or remove it to generate new keys (both clouds then need the new ones: re-run `meshfleet net setup`)", path.display())]
    Secrets {
        /// The file.
        path: PathBuf,
        /// The cause.
        why: String,
    },
    /// The system's random source failed.
    #[error("cannot generate a pre-shared key: the system random source failed")]
    Random,
    /// No inside /30 is left in 169.254.0.0/16.
    #[error(
        "no tunnel inside /30 left in 169.254.0.0/16\n  hint: remove tunnels of links the fleet no longer has from `meshfleet.net.json`"
    )]
    InsideExhausted,
    /// A generated resource name does not fit GCP's 63 characters.
    #[error(
        "resource name `{name}` is longer than GCP's 63 characters\n  hint: use a shorter `metadata.name` for the fleet"
    )]
    NameTooLong {
        /// The name.
        name: String,
    },
}
