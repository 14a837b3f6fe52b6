//! ClusterMesh edge of meshfleet: the mesh PKI, the etcd probe of clustermesh-apiservers, and
//! pure checks over the clusters about to be meshed.
//!
//! # The mesh CA
//!
//! One CA per fleet ([`pki::generate_ca`]). All clusters of a ClusterMesh must share it:
//! cilium-cli refuses to connect clusters whose CAs differ, and every clustermesh certificate
//! (server, admin, client, remote) is signed by it. Where it lives:
//!
//! - in the management cluster, as a Secret owned by the fleet (lifecycle work; never in render
//!   output, never printed, never in a plain custom resource or a log line);
//! - in every workload cluster, as the Secret [`pki::CILIUM_CA_SECRET_NAME`] (`cilium-ca`) in
//!   `kube-system`, with the keys `ca.crt` and `ca.key` ([`pki::cilium_ca_secret_data`]), which is
//!   what Cilium's chart and its certgen job read. It must exist **before Cilium starts**:
//!   otherwise the chart generates an ephemeral CA of its own and the cluster cannot join.
//!
//! On disk (`meshfleet mesh ca init`), the key is written with mode 0600 and atomically.
//!
//! # CA rotation (rollover)
//!
//! A CA is replaced without a mesh outage by trusting old and new CA together for a while.
//! [`pki::ca_bundle`] builds that trust bundle (pure; idempotent; both inputs may already be
//! bundles). The steps, for every cluster of the fleet, each step finished everywhere before
//! the next starts:
//!
//! 1. Generate the next CA, with a distinct common name (e.g. `meshfleet-mesh-ca-2`) so the two
//!    are easy to tell apart in certificates and messages. Store it next to the current one.
//! 2. Trust both: deliver `ca_bundle(current, next)` as Cilium's CA trust bundle
//!    (`tls.caBundle.enabled: true`, ConfigMap `cilium-root-ca.crt` key `ca.crt`, or a Secret with
//!    `tls.caBundle.useSecret: true`) and roll the agents and clustermesh-apiservers. Every
//!    component now accepts certificates from either CA.
//! 3. Sign with the next CA: replace `cilium-ca` (`ca.crt`, `ca.key`) with the next CA and
//!    re-issue the clustermesh certificates (server, admin, client, remote). Peers still holding
//!    old-CA certificates keep working because of step 2.
//! 4. When no certificate signed by the old CA remains (check with `meshfleet mesh probe` and the
//!    expiry checks in [`validate`]), set the trust bundle to the next CA alone and roll again.
//!    Then retire the old CA from the management cluster.
//!
//! # Transport of the probe: etcd gRPC, not the JSON gateway
//!
//! A clustermesh-apiserver is an etcd with `--client-cert-auth` **and etcd authentication
//! enabled**: Cilium's `etcdinit` creates password-less users (`remote`, `admin-<cluster>`…) and
//! etcd maps the client certificate's common name to the user. etcd's JSON gRPC gateway
//! (`POST /v3/kv/range`, served under `/v3/` since etcd 3.4) does not carry the caller's
//! certificate identity: the gateway dials etcd with the server's own certificate and etcd
//! explicitly ignores the common name on gateway requests. Against a real clustermesh-apiserver
//! the gateway read would therefore be unauthenticated and refused. So the probe speaks etcd's
//! gRPC API: [`etcd`] declares the handful of protobuf messages it needs with `prost` (no
//! `protoc` at build time) and calls `etcdserverpb.KV/Range` through `tonic`'s plain HTTP/2
//! channel over a TLS stream dialled by hand with rustls (ring provider), so each failure —
//! unreachable, untrusted server, refused client certificate — is named precisely. This is
//! heavier to compile than a hyper-based JSON client, but it is the transport that works.
//!
//! # Checks before connecting
//!
//! [`validate::check_mesh`] reports, without I/O, the mistakes Cilium users hit most: name or ID
//! collisions, IDs out of range for `maxConnectedClusters`, members disagreeing on
//! `maxConnectedClusters`, CA mismatch, and certificates expired or expiring soon.

#![warn(missing_docs)]

pub mod etcd;
pub mod pki;
pub mod probe;
pub mod testing;
pub mod validate;

pub use etcd::{Endpoint, EtcdClient, EtcdError, TlsMaterial};
pub use pki::{CaMaterial, CertInfo, CertKind, CertRequest, IssuedCert, PkiError};
pub use probe::{ProbeError, ProbeOptions, ProbeReport, probe, probe_blocking};
/// The time crate, re-exported so callers pass `now` with the same type.
pub use time;
pub use validate::{EXPIRY_WARNING, MeshMember, MeshProblem, Severity, check_mesh};
