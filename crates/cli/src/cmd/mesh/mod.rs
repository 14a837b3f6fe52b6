//! `meshfleet mesh …`: the mesh CA and its certificates on disk, the probe of a
//! clustermesh-apiserver, and the mesh status of a running fleet ([`status`]).
//!
//! Private keys are written atomically with mode 0600 and never printed: stdout carries only the
//! probe's report, stderr only paths, subjects, dates and fingerprints.

mod status;
mod test;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use meshfleet_mesh::pki::{self, CaMaterial, CertKind, CertRequest, PkiError};
use meshfleet_mesh::time::OffsetDateTime;
use meshfleet_mesh::{Endpoint, ProbeOptions, ProbeReport, TlsMaterial};

use crate::cli::TableOrJson;
use crate::cmd::common::parse_duration;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::fsutil::write_atomic;
use crate::output::{self, Table};

/// Arguments of `mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    #[command(subcommand)]
    pub command: MeshCommand,
}

/// `mesh` subcommands.
#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// The fleet's mesh CA: create it, issue certificates from it.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Dial a clustermesh-apiserver with mutual TLS and read its cluster configuration.
    Probe(ProbeArgs),
    /// Show the mesh of a running fleet (needs a management cluster).
    Status(status::MeshStatusArgs),
    /// Send traffic across the mesh: every ordered pair of clusters pod to pod, and a global
    /// service from each cluster (exit 1 when anything fails).
    Test(test::MeshTestArgs),
}

/// `mesh ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the mesh CA: DIR/ca.crt and DIR/ca.key (0600). Never overwrites.
    Init(CaInitArgs),
    /// Issue a client or server certificate from the mesh CA: PREFIX.crt and PREFIX.key (0600).
    Issue(CaIssueArgs),
}

/// Arguments of `mesh ca init`.
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Directory to write ca.crt and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Common name of the CA (use a new one for each rollover, e.g. meshfleet-mesh-ca-2).
    #[arg(long, default_value = pki::DEFAULT_CA_NAME)]
    pub name: String,
    /// Lifetime in days.
    #[arg(long, default_value_t = pki::DEFAULT_CA_DAYS)]
    pub days: u32,
}

/// Arguments of `mesh ca issue`.
#[derive(Debug, Args)]
pub struct CaIssueArgs {
    /// Directory holding the CA (ca.crt and ca.key).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Common name of the certificate (etcd maps it to the user name).
    #[arg(long, value_name = "CN")]
    pub name: String,
    /// A server certificate (serverAuth and clientAuth); default is a client certificate.
    #[arg(long)]
    pub server: bool,
    /// DNS subject alternative name (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP subject alternative name (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Lifetime in days (capped at the CA's own expiry).
    #[arg(long, default_value_t = pki::DEFAULT_CERT_DAYS)]
    pub days: u32,
    /// Output prefix: writes PREFIX.crt and PREFIX.key. Never overwrites.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

/// Arguments of `mesh probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The clustermesh-apiserver, e.g. https://10.0.0.5:2379.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// CA certificate (or rollover bundle) that signed the server's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Client certificate.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Client private key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Cilium cluster name whose configuration (cilium/cluster-config/NAME) is read.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
    /// Bound on each step: connect, TLS handshake, read (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Run a mesh subcommand.
pub fn run(ctx: &Ctx, a: MeshArgs) -> anyhow::Result<Exit> {
    match a.command {
        MeshCommand::Ca(CaCommand::Init(a)) => ca_init(ctx, a),
        MeshCommand::Ca(CaCommand::Issue(a)) => ca_issue(ctx, a),
        MeshCommand::Probe(a) => probe(ctx, a),
        MeshCommand::Status(a) => status::run(ctx, a),
        MeshCommand::Test(a) => test::run(ctx, a),
    }
}

fn ca_init(ctx: &Ctx, a: CaInitArgs) -> anyhow::Result<Exit> {
    let cert_path = a.dir.join("ca.crt");
    let key_path = a.dir.join("ca.key");
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(Invalid::new(format!(
                "`{}` already exists; meshfleet never overwrites a mesh CA\n  hint: a new CA for a running mesh is a rollover (old and new trusted together); write it to another `--dir`",
                p.display()
            )));
        }
    }
    let ca = pki::generate_ca(&a.name, a.days, OffsetDateTime::now_utc()).map_err(pki_invalid)?;
    let info =
        pki::inspect_pem(&ca.cert_pem, "the new CA").context("cannot read back the new CA")?;
    write_pair(&cert_path, &ca.cert_pem, &key_path, &ca.key_pem)?;
    ctx.info(&format!(
        "wrote `{}` and `{}` (key mode 0600)\n  CA `{}`, valid until {}\n  sha256 {}",
        cert_path.display(),
        key_path.display(),
        info.subject,
        pki::rfc3339(info.not_after),
        info.fingerprint_sha256
    ));
    Ok(Exit::Ok)
}

