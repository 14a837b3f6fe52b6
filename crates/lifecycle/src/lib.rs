//! meshfleet's lifecycle engine: what `up`, `down`, `status`, `kubeconfig` and `mesh status` do
//! to a management cluster and to the workload clusters it creates.
//!
//! The engine takes rendered objects ([`meshfleet_render::Rendered`]) and options, talks through
//! the narrow [`Api`] trait (implemented by [`meshfleet_kube::Kube`]; by an in-memory fake in
//! the tests), reports progress as [`Event`]s to a callback, and returns data. It never prints
//! and never picks an exit code: the binary does.
//!
//! - [`up`]: converge every cluster (at most `concurrency` at once), deliver the mesh CA,
//!   install Cilium, connect the mesh;
//! - [`down`]: delete clusters in order (Cilium's proxy, the Cluster, then what nothing owns);
//! - [`status`]: the fleet at a glance; [`meshstatus`]: the mesh, collected then judged;
//! - [`kubeconfig`]: the workload clusters' admin kubeconfigs, one context each;
//! - [`diff`]: what `up` would change, per cluster and field, and what that will cause;
//! - [`rollout`]: what each cluster runs, which clusters a change rolls and in which wave, the
//!   version-path check and the health gate of a rolled cluster.

#![warn(missing_docs)]

pub mod api;
pub mod credentials;
pub mod diff;
pub mod doctor;
pub mod down;
pub mod event;
pub mod kubeconfig;
pub mod mesh;
pub mod meshstatus;
pub mod meshtest;
pub mod objects;
pub mod promtext;
pub mod providers;
pub mod rollout;
pub mod secrets;
pub mod snapshot;
pub mod status;
pub mod up;
pub mod workload;

pub use api::Api;
pub use event::{Event, Progress};
pub use meshfleet_kube::{Kube, KubeError, ObjectRef, Retry};

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to an API server failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The management cluster lacks providers the fleet needs.
    #[error(
        "the management cluster at `{server}` does not serve {}\n  hint: install the providers: `{hint}`",
        missing.iter().map(|(a, k)| format!("`{a}` `{k}`")).collect::<Vec<_>>().join(", ")
    )]
    ProvidersMissing {
        /// The management cluster's URL.
        server: String,
        /// (`apiVersion`, `kind`) pairs not served.
        missing: Vec<(String, String)>,
        /// The `clusterctl init` line that installs them.
        hint: String,
    },
    /// A kubeconfig could not be read or built.
    #[error(transparent)]
    Kubeconfig(#[from] meshfleet_kube::kubeconfig::KubeconfigError),
    /// The file's versions cannot follow from what some clusters run (a skipped minor):
    /// found before anything was written. Each diagnostic names the cluster and a path.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    UpgradePath(Vec<meshfleet_spec::Diagnostic>),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}
