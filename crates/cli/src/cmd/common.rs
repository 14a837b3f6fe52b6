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

/// `meshfleet.lock` as read once from disk: its text (to tell whether a plan changes it) and
/// its parsed allocations.
#[derive(Debug)]
pub struct LockFile {
    /// Where it lives (beside the fleet file).
    pub path: PathBuf,
    /// Its text, `None` when it does not exist yet.
    pub text: Option<String>,
    /// Its allocations.
    pub lock: Option<Lock>,
}

impl LockFile {
    /// The lock text a plan records.
    pub fn new_text(&self, plan: &Plan) -> anyhow::Result<String> {
        plan.lock
            .to_yaml()
            .map_err(|e| anyhow::anyhow!("cannot serialise `{}`: {e}", self.path.display()))
    }

    /// Write the plan's lock (atomically, 0644) when its bytes differ from what was read, so an
    /// unchanged fleet leaves the file and its timestamp alone. Returns whether it wrote.
    pub fn record(&self, ctx: &Ctx, plan: &Plan) -> anyhow::Result<bool> {
        self.write(ctx, &plan.lock)
    }

    /// Write `lock` (atomically, 0644) when its text differs from what was read.
    pub fn write(&self, ctx: &Ctx, lock: &Lock) -> anyhow::Result<bool> {
        let new = lock
            .to_yaml()
            .map_err(|e| anyhow::anyhow!("cannot serialise `{}`: {e}", self.path.display()))?;
        if self.text.as_deref() == Some(new.as_str()) {
            return Ok(false);
        }
        crate::fsutil::write_atomic(&self.path, new.as_bytes(), 0o644)?;
        ctx.info(&format!("wrote {}", self.path.display()));
        Ok(true)
    }
}

