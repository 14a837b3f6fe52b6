//! `meshfleet doctor`: one line per thing a fleet needs before `up` can work, each ok, missing
//! or wrong with its fix: the fleet file validates; the management cluster answers; it runs
//! every Cluster API provider the fleet needs at a version meshfleet's objects work with; the
//! infrastructure providers have their credentials Secrets; every cloud the fleet uses is ready
//! (`gcp setup` and `aws setup` as dry runs, which only read); and which optional tools are on
//! the PATH. Exit 0 when nothing required is missing or wrong, 1 otherwise.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use meshfleet_lifecycle::doctor::{self, Check, Status};
use serde_json::{Value, json};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::output::{self, Table};
use crate::simproc;

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Check the embedded simulator's state that `up --sim` kept beside the fleet file (its
    /// management cluster, GCP project and AWS account).
    #[arg(long)]
    pub sim: bool,
    /// Google API endpoint override, as for `gcp setup --endpoint`.
    #[arg(long)]
    pub gcp_endpoint: Option<String>,
    /// AWS API endpoint override, as for `aws setup --endpoint`.
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// One cloud's verdict.
struct Verdict {
    cloud: &'static str,
    /// The dry run's steps (as JSON rows: both setups print the same shape).
    steps: Vec<Value>,
    /// Why the dry run stopped, when it did.
    error: Option<String>,
}

impl Verdict {
    fn pending(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s["action"] != "unchanged")
            .count()
    }

    fn ready(&self) -> bool {
        self.error.is_none() && self.pending() == 0
    }
}

fn rows<T: serde::Serialize>(steps: &[T]) -> Vec<Value> {
    steps
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect()
}

fn check_url(flag: &str, e: &Option<String>) -> anyhow::Result<()> {
    if let Some(e) = e
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(Invalid::new(format!(
            "{flag} `{e}` is not an http(s) URL\n  hint: e.g. {flag} http://127.0.0.1:8089 (the simulator writes its endpoints to <kubeconfig>.endpoints.json)"
        )));
    }
    Ok(())
}

/// The optional tools doctor looks for, and what each adds.
const TOOLS: [(&str, &str); 5] = [
    (
        "kubectl",
        "inspect the management and workload clusters by hand (`kubectl get clusters -A`)",
    ),
    (
        "talosctl",
        "debug Talos nodes through apid (tcp/50000): logs, services, `talosctl health`",
    ),
    (
        "clusterctl",
        "install and upgrade the Cluster API providers (`clusterctl init`, `clusterctl upgrade apply`)",
    ),
    (
        "gcloud",
        "inspect the GCP project and provide Application Default Credentials (`gcloud auth application-default login`)",
    ),
    (
        "aws",
        "inspect the AWS account and sign in to SSO profiles (`aws sso login`)",
    ),
];

fn tool_checks() -> Vec<Check> {
    TOOLS
        .iter()
        .map(|(name, adds)| {
            let mut c = match which::which(name) {
                Ok(path) => Check::new(
                    format!("tool {name}"),
                    Status::Ok,
                    format!("{}; {adds}", path.display()),
                ),
                Err(_) => Check::new(
                    format!("tool {name}"),
                    Status::Missing,
                    format!("not on the PATH: would {adds}"),
                ),
            };
            c.required = false;
            c
        })
        .collect()
}

