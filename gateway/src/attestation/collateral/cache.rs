//! The on-disk cache of collateral, `data_dir/collateral/<key>.json`: one file per thing
//! a verifier needs, keyed by what identifies it (`tdx-<FMSPC>`; `snp-<chip id>-<reported
//! TCB>`), each written whole or not at all (`durable`), so a restart or a service outage
//! still finds the last good copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One cached piece of collateral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cached {
    /// When it was fetched, Unix seconds.
    pub fetched_at: i64,
    /// The earliest `nextUpdate` it names, Unix seconds; `None` when it names none (a
    /// VCEK is valid for years and names none).
    pub next_update: Option<i64>,
    /// The service it came from (base URL).
    pub source: String,
    /// The collateral as the evidence carries it: TDX collateral JSON, or the PEM chain
    /// VCEK, ASK, ARK.
    pub data: String,
}

impl Cached {
    /// Whether it should be fetched again at `now`: it is `refresh` old, or its
    /// `nextUpdate` is less than `refresh` away (or past).
    pub fn due(&self, now: i64, refresh: Duration) -> bool {
        let refresh = i64::try_from(refresh.as_secs()).unwrap_or(i64::MAX);
        now >= self.fetched_at.saturating_add(refresh)
            || self
                .next_update
                .is_some_and(|n| now.saturating_add(refresh) >= n)
    }
}

/// Why a cache file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error("{path}: {why}")]
    Io {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// The file is not a cache entry.
    #[error("{path}: not a collateral cache entry: {why}")]
    Corrupt {
        /// The cache file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The cache under `data_dir` (created at the first store).
    pub fn new(data_dir: &Path) -> DiskCache {
        DiskCache {
            dir: data_dir.join("collateral"),
        }
    }

    /// The file of `key`; characters outside `[A-Za-z0-9-]` become `_` (keys are built
    /// from hex and fixed words, this only guards the folder).
    pub fn path(&self, key: &str) -> PathBuf {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The entry of `key`; `Ok(None)` when there is none.
    pub fn load(&self, key: &str) -> Result<Option<Cached>, CacheError> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CacheError::Io {
                    path,
                    why: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CacheError::Corrupt {
                path,
                why: e.to_string(),
            })
    }

    /// Stores `entry` under `key`, whole or not at all.
    pub fn store(&self, key: &str, entry: &Cached) -> Result<(), CacheError> {
        let path = self.path(key);
        let io = |why: String| CacheError::Io {
            path: path.clone(),
            why,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| io(e.to_string()))?;
        durable::write(&path, &bytes, 0o644).map_err(|e| io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fetched_at: i64, next_update: Option<i64>) -> Cached {
        Cached {
            fetched_at,
            next_update,
            source: "http://127.0.0.1:1".into(),
            data: "{}".into(),
        }
    }

    #[test]
    fn due_when_old_or_close_to_next_update() {
        let hour = Duration::from_secs(3600);
        assert!(!entry(1000, None).due(1000, hour));
        assert!(entry(1000, None).due(4600, hour));
        assert!(!entry(1000, Some(10_000)).due(2000, hour));
        assert!(entry(1000, Some(10_000)).due(6400, hour));
        assert!(entry(1000, Some(500)).due(1000, hour));
    }

    #[test]
    fn stores_and_loads_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        assert!(cache.load("tdx-B0C06F000000").unwrap().is_none());
        let e = entry(5, Some(6));
        cache.store("tdx-B0C06F000000", &e).unwrap();
        assert_eq!(cache.load("tdx-B0C06F000000").unwrap(), Some(e));
        assert!(cache.path("../x").ends_with("collateral/___x.json"));
        std::fs::write(cache.path("bad"), b"not json").unwrap();
        assert!(matches!(cache.load("bad"), Err(CacheError::Corrupt { .. })));
    }
}
