//! The snapshot's file scan: the files the IMA policy would measure if they were
//! executed or mapped (executables, shared objects, scripts) under configurable roots,
//! hashed with the IMA log's algorithm, so that the snapshot's `filehashes` also covers
//! code that has not run yet.
//!
//! A scan is a metadata-only [`walk`](walk::walk) streaming the files it finds to a
//! pool of workers (`worker.rs`, one per core) that classify each file from its mode,
//! name and first bytes and stream the measured ones through the hash, then saving the
//! [cache](cache). Nothing in it grows with the number of files examined except the
//! cache (16 bytes per file version) and the result (the measured and skipped files).
//! Its
//! [`ScanProgress`] counters can be read from another thread while it runs (the API
//! polls them) and a [`CancelToken`] stops it between two reads.
//!
//! Choices a reviewer should know:
//! - Paths that are not valid UTF-8 are listed as skipped ([`SkipReason::NonUtf8Path`]),
//!   never converted lossily: a lossy path could name another file in the snapshot.
//! - A file that cannot be read (gone, permission, I/O error, replaced or modified while
//!   being hashed) is listed in [`ScanResult::skipped`] with the reason.
//! - Symlinks are never followed; the real file is recorded by its real path if it lies
//!   under a root. Non-regular files (FIFOs, devices, sockets) are not code and are ignored.
//! - An exclude that contains a root does not hide that root: an explicit root wins.

pub mod cache;
pub mod classify;
pub mod hasher;
pub mod heap;
pub mod priority;
pub mod walk;
mod worker;

use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attest::ima::HashAlg;
use serde::Serialize;

pub use cache::{Cached, FileKey, ScanCache, CACHE_FILE_NAME, LEGACY_CACHE_FILE_NAME};
pub use classify::FileClass;
pub use hasher::FileDigest;

/// Trees skipped by default: kernel and device pseudo-filesystems, runtime and temporary
/// state, caches, logs and spools (they change all the time and hold no installed code),
/// and mount points for removable or foreign media.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/cache",
    "/var/log",
    "/var/spool",
    "/var/crash",
    "/lost+found",
    "/mnt",
    "/media",
];

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Where to look (`[snapshot] roots` of `configs/verigated.toml`); each must exist.
    pub roots: Vec<PathBuf>,
    /// Path prefixes never entered (`[snapshot] exclude` of `configs/verigated.toml`),
    /// compared by component.
    pub exclude: Vec<PathBuf>,
    /// The IMA log's file-digest algorithm.
    pub algorithm: HashAlg,
    /// The cache file (usually `data_dir/scan-cache.jsonl`); `None` hashes everything.
    pub cache_file: Option<PathBuf>,
    /// Hashing workers; 0 means one per available core.
    pub workers: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            roots: vec![PathBuf::from("/")],
            exclude: DEFAULT_EXCLUDES.iter().map(PathBuf::from).collect(),
            algorithm: HashAlg::Sha256,
            cache_file: None,
            workers: 0,
        }
    }
}

impl ScanConfig {
    /// The default cache location inside verigated's data dir.
    pub fn cache_file_in(data_dir: &Path) -> PathBuf {
        data_dir.join(CACHE_FILE_NAME)
    }
}

/// Stops a running scan; clone it to hand it to the thread that may cancel.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the scan to stop at its next check (between directories and between reads).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where a scan job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Created, not started.
    Pending,
    /// Listing files (metadata only); the workers already classify and hash the files
    /// listed so far.
    Walking,
    /// The walk is over; classifying and hashing the rest.
    Hashing,
    /// Writing the cache file.
    SavingCache,
    /// Finished; the result is ready.
    Done,
    /// Stopped by its [`CancelToken`].
    Cancelled,
    /// Stopped by an error.
    Failed,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Walking,
            2 => Phase::Hashing,
            3 => Phase::SavingCache,
            4 => Phase::Done,
            5 => Phase::Cancelled,
            6 => Phase::Failed,
            _ => Phase::Pending,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Phase::Pending => 0,
            Phase::Walking => 1,
            Phase::Hashing => 2,
            Phase::SavingCache => 3,
            Phase::Done => 4,
            Phase::Cancelled => 5,
            Phase::Failed => 6,
        }
    }
}