/// The steps a dry run would take, as one check line.
fn cloud_check(v: &Verdict, fleet_file: &Path, setup_endpoint: Option<&str>) -> Check {
    let name = format!("{} prerequisites", v.cloud);
    let endpoint = setup_endpoint
        .map(|e| format!(" --endpoint {e}"))
        .unwrap_or_default();
    let fix = format!(
        "meshfleet {} setup -f {}{endpoint}",
        v.cloud,
        fleet_file.display()
    );
    if let Some(e) = &v.error {
        return Check::new(name, Status::Wrong, e.clone()).fix(fix);
    }
    let pending: Vec<String> = v
        .steps
        .iter()
        .filter(|s| s["action"] != "unchanged")
        .map(|s| {
            format!(
                "{} {} {}",
                s["action"].as_str().unwrap_or_default(),
                s["kind"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if pending.is_empty() {
        return Check::new(
            name,
            Status::Ok,
            format!("{} steps, all unchanged", v.steps.len()),
        );
    }
    const SHOWN: usize = 3;
    let mut detail = format!(
        "{} of {} steps to do: {}",
        pending.len(),
        v.steps.len(),
        pending[..pending.len().min(SHOWN)].join(", ")
    );
    if pending.len() > SHOWN {
        detail.push_str(&format!(", and {} more", pending.len() - SHOWN));
    }
    Check::new(name, Status::Missing, detail).fix(fix)
}

/// `meshfleet doctor`.
pub fn run(ctx: &Ctx, a: DoctorArgs) -> anyhow::Result<Exit> {
    check_url("--gcp-endpoint", &a.gcp_endpoint)?;
    check_url("--aws-endpoint", &a.aws_endpoint)?;
    // An invalid fleet is bad input like for every command (exit 2, every problem located).
    let p = common::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    let warnings = p.input.loaded.warnings.len() + p.plan.warnings.len();
    let mut checks = vec![Check::new(
        "fleet",
        Status::Ok,
        format!(
            "`{}` validates: {} clusters, {warnings} warnings",
            p.input.path.display(),
            fleet.spec.clusters.len()
        ),
    )];
    let gcp = meshfleet_render::gcp_prerequisites(fleet, &p.plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let aws = meshfleet_render::aws_prerequisites(fleet, &p.plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        // With `--sim`, the kept simulator is served for this run and stands in for the
        // management cluster and both clouds, as for `up --sim`.
        let (mgmt, key_dir, sim) = if a.sim {
            let m = simproc::Mgmt::open(ctx, &p.input.path, fleet, true, None).await?;
            let dir = simproc::sim_dir(&p.input.path, &fleet.metadata.name);
            (Ok(m.kube.clone()), dir.join("gcp"), Some(m))
        } else {
            let kube = meshfleet_kube::Kube::from_path(a.kubeconfig.as_deref()).await;
            (kube, crate::cmd::gcp::key_dir(&p.input.path), None)
        };
        let sim_urls = sim.as_ref().and_then(simproc::Mgmt::cloud_urls);
        let gcp_endpoint = a
            .gcp_endpoint
            .clone()
            .or(sim_urls.as_ref().map(|u| u.0.clone()));
        let aws_endpoint = a
            .aws_endpoint
            .clone()
            .or(sim_urls.as_ref().map(|u| u.1.clone()));

        let expect = doctor::Expect {
            gcp_service_account: gcp
                .as_ref()
                .map(meshfleet_gcp::desired::service_account_email),
            gcp_key_file: gcp.as_ref().map(|g| {
                key_dir
                    .join(format!("{}-{}.json", g.project, g.service_account.name))
                    .display()
                    .to_string()
            }),
        };
        match mgmt {
            Ok(kube) => checks.extend(doctor::management(&kube, fleet, &p.rendered, &expect).await),
            Err(e) => checks.push(
                Check::new(
                    "management cluster",
                    Status::Missing,
                    format!("no usable kubeconfig: {e}"),
                )
                .fix("pass `--kubeconfig FILE` (or `--sim` for the simulator `up --sim` keeps)"),
            ),
        }

        let mut verdicts = Vec::new();
        if let Some(g) = &gcp {
            ctx.info(&format!(
                "doctor: GCP project {} (dry run of gcp setup)",
                g.project
            ));
            let opts = meshfleet_gcp::SetupOptions {
                endpoint: gcp_endpoint.clone(),
                dry_run: true,
                image_source: None,
                key_dir: key_dir.clone(),
                retry: Default::default(),
            };
            verdicts.push(match meshfleet_gcp::setup(g, &opts, |_| {}).await {
                Ok(r) => Verdict {
                    cloud: "gcp",
                    steps: rows(&r.steps),
                    error: None,
                },
                Err(f) => Verdict {
                    cloud: "gcp",
                    steps: rows(&f.report.steps),
                    error: Some(f.error.to_string()),
                },
            });
        }
        if let Some(w) = &aws {
            ctx.info(&format!(
                "doctor: AWS account for fleet {} (dry run of aws setup)",
                w.fleet
            ));
            let opts = meshfleet_aws::SetupOptions {
                endpoint: aws_endpoint.clone(),
                dry_run: true,
                stack_region: ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty())),
                retry: Default::default(),
            };
            verdicts.push(match meshfleet_aws::setup(w, &opts, |_| {}).await {
                Ok(r) => Verdict {
                    cloud: "aws",
                    steps: rows(&r.steps),
                    error: None,
                },
                Err(f) => Verdict {
                    cloud: "aws",
                    steps: rows(&f.report.steps),
                    error: Some(f.error.to_string()),
                },
            });
        }
        if let Some(m) = sim {
            m.close(ctx).await;
        }
        for v in &verdicts {
            let endpoint = match v.cloud {
                "gcp" => a.gcp_endpoint.as_deref(),
                _ => a.aws_endpoint.as_deref(),
            };
            checks.push(cloud_check(v, &p.input.path, endpoint));
        }
        checks.extend(tool_checks());

        // stdout carries the report; stderr names only what to fix, and a summary.
        for c in checks.iter().filter(|c| c.fails()) {
            let fix = c
                .fix
                .as_ref()
                .map(|f| format!("\n  fix: {f}"))
                .unwrap_or_default();
            ctx.error(&format!(
                "{}: {} — {}{fix}",
                c.check,
                c.status.as_str(),
                c.detail
            ));
        }
        let failing = checks.iter().filter(|c| c.fails()).count();
        if failing == 0 {
            ctx.info(&format!(
                "doctor: ready ({} checks ok)",
                checks.iter().filter(|c| c.status == Status::Ok).count()
            ));
        } else {
            ctx.info(&format!("doctor: not ready: {failing} to fix"));
        }
        let ready = !checks.iter().any(Check::fails);
        match a.output {
            TableOrJson::Json => output::json(&json!({
                "ready": ready,
                "checks": checks,
                "clouds": verdicts.iter().map(|v| json!({
                    "cloud": v.cloud,
                    "ready": v.ready(),
                    "steps": v.steps,
                    "error": v.error,
                })).collect::<Vec<_>>(),
            }))?,
            TableOrJson::Table => {
                let mut t = Table::new(["CHECK", "STATUS", "DETAIL", "FIX"]);
                for c in &checks {
                    let status = if c.required || c.status == Status::Ok {
                        c.status.as_str().to_owned()
                    } else {
                        format!("{} (optional)", c.status.as_str())
                    };
                    t.row([
                        c.check.clone(),
                        status,
                        c.detail.clone(),
                        c.fix.clone().unwrap_or_default(),
                    ]);
                }
                print!("{}", t.render(ctx.colour_out));
            }
        }
        Ok(if ready { Exit::Ok } else { Exit::Failed })
    })
}
