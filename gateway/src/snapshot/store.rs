//! The last snapshot on disk, so that a gateway restart does not lose it:
//! `<data_dir>/snapshot.json` holds the Snapshot JSON exactly as `GET /v1/snapshot`
//! serves it (an operator can copy it as is), and `<data_dir>/snapshot-skipped.json` the
//! files the scan could not read, tagged with the snapshot's `created_at`.
//!
//! Each file is replaced atomically (temporary file in the same directory, fsync,
//! rename, fsync of the directory), so a crash leaves the old file or the new one, never
//! a torn one. The skipped list is written first; on load it is used only when its
//! `created_at` matches the snapshot's, so a crash between the two renames shows an
//! empty skipped list with a warning rather than the list of another snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use attest::snapshot::{Snapshot, SnapshotError};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

/// The snapshot file's name inside the data dir.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// The skipped list's file name inside the data dir.
pub const SKIPPED_FILE: &str = "snapshot-skipped.json";

/// One file the scan could not read, as served by `GET /v1/snapshot/skipped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// The path (bytes that are not UTF-8 shown as `\xNN`).
    pub path: String,
    /// Why, as a sentence (`permission denied`, `read: ...`).
    pub reason: String,
}

/// The skipped list of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedList {
    /// The `created_at` of the snapshot this list belongs to.
    pub created_at: String,
    /// The files the scan could not read, each with the reason.
    pub skipped: Vec<SkippedFile>,
}

/// A finished snapshot: its serialized form (served as is), what the log says of it, and
/// its skipped list. The parsed snapshot is not kept: only its JSON is ever served, and
/// holding both would double the memory of a large file list.
#[derive(Debug)]
pub struct Stored {
    /// When the snapshot was taken (its `created_at`).
    pub created_at: String,
    /// How many files it lists.
    pub files: usize,
    /// The snapshot's JSON, built once so each GET does not serialize a large list
    /// again; shared (not copied) by every response that serves it.
    pub json: Bytes,
    /// The files its scan could not read.
    pub skipped: SkippedList,
}

impl Stored {
    /// Wraps a new snapshot and its skipped list.
    pub fn new(snapshot: Snapshot, skipped: Vec<SkippedFile>) -> Stored {
        let json = Bytes::from(snapshot.to_json());
        Stored {
            created_at: snapshot.created_at.clone(),
            files: snapshot.filehashes.len(),
            json,
            skipped: SkippedList {
                created_at: snapshot.created_at,
                skipped,
            },
        }
    }
}