/// Live counters of one scan, updated by the workers and readable from any thread
/// (share it in an `Arc`). Relaxed atomics: each counter is exact, a report may mix
/// values a few files apart, which is fine for a progress display.
#[derive(Debug)]
pub struct ScanProgress {
    phase: AtomicU8,
    /// Regular files found by the walk so far.
    files_seen: AtomicU64,
    /// Files classified (from the cache, the header or the mode) or skipped.
    files_done: AtomicU64,
    /// Files whose digest was computed in this scan (cache misses).
    files_hashed: AtomicU64,
    /// Files answered by the cache without being opened.
    files_from_cache: AtomicU64,
    /// Bytes fed to the hash in this scan.
    bytes_hashed: AtomicU64,
    /// Files listed as skipped.
    skipped: AtomicU64,
    created: Instant,
    /// Nanoseconds after `created` at which hashing began (0: not yet).
    hashing_started_ns: AtomicU64,
    /// Nanoseconds after `created` at which the job ended (0: still running).
    finished_ns: AtomicU64,
}

impl Default for ScanProgress {
    fn default() -> Self {
        ScanProgress {
            phase: AtomicU8::new(Phase::Pending.as_u8()),
            files_seen: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            files_hashed: AtomicU64::new(0),
            files_from_cache: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            created: Instant::now(),
            hashing_started_ns: AtomicU64::new(0),
            finished_ns: AtomicU64::new(0),
        }
    }
}

/// A consistent-enough copy of [`ScanProgress`] for the API's `GET /v1/snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressReport {
    /// Current phase.
    pub phase: Phase,
    /// Regular files found by the walk.
    pub files_seen: u64,
    /// Files examined by the workers.
    pub files_done: u64,
    /// Files hashed in this scan (cache misses).
    pub files_hashed: u64,
    /// Files answered by the cache.
    pub files_from_cache: u64,
    /// Bytes hashed in this scan.
    pub bytes_hashed: u64,
    /// Files listed as skipped.
    pub skipped: u64,
    /// Milliseconds since the job was created (frozen when it ends).
    pub elapsed_ms: u64,
    /// Hash throughput since hashing began, bytes per second.
    pub bytes_per_sec: u64,
}

impl ScanProgress {
    /// Fresh counters in phase [`Phase::Pending`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase.as_u8(), Ordering::Relaxed);
        let now = self.now_ns();
        if matches!(phase, Phase::Done | Phase::Cancelled | Phase::Failed) {
            self.finished_ns.store(now, Ordering::Relaxed);
        }
    }

    /// Marks the start of hashing (the throughput's origin): the workers start while
    /// the walk still runs, so this is not the switch to [`Phase::Hashing`].
    fn start_hashing_clock(&self) {
        let now = self.now_ns();
        let _ =
            self.hashing_started_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        // At least 1 so that 0 keeps meaning "not yet".
        u64::try_from(self.created.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Read every counter now.
    pub fn report(&self) -> ProgressReport {
        let finished = self.finished_ns.load(Ordering::Relaxed);
        let now = if finished == 0 {
            self.now_ns()
        } else {
            finished
        };
        let started = self.hashing_started_ns.load(Ordering::Relaxed);
        let bytes_hashed = self.bytes_hashed.load(Ordering::Relaxed);
        let hashing_ns = if started == 0 {
            0
        } else {
            now.saturating_sub(started)
        };
        let bytes_per_sec = if hashing_ns == 0 {
            0
        } else {
            let rate = u128::from(bytes_hashed) * 1_000_000_000 / u128::from(hashing_ns);
            u64::try_from(rate).unwrap_or(u64::MAX)
        };
        ProgressReport {
            phase: self.phase(),
            files_seen: self.files_seen.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            files_from_cache: self.files_from_cache.load(Ordering::Relaxed),
            bytes_hashed,
            skipped: self.skipped.load(Ordering::Relaxed),
            elapsed_ms: now / 1_000_000,
            bytes_per_sec,
        }
    }
}

/// Why a file is in [`ScanResult::skipped`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// The path is not valid UTF-8; recording it lossily could name another file.
    NonUtf8Path,
    /// The file disappeared between the walk and the read.
    Vanished,
    /// The kernel refused access (EACCES/EPERM), e.g. for an unprivileged gateway.
    PermissionDenied,
    /// The path no longer names a regular file (replaced by a symlink, FIFO, ...).
    NotRegular,
    /// Size, mtime, ctime or inode changed while the file was being hashed.
    ChangedWhileHashing,
    /// Another I/O error during `op` (`open`, `read`, `read_dir`, `lstat`, `fstat`).
    Io {
        /// The failed operation.
        op: &'static str,
        /// The OS error message.
        error: String,
    },
}

