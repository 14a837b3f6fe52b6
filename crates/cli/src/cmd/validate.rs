//! `meshfleet validate`: every problem at once, located; nothing written.

use clap::Args;
use serde::Serialize;

use crate::cli::{FleetArg, Format};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit};
use crate::output;

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Output format: table prints diagnostics to stderr; json/yaml print a report to stdout.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Serialize)]
struct ValidationOutput<'a> {
    file: String,
    valid: bool,
    clusters: usize,
    errors: &'a [meshfleet_spec::Diagnostic],
    warnings: &'a [meshfleet_spec::Diagnostic],
}

/// Validate and report. Exit 0 when valid (warnings allowed), 2 when not.
pub fn run(ctx: &Ctx, a: ValidateArgs) -> anyhow::Result<Exit> {
    let path = &a.fleet.file;
    if a.output == Format::Table {
        let input = common::load_fleet(ctx, path)?;
        let n = input.loaded.fleet.spec.clusters.len();
        println!(
            "`{}` is valid: fleet `{}`, {n} cluster{}, {} warning{}",
            path.display(),
            input.loaded.fleet.metadata.name,
            if n == 1 { "" } else { "s" },
            input.loaded.warnings.len(),
            if input.loaded.warnings.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        return Ok(Exit::Ok);
    }
    let text = common::read_fleet_text(path)?;
    let (report, clusters) = match meshfleet_spec::parse(&text) {
        Ok(l) => (
            meshfleet_spec::Report {
                errors: Vec::new(),
                warnings: l.warnings,
            },
            l.fleet.spec.clusters.len(),
        ),
        Err(r) => (r, 0),
    };
    let out = ValidationOutput {
        file: path.display().to_string(),
        valid: report.is_ok(),
        clusters,
        errors: &report.errors,
        warnings: &report.warnings,
    };
    match a.output {
        Format::Json => output::json(&out)?,
        _ => output::yaml(&out)?,
    }
    Ok(if report.is_ok() {
        Exit::Ok
    } else {
        Exit::Invalid
    })
}
