//! The scan cache: what the previous scan learned about each file version, so a second
//! scan of an unchanged tree opens nothing. A version is identified by (device, inode,
//! size, mtime, ctime); ctime cannot be set from user space (any write, chmod or rename
//! bumps it), which is why a file rewritten with its old mtime restored still misses.
//!
//! It holds only what a scan needs, compactly, because a real root has hundreds of
//! thousands of files and the cache is loaded and rebuilt during every job:
//! - each version is keyed by a 16-byte [`Fingerprint`] of its [`FileKey`] instead of the
//!   48-byte key itself;
//! - a measured version keeps its digest as bytes (one algorithm per file, in the header),
//!   and whether its content (`#!`, ELF `ET_DYN`) or only its mode or name made it
//!   measured;
//! - a version whose content says "not code" keeps nothing but its fingerprint, so the
//!   next scan need not read its first bytes again.
//!
//! On disk (`scan-cache.bin` in the data dir), little-endian:
//! `"VGSCACHE"`, version `u32`, algorithm `u8`, measured count `u64`, other count `u64`;
//! the measured records (fingerprint, flags `u8`, digest) and then the other
//! fingerprints, each list strictly increasing; and last the SHA-256 of everything before
//! it. It is only a cache: a file of another version (the JSON lines of version 1
//! included), a truncated or garbled one is discarded with a reason the scan logs, and
//! the scan rebuilds it. Saving writes a temp file in the same dir, fsyncs it and renames
//! it over the old one, so a crash leaves the old cache or the new one, never half of one.

use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::hasher::FileDigest;
use attest::ima::HashAlg;

/// File name of the cache inside the data dir.
pub const CACHE_FILE_NAME: &str = "scan-cache.bin";
/// File name of the version-1 cache (JSON lines, one line per file seen), which this
/// version neither reads nor writes.
pub const LEGACY_CACHE_FILE_NAME: &str = "scan-cache.jsonl";

const MAGIC: &[u8; 8] = b"VGSCACHE";
/// Version 1 was JSON lines; its first line starts like this.
const V1_PREFIX: &[u8] = b"{\"format\":\"verigate-scan-cache\"";
const VERSION: u32 = 2;
/// The cache holds digests of files anyone on the VM can read; nothing in it is secret.
const CACHE_MODE: u32 = 0o644;
/// magic, version, algorithm, two counts.
const HEADER_LEN: u64 = 8 + 4 + 1 + 8 + 8;
const FINGERPRINT_LEN: usize = 16;
const TRAILER_LEN: usize = 32;
/// Flag of a measured record: its content (`#!`, ELF `ET_DYN`) made it measured, so the
/// digest also answers for a hard link whose mode and name say nothing.
const BY_CONTENT: u8 = 1;

/// The identity of one version of one file: any change of content, mode, owner or name
/// changes `ctime`, and a replaced file has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime`, `st_mtime_nsec`.
    pub mtime: [i64; 2],
    /// `st_ctime`, `st_ctime_nsec`.
    pub ctime: [i64; 2],
}

impl FileKey {
    /// The key of the file that `meta` describes.
    pub fn from_metadata(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: [meta.mtime(), meta.mtime_nsec()],
            ctime: [meta.ctime(), meta.ctime_nsec()],
        }
    }

    /// The key's fingerprint: the first 16 bytes of a SHA-256 over its fields. Two
    /// versions share one only by a 128-bit collision, which nobody can aim for since
    /// ctime is the kernel's clock, not the file owner's choice.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"verigate scan cache key\0");
        for v in [self.dev, self.ino, self.size] {
            h.update(v.to_le_bytes());
        }
        for v in [self.mtime[0], self.mtime[1], self.ctime[0], self.ctime[1]] {
            h.update(v.to_le_bytes());
        }
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(h.finalize().get(..FINGERPRINT_LEN).unwrap_or(&[0; 16]));
        Fingerprint(fp)
    }
}

/// A compact [`FileKey`] (see [`FileKey::fingerprint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

/// What the cache knows about one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// Measured, with this digest; `by_content` when its first bytes made it so.
    Measured {
        /// The digest in the cache's algorithm.
        digest: FileDigest,
        /// `#!` or ELF `ET_DYN`, rather than only an exec bit or a `.so` name.
        by_content: bool,
    },
    /// Its mode, name and first bytes say IMA would not measure it.
    NotMeasured,
}

/// One measured record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MeasuredRecord {
    fingerprint: Fingerprint,
    by_content: bool,
    digest: FileDigest,
}

