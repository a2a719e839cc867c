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

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The file init writes, inside `app_storage`.
pub const APP_CONF_NAME: &str = "app.conf";

/// Prefix of temporary files (`durable`'s naming for `app.conf`); a crash between create
/// and rename leaves one behind, and the name says what it is.
pub const TEMP_PREFIX: &str = ".app.conf.tmp.";

/// Why `app.conf` was not replaced. Before the rename the previous file is untouched;
/// only [`ConfWriteError::SyncFolder`] happens after it.
#[derive(Debug, thiserror::Error)]
pub enum ConfWriteError {
    /// The new configuration is larger than allowed; nothing was written.
    #[error("the configuration is {got} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the configuration sent, in bytes.
        got: usize,
        /// The largest size accepted, in bytes.
        limit: usize,
    },
    /// The `app_storage` folder is missing and cannot be created.
    #[error("creating the folder `{path}`: {source}")]
    CreateFolder {
        /// The folder that could not be created.
        path: PathBuf,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
    /// The temporary file cannot be created (read-only folder, no permission).
    #[error("creating a temporary file in `{folder}`: {source}")]
    CreateTemp {
        /// The folder of `app.conf`.
        folder: PathBuf,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
    /// The temporary file cannot be given the owner of the file it replaces.
    #[error("giving `{path}` the owner {uid}:{gid} of the file it replaces: {source}")]
    Chown {
        /// The temporary file.
        path: PathBuf,
        /// The owner's user id it should have had.
        uid: u32,
        /// The owner's group id it should have had.
        gid: u32,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
    /// Writing the new bytes to the temporary file failed (a full disk, for one).
    #[error("writing `{path}`: {source}")]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// Why the write failed.
        #[source]
        source: std::io::Error,
    },
    /// Flushing the temporary file to disk failed.
    #[error("flushing `{path}` to disk: {source}")]
    Sync {
        /// The temporary file.
        path: PathBuf,
        /// Why the flush failed.
        #[source]
        source: std::io::Error,
    },
    /// Renaming the temporary file over `app.conf` failed.
    #[error("renaming `{from}` to `{to}`: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The `app.conf` it should have replaced.
        to: PathBuf,
        /// Why the rename failed.
        #[source]
        source: std::io::Error,
    },
    /// A failure `durable` names that cannot happen for `<folder>/app.conf`.
    #[error(transparent)]
    Unexpected(durable::Error),
    /// The new file is in place but the rename may not survive a crash.
    #[error("flushing the folder `{path}` after replacing app.conf: {source}")]
    SyncFolder {
        /// The folder of `app.conf`.
        path: PathBuf,
        /// Why the flush failed.
        #[source]
        source: std::io::Error,
    },
}

/// Each step of [`durable`] keeps its own variant here, so callers and tests can tell a
/// full disk from a read-only folder.
impl From<durable::Error> for ConfWriteError {
    fn from(e: durable::Error) -> ConfWriteError {
        match e {
            durable::Error::CreateTemp { folder, source } => {
                ConfWriteError::CreateTemp { folder, source }
            }
            durable::Error::Chown {
                path,
                uid,
                gid,
                source,
            } => ConfWriteError::Chown {
                path,
                uid,
                gid,
                source,
            },
            durable::Error::Write { path, source } => ConfWriteError::Write { path, source },
            durable::Error::Sync { path, source } => ConfWriteError::Sync { path, source },
            durable::Error::Rename { from, to, source } => {
                ConfWriteError::Rename { from, to, source }
            }
            durable::Error::SyncFolder { path, source } => {
                ConfWriteError::SyncFolder { path, source }
            }
            other @ (durable::Error::NotAFile { .. } | durable::Error::Exists { .. }) => {
                ConfWriteError::Unexpected(other)
            }
        }
    }
}

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
    let mut options = durable::Options::new(0o600);
    if let Some((uid, gid)) = owner {
        options = options.owner(uid, gid);
    }
    options.write(&target, bytes)?;
    Ok(target)
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
    fn temp_prefix_is_the_one_durable_writes() {
        assert_eq!(TEMP_PREFIX, durable::temp_prefix(APP_CONF_NAME));
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
