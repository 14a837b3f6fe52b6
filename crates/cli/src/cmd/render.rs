//! `meshfleet render`: validate, plan, render every manifest in memory, then write the layout
//! of docs/ARCHITECTURE.md §5 into `--out DIR`.
//!
//! The directory is meshfleet's only if it carries the marker file (`.meshfleet-render`), which
//! also lists every file the last render wrote. Re-rendering into a marked directory is always
//! allowed and removes exactly the files the previous render wrote that this one does not (a
//! cluster taken out of the fleet); anything else in the directory is never touched. An
//! unmarked, non-empty directory is refused unless `--force`. The lock is read, never written:
//! `meshfleet plan` records allocations.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use clap::Args;
use meshfleet_render::{MARKER_FILE, RenderError};

use crate::cli::FleetArg;
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::fsutil::{write_atomic, write_many_atomic};

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty directory that meshfleet did not write.
    #[arg(long)]
    pub force: bool,
}

const MARKER_HEADER: &str = "# Written by `meshfleet render`: this directory holds its output.\n# The files it wrote last (removed when a re-render no longer produces them):\n";

/// Validate, plan, render, write.
pub fn run(ctx: &Ctx, a: RenderArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.lock.as_ref())?;
    let fleet = &input.loaded.fleet;

    // Everything is rendered before the first byte is written. Only the text: the objects as
    // JSON values would more than double the memory of a large fleet for nothing here.
    let rendered = meshfleet_render::render_files(fleet, &plan).map_err(|e| match e {
        RenderError::Serialize { .. } => anyhow::Error::new(e),
        other => Invalid::new(other.to_string()),
    })?;

    if lock.lock.is_none() || !plan.changes.is_empty() {
        ctx.warn(&format!(
            "`{}` does not record these allocations yet\n  hint: run `meshfleet plan -f {}` to record them before `meshfleet up`",
            input.lock_path().display(),
            input.path.display()
        ));
    }

    let out = &a.out;
    let previous = claim_dir(out, a.force)?;

    let new_paths: BTreeSet<String> = rendered.files.iter().map(|f| f.path.clone()).collect();
    // Mark the directory first, listing old and new files, so an interrupted write leaves
    // a directory a re-run still recognises and can clean.
    let mut tracked = previous.clone();
    tracked.extend(new_paths.iter().cloned());
    write_marker(out, &tracked)?;

    let batch: Vec<(PathBuf, &[u8])> = rendered
        .files
        .iter()
        .map(|f| (out.join(&f.path), f.contents.as_bytes()))
        .collect();
    let changed = write_many_atomic(&batch, 0o644)?;
    let written: Vec<PathBuf> = batch.into_iter().map(|(p, _)| p).collect();

    let mut removed = Vec::new();
    for stale in previous.difference(&new_paths) {
        let path = out.join(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed.push(path.clone());
                remove_empty_parents(out, &path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove stale `{}`", path.display()));
            }
        }
    }
    write_marker(out, &new_paths)?;

    let mut stdout = String::new();
    for p in &written {
        stdout.push_str(&p.display().to_string());
        stdout.push('\n');
    }
    print!("{stdout}");

    let objects = rendered.objects;
    let (gcp, aws) = fleet
        .spec
        .clusters
        .iter()
        .fold((0, 0), |(g, a), c| match c.provider {
            meshfleet_spec::Provider::Gcp => (g + 1, a),
            meshfleet_spec::Provider::Aws => (g, a + 1),
        });
    let clusters = fleet.spec.clusters.len();
    let unchanged = written.len() - changed;
    ctx.info(&format!(
        "rendered fleet `{}`: {clusters} cluster{} ({gcp} gcp, {aws} aws), {objects} objects, {} files into `{}`{}",
        fleet.metadata.name,
        if clusters == 1 { "" } else { "s" },
        written.len(),
        out.display(),
        if unchanged == 0 {
            String::new()
        } else {
            format!(" ({unchanged} unchanged)")
        }
    ));
    for p in &removed {
        ctx.info(&format!("removed stale `{}`", p.display()));
    }
    // What is true of the rendered objects: the fleet-wide ones and each cluster's objects
    // apply as they are, but Cilium is held back until the fleet's mesh CA is in the workload
    // cluster (the proxy selects a label `up` sets), and its first values name no peer.
    ctx.info(&format!(
        "next: `meshfleet up` (it also delivers the mesh CA and connects the mesh); by hand: `kubectl apply -f {} -f {}/<cluster>/cluster.yaml`, then for each cluster create `kube-system/{}` in the workload cluster and label its Cluster `{}={}` before Cilium installs — its mesh peers stay unconnected until their endpoints are added to the values",
        out.join(meshfleet_render::FLEET_DIR).display(),
        out.display(),
        meshfleet_render::CA_SECRET_NAME,
        meshfleet_render::MESH_CA_LABEL,
        meshfleet_render::MESH_CA_DELIVERED,
    ));
    Ok(Exit::Ok)
}

/// Decide whether `out` may be written, returning the files the previous render listed.
fn claim_dir(out: &Path, force: bool) -> anyhow::Result<BTreeSet<String>> {
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", out.display())),
    };
    if !meta.is_dir() {
        return Err(Invalid::new(format!(
            "`{}` exists and is not a directory\n  hint: pass `--out` a directory",
            out.display()
        )));
    }
    let marker = out.join(MARKER_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(text) => return Ok(parse_marker(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", marker.display())),
    }
    let non_empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read `{}`", out.display()))?
        .next()
        .is_some();
    if non_empty && !force {
        return Err(Invalid::new(format!(
            "`{}` is not empty and was not written by `meshfleet render`\n  hint: choose an empty or new directory, or pass `--force` to write into it anyway",
            out.display()
        )));
    }
    Ok(BTreeSet::new())
}

/// The relative paths a marker lists; anything that could escape the directory is ignored,
/// so a tampered marker can never make `render` delete outside its output.
fn parse_marker(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let p = Path::new(l);
            p.components().all(|c| matches!(c, Component::Normal(_))) && l != &MARKER_FILE
        })
        .map(str::to_owned)
        .collect()
}

fn write_marker(out: &Path, files: &BTreeSet<String>) -> anyhow::Result<()> {
    let mut text = String::from(MARKER_HEADER);
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    write_atomic(&out.join(MARKER_FILE), text.as_bytes(), 0o644)
}

/// Remove directories left empty between `file` and `out` (a removed cluster's directory).
fn remove_empty_parents(out: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == out || !d.starts_with(out) {
            break;
        }
        // Fails (and stops) on the first non-empty directory, which is what we want.
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_paths_never_escape() {
        let listed = parse_marker(
            "# c\na/cluster.yaml\n../etc/passwd\n/abs\n.meshfleet-render\n\nfleet/x.yaml\n",
        );
        assert_eq!(
            listed.into_iter().collect::<Vec<_>>(),
            ["a/cluster.yaml", "fleet/x.yaml"]
        );
    }
}
