//! The scan cache: what the previous scan learned about each file, keyed by
//! (device, inode, size, mtime, ctime), so a second scan of an unchanged tree opens
//! nothing. ctime cannot be set from user space (any write, chmod or rename bumps it),
//! which is why a file rewritten with its old mtime restored still misses the cache.
//!
//! On disk it is JSON lines in the data dir: a header line, then one object per file.
//! It is only a cache: a file that does not parse is ignored with a warning and the scan
//! rebuilds it. Saving writes a temp file in the same dir, fsyncs it and renames it over
//! the old one, so a crash leaves the old cache or the new one, never half of one.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::classify::FileClass;
use attest::ima::HashAlg;

/// File name of the cache inside the data dir.
pub const CACHE_FILE_NAME: &str = "scan-cache.jsonl";

const FORMAT: &str = "verigate-scan-cache";
/// The cache holds digests of files anyone on the VM can read; nothing in it is secret.
const CACHE_MODE: u32 = 0o644;
const VERSION: u32 = 1;

/// The identity of one version of one file: any change of content, mode, owner or name
/// changes `ctime`, and a replaced file has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

/// What a scan learned about one file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `None`: IMA would not measure this file (so the next scan need not read its header).
    pub class: Option<FileClass>,
    /// The digest, for a measured file, with the algorithm it was computed in.
    pub digest: Option<(HashAlg, String)>,
}

/// One line of the cache file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: [i64; 2],
    ctime: [i64; 2],
    class: Option<FileClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<HashAlg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