impl SkipReason {
    fn from_io(op: &'static str, e: &io::Error) -> SkipReason {
        match e.kind() {
            io::ErrorKind::NotFound => SkipReason::Vanished,
            io::ErrorKind::PermissionDenied => SkipReason::PermissionDenied,
            _ if e.raw_os_error() == Some(libc::ELOOP) => SkipReason::NotRegular,
            _ => SkipReason::Io {
                op,
                error: e.to_string(),
            },
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NonUtf8Path => f.write_str("non-UTF-8 path"),
            SkipReason::Vanished => f.write_str("vanished during the scan"),
            SkipReason::PermissionDenied => f.write_str("permission denied"),
            SkipReason::NotRegular => f.write_str("no longer a regular file"),
            SkipReason::ChangedWhileHashing => f.write_str("changed while being hashed"),
            SkipReason::Io { op, error } => write!(f, "{op}: {error}"),
        }
    }
}

/// A file (or directory) the scan could not read, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The path; bytes that are not UTF-8 are shown as `\xNN` (for people only).
    pub path: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl Skipped {
    fn new(path: &Path, reason: SkipReason) -> Skipped {
        Skipped {
            path: escape_path(path),
            reason,
        }
    }
}

/// `path` as text, with each byte that is not part of valid UTF-8 written as `\xNN`
/// (and a literal backslash left as is: this is for display, not for matching).
pub fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Totals of a finished scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanStats {
    /// Regular files found by the walk.
    pub files_seen: u64,
    /// Files IMA would measure, with a digest in the result.
    pub files_measured: u64,
    /// Files hashed in this scan (cache misses); 0 on an unchanged tree with a cache.
    pub files_hashed: u64,
    /// Files answered by the cache without being opened.
    pub files_from_cache: u64,
    /// Bytes hashed in this scan.
    pub bytes_hashed: u64,
    /// Entries in the skipped list.
    pub skipped: u64,
    /// Worker threads used.
    pub workers: usize,
    /// Milliseconds from the creation of the [`ScanProgress`] to the end of the job.
    pub elapsed_ms: u64,
    /// Why the cache was not loaded or saved, if so (the scan is still complete).
    pub cache_warning: Option<String>,
}

/// The outcome of a scan, ready to merge with the IMA log's entries into `filehashes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanResult {
    /// The digest algorithm of every entry.
    pub algorithm: HashAlg,
    /// `(path, lowercase hex digest)`, sorted by path, one entry per path.
    pub files: Vec<(String, String)>,
    /// What could not be read, sorted by path.
    pub skipped: Vec<Skipped>,
    /// Totals.
    pub stats: ScanStats,
}

/// Why a scan produced no result.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A configured root does not exist or cannot be resolved.
    #[error("snapshot root {root}: {source}")]
    Root {
        /// The root as configured.
        root: PathBuf,
        /// The error from resolving it.
        source: io::Error,
    },
    /// An exclude is not an absolute path, so it would never match.
    #[error("snapshot exclude {exclude}: not an absolute path (write it from /)")]
    RelativeExclude {
        /// The exclude as configured.
        exclude: PathBuf,
    },
    /// The job's [`CancelToken`] was used.
    #[error("scan cancelled")]
    Cancelled,
    /// No hashing worker thread could be started.
    #[error("starting scan worker threads: {0}")]
    Spawn(io::Error),
    /// A worker thread panicked (a bug; reported instead of propagating the panic).
    #[error("a scan worker thread panicked")]
    WorkerPanicked,
}

impl ScanError {
    fn terminal_phase(&self) -> Phase {
        match self {
            ScanError::Cancelled => Phase::Cancelled,
            _ => Phase::Failed,
        }
    }
}

