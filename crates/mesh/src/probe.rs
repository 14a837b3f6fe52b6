//! The probe: dial a clustermesh-apiserver as a remote cluster's agent would, read the cluster's
//! configuration key, and report what happened as data.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::etcd::{Endpoint, EtcdClient, EtcdError, TlsMaterial};
use crate::pki::{self, Validity};

/// The key under which a clustermesh-apiserver publishes its cluster's configuration.
pub fn cluster_config_key(cluster: &str) -> String {
    format!("cilium/cluster-config/{cluster}")
}

/// The value Cilium stores at [`cluster_config_key`] (Cilium's `CiliumClusterConfig`), e.g.
/// `{"id": 5, "capabilities": {"syncedCanaries": true, "maxConnectedClusters": 255}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumClusterConfig {
    /// The cluster ID.
    pub id: u32,
    /// What the cluster supports; absent in configurations written by old Cilium versions.
    #[serde(default)]
    pub capabilities: Option<ClusterCapabilities>,
}

/// `CiliumClusterConfig.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCapabilities {
    /// The cluster writes sync canaries.
    #[serde(default)]
    pub synced_canaries: bool,
    /// The cluster's `maxConnectedClusters` (0 when not written: Cilium then assumes 255).
    #[serde(default)]
    pub max_connected_clusters: u32,
    /// MCS-API service exports are enabled.
    #[serde(default)]
    pub service_exports_enabled: Option<bool>,
}

/// Parse the stored cluster configuration.
pub fn parse_cluster_config(bytes: &[u8]) -> Result<CiliumClusterConfig, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The clustermesh-apiserver, `https://host:port`.
    pub endpoint: String,
    /// The Cilium cluster name whose configuration key is read.
    pub cluster: String,
    /// CA, client certificate and key.
    pub tls: TlsMaterial,
    /// Bound on each step (connect, handshake, read).
    pub timeout: Duration,
}

/// The result of one probe, as printed by `meshfleet mesh probe -o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// The cluster name probed.
    pub cluster: String,
    /// A TLS session was established and etcd answered a request.
    pub connected: bool,
    /// The cluster ID read from the cluster configuration, when it was read.
    pub cluster_id: Option<u32>,
    /// Milliseconds from dialling to the answer of the read (handshakes included), when
    /// connected.
    pub latency_ms: Option<u64>,
    /// What went wrong, if anything; `None` means the probe succeeded.
    pub error: Option<String>,
}

impl ProbeReport {
    /// The probe found nothing wrong.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a probe failed (the text of [`ProbeReport::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The client certificate is past its validity window; nothing was dialled.
    #[error(
        "the client certificate `{subject}` expired at `{}`; nothing was dialled\n  hint: issue a new one with `meshfleet mesh ca issue`",
        pki::rfc3339(*not_after)
    )]
    ClientCertExpired {
        /// Its subject.
        subject: String,
        /// When it expired.
        not_after: OffsetDateTime,
    },
    /// The client certificate is not valid yet; nothing was dialled.
    #[error(
        "the client certificate `{subject}` is not valid before `{}`; nothing was dialled\n  hint: check this machine's clock",
        pki::rfc3339(*not_before)
    )]
    ClientCertNotYetValid {
        /// Its subject.
        subject: String,
        /// When it becomes valid.
        not_before: OffsetDateTime,
    },
    /// The certificate or key files do not make a usable identity.
    #[error("{0}")]
    BadInput(String),
    /// Talking to etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The server answered but holds no configuration for the cluster.
    #[error(
        "connected, but key `{key}` does not exist\n  hint: is `{cluster}` the Cilium cluster name of that clustermesh-apiserver, and has it finished starting?"
    )]
    KeyNotFound {
        /// The key read.
        key: String,
        /// The cluster name.
        cluster: String,
    },
    /// The stored configuration is not what Cilium writes.
    #[error("key `{key}` does not hold a Cilium cluster configuration: {detail}")]
    BadClusterConfig {
        /// The key read.
        key: String,
        /// The parser's complaint.
        detail: String,
    },
}

