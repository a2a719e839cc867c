//! Writing `<app_storage>/app.conf` so that it is always whole: the new bytes go to a
//! temporary file in the same folder (created exclusively, mode 0600), which is flushed to
//! disk and then renamed over `app.conf`; the folder is flushed last so the rename itself
//! survives a crash. Any failure before the rename removes the temporary file and leaves
//! the previous `app.conf` untouched, whether the disk is full, the folder read-only, or
//! the write interrupted.
//!
//! The new file keeps the owner of the previous `app.conf` (or takes the folder's owner
//! when there is none yet): verigated runs as root, and an application running as its
//! own user must still be able to read a file of mode 0600.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file init writes, inside `app_storage`.
pub const APP_CONF_NAME: &str = "app.conf";

/// Prefix of temporary files; a crash between create and rename leaves one behind, and
/// the name says what it is.
pub const TEMP_PREFIX: &str = ".app.conf.tmp.";

/// Why `app.conf` was not replaced. Before the rename the previous file is untouched;
/// only [`ConfWriteError::SyncFolder`] happens after it.
#[derive(Debug, thiserror::Error)]
pub enum ConfWriteError {
    #[error("the configuration is {got} bytes, more than the limit of {limit}")]
    TooLarge { got: usize, limit: usize },
    #[error("creating the folder `{path}`: {source}")]
    CreateFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a temporary file in `{folder}`: {source}")]
    CreateTemp {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("giving `{path}` the owner {uid}:{gid} of the file it replaces: {source}")]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("writing `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flushing `{path}` to disk: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("renaming `{from}` to `{to}`: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The new file is in place but the rename may not survive a crash.
    #[error("flushing the folder `{path}` after replacing app.conf: {source}")]
    SyncFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes temporary names unique within the process; O_EXCL makes them unique on disk.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `folder/app.conf` with `bytes` atomically (see the module doc), creating
/// `folder` (mode 0700) if it does not exist. Returns the path written.
pub fn write_app_conf(
    folder: &Path,
    bytes: &[u8],
    limit: usize,
) -> Result<PathBuf, ConfWriteError> {
    if bytes.len() > limit {
        return Err(ConfWriteError::TooLarge {
            got: bytes.len(),
            limit,
        });
    }
    if !folder.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|source| ConfWriteError::CreateFolder {
                path: folder.to_path_buf(),
                source,
            })?;
    }
    let target = folder.join(APP_CONF_NAME);
    // symlink_metadata: a symlink named app.conf is replaced, never followed.
    let owner = std::fs::symlink_metadata(&target)
        .or_else(|_| std::fs::metadata(folder))
        .ok()
        .map(|m| (m.uid(), m.gid()));
    let (temp_path, file) = create_temp(folder)?;
    let guard = TempGuard {
        path: Some(temp_path.clone()),
    };
    if let Some((uid, gid)) = owner {
        let current = file.metadata().ok().map(|m| (m.uid(), m.gid()));
        if current != Some((uid, gid)) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|source| {
                ConfWriteError::Chown {
                    path: temp_path.clone(),
                    uid,
                    gid,
                    source,
                }
            })?;
        }
    }
    write_and_sync(file, &temp_path, bytes)?;
    std::fs::rename(&temp_path, &target).map_err(|source| ConfWriteError::Rename {
        from: temp_path.clone(),
        to: target.clone(),
        source,
    })?;
    guard.disarm();
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| ConfWriteError::SyncFolder {
            path: folder.to_path_buf(),
            source,
        })?;
    Ok(target)
}

fn create_temp(folder: &Path) -> Result<(PathBuf, File), ConfWriteError> {
    let mut last_error = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = folder.join(format!("{TEMP_PREFIX}{}.{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            // A leftover of an earlier crash with the same name: try the next one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(source) => {
                return Err(ConfWriteError::CreateTemp {
                    folder: folder.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(ConfWriteError::CreateTemp {
        folder: folder.to_path_buf(),
        source: last_error.unwrap_or_else(|| std::io::Error::other("no free temporary name")),
    })
}

fn write_and_sync(mut file: File, path: &Path, bytes: &[u8]) -> Result<(), ConfWriteError> {
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|source| ConfWriteError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    file.sync_all().map_err(|source| ConfWriteError::Sync {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes the temporary file unless the rename consumed it.
struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a temporary app.conf");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_mode_0600_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(APP_CONF_NAME), b"old").unwrap();
        let path = write_app_conf(dir.path(), b"new config", 1024).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new config");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(APP_CONF_NAME)]);
    }

    #[test]
    fn too_large_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(APP_CONF_NAME), b"old").unwrap();
        let err = write_app_conf(dir.path(), &[b'x'; 11], 10).unwrap_err();
        assert!(
            matches!(err, ConfWriteError::TooLarge { got: 11, limit: 10 }),
            "{err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join(APP_CONF_NAME)).unwrap(),
            b"old"
        );
    }

    #[test]
    fn creates_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/b");
        write_app_conf(&folder, b"x", 10).unwrap();
        assert_eq!(std::fs::read(folder.join(APP_CONF_NAME)).unwrap(), b"x");
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn keeps_the_owner_of_the_previous_file() {
        // Tests run as root, which may give files any owner.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(APP_CONF_NAME);
        std::fs::write(&target, b"old").unwrap();
        if std::os::unix::fs::chown(&target, Some(12345), Some(23456)).is_err() {
            eprintln!("skipped: not allowed to chown here");
            return;
        }
        write_app_conf(dir.path(), b"new", 10).unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (12345, 23456));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn first_file_takes_the_folders_owner() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("app");
        std::fs::create_dir(&folder).unwrap();
        if std::os::unix::fs::chown(&folder, Some(4242), Some(4343)).is_err() {
            eprintln!("skipped: not allowed to chown here");
            return;
        }
        write_app_conf(&folder, b"x", 10).unwrap();
        let meta = std::fs::metadata(folder.join(APP_CONF_NAME)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
    }

    #[test]
    fn a_symlink_named_app_conf_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"untouched").unwrap();
        let folder = dir.path().join("app");
        std::fs::create_dir(&folder).unwrap();
        std::os::unix::fs::symlink(&elsewhere, folder.join(APP_CONF_NAME)).unwrap();
        write_app_conf(&folder, b"new", 10).unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"untouched");
        let meta = std::fs::symlink_metadata(folder.join(APP_CONF_NAME)).unwrap();
        assert!(meta.file_type().is_file());
    }

    #[test]
    fn empty_config_is_written() {
        let dir = tempfile::tempdir().unwrap();
        write_app_conf(dir.path(), b"", 10).unwrap();
        assert_eq!(std::fs::read(dir.path().join(APP_CONF_NAME)).unwrap(), b"");
    }

    #[test]
    fn folder_that_is_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = write_app_conf(&file, b"x", 10).unwrap_err();
        assert!(matches!(err, ConfWriteError::CreateFolder { .. }), "{err}");
    }
}
