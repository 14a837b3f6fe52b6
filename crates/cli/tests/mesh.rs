//! `meshfleet mesh …` as a user meets it: CA and certificates on disk (modes, never overwritten,
//! keys never printed), and the probe against a real etcd started with the CA the CLI wrote.
//! The etcd tests skip loudly when `etcd` is missing, unless `MESHFLEET_REQUIRE_ETCD=1`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use meshfleet_mesh::pki::{self, CaMaterial, CertKind, CertRequest};
use meshfleet_mesh::testing::{TestEtcd, etcd_required};
use meshfleet_mesh::time::{Duration, OffsetDateTime};

fn meshfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshfleet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run meshfleet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// No private key material in a command's output: neither the PEM armour nor any line of the
/// keys' base64 bodies.
fn assert_no_key_material(out: &Output, keys: &[&Path]) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("PRIVATE KEY"), "key armour printed:\n{all}");
    for k in keys {
        let pem = std::fs::read_to_string(k).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(
                !all.contains(line),
                "a line of `{}` was printed",
                k.display()
            );
        }
    }
}

#[test]
fn ca_init_writes_0600_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["mesh", "ca", "init", "--dir", "ca"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "ca init prints no data");
    let (crt, key) = (dir.path().join("ca/ca.crt"), dir.path().join("ca/ca.key"));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&crt), 0o644);
    assert_no_key_material(&out, &[&key]);
    let info = pki::verify_ca(&CaMaterial {
        cert_pem: std::fs::read_to_string(&crt).unwrap(),
        key_pem: std::fs::read_to_string(&key).unwrap(),
    })
    .unwrap();
    assert_eq!(info.common_name.as_deref(), Some(pki::DEFAULT_CA_NAME));

    let before = (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap());
    let again = meshfleet(dir.path(), &["mesh", "ca", "init", "--dir", "ca"]);
    assert_eq!(again.status.code(), Some(2));
    let err = text(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(
        (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap()),
        before,
        "files untouched"
    );
    let entries = std::fs::read_dir(dir.path().join("ca")).unwrap().count();
    assert_eq!(entries, 2, "no temporary file left behind");
}

#[test]
fn ca_issue_client_and_server() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        meshfleet(dir.path(), &["mesh", "ca", "init", "--dir", "ca"])
            .status
            .code(),
        Some(0)
    );
    let out = meshfleet(
        dir.path(),
        &[
            "mesh",
            "ca",
            "issue",
            "--dir",
            "ca",
            "--name",
            "clustermesh-apiserver",
            "--server",
            "--dns",
            "localhost",
            "--dns",
            "*.mesh.cilium.io",
            "--ip",
            "127.0.0.1",
            "--days",
            "30",
            "--out",
            "certs/server",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = dir.path().join("certs/server.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.path().join("certs/server.crt")), 0o644);
    assert_no_key_material(&out, &[&key, &dir.path().join("ca/ca.key")]);
    let info = pki::inspect_pem(
        &std::fs::read_to_string(dir.path().join("certs/server.crt")).unwrap(),
        "server",
    )
    .unwrap();
    assert!(info.server_auth && info.client_auth);
    assert_eq!(info.dns_names, ["localhost", "*.mesh.cilium.io"]);
    assert_eq!(info.ips, ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    assert!(info.not_after - OffsetDateTime::now_utc() <= Duration::days(30));

    let out = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "ca", "--name", "remote", "--out", "remote",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let info = pki::inspect_pem(
        &std::fs::read_to_string(dir.path().join("remote.crt")).unwrap(),
        "client",
    )
    .unwrap();
    assert!(info.client_auth && !info.server_auth);
    assert_eq!(info.common_name.as_deref(), Some("remote"));

    // Never overwrites, and bad requests are usage errors.
    let again = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "ca", "--name", "remote", "--out", "remote",
        ],
    );
    assert_eq!(again.status.code(), Some(2));
    let no_san = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "ca", "--name", "s", "--server", "--out", "s",
        ],
    );
    assert_eq!(no_san.status.code(), Some(2));
    assert!(
        !dir.path().join("s.key").exists(),
        "nothing written on bad input"
    );
    let no_ca = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "nope", "--name", "x", "--out", "x",
        ],
    );
    assert_eq!(no_ca.status.code(), Some(2));
    assert!(
        text(&no_ca.stderr).contains("mesh ca init"),
        "{}",
        text(&no_ca.stderr)
    );
    let bad_ip = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "ca", "--name", "x", "--ip", "1.2.3", "--out", "x",
        ],
    );
    assert_eq!(bad_ip.status.code(), Some(2));
}