fn ca_issue(ctx: &Ctx, a: CaIssueArgs) -> anyhow::Result<Exit> {
    let ca = CaMaterial {
        cert_pem: read_input(&a.dir.join("ca.crt"), "the CA certificate", &a.dir)?,
        key_pem: read_input(&a.dir.join("ca.key"), "the CA key", &a.dir)?,
    };
    let mut base = a.out.as_os_str().to_owned();
    base.push(".crt");
    let cert_path = PathBuf::from(base);
    let mut base = a.out.as_os_str().to_owned();
    base.push(".key");
    let key_path = PathBuf::from(base);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(Invalid::new(format!(
                "`{}` already exists; meshfleet never overwrites keys or certificates\n  hint: remove the old pair first, or pick another `--out`",
                p.display()
            )));
        }
    }
    let req = CertRequest {
        common_name: a.name,
        kind: if a.server {
            CertKind::Server
        } else {
            CertKind::Client
        },
        dns_names: a.dns,
        ips: a.ips,
        days: a.days,
    };
    let leaf = pki::issue(&ca, &req, OffsetDateTime::now_utc()).map_err(|e| match e {
        PkiError::InvalidRequest(_) => pki_invalid(e),
        other => Invalid::new(format!(
            "cannot use the CA in `{}`: {other}\n  hint: `ca.crt` and `ca.key` must come from the same `meshfleet mesh ca init`",
            a.dir.display()
        )),
    })?;
    let info = pki::inspect_pem(&leaf.cert_pem, "the new certificate")
        .context("cannot read back the new certificate")?;
    write_pair(&cert_path, &leaf.cert_pem, &key_path, &leaf.key_pem)?;
    let usage = if a.server {
        "server and client"
    } else {
        "client"
    };
    ctx.info(&format!(
        "wrote `{}` and `{}` (key mode 0600)\n  {usage} certificate `{}` from `{}`, valid until {}",
        cert_path.display(),
        key_path.display(),
        info.subject,
        info.issuer,
        pki::rfc3339(info.not_after)
    ));
    Ok(Exit::Ok)
}

fn probe(ctx: &Ctx, a: ProbeArgs) -> anyhow::Result<Exit> {
    Endpoint::parse(&a.endpoint)
        .map_err(|e| Invalid::new(format!("{e}\n  hint: pass `--endpoint https://HOST:PORT`")))?;
    if a.cluster.is_empty() {
        return Err(Invalid::new(
            "`--cluster` is empty\n  hint: pass the Cilium cluster name (cluster.name)",
        ));
    }
    let tls = TlsMaterial {
        ca_pem: read_probe_input(&a.ca, "--ca")?,
        cert_pem: read_probe_input(&a.cert, "--cert")?,
        key_pem: read_probe_input(&a.key, "--key")?,
    };
    let opts = ProbeOptions {
        endpoint: a.endpoint.clone(),
        cluster: a.cluster.clone(),
        tls,
        timeout: a.timeout,
    };
    ctx.info(&format!(
        "probing `{}` for cluster `{}`…",
        a.endpoint, a.cluster
    ));
    let report = meshfleet_mesh::probe_blocking(&opts, OffsetDateTime::now_utc())
        .context("cannot start the probe's runtime")?;
    print_report(ctx, &report, a.output)?;
    match &report.error {
        None => Ok(Exit::Ok),
        Some(e) => {
            ctx.error(e);
            Ok(Exit::Failed)
        }
    }
}

fn print_report(ctx: &Ctx, r: &ProbeReport, format: TableOrJson) -> anyhow::Result<()> {
    match format {
        TableOrJson::Json => output::json(r),
        TableOrJson::Table => {
            let mut t = Table::new(["CLUSTER", "CONNECTED", "CLUSTER-ID", "LATENCY", "ERROR"]);
            let first_line = r
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("-");
            t.row([
                r.cluster.clone(),
                if r.connected { "yes" } else { "no" }.to_owned(),
                r.cluster_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                r.latency_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
                first_line.to_owned(),
            ]);
            print!("{}", t.render(ctx.colour_out));
            Ok(())
        }
    }
}

/// Write the certificate (0644) and its key (0600). If the certificate cannot be written after
/// the key was, the key is removed again so no half pair is left behind.
fn write_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> anyhow::Result<()> {
    write_atomic(key_path, key_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_atomic(cert_path, cert_pem.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(key_path);
        return Err(e);
    }
    Ok(())
}

fn read_input(path: &Path, what: &str, dir: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Invalid::new(format!(
            "{what} `{}` does not exist\n  hint: create the CA with `meshfleet mesh ca init --dir {}`",
            path.display(),
            dir.display()
        ))),
        Err(e) => Err(Invalid::new(format!(
            "cannot read {what} `{}`: {e}",
            path.display()
        ))),
    }
}

fn read_probe_input(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Invalid::new(format!(
            "cannot read `{flag}` file `{}`: {e}\n  hint: pass PEM files written by `meshfleet mesh ca issue`",
            path.display()
        ))
    })
}

fn pki_invalid(e: PkiError) -> anyhow::Error {
    Invalid::new(e.to_string())
}
