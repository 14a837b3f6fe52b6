//! The mesh certificate authority and the certificates it signs.
//!
//! Everything here is pure: the caller passes the current time, nothing touches the file system,
//! the network or the clock. Keys are ECDSA P-256 (what Cilium's own certgen uses and what etcd's
//! Go TLS stack accepts for both serving and client certificates).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// Name of the Secret that carries the mesh CA into every workload cluster.
pub const CILIUM_CA_SECRET_NAME: &str = "cilium-ca";
/// Namespace of [`CILIUM_CA_SECRET_NAME`] (where Cilium's chart looks for it).
pub const CILIUM_CA_SECRET_NAMESPACE: &str = "kube-system";
/// Key of the CA certificate (PEM) in the `cilium-ca` Secret.
pub const CILIUM_CA_CERT_KEY: &str = "ca.crt";
/// Key of the CA private key (PEM) in the `cilium-ca` Secret.
pub const CILIUM_CA_KEY_KEY: &str = "ca.key";

/// Default common name of a fleet's mesh CA.
pub const DEFAULT_CA_NAME: &str = "meshfleet-mesh-ca";
/// Default lifetime of a mesh CA, in days (ten years: rotation is a planned event, not a chore).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default lifetime of an issued certificate, in days (Cilium's chart default is 1095).
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// Issued certificates start this long before "now" so a peer whose clock runs slightly behind
/// still accepts them.
const BACKDATE: Duration = Duration::minutes(5);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The text holds no PEM certificate.
    #[error("no PEM certificate found in {what}")]
    NoCertificate {
        /// Which input (e.g. "the CA certificate").
        what: String,
    },
    /// A PEM block could not be parsed as an X.509 certificate.
    #[error("{what} is not a valid X.509 certificate: {detail}")]
    BadCertificate {
        /// Which input.
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// The key could not be parsed.
    #[error(
        "{what} is not a valid PEM private key (PKCS#8 ECDSA P-256 or P-384 expected): {detail}"
    )]
    BadKey {
        /// Which input.
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// The CA certificate is not a CA.
    #[error("certificate `{subject}` is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa {
        /// Its subject.
        subject: String,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate `{subject}`")]
    KeyMismatch {
        /// The CA's subject.
        subject: String,
    },
    /// A request field is unusable.
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
    /// rcgen refused to build or sign the certificate.
    #[error("cannot build the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A CA certificate and its private key, both PEM. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// The CA certificate (PEM).
    pub cert_pem: String,
    /// The CA private key (PKCS#8 PEM). Secret: never print, log or render it.
    pub key_pem: String,
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A leaf certificate and its private key, both PEM. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM). Secret: never print, log or render it.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A client certificate: extended key usage clientAuth.
    Client,
    /// A serving certificate: serverAuth and clientAuth, because etcd's gRPC gateway dials its
    /// own client port presenting its serving certificate.
    Server,
}

/// A request for a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The subject common name (for etcd with client-certificate auth this is the user name).
    pub common_name: String,
    /// Client or server.
    pub kind: CertKind,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Lifetime in days from `now` (at least 1).
    pub days: u32,
}

/// What meshfleet needs to know about a certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, as text.
    pub subject: String,
    /// Issuer distinguished name, as text.
    pub issuer: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says CA:TRUE.
    pub is_ca: bool,
    /// SHA-256 of the DER certificate, lower-case hex with colons (`ab:cd:…`).
    pub fingerprint_sha256: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Extended key usage contains serverAuth.
    pub server_auth: bool,
    /// Extended key usage contains clientAuth.
    pub client_auth: bool,
}

/// Where `now` falls relative to a certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// `not_before <= now <= not_after`.
    Valid,
    /// `now < not_before`.
    NotYetValid,
    /// `now > not_after`.
    Expired,
}