/// Run a whole scan: the walk on a thread of its own streams the files it finds through
/// a bounded queue to the hashing workers, so that neither the list of files nor a
/// record per examined file is ever held whole; then the cache is saved. Blocks the
/// calling thread (run it on a dedicated or blocking thread); `progress` and `cancel` are
/// how other threads watch and stop it.
pub fn scan(
    config: &ScanConfig,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<ScanResult, ScanError> {
    progress.set_phase(Phase::Walking);
    // A scan's large blocks must leave the RSS when freed (see `heap`).
    if !heap::bound_retained_memory() {
        tracing::debug!("malloc thresholds left as they are");
    }
    let result = scan_streaming(config, progress, cancel);
    progress.set_phase(match &result {
        Ok(_) => Phase::Done,
        Err(e) => e.terminal_phase(),
    });
    result
}

/// Files handed from the walk to the workers at once: one wake-up of a waiting worker per
/// batch instead of per file (a cached scan of a real root otherwise spends more on
/// those wake-ups than on its cache lookups).
const WALK_BATCH: usize = 256;
/// Batches the walk may be ahead of the workers: enough to keep them busy while the walk
/// waits on a slow directory, a few hundred KiB of paths at most.
const WALK_QUEUE: usize = 4;

fn scan_streaming(
    config: &ScanConfig,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<ScanResult, ScanError> {
    let roots = walk::Roots::resolve(&config.roots, &config.exclude)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<walk::Candidate>>(WALK_QUEUE);
    std::thread::scope(|s| {
        let walker = std::thread::Builder::new()
            .name("verigate-scan-walk".into())
            .spawn_scoped(s, || {
                lower_priority("the scan's walk");
                let tx = tx;
                let mut batch = Vec::with_capacity(WALK_BATCH);
                // A refused send means the workers are gone (cancelled or failed):
                // stop walking.
                let walked = walk::walk(&roots, progress, cancel, |c| {
                    batch.push(c);
                    if batch.len() < WALK_BATCH {
                        return true;
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(WALK_BATCH));
                    tx.send(full).is_ok()
                });
                if walked.is_ok() {
                    if !batch.is_empty() {
                        // Refused only if the workers are gone, which their result says.
                        let _ = tx.send(batch);
                    }
                    count_skipped(progress, &walked);
                    progress.set_phase(Phase::Hashing);
                }
                walked
            })
            .map_err(ScanError::Spawn)?;
        let source: worker::Source<'_> = std::sync::Mutex::new(Box::new(rx.into_iter().flatten()));
        let hashed = hash_from(config, &source, progress, cancel);
        // Unblock a walk still waiting on a full queue if the workers stopped early.
        drop(source);
        let walked = walker.join().map_err(|_| ScanError::WorkerPanicked)?;
        let skipped = walked?;
        hashed.map(|h| h.into_result(config, skipped, progress))
    })
}

fn count_skipped(progress: &ScanProgress, walked: &Result<Vec<Skipped>, ScanError>) {
    if let Ok(skipped) = walked {
        let n = u64::try_from(skipped.len()).unwrap_or(u64::MAX);
        progress.skipped.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs [`scan`] on a thread of its own at idle CPU and I/O priority, as do its walk and
/// hashing workers (see [`priority`]), and waits for it without blocking the async
/// runtime. A scan thread that cannot be started is [`ScanError::Spawn`]; one that
/// panics is [`ScanError::WorkerPanicked`].
pub async fn scan_idle(
    config: ScanConfig,
    progress: Arc<ScanProgress>,
    cancel: CancelToken,
) -> Result<ScanResult, ScanError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("verigate-scan".into())
        .spawn(move || {
            lower_priority("the scan's thread");
            let _ = tx.send(scan(&config, &progress, &cancel));
        })
        .map_err(ScanError::Spawn)?;
    rx.await.unwrap_or(Err(ScanError::WorkerPanicked))
}

/// Lowers the calling scan thread's priority; a failure is logged (the scan still runs,
/// only at normal priority).
pub(crate) fn lower_priority(thread: &str) {
    if let Err(e) = priority::lower_current_thread() {
        tracing::warn!("{thread} runs at normal priority: {e}");
    }
}

/// The walk phase alone, collected into a list (a step-by-step scan, for tests and
/// tools; [`scan`] streams instead): every regular file under the roots with its
/// metadata, and what could not be read. Sets the phase to `Failed` or `Cancelled` on
/// error; otherwise leaves it at `Walking` for [`hash_files`].
pub fn list_files(
    config: &ScanConfig,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<walk::WalkOutput, ScanError> {
    progress.set_phase(Phase::Walking);
    let mut candidates = Vec::new();
    let listed = walk::Roots::resolve(&config.roots, &config.exclude).and_then(|roots| {
        walk::walk(&roots, progress, cancel, |c| {
            candidates.push(c);
            true
        })
    });
    count_skipped(progress, &listed);
    match listed {
        Ok(skipped) => Ok(walk::WalkOutput {
            candidates,
            skipped,
        }),
        Err(e) => {
            progress.set_phase(e.terminal_phase());
            Err(e)
        }
    }
}

/// The hash phase of a step-by-step scan: classify the listed files and hash the
/// measured ones in parallel, answering from the cache where the file version is known,
/// then save the cache. Files may change or vanish after [`list_files`]; such files end
/// up in `skipped`.
pub fn hash_files(
    config: &ScanConfig,
    listed: walk::WalkOutput,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<ScanResult, ScanError> {
    progress.set_phase(Phase::Hashing);
    let source: worker::Source<'_> = std::sync::Mutex::new(Box::new(listed.candidates.into_iter()));
    let result = hash_from(config, &source, progress, cancel)
        .map(|h| h.into_result(config, listed.skipped, progress));
    progress.set_phase(match &result {
        Ok(_) => Phase::Done,
        Err(e) => e.terminal_phase(),
    });
    result
}

/// What the hashing left for the result.
struct Hashed {
    pooled: worker::Pooled,
    warnings: Vec<String>,
}

/// Load the cache, run the workers over `source`, save the new cache (unless nothing
/// changed). The old cache is dropped before the new one is sorted and saved.
fn hash_from(
    config: &ScanConfig,
    source: &worker::Source<'_>,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<Hashed, ScanError> {
    let mut warnings = Vec::new();
    let cache = match &config.cache_file {
        Some(path) => {
            let (cache, warning) = ScanCache::load(path, config.algorithm);
            if let Some(w) = warning {
                tracing::warn!("ignoring the scan cache, it will be rebuilt: {w}");
                warnings.push(format!("cache ignored and rebuilt: {w}"));
            }
            cache
        }
        None => ScanCache::new(config.algorithm),
    };

    let settled_before = settled_before(SystemTime::now());
    let mut pooled = worker::examine_all(source, &cache, config, settled_before, progress, cancel)?;
    pooled.cache.finish();

    // An unchanged tree gives back the cache it was answered from: skip the rewrite
    // and its fsync, which would otherwise dominate a fully cached scan.
    let unchanged = pooled.cache == cache && warnings.is_empty();
    drop(cache);
    if let (Some(path), false) = (&config.cache_file, unchanged) {
        progress.set_phase(Phase::SavingCache);
        if let Err(e) = pooled.cache.save(path) {
            tracing::warn!("the next scan will re-hash everything: {e}");
            warnings.push(e.to_string());
        }
    }
    Ok(Hashed { pooled, warnings })
}

impl Hashed {
    /// The result: measured files sorted by path (one digest each, in hex), the
    /// skipped files of the walk and the workers sorted by path, and the totals.
    fn into_result(
        self,
        config: &ScanConfig,
        mut skipped: Vec<Skipped>,
        progress: &ScanProgress,
    ) -> ScanResult {
        let worker::Pooled {
            mut files,
            skipped: unreadable,
            cache,
            workers,
        } = self.pooled;
        drop(cache);
        files.sort_unstable();
        files.dedup_by(|a, b| a.0 == b.0);
        let files: Vec<(String, String)> = files
            .into_iter()
            .map(|(path, digest)| (path, digest.to_hex()))
            .collect();
        skipped.extend(unreadable);
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let report = progress.report();
        let stats = ScanStats {
            files_seen: report.files_seen,
            files_measured: count(files.len()),
            files_hashed: report.files_hashed,
            files_from_cache: report.files_from_cache,
            bytes_hashed: report.bytes_hashed,
            skipped: count(skipped.len()),
            workers,
            elapsed_ms: report.elapsed_ms,
            cache_warning: (!self.warnings.is_empty()).then(|| self.warnings.join("; ")),
        };
        ScanResult {
            algorithm: config.algorithm,
            files,
            skipped,
            stats,
        }
    }
}

/// How long after its last change a file version may enter the cache. Timestamps are
/// coarse (a clock tick on most filesystems, up to 2 s on some): a file changed again
/// within the same tick after we read it would keep its (size, mtime, ctime), and the
/// cache would answer with the old digest. So a version changed less than this before
/// the scan began is hashed but not cached, as git does with "racily clean" entries.
pub const CACHE_SETTLE_TIME: Duration = Duration::from_secs(2);

/// The `[secs, nsecs]` ctime below which a version read after `scan_start` may be
/// cached (a clock before 1970 or a huge margin gives a bound that caches nothing).
fn settled_before(scan_start: SystemTime) -> [i64; 2] {
    scan_start
        .checked_sub(CACHE_SETTLE_TIME)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| {
            Some([
                i64::try_from(d.as_secs()).ok()?,
                i64::from(d.subsec_nanos()),
            ])
        })
        .unwrap_or([i64::MIN, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_bound_is_two_seconds_before_the_scan() {
        let t = UNIX_EPOCH + Duration::new(1_000, 5);
        assert_eq!(settled_before(t), [998, 5]);
        assert_eq!(settled_before(UNIX_EPOCH), [i64::MIN, 0]);
        // ctime compares as (secs, nsecs).
        assert!([997, 999_999_999] < settled_before(t));
        assert!([998, 5] >= settled_before(t));
    }

    #[test]
    fn escape_path_marks_invalid_bytes_only() {
        use std::ffi::OsStr;
        let p = Path::new(OsStr::from_bytes(b"/usr/bin/caf\xc3\xa9-\xff"));
        assert_eq!(escape_path(p), "/usr/bin/caf\u{e9}-\\xff");
    }
}