/// Read `meshfleet.lock` beside the fleet file, if it exists.
pub fn load_lock(input: &FleetInput) -> anyhow::Result<LockFile> {
    let path = input.lock_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockFile {
                path,
                text: None,
                lock: None,
            });
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let lock = Lock::parse(&text).map_err(|e| {
        Invalid::new(format!(
            "`{}` is not a valid lock file: {e}\n  hint: restore it from version control; deleting it lets the planner re-allocate every block",
            path.display()
        ))
    })?;
    Ok(LockFile {
        path,
        text: Some(text),
        lock: Some(lock),
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

/// A fleet validated, planned and rendered in memory, for the commands that drive a
/// management cluster.
pub struct Prepared {
    /// The fleet file.
    pub input: FleetInput,
    /// Its plan.
    pub plan: Plan,
    /// Every object.
    pub rendered: meshfleet_render::Rendered,
}

/// Validate, plan and render; with `write`, record the lock as `plan` does.
pub fn prepare(ctx: &Ctx, file: &Path, write: bool) -> anyhow::Result<Prepared> {
    let input = load_fleet(ctx, file)?;
    let lock = load_lock(&input)?;
    let plan = plan_fleet(ctx, &input, lock.lock.as_ref())?;
    if write {
        lock.record(ctx, &plan)?;
    }
    let rendered = meshfleet_render::render(&input.loaded.fleet, &plan)
        .map_err(|e| anyhow::anyhow!("cannot render the fleet: {e}"))?;
    Ok(Prepared {
        input,
        plan,
        rendered,
    })
}

/// The async runtime of the commands that talk to clusters.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Load the management cluster's kubeconfig and fail fast, with its address and a hint, when
/// nothing answers: every later call would retry for long. The hints are the caller's, as each
/// command knows best what the user can do next.
pub async fn connect_with(
    kubeconfig: Option<&Path>,
    config_hint: &str,
    unreachable_hint: &str,
) -> anyhow::Result<meshfleet_kube::Kube> {
    use meshfleet_kube::{Kube, ObjectRef};
    let k = Kube::from_path(kubeconfig)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n  hint: {config_hint}"))?;
    let probe = k.clone().with_retry(meshfleet_kube::Retry {
        attempts: 5,
        base_delay: std::time::Duration::from_millis(100),
        max_delay: std::time::Duration::from_millis(500),
    });
    match probe
        .get(&ObjectRef::new("v1", "Namespace", None, "default"))
        .await
    {
        Err(e) if e.is_transient() => Err(anyhow::anyhow!(
            "the management cluster at `{}` does not answer: {e}\n  hint: {unreachable_hint}",
            k.server()
        )),
        _ => Ok(k),
    }
}

/// [`connect_with`] with the hints of `up`, `status`, `down` and `kubeconfig`.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<meshfleet_kube::Kube> {
    connect_with(
        kubeconfig,
        "pass `--kubeconfig FILE`, or use `meshfleet up --sim` for the embedded simulator",
        "is it running? a simulator kept by `up --sim` is served again with `meshfleet sim serve --state DIR --kubeconfig FILE`",
    )
    .await
}

/// Parse `90s`, `20m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 90s, 20m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}` has an unknown unit `{unit}`: use s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// The library's errors, with invalid input kept apart (exit 2).
pub fn engine_error(e: meshfleet_lifecycle::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The progress lines of a setup (stderr): one per finished step with its time when it took a
/// second or more, and a line when a step waits on the cloud.
pub fn step_progress(ctx: &Ctx) -> impl FnMut(&meshfleet_steps::StepEvent<'_>) + '_ {
    use meshfleet_steps::StepEvent;
    let mut step_start = std::time::Instant::now();
    move |e: &StepEvent<'_>| match e {
        StepEvent::Started { .. } => step_start = std::time::Instant::now(),
        StepEvent::Waiting { kind, name, on } => {
            ctx.info(&format!("  {kind:<15} {name:<50} waiting for {on}"))
        }
        StepEvent::Finished(row) => ctx.info(&format!(
            "  {:<15} {:<50} {:<9} {}{}",
            row.kind,
            row.name,
            row.action.as_str(),
            row.status.as_str(),
            if step_start.elapsed().as_millis() >= 1000 {
                format!(" ({:.1}s)", step_start.elapsed().as_secs_f64())
            } else {
                String::new()
            }
        )),
    }
}

/// The closing line of a setup run (stderr): how many steps changed (or would), in how long.
pub fn step_summary(
    ctx: &Ctx,
    dry_run: bool,
    report: &meshfleet_steps::Report,
    started: std::time::Instant,
) {
    let changed = report
        .steps
        .iter()
        .filter(|s| s.action != meshfleet_steps::Action::Unchanged)
        .count();
    ctx.info(&format!(
        "{} {changed} of {} steps in {:.1}s",
        if dry_run { "would change" } else { "changed" },
        report.steps.len(),
        started.elapsed().as_secs_f64()
    ));
}

/// Prints a setup's step report (`gcp setup`, `aws setup`, `net setup`): a table for people, or
/// `{"steps":[…]}` as JSON. An empty table prints nothing.
pub fn print_steps(
    ctx: &Ctx,
    format: crate::cli::TableOrJson,
    report: &meshfleet_steps::Report,
) -> anyhow::Result<()> {
    use crate::cli::TableOrJson;
    use crate::output::{self, Table};
    match format {
        TableOrJson::Json => output::json(&serde_json::json!({ "steps": report.steps })),
        TableOrJson::Table => {
            if report.steps.is_empty() {
                return Ok(());
            }
            let mut t = Table::new(["KIND", "NAME", "ACTION", "STATUS", "DETAIL"]);
            for s in &report.steps {
                t.row([
                    s.kind.to_owned(),
                    s.name.clone(),
                    s.action.as_str().to_owned(),
                    s.status.as_str().to_owned(),
                    s.detail.clone(),
                ]);
            }
            print!("{}", t.render(ctx.colour_out));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