/// The cache of one scan: loaded from disk (sorted), or built by a scan and sorted by
/// [`ScanCache::finish`] before it is saved or looked up.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanCache {
    alg: HashAlg,
    measured: Vec<MeasuredRecord>,
    not_measured: Vec<Fingerprint>,
}

/// Why a cache file was not used (logged, then the scan goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum CacheLoadError {
    /// The file exists but could not be read.
    #[error("reading scan cache {path}: {source}")]
    Read {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is the JSON lines of version 1.
    #[error("scan cache {path}: the old JSON-lines format (version 1), discarded")]
    OldFormat {
        /// The cache file.
        path: PathBuf,
    },
    /// The file does not start with this format's header.
    #[error("scan cache {path}: not a `VGSCACHE` version {VERSION} file: {detail}")]
    BadHeader {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The length is not what the header's counts say (a torn or appended file).
    #[error("scan cache {path}: {actual} bytes where the header announces {expected}")]
    Length {
        /// The cache file.
        path: PathBuf,
        /// The length the header's counts give.
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// A list is not strictly increasing (records out of order or repeated).
    #[error("scan cache {path}: record {record} of the {list} list is out of order")]
    Unsorted {
        /// The cache file.
        path: PathBuf,
        /// `measured` or `other`.
        list: &'static str,
        /// 0-based record index.
        record: u64,
    },
    /// The trailing SHA-256 does not match the content.
    #[error("scan cache {path}: checksum mismatch (garbled content)")]
    Checksum {
        /// The cache file.
        path: PathBuf,
    },
}

/// Why the cache could not be saved (the scan result is still good).
#[derive(Debug, thiserror::Error)]
#[error("saving scan cache {path}: {source}")]
pub struct CacheSaveError {
    /// The cache file.
    pub path: PathBuf,
    /// The step that failed.
    pub source: durable::Error,
}

fn alg_code(alg: HashAlg) -> u8 {
    match alg {
        HashAlg::Sha1 => 1,
        HashAlg::Sha256 => 2,
        HashAlg::Sha384 => 3,
        HashAlg::Sha512 => 4,
    }
}

fn alg_from_code(code: u8) -> Option<HashAlg> {
    HashAlg::ALL.into_iter().find(|a| alg_code(*a) == code)
}

/// A reader that hashes what it reads, for the trailer check.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn exact<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.hash.update(buf);
        Ok(buf)
    }

    fn exact_into(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hash.update(&*buf);
        Ok(())
    }
}

/// A writer that hashes what it writes, for the trailer.
struct HashingWriter<'a, W> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }
}

impl ScanCache {
    /// An empty cache for digests in `alg`.
    pub fn new(alg: HashAlg) -> Self {
        ScanCache {
            alg,
            measured: Vec::new(),
            not_measured: Vec::new(),
        }
    }

    /// Load `path` for a scan in `alg`. A missing file is an empty cache; an unreadable,
    /// old or corrupt one is an empty cache plus the reason, which the caller logs and
    /// reports. A cache of another algorithm keeps only its "not measured" part (those
    /// files need no digest).
    pub fn load(path: &Path, alg: HashAlg) -> (ScanCache, Option<CacheLoadError>) {
        match Self::try_load(path, alg) {
            Ok(cache) => (cache, None),
            Err(e) => (ScanCache::new(alg), Some(e)),
        }
    }

