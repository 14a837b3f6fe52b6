//! Identity of the simulator: a self-signed CA (rcgen), the serving certificate it signs, bearer
//! tokens, and the kubeconfigs that carry them. Persisted with `--state` so a restarted simulator
//! keeps working with kubeconfigs (and workload-cluster secrets) handed out before.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use serde::{Deserialize, Serialize};

/// Errors creating or loading the identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The identity file is unreadable.
    #[error("identity file `{path}`: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The persisted identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    /// CA certificate (PEM).
    pub ca_cert_pem: String,
    /// CA private key (PEM).
    pub ca_key_pem: String,
    /// Bearer token of the management API.
    pub token: String,
    /// Bearer tokens of workload clusters, by `namespace/name`.
    #[serde(default)]
    pub workload_tokens: BTreeMap<String, String>,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshfleet-sim-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(p)
}

/// A random token of 32 hex characters.
pub fn random_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Identity {
    /// A fresh CA and token.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Self {
            ca_cert_pem: cert.pem(),
            ca_key_pem: key.serialize_pem(),
            token: random_token(),
            workload_tokens: BTreeMap::new(),
        })
    }

    /// Load from `path` or generate (and save) when absent.
    pub fn load_or_generate(path: Option<&Path>) -> Result<Self, TlsError> {
        let file_err = |p: &Path, m: String| TlsError::File {
            path: p.display().to_string(),
            message: m,
        };
        if let Some(p) = path
            && p.exists()
        {
            let bytes = std::fs::read(p).map_err(|e| file_err(p, e.to_string()))?;
            return serde_json::from_slice(&bytes).map_err(|e| file_err(p, e.to_string()));
        }
        let id = Self::generate()?;
        id.save(path)?;
        Ok(id)
    }

    /// Save to `path` (0600, atomically) when persistence is on.
    pub fn save(&self, path: Option<&Path>) -> Result<(), TlsError> {
        if let Some(p) = path {
            let bytes = serde_json::to_vec_pretty(self).map_err(|e| TlsError::File {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            crate::store::write_atomic(p, &bytes).map_err(|e| TlsError::File {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// A rustls server configuration with a certificate for `addr`, localhost and 127.0.0.1.
    pub fn server_config(&self, addr: SocketAddr) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if !addr.ip().is_unspecified() {
            sans.push(addr.ip().to_string());
        }
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "meshfleet-sim");
        params.distinguished_name = dn;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| {
                TlsError::File {
                    path: "server key".into(),
                    message: e.to_string(),
                }
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Client certificates signed by the simulator's CA authenticate too (optional: bearer
        // tokens remain the default).
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certs(&self.ca_cert_pem) {
            roots.add(der)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key_der)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Issue a client certificate (PEM certificate, PEM key) for `name`, accepted by the
    /// management API instead of the bearer token.
    pub fn issue_client_cert(&self, name: &str) -> Result<(String, String), TlsError> {
        let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&self.ca_key_pem)?);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A kubeconfig (YAML) for `server` authenticating with `token`.
    pub fn kubeconfig(&self, name: &str, server: &str, token: &str, namespace: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_cert_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}-admin\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-admin\n    namespace: {namespace}\ncurrent-context: {name}\npreferences: {{}}\n"
        )
    }
}

fn pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}
