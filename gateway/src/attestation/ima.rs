//! The IMA log, held once: every evidence that carries it shares one copy of its bytes
//! and one copy of their base64, and the file is read again only when it grew.
//!
//! The kernel's log only grows, and securityfs reports its size as 0, so the file cannot
//! tell by its metadata whether it changed: the cache reads on from the length it holds
//! and appends what it finds (nothing, most of the time). A regular file with a size (a
//! test's log, a copy) is read again whole when its size or modification time changed,
//! since it may have been rewritten rather than appended to.
//!
//! All access to the log goes through [`ImaLogCache::current`], so whatever needs a part of
//! it (the entries after N, say) slices the one shared copy.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::body::Bytes;

/// One version of the log: its bytes and their base64, shared by every response built from
/// it (cloning a [`Bytes`] copies nothing).
#[derive(Debug, Clone, Default)]
pub struct ImaLog {
    /// The binary measurement list.
    pub bytes: Bytes,
    /// `bytes` as standard base64 with padding, the form evidence carries.
    pub base64: Bytes,
}

/// How the cached version was read, to tell whether the file changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// A file that reports no size (securityfs): read on from the cached length.
    Growing,
    /// A regular file: read again when its size or modification time differ.
    Sized {
        len: u64,
        modified: Option<SystemTime>,
    },
}

#[derive(Debug, Default)]
struct Cached {
    log: Arc<ImaLog>,
    stamp: Option<Stamp>,
}

/// The IMA log of `attestation.ima_log`; see the module documentation.
#[derive(Debug)]
pub struct ImaLogCache {
    path: PathBuf,
    // Held across the read, so that concurrent rounds read the file once, not each.
    cached: Mutex<Cached>,
}

impl ImaLogCache {
    /// A cache of the log at `path`; nothing is read until [`ImaLogCache::current`].
    pub fn new(path: PathBuf) -> ImaLogCache {
        ImaLogCache {
            path,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log as it is now: the cached copy when the file has not grown, else a new one.
    /// Blocks on file I/O: call it from a blocking task.
    pub fn current(&self) -> std::io::Result<Arc<ImaLog>> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut file = File::open(&self.path)?;
        let meta = file.metadata()?;
        let stamp = if meta.len() == 0 {
            Stamp::Growing
        } else {
            Stamp::Sized {
                len: meta.len(),
                modified: meta.modified().ok(),
            }
        };
        let unchanged = cached.stamp == Some(stamp);
        let new_bytes = match (stamp, cached.stamp) {
            (Stamp::Sized { .. }, _) if unchanged => return Ok(cached.log.clone()),
            (Stamp::Growing, Some(Stamp::Growing)) => {
                let held = u64::try_from(cached.log.bytes.len()).unwrap_or(u64::MAX);
                file.seek(SeekFrom::Start(held))?;
                let mut more = Vec::new();
                file.read_to_end(&mut more)?;
                if more.is_empty() {
                    return Ok(cached.log.clone());
                }
                let mut all = Vec::with_capacity(cached.log.bytes.len() + more.len());
                all.extend_from_slice(&cached.log.bytes);
                all.extend_from_slice(&more);
                all
            }
            _ => {
                let mut all = Vec::new();
                file.read_to_end(&mut all)?;
                all
            }
        };
        let log = Arc::new(ImaLog {
            base64: Bytes::from(STANDARD.encode(&new_bytes)),
            bytes: Bytes::from(new_bytes),
        });
        cached.log = log.clone();
        cached.stamp = Some(stamp);
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_is_shared_and_a_changed_one_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"one").unwrap();
        let cache = ImaLogCache::new(path.clone());
        let a = cache.current().unwrap();
        let b = cache.current().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "an unchanged log is not read again");
        assert_eq!(&a.bytes[..], b"one");
        assert_eq!(&a.base64[..], b"b25l");
        std::fs::write(&path, b"one two").unwrap();
        let c = cache.current().unwrap();
        assert_eq!(&c.bytes[..], b"one two");
        assert_eq!(&c.base64[..], STANDARD.encode(b"one two").as_bytes());
        std::fs::remove_file(&path).unwrap();
        assert!(cache.current().is_err(), "a missing log is an error");
    }

    #[test]
    fn an_empty_file_reads_as_a_growing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"").unwrap();
        let cache = ImaLogCache::new(path);
        assert!(cache.current().unwrap().bytes.is_empty());
        let again = cache.current().unwrap();
        assert!(again.base64.is_empty());
    }
}
