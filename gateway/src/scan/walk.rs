//! The walk: every regular file under the roots, with its `lstat` metadata, skipping the
//! excluded trees and never following a symlink. Reads only metadata: classifying and
//! hashing happen in the workers, in parallel, while the walk goes on.
//!
//! The walk hands each file to a sink as soon as it finds it (a scan streams them to its
//! workers through a bounded queue), so it never holds the list of a whole tree. Each
//! file is handed over once:
//! - a file under several roots is handed over by the first root that contains it;
//! - a symlink whose real path is a regular file under a root names that file, which the
//!   walk meets there anyway unless a directory on its way could not be listed; such
//!   targets are set aside and only those the walk did not reach are handed over at the
//!   end, by their real path.

use std::collections::BTreeSet;
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

/// What a whole walk found, when it is collected rather than streamed (see
/// [`super::list_files`]).
#[derive(Debug, Default)]
pub struct WalkOutput {
    /// Regular files, each once, in walk order.
    pub candidates: Vec<Candidate>,
    /// Directories and files the walk could not read.
    pub skipped: Vec<Skipped>,
}

/// One root with the excludes that apply inside it: an exclude that contains the root
/// itself is dropped, because a root given explicitly (say a tree under `/var/tmp`)
/// means "scan this".
#[derive(Debug)]
struct Root {
    path: PathBuf,
    excludes: Vec<PathBuf>,
}

impl Root {
    fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.path) && !self.excludes.iter().any(|e| path.starts_with(e))
    }
}

/// The roots of a walk, resolved (real paths) with their excludes.
#[derive(Debug)]
pub struct Roots(Vec<Root>);

impl Roots {
    /// Resolve `roots` (which must exist) minus `exclude` (which must be absolute).
    pub fn resolve(roots: &[PathBuf], exclude: &[PathBuf]) -> Result<Roots, ScanError> {
        let mut excludes: Vec<PathBuf> = Vec::new();
        for e in exclude {
            // A relative prefix could never match the walk's absolute paths: refuse it
            // rather than silently scanning what the operator meant to exclude.
            if !e.is_absolute() {
                return Err(ScanError::RelativeExclude { exclude: e.clone() });
            }
            excludes.push(e.clone());
            // `/var/run` is a symlink to `/run` on most systems: exclude what it points
            // at too, since the walk only ever sees real paths below a canonical root.
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
        Ok(Roots(resolved))
    }

    /// Whether a root before `index` contains `path` (and so hands it over).
    fn earlier_contains(&self, index: usize, path: &Path) -> bool {
        self.0
            .get(..index)
            .is_some_and(|earlier| earlier.iter().any(|r| r.contains(path)))
    }
}

/// The walk's state: where files go, what could not be read, the symlink targets set
/// aside.
struct Walker<'a, S> {
    roots: &'a Roots,
    progress: &'a ScanProgress,
    sink: S,
    skipped: Vec<Skipped>,
    /// Real paths of symlinked files under a root, handed over at the end if unreached.
    targets: BTreeSet<PathBuf>,
    /// Paths whose listing failed or was cut short: what lies below them was not reached.
    unreached: Vec<PathBuf>,
    /// Set when the sink refuses more files (the workers stopped).
    closed: bool,
}

/// Walk `roots`, handing each regular file to `sink` (which returns `false` to stop the
/// walk, e.g. when the workers are gone) and counting it into `progress`. Returns what
/// could not be read, sorted by path, each path once.
pub fn walk(
    roots: &Roots,
    progress: &ScanProgress,
    cancel: &CancelToken,
    sink: impl FnMut(Candidate) -> bool,
) -> Result<Vec<Skipped>, ScanError> {
    let mut w = Walker {
        roots,
        progress,
        sink,
        skipped: Vec::new(),
        targets: BTreeSet::new(),
        unreached: Vec::new(),
        closed: false,
    };
    for (index, root) in roots.0.iter().enumerate() {
        w.walk_root(index, root, cancel)?;
    }
    // Symlinked files the walk did not meet at their real path (a directory on the way
    // could not be listed, though the file itself can be opened).
    let targets = std::mem::take(&mut w.targets);
    for real in targets {
        if w.closed {
            break;
        }
        let reached = roots.0.iter().any(|r| r.contains(&real))
            && !w.unreached.iter().any(|u| real.starts_with(u));
        if reached {
            continue;
        }
        if let Ok(meta) = fs::symlink_metadata(&real) {
            if meta.is_file() {
                w.push_file(real, &meta);
            }
        }
    }
    if cancel.is_cancelled() {
        return Err(ScanError::Cancelled);
    }
    let mut skipped = w.skipped;
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.dedup_by(|a, b| a.path == b.path);
    Ok(skipped)
}

impl<S: FnMut(Candidate) -> bool> Walker<'_, S> {
    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.unreached.push(path.to_path_buf());
        self.skipped.push(Skipped::new(path, reason));
    }

    fn walk_root(
        &mut self,
        index: usize,
        root: &Root,
        cancel: &CancelToken,
    ) -> Result<(), ScanError> {
        let meta = match fs::symlink_metadata(&root.path) {
            Ok(m) => m,
            Err(e) => {
                self.skip(&root.path, SkipReason::from_io("lstat", &e));
                return Ok(());
            }
        };
        if meta.is_file() {
            if !self.roots.earlier_contains(index, &root.path) {
                self.push_file(root.path.clone(), &meta);
            }
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
            if self.closed {
                return Ok(());
            }
            let entries = match fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) => {
                    self.skip(&dir, SkipReason::from_io("read_dir", &e));
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(en) => en,
                    Err(e) => {
                        self.skip(&dir, SkipReason::from_io("read_dir", &e));
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
                        self.skip(&path, SkipReason::from_io("lstat", &e));
                        continue;
                    }
                };
                if file_type.is_dir() {
                    stack.push(path);
                } else if file_type.is_file() {
                    if self.roots.earlier_contains(index, &path) {
                        continue;
                    }
                    match fs::symlink_metadata(&path) {
                        // Re-check: the entry may have been replaced since readdir.
                        Ok(meta) if meta.is_file() => self.push_file(path, &meta),
                        Ok(_) => {}
                        Err(e) => self.skip(&path, SkipReason::from_io("lstat", &e)),
                    }
                } else if file_type.is_symlink() {
                    self.set_aside_symlink_target(&path);
                }
                // FIFOs, sockets and device nodes cannot be executed or mapped as code.
            }
        }
        Ok(())
    }

    /// Remember the real file behind a symlink if it lies under a root (not excluded
    /// there). A dangling or looping symlink names no file: nothing to measure or skip.
    fn set_aside_symlink_target(&mut self, link: &Path) {
        let Ok(real) = fs::canonicalize(link) else {
            return;
        };
        if self.roots.0.iter().any(|r| r.contains(&real)) {
            self.targets.insert(real);
        }
    }

    fn push_file(&mut self, path: PathBuf, meta: &Metadata) {
        if self.closed {
            return;
        }
        let candidate = Candidate {
            path,
            key: FileKey::from_metadata(meta),
            mode: meta.mode(),
        };
        if (self.sink)(candidate) {
            self.progress.files_seen.fetch_add(1, Ordering::Relaxed);
        } else {
            self.closed = true;
        }
    }
}
