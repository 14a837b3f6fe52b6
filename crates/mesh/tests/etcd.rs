//! The probe against a real etcd with mutual TLS and `--client-cert-auth`, everything issued by
//! meshfleet's own PKI. Skips loudly when `etcd` is not installed, unless
//! `MESHFLEET_REQUIRE_ETCD=1`.

use std::time::Duration;

use meshfleet_mesh::pki::{self, CaMaterial, CertKind, CertRequest};
use meshfleet_mesh::testing::{TestEtcd, etcd_required};
use meshfleet_mesh::{ProbeOptions, TlsMaterial, probe_blocking};
use time::OffsetDateTime;

fn start(ca: &CaMaterial) -> Option<TestEtcd> {
    match TestEtcd::start(ca) {
        Ok(Some(etcd)) => Some(etcd),
        Ok(None) => {
            if etcd_required() {
                panic!(
                    "MESHFLEET_REQUIRE_ETCD=1 but no `etcd` binary is on PATH (Debian package `etcd-server`)"
                );
            }
            eprintln!(
                "\n*** SKIP: `etcd` is not installed; the etcd probe tests did not run (apt-get install etcd-server) ***\n"
            );
            None
        }
        Err(e) => panic!("cannot start etcd: {e}"),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn client(ca: &CaMaterial, at: OffsetDateTime, days: u32) -> pki::IssuedCert {
    pki::issue(
        ca,
        &CertRequest {
            common_name: "remote".into(),
            kind: CertKind::Client,
            dns_names: vec![],
            ips: vec![],
            days,
        },
        at,
    )
    .unwrap()
}

fn opts(etcd: &TestEtcd, ca_pem: &str, leaf: &pki::IssuedCert, cluster: &str) -> ProbeOptions {
    ProbeOptions {
        endpoint: etcd.endpoint.clone(),
        cluster: cluster.into(),
        tls: TlsMaterial {
            ca_pem: ca_pem.to_owned(),
            cert_pem: leaf.cert_pem.clone(),
            key_pem: leaf.key_pem.clone(),
        },
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn probe_reads_the_cluster_id() {
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    etcd.put(
        "cilium/cluster-config/gcp-eu",
        br#"{"id":7,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}"#,
    )
    .unwrap();
    let leaf = client(&ca, now(), 5);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &leaf, "gcp-eu"), now()).unwrap();
    assert_eq!(r.error, None, "etcd log:\n{}", etcd.log_tail());
    assert!(r.connected);
    assert_eq!(r.cluster_id, Some(7));
    assert!(r.latency_ms.is_some());
}

#[test]
fn missing_key_is_connected_but_not_found() {
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    let leaf = client(&ca, now(), 5);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &leaf, "nobody"), now()).unwrap();
    assert!(r.connected, "{r:?}");
    assert_eq!(r.cluster_id, None);
    let err = r.error.unwrap();
    assert!(
        err.contains("`cilium/cluster-config/nobody` does not exist"),
        "{err}"
    );
}

#[test]
fn garbage_config_is_reported() {
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    etcd.put("cilium/cluster-config/odd", b"not json").unwrap();
    let leaf = client(&ca, now(), 5);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &leaf, "odd"), now()).unwrap();
    assert!(r.connected);
    assert!(
        r.error
            .unwrap()
            .contains("does not hold a Cilium cluster configuration")
    );
}

#[test]
fn client_cert_from_a_foreign_ca_is_refused() {
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let foreign = pki::generate_ca("foreign-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    let leaf = client(&foreign, now(), 5);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &leaf, "gcp-eu"), now()).unwrap();
    assert!(!r.connected, "{r:?}");
    assert_eq!(r.cluster_id, None);
    let err = r.error.unwrap();
    assert!(err.contains("refused the client certificate"), "{err}");
    assert!(err.contains("issued by a different CA"), "{err}");
    assert!(err.contains("CN=foreign-ca"), "{err}");
}

#[test]
fn expired_client_cert_is_reported_as_expired() {
    let ca = pki::generate_ca("mesh-ca", 30, now() - time::Duration::days(20)).unwrap();
    let Some(etcd) = start(&ca) else { return };
    let leaf = client(&ca, now() - time::Duration::days(10), 1);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &leaf, "gcp-eu"), now()).unwrap();
    assert!(!r.connected);
    let err = r.error.unwrap();
    assert!(err.contains("expired at"), "{err}");
    assert!(err.contains("nothing was dialled"), "{err}");
}

#[test]
fn server_from_another_ca_is_not_trusted() {
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let other = pki::generate_ca("other-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    let leaf = client(&ca, now(), 5);
    // Trusting only `other` for the server: the handshake must fail on our side.
    let r = probe_blocking(&opts(&etcd, &other.cert_pem, &leaf, "gcp-eu"), now()).unwrap();
    assert!(!r.connected);
    let err = r.error.unwrap();
    assert!(err.contains("server certificate"), "{err}");
    assert!(
        err.contains("not signed by the CA given with `--ca`"),
        "{err}"
    );
}

#[test]
fn rollover_bundle_trusts_both_cas() {
    let old = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let new = pki::generate_ca("mesh-ca-2", 30, now()).unwrap();
    let Some(etcd) = start(&old) else { return };
    etcd.put("cilium/cluster-config/c", br#"{"id":3}"#).unwrap();
    let leaf = client(&old, now(), 5);
    // The client trusts old+new, as during step 2 of a rollover; the server still has an old cert.
    let bundle = pki::ca_bundle(&old.cert_pem, &new.cert_pem).unwrap();
    let r = probe_blocking(&opts(&etcd, &bundle, &leaf, "c"), now()).unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.cluster_id, Some(3));
}

#[test]
fn certificate_common_name_is_the_etcd_user_as_in_clustermesh() {
    // Why the probe speaks gRPC: with etcd auth on, only a gRPC request carries the client
    // certificate's common name as the user (the JSON gateway's requests do not).
    let ca = pki::generate_ca("mesh-ca", 30, now()).unwrap();
    let Some(etcd) = start(&ca) else { return };
    etcd.put("cilium/cluster-config/gcp-eu", br#"{"id":9}"#)
        .unwrap();
    etcd.enable_clustermesh_auth()
        .unwrap_or_else(|e| panic!("{e}\netcd log:\n{}", etcd.log_tail()));

    let remote = client(&ca, now(), 5);
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &remote, "gcp-eu"), now()).unwrap();
    assert_eq!(r.error, None, "etcd log:\n{}", etcd.log_tail());
    assert_eq!(r.cluster_id, Some(9));

    let stranger = pki::issue(
        &ca,
        &CertRequest {
            common_name: "stranger".into(),
            kind: CertKind::Client,
            dns_names: vec![],
            ips: vec![],
            days: 5,
        },
        now(),
    )
    .unwrap();
    let r = probe_blocking(&opts(&etcd, &ca.cert_pem, &stranger, "gcp-eu"), now()).unwrap();
    // TLS accepted (same CA), then etcd itself refuses the unknown user.
    assert!(r.connected, "{r:?}");
    assert_eq!(r.cluster_id, None);
    let err = r.error.unwrap();
    assert!(err.contains("answered `PermissionDenied`"), "{err}");
    assert!(err.contains("common name"), "{err}");
}