#[test]
fn mismatched_ca_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        meshfleet(dir.path(), &["mesh", "ca", "init", "--dir", "a"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        meshfleet(dir.path(), &["mesh", "ca", "init", "--dir", "b"])
            .status
            .code(),
        Some(0)
    );
    std::fs::copy(dir.path().join("b/ca.key"), dir.path().join("a/ca.key")).unwrap();
    let out = meshfleet(
        dir.path(),
        &[
            "mesh", "ca", "issue", "--dir", "a", "--name", "x", "--out", "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not match"),
        "{}",
        text(&out.stderr)
    );
    assert_no_key_material(&out, &[&dir.path().join("a/ca.key")]);
}

/// `mesh status` against a running fleet is tested in `mesh_status.rs`; here, its input.
#[test]
fn status_without_a_fleet_file_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(dir.path(), &["mesh", "status", "-f", "fleet.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`fleet.yaml` not found"));
    assert!(out.stdout.is_empty());
}

#[test]
fn probe_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshfleet(
        dir.path(),
        &[
            "mesh",
            "probe",
            "--endpoint",
            "http://x:1",
            "--ca",
            "a",
            "--cert",
            "b",
            "--key",
            "c",
            "--cluster",
            "n",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = meshfleet(
        dir.path(),
        &[
            "mesh",
            "probe",
            "--endpoint",
            "https://x:1",
            "--ca",
            "a",
            "--cert",
            "b",
            "--key",
            "c",
            "--cluster",
            "n",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`--ca`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn probe_of_an_unreachable_endpoint_prints_the_report_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| assert_eq!(meshfleet(dir.path(), args).status.code(), Some(0));
    run(&["mesh", "ca", "init", "--dir", "ca"]);
    run(&[
        "mesh", "ca", "issue", "--dir", "ca", "--name", "remote", "--out", "remote",
    ]);
    let port = meshfleet_mesh::testing::free_port().unwrap();
    let endpoint = format!("https://127.0.0.1:{port}");
    let out = meshfleet(
        dir.path(),
        &[
            "mesh",
            "probe",
            "--endpoint",
            &endpoint,
            "--ca",
            "ca/ca.crt",
            "--cert",
            "remote.crt",
            "--key",
            "remote.key",
            "--cluster",
            "gcp-eu",
            "-o",
            "json",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connected"], false);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"));
    assert!(text(&out.stderr).contains("hint:"));
}

struct Setup {
    dir: tempfile::TempDir,
    etcd: TestEtcd,
}

/// A CA and client certificate written by the CLI, a foreign CA and its client certificate, and
/// an etcd trusting the CLI's CA with `cilium/cluster-config/gcp-eu` = id 42.
fn setup() -> Option<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = meshfleet(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    };
    run(&["mesh", "ca", "init", "--dir", "ca"]);
    run(&[
        "mesh", "ca", "issue", "--dir", "ca", "--name", "remote", "--out", "remote",
    ]);
    run(&[
        "mesh",
        "ca",
        "init",
        "--dir",
        "foreign",
        "--name",
        "foreign-ca",
    ]);
    run(&[
        "mesh", "ca", "issue", "--dir", "foreign", "--name", "remote", "--out", "intruder",
    ]);
    let ca = CaMaterial {
        cert_pem: std::fs::read_to_string(dir.path().join("ca/ca.crt")).unwrap(),
        key_pem: std::fs::read_to_string(dir.path().join("ca/ca.key")).unwrap(),
    };
    let etcd = match TestEtcd::start(&ca) {
        Ok(Some(e)) => e,
        Ok(None) => {
            if etcd_required() {
                panic!(
                    "MESHFLEET_REQUIRE_ETCD=1 but no `etcd` binary is on PATH (Debian package `etcd-server`)"
                );
            }
            eprintln!(
                "\n*** SKIP: `etcd` is not installed; the CLI probe tests did not run (apt-get install etcd-server) ***\n"
            );
            return None;
        }
        Err(e) => panic!("cannot start etcd: {e}"),
    };
    etcd.put(
        "cilium/cluster-config/gcp-eu",
        br#"{"id":42,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}"#,
    )
    .unwrap();
    Some(Setup { dir, etcd })
}

fn probe(s: &Setup, cert: &str, cluster: &str, format: &str) -> Output {
    meshfleet(
        s.dir.path(),
        &[
            "mesh",
            "probe",
            "--endpoint",
            &s.etcd.endpoint,
            "--ca",
            "ca/ca.crt",
            "--cert",
            &format!("{cert}.crt"),
            "--key",
            &format!("{cert}.key"),
            "--cluster",
            cluster,
            "-o",
            format,
            "--timeout",
            "5s",
        ],
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn probe_reports_the_cluster_id() {
    let Some(s) = setup() else { return };
    let out = probe(&s, "remote", "gcp-eu", "json");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\netcd:\n{}",
        text(&out.stderr),
        s.etcd.log_tail()
    );
    let v = json(&out);
    assert_eq!(v["cluster"], "gcp-eu");
    assert_eq!(v["connected"], true);
    assert_eq!(v["clusterId"], 42);
    assert!(v["latencyMs"].is_u64());
    assert!(v["error"].is_null());
    assert_no_key_material(&out, &[&s.dir.path().join("remote.key")]);

    let table = probe(&s, "remote", "gcp-eu", "table");
    assert_eq!(table.status.code(), Some(0));
    let t = text(&table.stdout);
    assert!(t.starts_with("CLUSTER"), "{t}");
    assert!(
        t.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()[..3]
            == ["gcp-eu", "yes", "42"],
        "{t}"
    );
}

#[test]
fn probe_with_a_foreign_certificate_fails_with_exit_1() {
    let Some(s) = setup() else { return };
    let out = probe(&s, "intruder", "gcp-eu", "json");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["connected"], false);
    assert!(v["clusterId"].is_null());
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("refused the client certificate"), "{err}");
    assert!(err.contains("CN=foreign-ca"), "{err}");
    assert!(text(&out.stderr).contains("refused the client certificate"));
    assert_no_key_material(&out, &[&s.dir.path().join("intruder.key")]);
}

#[test]
fn probe_of_a_missing_key_fails_with_exit_1() {
    let Some(s) = setup() else { return };
    let out = probe(&s, "remote", "aws-us", "json");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["connected"], true);
    assert!(v["clusterId"].is_null());
    assert!(v["error"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn probe_with_an_expired_certificate_says_expired() {
    let Some(s) = setup() else { return };
    let ca = CaMaterial {
        cert_pem: std::fs::read_to_string(s.dir.path().join("ca/ca.crt")).unwrap(),
        key_pem: std::fs::read_to_string(s.dir.path().join("ca/ca.key")).unwrap(),
    };
    // Issued three days ago for one day, by the CA the server trusts: only the date is wrong.
    let leaf = pki::issue(
        &ca,
        &CertRequest {
            common_name: "remote".into(),
            kind: CertKind::Client,
            dns_names: vec![],
            ips: vec![],
            days: 1,
        },
        OffsetDateTime::now_utc() - Duration::days(3),
    )
    .unwrap();
    std::fs::write(s.dir.path().join("old.crt"), leaf.cert_pem).unwrap();
    std::fs::write(s.dir.path().join("old.key"), leaf.key_pem).unwrap();
    let out = probe(&s, "old", "gcp-eu", "table");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("expired at"), "{err}");
    assert!(
        text(&out.stdout).contains("expired"),
        "the table still shows the result"
    );
}