impl CertInfo {
    /// Where `now` falls in this certificate's validity window.
    pub fn validity_at(&self, now: OffsetDateTime) -> Validity {
        if now < self.not_before {
            Validity::NotYetValid
        } else if now > self.not_after {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }
}

/// Generate a new mesh CA valid from shortly before `now` for `days` days.
pub fn generate_ca(
    common_name: &str,
    days: u32,
    now: OffsetDateTime,
) -> Result<CaMaterial, PkiError> {
    check_name(common_name)?;
    check_days(days)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    let cert = params.self_signed(&key)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Sign a leaf certificate with the CA, valid from shortly before `now` for `req.days` days.
///
/// The CA is checked first: it must parse, be a CA, and its key must match its certificate, so
/// a mixed-up `ca.key` fails here instead of producing certificates no peer will accept.
pub fn issue(
    ca: &CaMaterial,
    req: &CertRequest,
    now: OffsetDateTime,
) -> Result<IssuedCert, PkiError> {
    check_name(&req.common_name)?;
    check_days(req.days)?;
    let ca_key = parse_key(&ca.key_pem, "the CA private key")?;
    let ca_info = check_ca_pair(&ca.cert_pem, &ca_key)?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| PkiError::BadCertificate {
            what: "the CA certificate".into(),
            detail: e.to_string(),
        })?;

    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&req.common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.kind {
        CertKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        CertKind::Server => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let mut sans = Vec::new();
    for name in &req.dns_names {
        let ia5 = name.clone().try_into().map_err(|_| {
            PkiError::InvalidRequest(format!("DNS name `{name}` is not an ASCII host name"))
        })?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(req.ips.iter().copied().map(SanType::IpAddress));
    if req.kind == CertKind::Server && sans.is_empty() {
        return Err(PkiError::InvalidRequest(
            "a server certificate needs at least one DNS name or IP address (clients verify the name they dial)".into(),
        ));
    }
    params.subject_alt_names = sans;
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(req.days));
    // A leaf never outlives its CA: peers would reject the chain once the CA expires anyway.
    if params.not_after > ca_info.not_after {
        params.not_after = ca_info.not_after;
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Check that `cert_pem` is a CA certificate and that `key_pem` is its private key.
pub fn verify_ca(ca: &CaMaterial) -> Result<CertInfo, PkiError> {
    let key = parse_key(&ca.key_pem, "the CA private key")?;
    check_ca_pair(&ca.cert_pem, &key)
}

/// Read the first certificate of a PEM text.
pub fn inspect_pem(pem: &str, what: &str) -> Result<CertInfo, PkiError> {
    let ders = pem_certificates(pem, what)?;
    inspect_der(&ders[0], what)
}

/// Every certificate of a PEM text, in order (at least one).
pub fn pem_certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        out.push(item.map_err(|e| PkiError::BadCertificate {
            what: what.to_owned(),
            detail: e.to_string(),
        })?);
    }
    if out.is_empty() {
        return Err(PkiError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(out)
}

/// Read what meshfleet needs from a DER certificate.
pub fn inspect_der(der: &[u8], what: &str) -> Result<CertInfo, PkiError> {
    let bad = |detail: String| PkiError::BadCertificate {
        what: what.to_owned(),
        detail,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let (mut server_auth, mut client_auth) = (false, false);
    if let Some(eku) = cert.extended_key_usage().map_err(|e| bad(e.to_string()))? {
        server_auth = eku.value.server_auth;
        client_auth = eku.value.client_auth;
    }
    let (mut dns_names, mut ips) = (Vec::new(), Vec::new());
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
        fingerprint_sha256: fingerprint_sha256(der),
        dns_names,
        ips,
        server_auth,
        client_auth,
    })
}

/// A time as RFC 3339 (`2026-11-24T19:08:40Z`), for messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// SHA-256 of DER bytes as lower-case hex pairs joined by colons.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Build the trust bundle for a CA rollover: every CA certificate of `current` followed by
/// every one of `next` that is not already there (compared by fingerprint), as one PEM text.
///
/// Both inputs may themselves be bundles, so a rollover that starts while another is still
/// finishing keeps every CA that may have signed a live certificate. Every block must be a CA
/// certificate; anything else is refused so a leaf cannot slip into a trust store.
pub fn ca_bundle(current: &str, next: &str) -> Result<String, PkiError> {
    let mut seen = Vec::new();
    let mut out = String::new();
    for (text, what) in [
        (current, "the current CA bundle"),
        (next, "the next CA bundle"),
    ] {
        for der in pem_certificates(text, what)? {
            let info = inspect_der(&der, what)?;
            if !info.is_ca {
                return Err(PkiError::NotACa {
                    subject: info.subject,
                });
            }
            if seen.contains(&info.fingerprint_sha256) {
                continue;
            }
            seen.push(info.fingerprint_sha256);
            out.push_str(&pem_encode_cert(&der));
        }
    }
    Ok(out)
}

/// The `data` of the `cilium-ca` Secret (before base64): `ca.crt` and `ca.key`, as Cilium's chart
/// and certgen expect. The map holds the private key: hand it to a Secret, never to a renderer.
pub fn cilium_ca_secret_data(ca: &CaMaterial) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CILIUM_CA_CERT_KEY.to_owned(), ca.cert_pem.clone()),
        (CILIUM_CA_KEY_KEY.to_owned(), ca.key_pem.clone()),
    ])
}

