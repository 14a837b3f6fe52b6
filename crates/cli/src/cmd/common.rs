//! What several commands share: reading the fleet file, its lock, and planning it, with every
//! problem printed as a located diagnostic.

use std::path::{Path, PathBuf};

use anyhow::Context;
use meshfleet_plan::{Lock, Plan};
use meshfleet_spec::{Diagnostic, Loaded, Report};

use crate::ctx::{Ctx, Invalid};

/// A fleet file read from disk and validated.
#[derive(Debug)]
pub struct FleetInput {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, for rendering diagnostics.
    pub text: String,
    /// The validated fleet and its source map.
    pub loaded: Loaded,
}

impl FleetInput {
    /// The lock file that belongs to this fleet file: `meshfleet.lock` beside it.
    pub fn lock_path(&self) -> PathBuf {
        lock_path_for(&self.path)
    }
}

/// `DIR/fleet.yaml` → `DIR/meshfleet.lock`.
pub fn lock_path_for(fleet: &Path) -> PathBuf {
    fleet.with_file_name("meshfleet.lock")
}

/// How many warnings with the same message and hint are printed in full.
const SAME_WARNING_SHOWN: usize = 3;

/// Print a report's diagnostics to stderr: every error; warnings, with repeats of the same
/// warning beyond [`SAME_WARNING_SHOWN`] summarised by their field paths.
pub fn print_report(ctx: &Ctx, file: &Path, text: &str, report: &Report) {
    let name = file.display().to_string();
    let mut err = String::new();
    if !ctx.quiet {
        // The same warning on many clusters (a 500-cluster fleet of single control planes)
        // would bury everything else: show a few in full, then where the rest are.
        // (message, hint) → how many were printed in full, and the paths of the rest.
        type Seen<'a> = ((&'a str, Option<&'a str>), usize, Vec<&'a str>);
        let mut seen: Vec<Seen<'_>> = Vec::new();
        for d in &report.warnings {
            let key = (d.message.as_str(), d.hint.as_deref());
            let i = match seen.iter().position(|(k, _, _)| *k == key) {
                Some(i) => i,
                None => {
                    seen.push((key, 0, Vec::new()));
                    seen.len() - 1
                }
            };
            let (_, shown, rest) = &mut seen[i];
            if *shown == SAME_WARNING_SHOWN {
                rest.push(d.path.as_str());
                continue;
            }
            *shown += 1;
            err.push_str(&d.render(&name, text, ctx.colour_err));
            err.push('\n');
        }
        for ((message, _), _, rest) in seen.iter().filter(|(_, _, r)| !r.is_empty()) {
            let listed: Vec<&str> = rest.iter().copied().take(4).collect();
            err.push_str(&format!(
                "warning: {} more like \"{message}\": {}{}\n\n",
                rest.len(),
                listed.join(", "),
                if rest.len() > listed.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
    }
    for d in &report.errors {
        err.push_str(&d.render(&name, text, ctx.colour_err));
        err.push('\n');
    }
    eprint!("{err}");
}

/// Read the file as text, with an actionable message when it is missing.
pub fn read_fleet_text(path: &Path) -> anyhow::Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            Invalid::new(format!(
                "`{}` is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Invalid::new(format!(
            "fleet file `{}` not found\n  hint: run `meshfleet init` to write an example, or pass `-f FILE`",
            path.display()
        ))),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Read and validate a fleet file. Invalid input prints every diagnostic and returns an
/// [`Invalid`] error (exit 2); warnings are printed and the fleet returned.
pub fn load_fleet(ctx: &Ctx, path: &Path) -> anyhow::Result<FleetInput> {
    let text = read_fleet_text(path)?;
    match meshfleet_spec::parse(&text) {
        Ok(loaded) => {
            let warnings = Report {
                errors: Vec::new(),
                warnings: loaded.warnings.clone(),
            };
            print_report(ctx, path, &text, &warnings);
            Ok(FleetInput {
                path: path.to_owned(),
                text,
                loaded,
            })
        }
        Err(report) => {
            print_report(ctx, path, &text, &report);
            Err(invalid_summary(path, &report))
        }
    }
}

/// The closing line after diagnostics were printed.
pub fn invalid_summary(path: &Path, report: &Report) -> anyhow::Error {
    let n = report.errors.len();
    Invalid::new(format!(
        "`{}` is invalid: {n} error{}",
        path.display(),
        if n == 1 { "" } else { "s" }
    ))
}

/// Read `meshfleet.lock` beside the fleet file, if it exists.
pub fn load_lock(input: &FleetInput) -> anyhow::Result<Option<Lock>> {
    let path = input.lock_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    Lock::parse(&text).map(Some).map_err(|e| {
        Invalid::new(format!(
            "`{}` is not a valid lock file: {e}\n  hint: restore it from version control; deleting it lets the planner re-allocate every block",
            path.display()
        ))
    })
}

/// Plan a loaded fleet against its lock. Planner errors are located in the fleet file and
/// printed; warnings too.
pub fn plan_fleet(ctx: &Ctx, input: &FleetInput, lock: Option<&Lock>) -> anyhow::Result<Plan> {
    match meshfleet_plan::plan(&input.loaded.fleet, lock) {
        Ok(mut plan) => {
            locate_all(input, &mut plan.warnings);
            let report = Report {
                errors: Vec::new(),
                warnings: plan.warnings.clone(),
            };
            print_report(ctx, &input.path, &input.text, &report);
            Ok(plan)
        }
        Err(mut report) => {
            locate_all(input, &mut report.errors);
            locate_all(input, &mut report.warnings);
            report.sort();
            print_report(ctx, &input.path, &input.text, &report);
            Err(invalid_summary(&input.path, &report))
        }
    }
}

fn locate_all(input: &FleetInput, ds: &mut [Diagnostic]) {
    for d in ds {
        input.loaded.map.locate(d);
    }
}