/// Check the client certificate's own validity window at `now`, and compare its issuer with the
/// CA file, before any dialling: an expired certificate is then reported as expired rather than
/// as whatever alert the server chooses to send.
///
/// Returns a hint to attach to a later refusal (empty when the issuer matches the CA file).
pub fn precheck(tls: &TlsMaterial, now: OffsetDateTime) -> Result<String, ProbeError> {
    let cert = pki::inspect_pem(&tls.cert_pem, "the client certificate")
        .map_err(|e| ProbeError::BadInput(e.to_string()))?;
    match cert.validity_at(now) {
        Validity::Valid => {}
        Validity::Expired => {
            return Err(ProbeError::ClientCertExpired {
                subject: cert.subject,
                not_after: cert.not_after,
            });
        }
        Validity::NotYetValid => {
            return Err(ProbeError::ClientCertNotYetValid {
                subject: cert.subject,
                not_before: cert.not_before,
            });
        }
    }
    let cas = pki::pem_certificates(&tls.ca_pem, "the CA file")
        .map_err(|e| ProbeError::BadInput(e.to_string()))?;
    let mut subjects = Vec::new();
    for der in &cas {
        let info = pki::inspect_der(der, "the CA file")
            .map_err(|e| ProbeError::BadInput(e.to_string()))?;
        subjects.push(info.subject);
    }
    if subjects.contains(&cert.issuer) {
        Ok(String::new())
    } else {
        Ok(format!(
            "\n  hint: the client certificate was issued by `{}`, but the CA file holds `{}`; issue the client certificate from the mesh CA",
            cert.issuer,
            subjects.join("`, `")
        ))
    }
}

/// Probe one clustermesh-apiserver. Never fails: every outcome is a report.
pub async fn probe(opts: &ProbeOptions, now: OffsetDateTime) -> ProbeReport {
    let mut report = ProbeReport {
        cluster: opts.cluster.clone(),
        connected: false,
        cluster_id: None,
        latency_ms: None,
        error: None,
    };
    let key = cluster_config_key(&opts.cluster);
    let start = Instant::now();
    let outcome = async {
        let hint = precheck(&opts.tls, now)?;
        let endpoint = Endpoint::parse(&opts.endpoint)?;
        let mut client = EtcdClient::connect(&endpoint, &opts.tls, opts.timeout, hint).await?;
        let value = client.get(key.as_bytes()).await?;
        Ok::<_, ProbeError>(value)
    }
    .await;
    match outcome {
        Ok(value) => {
            report.connected = true;
            report.latency_ms =
                Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
            match value {
                None => {
                    report.error = Some(
                        ProbeError::KeyNotFound {
                            key,
                            cluster: opts.cluster.clone(),
                        }
                        .to_string(),
                    )
                }
                Some(bytes) => match parse_cluster_config(&bytes) {
                    Ok(cfg) => report.cluster_id = Some(cfg.id),
                    Err(detail) => {
                        report.error =
                            Some(ProbeError::BadClusterConfig { key, detail }.to_string())
                    }
                },
            }
        }
        Err(e) => {
            // An RPC error means the TLS session was up and etcd itself answered.
            report.connected = matches!(e, ProbeError::Etcd(EtcdError::Rpc { .. }));
            report.error = Some(e.to_string());
        }
    }
    report
}