fn pem_encode_cert(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so each chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::BadKey {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn check_ca_pair(cert_pem: &str, key: &KeyPair) -> Result<CertInfo, PkiError> {
    let ders = pem_certificates(cert_pem, "the CA certificate")?;
    let der = &ders[0];
    let info = inspect_der(der, "the CA certificate")?;
    if !info.is_ca {
        return Err(PkiError::NotACa {
            subject: info.subject,
        });
    }
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadCertificate {
            what: "the CA certificate".into(),
            detail: e.to_string(),
        })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::KeyMismatch {
            subject: info.subject,
        });
    }
    Ok(info)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "meshfleet");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn check_name(name: &str) -> Result<(), PkiError> {
    if name.trim().is_empty() {
        return Err(PkiError::InvalidRequest("the common name is empty".into()));
    }
    if name.len() > 64 {
        return Err(PkiError::InvalidRequest(format!(
            "common name `{name}` is longer than 64 characters (the X.509 limit)"
        )));
    }
    Ok(())
}

fn check_days(days: u32) -> Result<(), PkiError> {
    if days == 0 {
        return Err(PkiError::InvalidRequest(
            "the lifetime must be at least 1 day".into(),
        ));
    }
    if days > 36_500 {
        return Err(PkiError::InvalidRequest(format!(
            "a lifetime of {days} days is beyond 100 years; pick a shorter one"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn client(cn: &str) -> CertRequest {
        CertRequest {
            common_name: cn.into(),
            kind: CertKind::Client,
            dns_names: vec![],
            ips: vec![],
            days: 30,
        }
    }

    #[test]
    fn ca_is_a_ca_and_its_key_matches() {
        let ca = generate_ca("test-ca", 10, now()).unwrap();
        let info = verify_ca(&ca).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.common_name.as_deref(), Some("test-ca"));
        assert_eq!(info.not_after, now() + Duration::days(10));
        assert_eq!(info.validity_at(now()), Validity::Valid);
        assert!(ca.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn debug_never_shows_keys() {
        let ca = generate_ca("test-ca", 10, now()).unwrap();
        let text = format!("{ca:?}");
        assert!(!text.contains("PRIVATE KEY"));
        let leaf = issue(&ca, &client("c"), now()).unwrap();
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn server_cert_has_both_usages_and_sans() {
        let ca = generate_ca("test-ca", 10, now()).unwrap();
        let req = CertRequest {
            common_name: "clustermesh-apiserver".into(),
            kind: CertKind::Server,
            dns_names: vec!["localhost".into(), "*.mesh.cilium.io".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            days: 5,
        };
        let leaf = issue(&ca, &req, now()).unwrap();
        let info = inspect_pem(&leaf.cert_pem, "leaf").unwrap();
        assert!(info.server_auth && info.client_auth);
        assert!(!info.is_ca);
        assert_eq!(info.dns_names, req.dns_names);
        assert_eq!(info.ips, req.ips);
        assert_eq!(info.issuer, verify_ca(&ca).unwrap().subject);
    }

    #[test]
    fn client_cert_is_client_only() {
        let ca = generate_ca("test-ca", 10, now()).unwrap();
        let info = inspect_pem(
            &issue(&ca, &client("remote"), now()).unwrap().cert_pem,
            "leaf",
        )
        .unwrap();
        assert!(info.client_auth);
        assert!(!info.server_auth);
        assert_eq!(info.common_name.as_deref(), Some("remote"));
    }

    #[test]
    fn leaf_never_outlives_ca() {
        let ca = generate_ca("test-ca", 2, now()).unwrap();
        let info = inspect_pem(&issue(&ca, &client("c"), now()).unwrap().cert_pem, "leaf").unwrap();
        assert_eq!(info.not_after, now() + Duration::days(2));
    }

    #[test]
    fn expired_when_issued_in_the_past() {
        let ca = generate_ca("test-ca", 100, now() - Duration::days(50)).unwrap();
        let mut req = client("old");
        req.days = 1;
        let info = inspect_pem(
            &issue(&ca, &req, now() - Duration::days(10))
                .unwrap()
                .cert_pem,
            "leaf",
        )
        .unwrap();
        assert_eq!(info.validity_at(now()), Validity::Expired);
        assert_eq!(
            info.validity_at(now() - Duration::days(20)),
            Validity::NotYetValid
        );
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = generate_ca("a", 10, now()).unwrap();
        let b = generate_ca("b", 10, now()).unwrap();
        let mixed = CaMaterial {
            cert_pem: a.cert_pem.clone(),
            key_pem: b.key_pem.clone(),
        };
        assert!(matches!(
            verify_ca(&mixed),
            Err(PkiError::KeyMismatch { .. })
        ));
        assert!(matches!(
            issue(&mixed, &client("c"), now()),
            Err(PkiError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn leaf_is_not_a_ca() {
        let ca = generate_ca("a", 10, now()).unwrap();
        let leaf = issue(&ca, &client("c"), now()).unwrap();
        let fake = CaMaterial {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        };
        assert!(matches!(
            issue(&fake, &client("d"), now()),
            Err(PkiError::NotACa { .. })
        ));
    }

    #[test]
    fn server_needs_a_name_and_bad_input_is_refused() {
        let ca = generate_ca("a", 10, now()).unwrap();
        let mut req = client("s");
        req.kind = CertKind::Server;
        assert!(matches!(
            issue(&ca, &req, now()),
            Err(PkiError::InvalidRequest(_))
        ));
        req.dns_names = vec!["bücher.example".into()];
        assert!(matches!(
            issue(&ca, &req, now()),
            Err(PkiError::InvalidRequest(_))
        ));
        assert!(matches!(
            generate_ca("", 10, now()),
            Err(PkiError::InvalidRequest(_))
        ));
        assert!(matches!(
            generate_ca("x", 0, now()),
            Err(PkiError::InvalidRequest(_))
        ));
        assert!(matches!(
            inspect_pem("not pem", "input"),
            Err(PkiError::NoCertificate { .. })
        ));
    }

    #[test]
    fn bundle_keeps_both_cas_once_and_refuses_leaves() {
        let old = generate_ca("old", 10, now()).unwrap();
        let new = generate_ca("new", 10, now()).unwrap();
        let bundle = ca_bundle(&old.cert_pem, &new.cert_pem).unwrap();
        let certs = pem_certificates(&bundle, "bundle").unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            inspect_der(&certs[0], "b").unwrap().common_name.as_deref(),
            Some("old")
        );
        assert_eq!(
            inspect_der(&certs[1], "b").unwrap().common_name.as_deref(),
            Some("new")
        );
        // Idempotent: bundling the bundle with the new CA again changes nothing.
        assert_eq!(ca_bundle(&bundle, &new.cert_pem).unwrap(), bundle);
        // The re-encoded PEM is byte-identical to rcgen's own encoding.
        assert_eq!(
            ca_bundle(&old.cert_pem, &old.cert_pem).unwrap(),
            old.cert_pem
        );
        let leaf = issue(&new, &client("c"), now()).unwrap();
        assert!(matches!(
            ca_bundle(&old.cert_pem, &leaf.cert_pem),
            Err(PkiError::NotACa { .. })
        ));
    }

    #[test]
    fn secret_data_has_cilium_keys() {
        let ca = generate_ca("a", 10, now()).unwrap();
        let data = cilium_ca_secret_data(&ca);
        assert_eq!(data.keys().collect::<Vec<_>>(), ["ca.crt", "ca.key"]);
        assert_eq!(data["ca.crt"], ca.cert_pem);
    }
}
