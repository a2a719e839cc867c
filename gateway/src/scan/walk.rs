//! The walk: every regular file under the roots, with its `lstat` metadata, skipping the
//! excluded trees and never following a symlink. A symlink whose real path is a regular
//! file under a root is recorded once, by that real path (usually the walk meets the
//! same file there anyway; duplicates are removed). Reads only metadata: classifying and
//! hashing happen later, in parallel.

use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::cache::FileKey;
use super::{CancelToken, ScanError, ScanProgress, SkipReason, Skipped};

/// A regular file found by the walk.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Absolute path (the real path for a symlink target).
    pub path: PathBuf,
    /// Cache key from the walk's `lstat`.
    pub key: FileKey,
    /// `st_mode` from the walk's `lstat`.
    pub mode: u32,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct WalkOutput {
    /// Regular files, sorted by path, without duplicates.
    pub candidates: Vec<Candidate>,
    /// Directories and files the walk could not read.
    pub skipped: Vec<Skipped>,
}

/// One root with the excludes that apply inside it: an exclude that contains the root
/// itself is dropped, because a root given explicitly (say a tree under `/var/tmp`)
/// means "scan this".
struct Root {
    path: PathBuf,
    excludes: Vec<PathBuf>,
}

impl Root {
    fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.path) && !self.excludes.iter().any(|e| path.starts_with(e))
    }
}

/// Walk `roots` (which must exist) minus `exclude`, counting files into `progress`.
pub fn walk(
    roots: &[PathBuf],
    exclude: &[PathBuf],
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<WalkOutput, ScanError> {
    let mut excludes: Vec<PathBuf> = Vec::new();
    for e in exclude {
        // A relative prefix could never match the walk's absolute paths: refuse it
        // rather than silently scanning what the operator meant to exclude.
        if !e.is_absolute() {
            return Err(ScanError::RelativeExclude { exclude: e.clone() });
        }
        excludes.push(e.clone());
        // `/var/run` is a symlink to `/run` on most systems: exclude what it points at
        // too, since the walk only ever sees real paths below a canonical root.
        if let Ok(real) = fs::canonicalize(e) {
            if &real != e {
                excludes.push(real);
            }
        }
    }
    let mut resolved = Vec::new();
    for root in roots {
        let path = fs::canonicalize(root).map_err(|source| ScanError::Root {
            root: root.clone(),
            source,
        })?;
        let excludes = excludes
            .iter()
            .filter(|e| !path.starts_with(e))
            .cloned()
            .collect();
        resolved.push(Root { path, excludes });
    }

    let mut out = WalkOutput::default();
    for root in &resolved {
        walk_root(root, &resolved, progress, cancel, &mut out)?;
    }
    out.candidates.sort_by(|a, b| a.path.cmp(&b.path));
    out.candidates.dedup_by(|a, b| a.path == b.path);
    // Overlapping roots or symlinks counted some files twice while walking.
    let unique = u64::try_from(out.candidates.len()).unwrap_or(u64::MAX);
    progress.files_seen.store(unique, Ordering::Relaxed);
    out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    out.skipped.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk_root(
    root: &Root,
    all: &[Root],
    progress: &ScanProgress,
    cancel: &CancelToken,
    out: &mut WalkOutput,
) -> Result<(), ScanError> {
    let meta = match fs::symlink_metadata(&root.path) {
        Ok(m) => m,
        Err(e) => {
            out.skipped
                .push(Skipped::new(&root.path, SkipReason::from_io("lstat", &e)));
            return Ok(());
        }
    };
    if meta.is_file() {
        push_file(root.path.clone(), &meta, progress, out);
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut stack = vec![root.path.clone()];
    while let Some(dir) = stack.pop() {
        if cancel.is_cancelled() {
            return Err(ScanError::Cancelled);
        }
        let entries = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) => {
                out.skipped
                    .push(Skipped::new(&dir, SkipReason::from_io("read_dir", &e)));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(en) => en,
                Err(e) => {
                    out.skipped
                        .push(Skipped::new(&dir, SkipReason::from_io("read_dir", &e)));
                    break;
                }
            };
            let path = entry.path();
            if !root.contains(&path) {
                continue;
            }
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    out.skipped
                        .push(Skipped::new(&path, SkipReason::from_io("lstat", &e)));
                    continue;
                }
            };
            if file_type.is_dir() {
                stack.push(path);
            } else if file_type.is_file() {
                match fs::symlink_metadata(&path) {
                    // Re-check: the entry may have been replaced since readdir.
                    Ok(meta) if meta.is_file() => push_file(path, &meta, progress, out),
                    Ok(_) => {}
                    Err(e) => out
                        .skipped
                        .push(Skipped::new(&path, SkipReason::from_io("lstat", &e))),
                }
            } else if file_type.is_symlink() {
                push_symlink_target(&path, all, progress, out);
            }
            // FIFOs, sockets and device nodes cannot be executed or mapped as code.
        }
    }
    Ok(())
}

/// Record the real file behind a symlink if it lies under a root (not excluded there).
/// A dangling or looping symlink names no file, so there is nothing to measure or skip.
fn push_symlink_target(link: &Path, roots: &[Root], progress: &ScanProgress, out: &mut WalkOutput) {
    let Ok(real) = fs::canonicalize(link) else {
        return;
    };
    if !roots.iter().any(|r| r.contains(&real)) {
        return;
    }
    if let Ok(meta) = fs::symlink_metadata(&real) {
        if meta.is_file() {
            push_file(real, &meta, progress, out);
        }
    }
}

fn push_file(path: PathBuf, meta: &Metadata, progress: &ScanProgress, out: &mut WalkOutput) {
    progress.files_seen.fetch_add(1, Ordering::Relaxed);
    out.candidates.push(Candidate {
        path,
        key: FileKey::from_metadata(meta),
        mode: meta.mode(),
    });
}
