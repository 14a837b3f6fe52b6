//! The fleet's secrets: generated once, kept in the management cluster, delivered to every
//! workload cluster before Cilium starts. Their values are never printed or logged.

use std::collections::BTreeMap;

use meshfleet_kube::ObjectRef;
use serde_json::Value;

use crate::api::Api;
use crate::up::UpOptions;
use crate::{Error, objects};

/// Ensure a fleet-wide secret exists in the management cluster (created once, from
/// `generate`; a racing run reads the winner's) and return its data. Never printed.
pub async fn ensure_fleet_secret<A: Api>(
    mgmt: &A,
    opts: &UpOptions,
    name: &str,
    keys: &[&str],
    generate: impl FnOnce() -> Result<BTreeMap<String, String>, Error>,
) -> Result<BTreeMap<String, String>, Error> {
    let r = ObjectRef::new("v1", "Secret", Some(&opts.fleet), name);
    let read = |v: &Value| -> Result<BTreeMap<String, String>, Error> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = BTreeMap::new();
        for key in keys {
            let s = v
                .pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1")))
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Other(format!("Secret `{}/{name}` has no `{key}`\n  hint: delete it to have it generated again (every cluster then receives the new one)", opts.fleet)))?;
            let bytes = base64::Engine::decode(&b64, s).map_err(|_| {
                Error::Other(format!(
                    "Secret `{}/{name}` key `{key}` is not base64",
                    opts.fleet
                ))
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::Other(format!(
                    "Secret `{}/{name}` key `{key}` is not text",
                    opts.fleet
                ))
            })?;
            out.insert(key.to_string(), text);
        }
        Ok(out)
    };
    if let Some(v) = mgmt.get(&r).await? {
        return read(&v);
    }
    let data = generate()?;
    let (stored, _created) = mgmt
        .create_if_absent(&objects::secret(&opts.fleet, name, &opts.labels, &data))
        .await?;
    read(&stored)
}

/// The Secrets every workload cluster needs in `kube-system` before Cilium starts: the mesh CA
/// (`cilium-ca`, one per fleet: clusters with different CAs cannot mesh) and, with IPsec, the
/// shared keys (`cilium-ipsec-keys`). Each is generated once and kept in the management cluster.
pub async fn workload_secrets<A: Api>(
    mgmt: &A,
    opts: &UpOptions,
    ipsec: bool,
) -> Result<Vec<(String, BTreeMap<String, String>)>, Error> {
    use meshfleet_mesh::pki;
    let mut out = Vec::new();
    let ca = ensure_fleet_secret(
        mgmt,
        opts,
        &objects::mesh_ca_secret(&opts.fleet),
        &[pki::CILIUM_CA_CERT_KEY, pki::CILIUM_CA_KEY_KEY],
        || {
            let ca = pki::generate_ca(
                pki::DEFAULT_CA_NAME,
                pki::DEFAULT_CA_DAYS,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| Error::Other(format!("cannot generate the mesh CA: {e}")))?;
            Ok(pki::cilium_ca_secret_data(&ca))
        },
    )
    .await?;
    out.push((pki::CILIUM_CA_SECRET_NAME.to_string(), ca));
    if ipsec {
        let keys = ensure_fleet_secret(
            mgmt,
            opts,
            &objects::ipsec_keys_secret(&opts.fleet),
            &["keys"],
            || Ok(BTreeMap::from([("keys".to_string(), ipsec_keys()?)])),
        )
        .await?;
        out.push((meshfleet_render::IPSEC_SECRET_NAME.to_string(), keys));
    }
    Ok(out)
}

/// Cilium's IPsec key line: key ID 3, per-tunnel keys (`+`), AES-GCM with a random 20-byte key
/// (16 bytes of key, 4 of salt) and a 128-bit ICV.
fn ipsec_keys() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 20];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| Error::Other("the system random source failed".into()))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("3+ rfc4106(gcm(aes)) {hex} 128"))
}