    fn try_load(path: &Path, alg: HashAlg) -> Result<ScanCache, CacheLoadError> {
        let read_err = |source| CacheLoadError::Read {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ScanCache::new(alg)),
            Err(source) => return Err(read_err(source)),
        };
        let actual = file.metadata().map_err(read_err)?.len();
        let bad_header = |detail: &str| CacheLoadError::BadHeader {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let mut r = HashingReader {
            inner: BufReader::new(file),
            hash: Sha256::new(),
        };
        if actual < HEADER_LEN {
            // Too short for a header: tell an old cache from a torn one by its start.
            let mut start = Vec::new();
            r.inner.read_to_end(&mut start).map_err(read_err)?;
            let v1 = !start.is_empty()
                && (start.starts_with(V1_PREFIX) || V1_PREFIX.starts_with(&start));
            return Err(if v1 {
                CacheLoadError::OldFormat {
                    path: path.to_owned(),
                }
            } else {
                bad_header(&format!("{actual} bytes, shorter than a header"))
            });
        }
        let magic: [u8; 8] = r.exact().map_err(read_err)?;
        if &magic != MAGIC {
            return Err(if V1_PREFIX.starts_with(&magic) {
                CacheLoadError::OldFormat {
                    path: path.to_owned(),
                }
            } else {
                bad_header("wrong magic")
            });
        }
        let version = u32::from_le_bytes(r.exact().map_err(read_err)?);
        if version != VERSION {
            return Err(bad_header(&format!("version {version}")));
        }
        let [code] = r.exact::<1>().map_err(read_err)?;
        let file_alg = alg_from_code(code)
            .ok_or_else(|| bad_header(&format!("unknown algorithm code {code}")))?;
        let n_measured = u64::from_le_bytes(r.exact().map_err(read_err)?);
        let n_other = u64::from_le_bytes(r.exact().map_err(read_err)?);
        let measured_len = FINGERPRINT_LEN + 1 + file_alg.size();
        // The counts come from the file: check them against its length before
        // allocating anything they size.
        let expected = u64::try_from(measured_len)
            .ok()
            .and_then(|m| n_measured.checked_mul(m))
            .and_then(|m| n_other.checked_mul(FINGERPRINT_LEN as u64)?.checked_add(m))
            .and_then(|body| body.checked_add(HEADER_LEN + TRAILER_LEN as u64));
        if expected != Some(actual) {
            return Err(CacheLoadError::Length {
                path: path.to_owned(),
                expected: expected.unwrap_or(u64::MAX),
                actual,
            });
        }
        let unsorted = |list, record| CacheLoadError::Unsorted {
            path: path.to_owned(),
            list,
            record,
        };
        // Digests of another algorithm are read (for the checksum) but not kept.
        let keep_measured = file_alg == alg;
        let mut measured = Vec::new();
        if keep_measured {
            measured.reserve_exact(usize::try_from(n_measured).unwrap_or(0));
        }
        let mut record = vec![0u8; measured_len];
        let mut last: Option<Fingerprint> = None;
        for i in 0..n_measured {
            r.exact_into(&mut record).map_err(read_err)?;
            let (fp, rest) = record.split_at(FINGERPRINT_LEN);
            let fp = Fingerprint(fp.try_into().unwrap_or_default());
            if last.is_some_and(|l| l >= fp) {
                return Err(unsorted("measured", i));
            }
            last = Some(fp);
            let (flags, digest) = rest.split_first().unwrap_or((&0, &[]));
            if keep_measured {
                measured.push(MeasuredRecord {
                    fingerprint: fp,
                    by_content: flags & BY_CONTENT != 0,
                    digest: FileDigest::from_slice(digest),
                });
            }
        }
        let mut not_measured = Vec::with_capacity(usize::try_from(n_other).unwrap_or(0));
        let mut last: Option<Fingerprint> = None;
        for i in 0..n_other {
            let fp = Fingerprint(r.exact().map_err(read_err)?);
            if last.is_some_and(|l| l >= fp) {
                return Err(unsorted("other", i));
            }
            last = Some(fp);
            not_measured.push(fp);
        }
        let computed = r.hash.finalize();
        let mut trailer = [0u8; TRAILER_LEN];
        r.inner.read_exact(&mut trailer).map_err(read_err)?;
        if computed[..] != trailer[..] {
            return Err(CacheLoadError::Checksum {
                path: path.to_owned(),
            });
        }
        Ok(ScanCache {
            alg,
            measured,
            not_measured,
        })
    }

    /// The algorithm of the digests.
    pub fn algorithm(&self) -> HashAlg {
        self.alg
    }

    /// What the previous scan learned about `key`'s exact version, if anything.
    pub fn get(&self, key: &FileKey) -> Option<Cached> {
        let fp = key.fingerprint();
        if let Ok(i) = self.measured.binary_search_by(|m| m.fingerprint.cmp(&fp)) {
            let m = self.measured.get(i)?;
            return Some(Cached::Measured {
                digest: m.digest,
                by_content: m.by_content,
            });
        }
        self.not_measured
            .binary_search(&fp)
            .is_ok()
            .then_some(Cached::NotMeasured)
    }

    /// Record what this scan learned about `key` (a digest must be in the cache's
    /// algorithm). Call [`finish`](Self::finish) before looking up or saving.
    pub fn insert(&mut self, key: &FileKey, what: Cached) {
        let fingerprint = key.fingerprint();
        match what {
            Cached::Measured { digest, by_content } => self.measured.push(MeasuredRecord {
                fingerprint,
                by_content,
                digest,
            }),
            Cached::NotMeasured => self.not_measured.push(fingerprint),
        }
    }