/// [`probe`] on a private single-threaded runtime, for callers without one.
pub fn probe_blocking(opts: &ProbeOptions, now: OffsetDateTime) -> std::io::Result<ProbeReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(probe(opts, now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertRequest, generate_ca, issue};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn parses_cilium_cluster_config() {
        let cfg = parse_cluster_config(
            br#"{"id": 5, "capabilities": {"syncedCanaries": true, "maxConnectedClusters": 255, "serviceExportsEnabled": false}}"#,
        )
        .unwrap();
        assert_eq!(cfg.id, 5);
        let caps = cfg.capabilities.unwrap();
        assert!(caps.synced_canaries);
        assert_eq!(caps.max_connected_clusters, 255);
        assert_eq!(caps.service_exports_enabled, Some(false));
        assert_eq!(parse_cluster_config(br#"{"id":7}"#).unwrap().id, 7);
        assert!(parse_cluster_config(b"not json").is_err());
        assert!(parse_cluster_config(br#"{"capabilities":{}}"#).is_err());
    }

    #[test]
    fn report_json_has_every_field() {
        let r = ProbeReport {
            cluster: "a".into(),
            connected: false,
            cluster_id: None,
            latency_ms: None,
            error: Some("x".into()),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"cluster": "a", "connected": false, "clusterId": null, "latencyMs": null, "error": "x"})
        );
    }

    fn material(
        ca: &pki::CaMaterial,
        client_ca: &pki::CaMaterial,
        at: OffsetDateTime,
        days: u32,
    ) -> TlsMaterial {
        let leaf = issue(
            client_ca,
            &CertRequest {
                common_name: "remote".into(),
                kind: CertKind::Client,
                dns_names: vec![],
                ips: vec![],
                days,
            },
            at,
        )
        .unwrap();
        TlsMaterial {
            ca_pem: ca.cert_pem.clone(),
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        }
    }

    #[test]
    fn precheck_names_expiry_and_foreign_issuers() {
        let ca = generate_ca("mesh", 100, now() - time::Duration::days(50)).unwrap();
        let other = generate_ca("other", 100, now() - time::Duration::days(50)).unwrap();
        assert_eq!(precheck(&material(&ca, &ca, now(), 5), now()).unwrap(), "");
        let expired = material(&ca, &ca, now() - time::Duration::days(10), 1);
        assert!(matches!(
            precheck(&expired, now()),
            Err(ProbeError::ClientCertExpired { .. })
        ));
        let future = material(&ca, &ca, now() + time::Duration::days(10), 1);
        assert!(matches!(
            precheck(&future, now()),
            Err(ProbeError::ClientCertNotYetValid { .. })
        ));
        let foreign = precheck(&material(&ca, &other, now(), 5), now()).unwrap();
        assert!(foreign.contains("CN=other"), "{foreign}");
    }

    #[test]
    fn unreachable_endpoint_is_reported_not_connected() {
        let ca = generate_ca("mesh", 100, now()).unwrap();
        // Bind then drop to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ProbeOptions {
            endpoint: format!("https://127.0.0.1:{port}"),
            cluster: "c1".into(),
            tls: material(&ca, &ca, OffsetDateTime::now_utc(), 5),
            timeout: Duration::from_secs(3),
        };
        let r = probe_blocking(&opts, OffsetDateTime::now_utc()).unwrap();
        assert!(!r.connected);
        assert_eq!(r.cluster_id, None);
        let err = r.error.unwrap();
        assert!(err.contains("cannot reach"), "{err}");
    }

    #[test]
    fn a_silent_endpoint_times_out_in_the_handshake() {
        let ca = generate_ca("mesh", 100, now()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept and say nothing, holding the socket open past the probe's limit.
        let holder = std::thread::spawn(move || {
            let conn = listener.accept();
            std::thread::sleep(Duration::from_millis(1500));
            drop(conn);
        });
        let opts = ProbeOptions {
            endpoint: format!("https://127.0.0.1:{port}"),
            cluster: "c1".into(),
            tls: material(&ca, &ca, OffsetDateTime::now_utc(), 5),
            timeout: Duration::from_millis(400),
        };
        let started = std::time::Instant::now();
        let r = probe_blocking(&opts, OffsetDateTime::now_utc()).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "bounded by the timeout"
        );
        assert!(!r.connected);
        let err = r.error.unwrap();
        assert!(
            err.contains("no answer") && err.contains("TLS handshake"),
            "{err}"
        );
        holder.join().unwrap();
    }
}
