//! meshfleet's Kubernetes client: the edge between the pure core and a management cluster.
//!
//! The lifecycle engine needs a handful of verbs on objects it only knows as JSON (the renderer's
//! output): find out whether their kinds are served ([`Kube::missing_kinds`]), server-side apply
//! them under one field manager without ever forcing a conflict ([`Kube::apply`]), read them back,
//! wait for them ([`Kube::wait`]), list them by label, delete them, and read Secrets. Every call is retried with backoff on the
//! failures a busy or flaky API server produces (429, 5xx, timeouts, refused connections), so
//! the callers can be written as straight-line convergence code.
//!
//! [`status`] and [`kubeconfig`] are pure helpers: reading conditions out of objects, and merging
//! kubeconfig files without clobbering contexts that are not ours.

#![warn(missing_docs)]

mod client;
pub mod kubeconfig;
mod retry;
pub mod status;

pub use client::{FIELD_MANAGER, Kube, ObjectRef};
pub use retry::Retry;

/// Why a call to a Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be read or used.
    #[error("cannot use kubeconfig {source_desc}: {message}")]
    Kubeconfig {
        /// Where it came from (a path in backticks, or a description).
        source_desc: String,
        /// What went wrong.
        message: String,
    },
    /// An object handed to the client lacks what every object needs.
    #[error("object is not a Kubernetes object: {message}")]
    Malformed {
        /// What is missing.
        message: String,
    },
    /// The API server does not serve this kind at this version.
    #[error("`{api_version}` `{kind}` is not served by the cluster")]
    NotServed {
        /// apiVersion.
        api_version: String,
        /// kind.
        kind: String,
    },
    /// Server-side apply found fields owned by another manager; meshfleet never forces.
    #[error(
        "{object}: server-side apply conflict: {message}\n  hint: another field manager owns these fields; remove them from that manager, or delete the object, then re-run"
    )]
    Conflict {
        /// The object, as `Kind namespace/name`.
        object: String,
        /// The API server's message naming the fields and managers.
        message: String,
    },
    /// The API server refused the request.
    #[error("{verb} {object}: {code} {reason}: {message}")]
    Api {
        /// What was being done.
        verb: &'static str,
        /// The object.
        object: String,
        /// HTTP status code.
        code: u16,
        /// Machine-readable reason.
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached (after every retry).
    #[error("{verb} {object}: {message}")]
    Transport {
        /// What was being done.
        verb: &'static str,
        /// The object.
        object: String,
        /// The transport error.
        message: String,
    },
}

impl KubeError {
    /// True for errors that retrying later may fix (the API server was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Transport { .. } => true,
            KubeError::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}