    /// Moves every entry of `other` (built by another worker) into this cache.
    pub fn append(&mut self, other: &mut ScanCache) {
        self.measured.append(&mut other.measured);
        self.not_measured.append(&mut other.not_measured);
    }

    /// Sorts the entries and drops repeats (a hard-linked version met twice) and the
    /// spare capacity. A version both measured and not (one hard link named `*.so`, the
    /// other not) keeps both answers: [`get`](Self::get) gives the measured one, and the
    /// scan only trusts a measured answer for a file its name or mode do not make
    /// measured when the content did.
    pub fn finish(&mut self) {
        self.measured
            .sort_by_key(|m| (m.fingerprint, !m.by_content));
        // The same version read twice has the same digest; keep the content flag if
        // either read set it (sorted first).
        self.measured
            .dedup_by(|b, a| a.fingerprint == b.fingerprint);
        self.not_measured.sort_unstable();
        self.not_measured.dedup();
        self.measured.shrink_to_fit();
        self.not_measured.shrink_to_fit();
    }

    /// Number of file versions known.
    pub fn len(&self) -> usize {
        self.measured.len() + self.not_measured.len()
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.measured.is_empty() && self.not_measured.is_empty()
    }

    /// Write the cache to `path` whole or not at all (see [`durable`]), streamed (no
    /// copy of the cache in memory). A failed flush of the folder after the rename is not
    /// an error: a crash may then bring back the old cache, which only costs a rebuild.
    pub fn save(&self, path: &Path) -> Result<(), CacheSaveError> {
        match durable::write_with(path, CACHE_MODE, |w| self.write_to(w)) {
            Ok(()) | Err(durable::Error::SyncFolder { .. }) => Ok(()),
            Err(source) => Err(CacheSaveError {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX).to_le_bytes();
        let mut hw = HashingWriter {
            inner: w,
            hash: Sha256::new(),
        };
        hw.put(MAGIC)?;
        hw.put(&VERSION.to_le_bytes())?;
        hw.put(&[alg_code(self.alg)])?;
        hw.put(&count(self.measured.len()))?;
        hw.put(&count(self.not_measured.len()))?;
        for m in &self.measured {
            hw.put(&m.fingerprint.0)?;
            hw.put(&[if m.by_content { BY_CONTENT } else { 0 }])?;
            hw.put(m.digest.as_bytes())?;
        }
        for fp in &self.not_measured {
            hw.put(&fp.0)?;
        }
        let trailer = hw.hash.finalize();
        hw.inner.write_all(&trailer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime: [1, 2],
            ctime: [3, 4],
        }
    }

    fn digest(byte: u8) -> FileDigest {
        FileDigest::from_slice(&[byte; 32])
    }

    fn sample() -> ScanCache {
        let mut c = ScanCache::new(HashAlg::Sha256);
        c.insert(
            &key(1),
            Cached::Measured {
                digest: digest(0xab),
                by_content: false,
            },
        );
        c.insert(
            &key(3),
            Cached::Measured {
                digest: digest(0xcd),
                by_content: true,
            },
        );
        c.insert(&key(2), Cached::NotMeasured);
        c.insert(&key(4), Cached::NotMeasured);
        c.finish();
        c
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        let c = sample();
        c.save(&path).expect("save");
        let (loaded, warning) = ScanCache::load(&path, HashAlg::Sha256);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(loaded, c);
        assert_eq!(loaded.len(), 4);
        assert_eq!(
            loaded.get(&key(1)),
            Some(Cached::Measured {
                digest: digest(0xab),
                by_content: false
            })
        );
        assert_eq!(
            loaded.get(&key(3)),
            Some(Cached::Measured {
                digest: digest(0xcd),
                by_content: true
            })
        );
        assert_eq!(loaded.get(&key(2)), Some(Cached::NotMeasured));
        assert_eq!(loaded.get(&key(5)), None);
        // Any field of the key changes the answer.
        let mut other = key(1);
        other.ctime = [3, 5];
        assert_eq!(loaded.get(&other), None);
        // Two saves of the same cache give the same bytes.
        let first = fs::read(&path).expect("read");
        loaded.save(&path).expect("save again");
        assert_eq!(fs::read(&path).expect("read"), first);
        // Header, 2 measured records of 16+1+32, 2 others of 16, the checksum.
        assert_eq!(first.len(), 29 + 2 * 49 + 2 * 16 + 32);
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CACHE_FILE_NAME)]);
    }

    #[test]
    fn another_algorithm_keeps_only_the_unmeasured_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        sample().save(&path).expect("save");
        let (loaded, warning) = ScanCache::load(&path, HashAlg::Sha384);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(loaded.algorithm(), HashAlg::Sha384);
        assert_eq!(loaded.get(&key(1)), None);
        assert_eq!(loaded.get(&key(2)), Some(Cached::NotMeasured));
    }

    #[test]
    fn repeats_collapse_and_the_content_flag_wins() {
        let mut c = ScanCache::new(HashAlg::Sha256);
        for by_content in [false, true, false] {
            c.insert(
                &key(1),
                Cached::Measured {
                    digest: digest(1),
                    by_content,
                },
            );
        }
        c.insert(&key(2), Cached::NotMeasured);
        c.insert(&key(2), Cached::NotMeasured);
        c.finish();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&key(1)),
            Some(Cached::Measured {
                digest: digest(1),
                by_content: true
            })
        );
    }

    #[test]
    fn missing_file_is_empty_without_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, w) = ScanCache::load(&dir.path().join("nope"), HashAlg::Sha256);
        assert!(c.is_empty());
        assert!(w.is_none());
    }

    fn load_err(path: &Path, content: &[u8]) -> CacheLoadError {
        fs::write(path, content).expect("write");
        let (c, w) = ScanCache::load(path, HashAlg::Sha256);
        assert!(c.is_empty(), "{content:?}");
        w.unwrap_or_else(|| panic!("no warning for {content:?}"))
    }

    #[test]
    fn an_old_json_lines_cache_is_discarded_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEGACY_CACHE_FILE_NAME);
        let v1 = concat!(
            r#"{"format":"verigate-scan-cache","version":1}"#,
            "\n",
            r#"{"dev":1,"ino":1,"size":1,"mtime":[0,0],"ctime":[0,0],"class":null}"#,
            "\n"
        );
        let e = load_err(&path, v1.as_bytes());
        assert!(matches!(e, CacheLoadError::OldFormat { .. }), "{e}");
        assert!(e.to_string().contains("old JSON-lines format"), "{e}");
        // Even a v1 file torn inside its header line is recognised.
        let e = load_err(&path, br#"{"format":"verigate-scan"#);
        assert!(matches!(e, CacheLoadError::OldFormat { .. }), "{e}");
    }

    #[test]
    fn truncated_caches_are_rejected_at_every_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        sample().save(&path).expect("save");
        let good = fs::read(&path).expect("read");
        for n in 0..good.len() {
            let e = load_err(&path, &good[..n]);
            assert!(
                matches!(
                    e,
                    CacheLoadError::BadHeader { .. } | CacheLoadError::Length { .. }
                ),
                "{n}: {e}"
            );
        }
        // Appended bytes too.
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            load_err(&path, &longer),
            CacheLoadError::Length { .. }
        ));
    }

    #[test]
    fn garbled_caches_are_rejected_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        sample().save(&path).expect("save");
        let good = fs::read(&path).expect("read");
        // Every single flipped byte is caught, by the header checks or the checksum.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            let e = load_err(&path, &bad);
            let msg = e.to_string();
            assert!(msg.contains(CACHE_FILE_NAME), "{i}: {msg}");
        }
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"\x00\xff not a cache at all, long enough".to_vec(),
                "magic",
            ),
            (
                {
                    let mut v = good.clone();
                    v[8] = 3;
                    v
                },
                "version 3",
            ),
            (
                {
                    let mut v = good.clone();
                    v[12] = 9;
                    v
                },
                "unknown algorithm code 9",
            ),
            // Counts that would size a huge allocation: refused by the length check.
            (
                {
                    let mut v = good.clone();
                    v[13..21].copy_from_slice(&u64::MAX.to_le_bytes());
                    v
                },
                "header announces",
            ),
        ];
        for (content, want) in cases {
            let msg = load_err(&path, &content).to_string();
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    #[test]
    fn out_of_order_records_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        let mut c = sample();
        c.not_measured.swap(0, 1);
        c.save(&path).expect("save");
        let (loaded, w) = ScanCache::load(&path, HashAlg::Sha256);
        assert!(loaded.is_empty());
        assert!(
            matches!(
                w,
                Some(CacheLoadError::Unsorted {
                    list: "other",
                    record: 1,
                    ..
                })
            ),
            "{w:?}"
        );
    }
}
