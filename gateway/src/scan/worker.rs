//! The hashing workers: a pool of one thread per core takes files from a shared index,
//! answers from the cache when it knows the file version, otherwise opens the file
//! (never through a symlink), classifies it from its mode, name and first bytes, and
//! streams the measured ones through the hash with a fixed buffer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};

use attest::ima::HashAlg;

use super::cache::{self, FileKey, ScanCache};
use super::{classify, hasher, walk};
use super::{CancelToken, ScanConfig, ScanError, ScanProgress, SkipReason, Skipped};

/// What a worker concluded about one candidate.
pub(super) enum Outcome {
    Measured { path: String, digest: String },
    NotMeasured,
    Skipped(Skipped),
}

pub(super) struct Examined {
    pub(super) outcome: Outcome,
    /// What to remember for the next scan, keyed by the version actually read.
    pub(super) cache: Option<(FileKey, cache::CacheEntry)>,
}

/// Run the worker pool over `candidates`; returns the outcomes and the pool size.
pub(super) fn examine_all(
    candidates: &[walk::Candidate],
    cache: &ScanCache,
    config: &ScanConfig,
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<(Vec<Examined>, usize), ScanError> {
    let wanted = if config.workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        config.workers
    };
    let workers = wanted.clamp(1, candidates.len().max(1));
    // Workers take the next index from a shared counter: cheap, and a large file on one
    // worker does not hold back the others.
    let next = AtomicUsize::new(0);
    let ctx = Ctx {
        cache,
        alg: config.algorithm,
        progress,
        cancel,
    };
    let results = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("verigate-scan-{i}"))
                .spawn_scoped(s, || {
                    // Hashing on every core must not take a core or the disk from
                    // anyone else (see `priority`).
                    super::lower_priority("a scan worker");
                    let mut buf = vec![0u8; hasher::BUFFER_SIZE];
                    let mut mine = Vec::new();
                    loop {
                        if cancel.is_cancelled() {
                            break;
                        }
                        let idx = next.fetch_add(1, Ordering::Relaxed);
                        let Some(candidate) = candidates.get(idx) else {
                            break;
                        };
                        if let Some(done) = ctx.examine(candidate, &mut buf) {
                            mine.push((idx, done));
                        }
                        ctx.progress.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                    mine
                });
            match spawned {
                Ok(h) => handles.push(h),
                // Fewer workers than cores is slower but still correct.
                Err(e) if !handles.is_empty() => {
                    tracing::warn!("scan runs with {} workers: {e}", handles.len());
                    break;
                }
                Err(e) => return Err(ScanError::Spawn(e)),
            }
        }
        let used = handles.len();
        let mut all = Vec::with_capacity(candidates.len());
        for h in handles {
            all.extend(h.join().map_err(|_| ScanError::WorkerPanicked)?);
        }
        Ok((all, used))
    });
    let (mut all, used) = results?;
    if cancel.is_cancelled() {
        return Err(ScanError::Cancelled);
    }
    all.sort_by_key(|(idx, _)| *idx);
    Ok((all.into_iter().map(|(_, e)| e).collect(), used))
}

/// What every worker shares.
struct Ctx<'a> {
    cache: &'a ScanCache,
    alg: HashAlg,
    progress: &'a ScanProgress,
    cancel: &'a CancelToken,
}

impl Ctx<'_> {
    /// Classify and, if measured, hash one file. `None` only when cancelled midway.
    fn examine(&self, c: &walk::Candidate, buf: &mut [u8]) -> Option<Examined> {
        if let Some(hit) = self.cached(c) {
            self.progress
                .files_from_cache
                .fetch_add(1, Ordering::Relaxed);
            return Some(hit);
        }
        let skip = |reason| {
            self.progress.skipped.fetch_add(1, Ordering::Relaxed);
            Some(Examined {
                outcome: Outcome::Skipped(Skipped::new(&c.path, reason)),
                cache: None,
            })
        };
        // O_NOFOLLOW: a file swapped for a symlink since the walk fails with ELOOP
        // instead of hashing whatever the link points at. O_NONBLOCK: a file swapped for
        // a FIFO does not hang the worker (it has no effect on regular files).
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&c.path)
        {
            Ok(f) => f,
            Err(e) => return skip(SkipReason::from_io("open", &e)),
        };
        let before = match file.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => return skip(SkipReason::NotRegular),
            Err(e) => return skip(SkipReason::from_io("fstat", &e)),
        };
        let key = FileKey::from_metadata(&before);
        let name = c.path.file_name().unwrap_or_default();
        let mut header_len = 0;
        let class = match classify::class_from_metadata(before.mode(), name) {
            Some(class) => class,
            None => {
                let header = buf.get_mut(..classify::HEADER_LEN).unwrap_or_default();
                header_len = match read_up_to(&mut file, header) {
                    Ok(n) => n,
                    Err(e) => return skip(SkipReason::from_io("read", &e)),
                };
                let header = buf.get(..header_len).unwrap_or_default();
                match classify::class_from_header(header) {
                    Some(class) => class,
                    None => {
                        return Some(Examined {
                            outcome: Outcome::NotMeasured,
                            cache: Some((
                                key,
                                cache::CacheEntry {
                                    class: None,
                                    digest: None,
                                },
                            )),
                        })
                    }
                }
            }
        };
        let Some(path) = c.path.to_str() else {
            return skip(SkipReason::NonUtf8Path);
        };
        let mut h = hasher::Hasher::new(self.alg);
        h.update(buf.get(..header_len).unwrap_or_default());
        let on_bytes = |n| {
            self.progress.bytes_hashed.fetch_add(n, Ordering::Relaxed);
        };
        on_bytes(u64::try_from(header_len).unwrap_or(0));
        match hasher::stream_into(&mut h, &mut file, buf, self.cancel, on_bytes) {
            Ok(_) => {}
            Err(hasher::HashError::Cancelled) => return None,
            Err(hasher::HashError::Io(e)) => return skip(SkipReason::from_io("read", &e)),
        }
        // The digest is only the file's if nothing changed while we read it.
        match file.metadata() {
            Ok(after) if FileKey::from_metadata(&after) == key => {}
            Ok(_) => return skip(SkipReason::ChangedWhileHashing),
            Err(e) => return skip(SkipReason::from_io("fstat", &e)),
        }
        self.progress.files_hashed.fetch_add(1, Ordering::Relaxed);
        let digest = h.finalize_hex();
        Some(Examined {
            outcome: Outcome::Measured {
                path: path.to_owned(),
                digest: digest.clone(),
            },
            cache: Some((
                key,
                cache::CacheEntry {
                    class: Some(class),
                    digest: Some((self.alg, digest)),
                },
            )),
        })
    }

    /// The answer of the previous scan for this exact file version, if it is complete
    /// (a measured file hashed in another algorithm needs hashing again).
    fn cached(&self, c: &walk::Candidate) -> Option<Examined> {
        let entry = self.cache.get(&c.key)?;
        let outcome = match (&entry.class, &entry.digest) {
            (None, _) => Outcome::NotMeasured,
            (Some(_), Some((alg, digest))) if *alg == self.alg => match c.path.to_str() {
                Some(path) => Outcome::Measured {
                    path: path.to_owned(),
                    digest: digest.clone(),
                },
                None => {
                    self.progress.skipped.fetch_add(1, Ordering::Relaxed);
                    Outcome::Skipped(Skipped::new(&c.path, SkipReason::NonUtf8Path))
                }
            },
            (Some(_), _) => return None,
        };
        Some(Examined {
            outcome,
            cache: Some((c.key, entry.clone())),
        })
    }
}

/// Read until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