/// The first line of the cache file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
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
    /// The first line is not this format's header.
    #[error("scan cache {path}: line 1 is not a `{FORMAT}` version {VERSION} header")]
    BadHeader {
        /// The cache file.
        path: PathBuf,
    },
    /// A line is not a cache entry.
    #[error("scan cache {path}: line {line}: {source}")]
    BadLine {
        /// The cache file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A line's digest is not lowercase hex of the algorithm's length, or a measured
    /// entry lacks its algorithm.
    #[error("scan cache {path}: line {line}: digest is not {expected} lowercase hex characters of a known algorithm")]
    BadDigest {
        /// The cache file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Expected hex length (0 when the algorithm itself is missing).
        expected: usize,
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

/// The in-memory cache of one scan.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanCache {
    entries: HashMap<FileKey, CacheEntry>,
}

impl ScanCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load `path`. A missing file is an empty cache; an unreadable or corrupt one is
    /// an empty cache plus the reason, which the caller logs and reports.
    pub fn load(path: &Path) -> (ScanCache, Option<CacheLoadError>) {
        match Self::try_load(path) {
            Ok(cache) => (cache, None),
            Err(e) => (ScanCache::new(), Some(e)),
        }
    }

    fn try_load(path: &Path) -> Result<ScanCache, CacheLoadError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ScanCache::new()),
            Err(source) => {
                return Err(CacheLoadError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut entries = HashMap::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line_no = i + 1;
            let line = line.map_err(|source| CacheLoadError::Read {
                path: path.to_owned(),
                source,
            })?;
            if i == 0 {
                let ok = serde_json::from_str::<Header>(&line)
                    .is_ok_and(|h| h.format == FORMAT && h.version == VERSION);
                if !ok {
                    return Err(CacheLoadError::BadHeader {
                        path: path.to_owned(),
                    });
                }
                continue;
            }
            let parsed: Line =
                serde_json::from_str(&line).map_err(|source| CacheLoadError::BadLine {
                    path: path.to_owned(),
                    line: line_no,
                    source,
                })?;
            let digest = match (parsed.alg, parsed.digest) {
                (None, None) => None,
                (Some(alg), Some(hex)) => {
                    let expected = alg.size() * 2;
                    let valid = hex.len() == expected
                        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                    if !valid {
                        return Err(CacheLoadError::BadDigest {
                            path: path.to_owned(),
                            line: line_no,
                            expected,
                        });
                    }
                    Some((alg, hex))
                }
                (alg, _) => {
                    return Err(CacheLoadError::BadDigest {
                        path: path.to_owned(),
                        line: line_no,
                        expected: alg.map_or(0, |a| a.size() * 2),
                    })
                }
            };
            let key = FileKey {
                dev: parsed.dev,
                ino: parsed.ino,
                size: parsed.size,
                mtime: parsed.mtime,
                ctime: parsed.ctime,
            };
            entries.insert(
                key,
                CacheEntry {
                    class: parsed.class,
                    digest,
                },
            );
        }
        if entries.is_empty() && fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            // An empty file is what a crash between create and write would leave.
            return Err(CacheLoadError::BadHeader {
                path: path.to_owned(),
            });
        }
        Ok(ScanCache { entries })
    }

    /// The entry for `key`, if the previous scan saw that exact file version.
    pub fn get(&self, key: &FileKey) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Record what this scan learned about `key`.
    pub fn insert(&mut self, key: FileKey, entry: CacheEntry) {
        self.entries.insert(key, entry);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the cache to `path` whole or not at all (see [`durable`]). Entries are
    /// written in key order so that two saves of the same cache give the same bytes.
    /// A failed flush of the folder after the rename is not an error: a crash may then
    /// bring back the old cache, which only costs a rebuild.
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
        let header = Header {
            format: FORMAT.to_owned(),
            version: VERSION,
        };
        serde_json::to_writer(&mut *w, &header)?;
        w.write_all(b"\n")?;
        let mut keys: Vec<&FileKey> = self.entries.keys().collect();
        keys.sort_by_key(|k| (k.dev, k.ino, k.size, k.mtime, k.ctime));
        for key in keys {
            let Some(entry) = self.entries.get(key) else {
                continue;
            };
            let (alg, digest) = match &entry.digest {
                Some((alg, hex)) => (Some(*alg), Some(hex.clone())),
                None => (None, None),
            };
            let line = Line {
                dev: key.dev,
                ino: key.ino,
                size: key.size,
                mtime: key.mtime,
                ctime: key.ctime,
                class: entry.class,
                alg,
                digest,
            };
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime: [1, 2],
            ctime: [3, 4],
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        let mut c = ScanCache::new();
        c.insert(
            key(1),
            CacheEntry {
                class: Some(FileClass::Executable),
                digest: Some((HashAlg::Sha256, "ab".repeat(32))),
            },
        );
        c.insert(
            key(2),
            CacheEntry {
                class: None,
                digest: None,
            },
        );
        c.save(&path).expect("save");
        let (loaded, warning) = ScanCache::load(&path);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get(&key(1)), c.get(&key(1)));
        assert_eq!(loaded.get(&key(2)), c.get(&key(2)));
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CACHE_FILE_NAME)]);
    }

    #[test]
    fn missing_file_is_empty_without_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, w) = ScanCache::load(&dir.path().join("nope"));
        assert!(c.is_empty());
        assert!(w.is_none());
    }

    #[test]
    fn corrupt_files_are_rejected_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CACHE_FILE_NAME);
        let header = r#"{"format":"verigate-scan-cache","version":1}"#;
        let good = r#"{"dev":1,"ino":1,"size":1,"mtime":[0,0],"ctime":[0,0],"class":null}"#;
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "line 1"),
            ("garbage\n".to_owned(), "line 1"),
            (r#"{"format":"other","version":1}"#.to_owned(), "line 1"),
            (format!("{header}\n{good}\n{{\"dev\":"), "line 3"),
            (
                format!(
                    "{header}\n{}\n",
                    r#"{"dev":1,"ino":1,"size":1,"mtime":[0,0],"ctime":[0,0],"class":"executable","alg":"sha256","digest":"zz"}"#
                ),
                "line 2",
            ),
            (
                format!(
                    "{header}\n{}\n",
                    r#"{"dev":1,"ino":1,"size":1,"mtime":[0,0],"ctime":[0,0],"class":"executable","digest":"00"}"#
                ),
                "line 2",
            ),
            (
                format!(
                    "{header}\n{}\n",
                    r#"{"dev":-1,"ino":1,"size":1,"mtime":[0,0],"ctime":[0,0],"class":null}"#
                ),
                "line 2",
            ),
            (format!("{header}\n\u{0}\u{1}binary\n"), "line 2"),
        ];
        for (content, where_) in cases {
            fs::write(&path, &content).expect("write");
            let (c, w) = ScanCache::load(&path);
            assert!(c.is_empty(), "{content:?}");
            let msg = w.map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(where_), "{content:?}: {msg}");
        }
        // Not valid UTF-8 at all.
        fs::write(&path, [0xff, 0xfe, b'\n']).expect("write");
        let (c, w) = ScanCache::load(&path);
        assert!(c.is_empty());
        assert!(matches!(w, Some(CacheLoadError::Read { .. })), "{w:?}");
    }
}
