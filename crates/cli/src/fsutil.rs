//! Atomic file writes: temp file in the same directory, fsync, rename. A reader sees the old file
//! or the new one, never half of either; secrets are created 0600 before any byte is written.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Write `bytes` to `path` atomically with Unix permission `mode` (e.g. 0o644, or 0o600 for
/// secrets and kubeconfigs).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory `{}`", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".meshfleet-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace `{}`", path.display()))?;
    Ok(())
}

/// Threads that fsync a batch of files: the journal commits concurrent fsyncs together, so a
/// few in flight cost about one commit where one after another would cost one each.
const FSYNC_THREADS: usize = 16;

/// Write many files atomically with mode `mode`, as [`write_atomic`] does one: a reader sees
/// each file old or new, never half. Returns how many were written; a file whose bytes are
/// already on disk is left alone (a re-render rewrites only what changed, and replacing an
/// unchanged file would churn an inode for nothing).
///
/// Batched because one write-fsync-rename per file made a 511-cluster render (2,049 files)
/// wait on as many journal commits: every temporary file is written first, then all are
/// fsynced from [`FSYNC_THREADS`] threads, then each is renamed over its target.
pub fn write_many_atomic(files: &[(PathBuf, &[u8])], mode: u32) -> anyhow::Result<usize> {
    let mut dirs = BTreeSet::new();
    let mut pending = Vec::new();
    for (path, bytes) in files {
        if std::fs::read(path).is_ok_and(|old| old == *bytes) {
            continue;
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if dirs.insert(dir) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory `{}`", dir.display()))?;
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".meshfleet-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
        tmp.write_all(bytes)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        // Closed now (a large batch would run out of descriptors); removed if we fail later.
        pending.push((tmp.into_temp_path(), path));
    }
    let chunk = pending.len().div_ceil(FSYNC_THREADS).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = pending
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for (tmp, path) in part {
                        // fsync through a new read-only descriptor flushes the file's data.
                        std::fs::File::open(tmp)
                            .and_then(|f| f.sync_all())
                            .with_context(|| format!("cannot write `{}`", path.display()))?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a file-writing thread panicked")))
        })
    })?;
    let written = pending.len();
    for (tmp, path) in pending {
        tmp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace `{}`", path.display()))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file may be left behind");
    }

    #[test]
    fn writes_many_and_leaves_unchanged_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(PathBuf, Vec<u8>)> = (0..40)
            .map(|i| {
                (
                    dir.path().join(format!("d{}/f{i}", i % 3)),
                    format!("{i}").into_bytes(),
                )
            })
            .collect();
        fn as_slices(f: &[(PathBuf, Vec<u8>)]) -> Vec<(PathBuf, &[u8])> {
            f.iter().map(|(p, b)| (p.clone(), b.as_slice())).collect()
        }
        assert_eq!(write_many_atomic(&as_slices(&files), 0o644).unwrap(), 40);
        for (p, b) in &files {
            assert_eq!(&std::fs::read(p).unwrap(), b);
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let kept = inode(&files[1].0);
        let mut changed = files.clone();
        changed[0].1 = b"new".to_vec();
        assert_eq!(write_many_atomic(&as_slices(&changed), 0o644).unwrap(), 1);
        assert_eq!(std::fs::read(&files[0].0).unwrap(), b"new");
        assert_eq!(
            inode(&files[1].0),
            kept,
            "an unchanged file is not replaced"
        );
        for d in 0..3 {
            let names: Vec<_> = std::fs::read_dir(dir.path().join(format!("d{d}")))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(
                names.iter().all(|n| !n.ends_with(".tmp")),
                "temporary files left: {names:?}"
            );
        }
    }
}
