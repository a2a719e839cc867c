//! The hashing workers: a pool of one thread per core takes files from a shared source
//! (the walk's queue), answers from the cache when it knows the file version, otherwise opens the file
//! (never through a symlink), classifies it from its mode, name and first bytes, and
//! streams the measured ones through the hash with a fixed buffer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use attest::ima::HashAlg;

use super::cache::{Cached, FileKey, ScanCache};
use super::hasher::FileDigest;
use super::{classify, hasher, walk};
use super::{CancelToken, ScanConfig, ScanError, ScanProgress, SkipReason, Skipped};

/// Where the workers take the next file from: the walk's queue, or a collected list.
pub(super) type Source<'a> = Mutex<Box<dyn Iterator<Item = walk::Candidate> + Send + 'a>>;

/// What a worker concluded about one candidate.
enum Outcome {
    Measured { path: String, digest: FileDigest },
    NotMeasured,
    Skipped(Skipped),
}

struct Examined {
    outcome: Outcome,
    /// What to remember for the next scan, keyed by the version actually read.
    cache: Option<(FileKey, Cached)>,
}

/// What the pool produced: only what the result and the next cache need, never a
/// record per file examined.
pub(super) struct Pooled {
    /// `(path, digest)` of the measured files, in no order.
    pub(super) files: Vec<(String, FileDigest)>,
    /// Files that could not be read, in no order.
    pub(super) skipped: Vec<Skipped>,
    /// The cache for the next scan (not yet [`finish`](ScanCache::finish)ed).
    pub(super) cache: ScanCache,
    /// Worker threads that ran.
    pub(super) workers: usize,
}

impl Pooled {
    fn new(alg: HashAlg) -> Pooled {
        Pooled {
            files: Vec::new(),
            skipped: Vec::new(),
            cache: ScanCache::new(alg),
            workers: 0,
        }
    }

    fn absorb(&mut self, mut other: Pooled) {
        self.files.append(&mut other.files);
        self.skipped.append(&mut other.skipped);
        self.cache.append(&mut other.cache);
        self.workers += other.workers;
    }
}

/// Run the worker pool until `source` is exhausted. `settled_before` is the ctime below
/// which a version may enter the next cache (see `super::CACHE_SETTLE_TIME`).
pub(super) fn examine_all(
    source: &Source<'_>,
    cache: &ScanCache,
    config: &ScanConfig,
    settled_before: [i64; 2],
    progress: &ScanProgress,
    cancel: &CancelToken,
) -> Result<Pooled, ScanError> {
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        config.workers
    }
    .max(1);
    let ctx = Ctx {
        cache,
        alg: config.algorithm,
        progress,
        cancel,
    };
    progress.start_hashing_clock();
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
                    let mut mine = Pooled::new(ctx.alg);
                    mine.workers = 1;
                    loop {
                        if cancel.is_cancelled() {
                            break;
                        }
                        // Workers take the next file from the shared source: a large
                        // file on one worker does not hold back the others.
                        let next = source.lock().ok().and_then(|mut it| it.next());
                        let Some(candidate) = next else {
                            break;
                        };
                        if let Some(done) = ctx.examine(&candidate, &mut buf) {
                            match done.outcome {
                                Outcome::Measured { path, digest } => {
                                    mine.files.push((path, digest));
                                }
                                Outcome::NotMeasured => {}
                                Outcome::Skipped(sk) => mine.skipped.push(sk),
                            }
                            if let Some((key, what)) = done.cache {
                                if key.ctime < settled_before {
                                    mine.cache.insert(&key, what);
                                }
                            }
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
        let mut all = Pooled::new(ctx.alg);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok(mine) => all.absorb(mine),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err(ScanError::WorkerPanicked);
        }
        Ok(all)
    });
    let all = results?;
    if cancel.is_cancelled() {
        return Err(ScanError::Cancelled);
    }
    Ok(all)
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
        let name = c.path.file_name().unwrap_or_default();
        let by_metadata = classify::class_from_metadata(c.mode, name);
        if let Some(hit) = self.cached(c, by_metadata.is_some()) {
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
        let mut header_len = 0;
        let by_content = match classify::class_from_metadata(before.mode(), name) {
            Some(_) => false,
            None => {
                let header = buf.get_mut(..classify::HEADER_LEN).unwrap_or_default();
                header_len = match read_up_to(&mut file, header) {
                    Ok(n) => n,
                    Err(e) => return skip(SkipReason::from_io("read", &e)),
                };
                let header = buf.get(..header_len).unwrap_or_default();
                if classify::class_from_header(header).is_none() {
                    return Some(Examined {
                        outcome: Outcome::NotMeasured,
                        cache: Some((key, Cached::NotMeasured)),
                    });
                }
                true
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
        let digest = h.finalize();
        Some(Examined {
            outcome: Outcome::Measured {
                path: path.to_owned(),
                digest,
            },
            cache: Some((key, Cached::Measured { digest, by_content })),
        })
    }

    /// The answer of the previous scan for this exact file version, if it holds for
    /// this path: a digest answers whenever the mode or name make the file measured, or
    /// when the content did (a hard link of the same version under another name may be
    /// measured by its name only); "not measured" only when the mode and name leave it
    /// to the content. The cache holds digests of the scan's algorithm only.
    fn cached(&self, c: &walk::Candidate, measured_by_metadata: bool) -> Option<Examined> {
        let found = self.cache.get(&c.key)?;
        let outcome = match found {
            Cached::Measured { digest, by_content } if measured_by_metadata || by_content => {
                match c.path.to_str() {
                    Some(path) => Outcome::Measured {
                        path: path.to_owned(),
                        digest,
                    },
                    None => {
                        self.progress.skipped.fetch_add(1, Ordering::Relaxed);
                        Outcome::Skipped(Skipped::new(&c.path, SkipReason::NonUtf8Path))
                    }
                }
            }
            Cached::NotMeasured if !measured_by_metadata => Outcome::NotMeasured,
            _ => return None,
        };
        Some(Examined {
            outcome,
            cache: Some((c.key, found)),
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