/// Why the stored snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored file exists but cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// A file cannot be replaced whole.
    #[error(transparent)]
    Write(durable::Error),
    /// `snapshot.json` is not a snapshot this verigated reads (torn, or another version).
    #[error("{path}: {source}")]
    Snapshot {
        /// The `snapshot.json` file.
        path: PathBuf,
        /// What is wrong with its content.
        source: SnapshotError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the stored snapshot of `data_dir`: `Ok(None)` when there is none, an error when
/// the file exists but cannot be read or is not a valid snapshot. A missing, unreadable
/// or mismatched skipped list gives an empty one (logged), since the snapshot itself is
/// what verification needs.
pub fn load(data_dir: &Path) -> Result<Option<Stored>, StoreError> {
    let path = data_dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let snapshot = Snapshot::from_json(&bytes).map_err(|source| StoreError::Snapshot {
        path: path.clone(),
        source,
    })?;
    let skipped_path = data_dir.join(SKIPPED_FILE);
    let skipped = match fs::read(&skipped_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<SkippedList>(&b).map_err(|e| e.to_string()))
    {
        Ok(list) if list.created_at == snapshot.created_at => list.skipped,
        Ok(list) => {
            tracing::warn!(
                path = %skipped_path.display(),
                "the skipped list belongs to the snapshot of {}, not {}; serving none",
                list.created_at,
                snapshot.created_at
            );
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(path = %skipped_path.display(), "no skipped list for the stored snapshot: {e}");
            Vec::new()
        }
    };
    // Serve exactly what is on disk: it is what the operator would copy.
    Ok(Some(Stored {
        created_at: snapshot.created_at.clone(),
        files: snapshot.filehashes.len(),
        skipped: SkippedList {
            created_at: snapshot.created_at,
            skipped,
        },
        json: Bytes::from(bytes),
    }))
}

/// Writes `stored` into `data_dir` (skipped list first, then the snapshot), each file
/// replaced atomically and durably. The skipped list is serialized straight into the
/// file; the snapshot's bytes are the ones kept for serving, written as they are.
pub fn save(data_dir: &Path, stored: &Stored) -> Result<(), StoreError> {
    durable::write_with(&data_dir.join(SKIPPED_FILE), FILE_MODE, |w| {
        serde_json::to_writer(w, &stored.skipped).map_err(io::Error::from)
    })
    .map_err(StoreError::Write)?;
    write_atomic(&data_dir.join(SNAPSHOT_FILE), &stored.json)
}

/// Mode of both files: the snapshot is public (it is served as is), nothing here is secret.
const FILE_MODE: u32 = 0o644;

/// Replaces `path` with `bytes`, whole or not at all (see [`durable`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    durable::write(path, bytes, FILE_MODE).map_err(StoreError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::binding::{Manifest, ManifestEntry};
    use attest::snapshot::{TeePolicy, SNAPSHOT_VERSION};

    fn snapshot(created_at: &str) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: created_at.into(),
            tee_policy: TeePolicy::None,
            tpm_policy: None,
            ima: None,
            manifest: Manifest::new(vec![ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [1; 32],
                spki_sha256: [2; 32],
            }])
            .expect("manifest"),
            filehashes: vec![("/usr/bin/a".into(), "ab".repeat(32))],
        }
    }

    fn skipped() -> Vec<SkippedFile> {
        vec![SkippedFile {
            path: "/secret".into(),
            reason: "permission denied".into(),
        }]
    }

    #[test]
    fn round_trip_and_no_temporary_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("load").is_none());
        let s = Stored::new(snapshot("2026-11-28T00:00:00Z"), skipped());
        save(dir.path(), &s).expect("save");
        let back = load(dir.path()).expect("load").expect("stored");
        assert_eq!((&back.created_at, back.files), (&s.created_at, s.files));
        assert_eq!(
            Snapshot::from_json(&back.json).expect("parses"),
            snapshot("2026-11-28T00:00:00Z")
        );
        assert_eq!(back.json, s.json);
        assert_eq!(back.skipped, s.skipped);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![SKIPPED_FILE, SNAPSHOT_FILE]);
    }

    #[test]
    fn a_skipped_list_of_another_snapshot_is_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        save(
            dir.path(),
            &Stored::new(snapshot("2026-11-28T00:00:00Z"), skipped()),
        )
        .expect("save");
        // As if a crash came between the two renames of a later save.
        let newer = Stored::new(snapshot("2026-11-29T00:00:00Z"), Vec::new());
        write_atomic(&dir.path().join(SNAPSHOT_FILE), &newer.json).expect("write");
        let back = load(dir.path()).expect("load").expect("stored");
        assert_eq!(back.created_at, "2026-11-29T00:00:00Z");
        assert!(back.skipped.skipped.is_empty());
        assert_eq!(back.skipped.created_at, "2026-11-29T00:00:00Z");
    }

    #[test]
    fn a_corrupt_snapshot_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SNAPSHOT_FILE);
        fs::write(&path, b"{\"version\": 1, \"created_at\": ").expect("write");
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::Snapshot { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        // A snapshot of another version is refused too, not half-read.
        let mut v: serde_json::Value =
            serde_json::from_slice(&snapshot("2026-11-28T00:00:00Z").to_json()).expect("json");
        v["version"] = 2.into();
        fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write");
        assert!(matches!(load(dir.path()), Err(StoreError::Snapshot { .. })));
    }

    #[test]
    fn a_corrupt_skipped_list_gives_an_empty_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        save(
            dir.path(),
            &Stored::new(snapshot("2026-11-28T00:00:00Z"), skipped()),
        )
        .expect("save");
        fs::write(dir.path().join(SKIPPED_FILE), b"[1, 2").expect("write");
        let back = load(dir.path()).expect("load").expect("stored");
        assert!(back.skipped.skipped.is_empty());
    }

    #[test]
    fn saving_into_a_missing_dir_fails_and_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone");
        let e = save(
            &gone,
            &Stored::new(snapshot("2026-11-28T00:00:00Z"), skipped()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }
}
