//! Files written whole or not at all.
//!
//! Every file verigate keeps (snapshots, keys, certificates, `app.conf`, the scan cache,
//! sealed blobs), and every file the CLI writes, is written the same way: a temporary
//! file in the target's own folder, under a random name (`tempfile`: nobody sharing the
//! folder can guess it and plant something there first), created exclusively
//! (`O_CREAT | O_EXCL`, so a planted symlink is never followed) with its final mode from
//! the first byte (0600 for secrets: never readable, not even for an
//! instant), written, flushed to disk, renamed over the target, and the folder flushed so
//! the rename itself survives a power loss. A crash leaves the old file or the new one;
//! any error removes the temporary file and leaves the target untouched.
//!
//! The mode is subject to the process umask, which can only remove permission bits: a
//! secret asked for as 0600 never ends up wider.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Which step failed. Every step before the rename leaves the target untouched;
/// [`Error::SyncFolder`] comes after it (the new file is in place, but the rename may not
/// survive a crash).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path ends in no file name (`/`, `..` or empty), so there is nothing to replace.
    #[error("`{path}` names no file")]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
    /// The temporary file could not be created beside the target (no folder, no permission, a full
    /// disk).
    #[error("creating a temporary file in `{folder}`: {source}")]
    CreateTemp {
        /// The folder the temporary file was to go in.
        folder: PathBuf,
        /// Why it could not be created.
        #[source]
        source: io::Error,
    },
    /// The temporary file could not be given the owner asked for with [`Options::owner`].
    #[error("giving `{path}` the owner {uid}:{gid}: {source}")]
    Chown {
        /// The temporary file.
        path: PathBuf,
        /// The user ID asked for.
        uid: u32,
        /// The group ID asked for.
        gid: u32,
        /// The error of `fchown`.
        #[source]
        source: io::Error,
    },
    /// Writing the content into the temporary file failed (an error of the fill function included).
    #[error("writing `{path}`: {source}")]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// The error of the write (or the fill function's own).
        #[source]
        source: io::Error,
    },
    /// Flushing the temporary file to disk failed.
    #[error("flushing `{path}` to disk: {source}")]
    Sync {
        /// The temporary file.
        path: PathBuf,
        /// The error of `fsync`.
        #[source]
        source: io::Error,
    },
    /// Moving the finished temporary file to the target failed (the rename, or the hard link of
    /// [`Options::write_new`]).
    #[error("renaming `{from}` to `{to}`: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The target.
        to: PathBuf,
        /// The error of the rename or link.
        #[source]
        source: io::Error,
    },
    /// [`Options::write_new`] found the target already there.
    #[error("`{path}` already exists")]
    Exists {
        /// The target, left as it was.
        path: PathBuf,
    },
    /// Flushing the folder after the rename (or link) failed: the new file is in place, but a
    /// power loss may still bring the old one back.
    #[error("flushing the folder `{path}` after replacing a file in it: {source}")]
    SyncFolder {
        /// The folder of the target.
        path: PathBuf,
        /// The error of opening or flushing the folder.
        #[source]
        source: io::Error,
    },
}

/// Writes `bytes` to `path` whole or not at all, the file created with `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    Options::new(mode).write(path, bytes)
}

/// Like [`write`], with the content streamed by `fill` into a buffered writer; an error
/// from `fill` removes the temporary file and leaves `path` untouched.
pub fn write_with<F>(path: &Path, mode: u32, fill: F) -> Result<(), Error>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    Options::new(mode).write_with(path, fill)
}

/// Like [`write`], but never replaces: an existing `path` is [`Error::Exists`].
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    Options::new(mode).write_new(path, bytes)
}

/// The name prefix of the temporary files written for a target named `file_name`. A crash
/// between creation and rename leaves one behind; the name says what it was for.
pub fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp.")
}

/// How a file is written: its mode and, optionally, its owner.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    mode: u32,
    owner: Option<(u32, u32)>,
}

impl Options {
    /// Files created with `mode` (e.g. 0o600 for secrets, 0o644 otherwise).
    pub fn new(mode: u32) -> Options {
        Options { mode, owner: None }
    }

    /// Gives the new file the owner `uid:gid` before it replaces the target (verigated
    /// runs as root; a file of mode 0600 must stay readable by the user it belongs to).
    pub fn owner(self, uid: u32, gid: u32) -> Options {
        Options {
            owner: Some((uid, gid)),
            ..self
        }
    }

    /// Replaces `path` with `bytes` (see the crate doc).
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        self.write_with(path, |w| w.write_all(bytes))
    }

    /// Replaces `path` with what `fill` writes (see [`write_with`]).
    pub fn write_with<F>(&self, path: &Path, fill: F) -> Result<(), Error>
    where
        F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    {
        let temp = self.prepare(path, fill)?;
        std::fs::rename(&temp.path, path).map_err(|source| Error::Rename {
            from: temp.path.clone(),
            to: path.to_path_buf(),
            source,
        })?;
        temp.renamed();
        sync_folder(path)
    }

    /// Writes `bytes` to `path` only if nothing is there yet: the finished temporary file
    /// is hard-linked to `path`, which fails on an existing name where a rename would
    /// replace it.
    pub fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let temp = self.prepare(path, |w| w.write_all(bytes))?;
        std::fs::hard_link(&temp.path, path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                Error::Rename {
                    from: temp.path.clone(),
                    to: path.to_path_buf(),
                    source,
                }
            }
        })?;
        // The link holds the content now; dropping `temp` removes the temporary name.
        drop(temp);
        sync_folder(path)
    }

    /// Creates, fills, chowns and flushes the temporary file beside `path`.
    fn prepare<F>(&self, path: &Path, fill: F) -> Result<Temp, Error>
    where
        F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    {
        let name = path
            .file_name()
            .ok_or_else(|| Error::NotAFile {
                path: path.to_path_buf(),
            })?
            .to_string_lossy();
        let (temp, file) = create_temp(folder_of(path), &temp_prefix(&name), self.mode)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|source| {
                Error::Chown {
                    path: temp.path.clone(),
                    uid,
                    gid,
                    source,
                }
            })?;
        }
        let write_err = |source| Error::Write {
            path: temp.path.clone(),
            source,
        };
        let mut writer = BufWriter::new(file);
        fill(&mut writer).map_err(write_err)?;
        let file = writer.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(|source| Error::Sync {
            path: temp.path.clone(),
            source,
        })?;
        Ok(temp)
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Flushes the folder of `path`, so a rename or link in it survives a power loss.
fn sync_folder(path: &Path) -> Result<(), Error> {
    let folder = folder_of(path);
    File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::SyncFolder {
            path: folder.to_path_buf(),
            source,
        })
}

/// A fresh temporary file `<folder>/<prefix><random>`, created exclusively with `mode`.
fn create_temp(folder: &Path, prefix: &str, mode: u32) -> Result<(Temp, File), Error> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| Error::CreateTemp {
        folder: folder.to_path_buf(),
        source,
    };
    let named = tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(12)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(folder)
        .map_err(fail)?;
    // Kept: removal on error and after a failed rename is `Temp`'s job.
    let (file, path) = named.keep().map_err(|e| fail(e.error))?;
    Ok((
        Temp {
            path,
            renamed: false,
        },
        file,
    ))
}

/// A temporary file, removed on drop unless a rename consumed it.
struct Temp {
    path: PathBuf,
    renamed: bool,
}

impl Temp {
    /// The rename moved the file: nothing is left to remove.
    fn renamed(mut self) {
        self.renamed = true;
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: the error being returned matters more than a leftover, whose
            // name (see `temp_prefix`) says what it is.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
