//! `meshfleet doctor`: is every cloud the fleet uses ready for Cluster API? It runs `gcp setup`
//! and `aws setup` as dry runs (reads only) and reports, per cloud, whether anything is missing
//! (what setup would create or update) or broken (credentials, a missing Talos AMI or key pair,
//! a disabled region), with the fix. Exit 0 when every cloud is ready, 1 otherwise.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::output::{self, Table};

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
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

/// Where `gcp setup` keeps CAPG's key: `.meshfleet/gcp` beside the fleet file (the dry run
/// checks that the key is there).
fn gcp_key_dir(fleet_file: &Path) -> PathBuf {
    fleet_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(".meshfleet")
        .join("gcp")
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

/// `meshfleet doctor`.
pub fn run(ctx: &Ctx, a: DoctorArgs) -> anyhow::Result<Exit> {
    check_url("--gcp-endpoint", &a.gcp_endpoint)?;
    check_url("--aws-endpoint", &a.aws_endpoint)?;
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.lock.as_ref())?;
    let fleet = &input.loaded.fleet;
    let gcp = meshfleet_render::gcp_prerequisites(fleet, &plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let aws = meshfleet_render::aws_prerequisites(fleet, &plan)
        .map_err(|e| Invalid::new(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut verdicts = Vec::new();
    if let Some(p) = &gcp {
        ctx.info(&format!(
            "doctor: GCP project {} (dry run of gcp setup)",
            p.project
        ));
        let opts = meshfleet_gcp::SetupOptions {
            endpoint: a.gcp_endpoint.clone(),
            dry_run: true,
            image_source: None,
            key_dir: gcp_key_dir(&input.path),
            retry: Default::default(),
        };
        verdicts.push(match rt.block_on(meshfleet_gcp::setup(p, &opts, |_| {})) {
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
    if let Some(p) = &aws {
        ctx.info(&format!(
            "doctor: AWS account for fleet {} (dry run of aws setup)",
            p.fleet
        ));
        let opts = meshfleet_aws::SetupOptions {
            endpoint: a.aws_endpoint.clone(),
            dry_run: true,
            stack_region: ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty())),
            retry: Default::default(),
        };
        verdicts.push(match rt.block_on(meshfleet_aws::setup(p, &opts, |_| {})) {
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
    for v in &verdicts {
        match (&v.error, v.pending()) {
            (Some(e), _) => ctx.error(&format!("{}: not ready: {e}", v.cloud)),
            (None, 0) => ctx.info(&format!("{}: ready", v.cloud)),
            (None, n) => ctx.info(&format!(
                "{}: not ready: {n} step(s) to do; run `meshfleet {} setup -f {}`",
                v.cloud,
                v.cloud,
                input.path.display()
            )),
        }
    }
    if verdicts.is_empty() {
        ctx.info("doctor: the fleet uses no cloud provider");
    }
    let ready = verdicts.iter().all(Verdict::ready);
    match a.output {
        TableOrJson::Json => output::json(&json!({
            "ready": ready,
            "clouds": verdicts.iter().map(|v| json!({
                "cloud": v.cloud,
                "ready": v.ready(),
                "steps": v.steps,
                "error": v.error,
            })).collect::<Vec<_>>(),
        }))?,
        TableOrJson::Table => {
            let mut t = Table::new(["CLOUD", "KIND", "NAME", "ACTION", "STATUS", "DETAIL"]);
            for v in &verdicts {
                for s in &v.steps {
                    let f = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    t.row([
                        v.cloud.to_owned(),
                        f("kind"),
                        f("name"),
                        f("action"),
                        f("status"),
                        f("detail"),
                    ]);
                }
            }
            if !verdicts.is_empty() {
                print!("{}", t.render(ctx.colour_out));
            }
        }
    }
    Ok(if ready { Exit::Ok } else { Exit::Failed })
}
