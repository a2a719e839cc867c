//! Encrypted storage for the data dir: a LUKS2 container whose random key is sealed to
//! the TPM, so the data is readable only on this VM's TPM (and, when bound to PCRs,
//! only after the same boot chain).
//!
//! - [`init`] creates the container file (sparse) and its detached header, formats them
//!   with a fresh 64-byte key ([`luks`]), with `--integrity hmac-sha256` when the
//!   [`luks::Layout`] asks, adds the recovery passphrase in keyslot 1 when asked
//!   ([`recovery`]), seals the key ([`attest::tpm::seal`]) and writes the sealed blob;
//!   on any failure it removes what it created, and it never touches an existing file.
//!   Where device-mapper exists (a VM), it then opens the container once and makes its
//!   ext4 file system: `init` is the only step that makes a file system.
//! - [`open`] refuses a header that is not the one `init` writes (LUKS2, cipher,
//!   integrity, key size, keyslots: [`luks::check_pinned`]), unseals the key, checks it
//!   against the header, opens the container through device-mapper, mounts it on the
//!   data dir and mounts the run-time tmpfs ([`tmpfs`]) at `<data_dir>/run`. It never
//!   formats: a container with no file system (wiped by whoever holds the disk) is
//!   refused, so a blank volume is never taken for a new one.
//! - [`migrate`] opens keyslot 1 with the recovery passphrase, puts a fresh key sealed
//!   to this TPM in keyslot 0, and replaces the header and the sealed key.
//!
//! The container cannot live inside the folder it is mounted over, so by default the
//! image, the header and the blob sit next to the data dir:
//! `<data_dir>/../verigate-data.{luks,header,sealed}` ([`StoragePaths::for_data_dir`]).
//! The header is kept there, on the VM's own file system, and never inside the image:
//! the image may be a disk the host hands over, and a header on it could be replaced by
//! whoever holds that disk. The key is held in an [`attest::tpm::seal::Secret`] (cleared
//! on drop), passed to cryptsetup on stdin only, and never logged: log lines carry
//! paths and PCR indices only.

pub mod cli;
pub mod luks;
#[cfg(feature = "tpm")]
pub mod recovery;
pub mod tmpfs;

use std::path::{Path, PathBuf};

/// The device-mapper name of the open container (`/dev/mapper/verigate-data`).
pub const MAPPER_NAME: &str = "verigate-data";
/// LUKS2 keeps 16 MiB of header and keyslots; smaller containers are refused.
pub const MIN_SIZE: u64 = 32 << 20;
/// The run-time tmpfs size unless `[storage] tmpfs_size` says otherwise.
pub const RUN_TMPFS_SIZE: u64 = 64 << 20;

/// Why a storage step failed. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `--size` is not a size, or is below [`MIN_SIZE`].
    #[error("size `{value}`: {reason} (examples: 64M, 1G, 512M; at least 32M)")]
    BadSize {
        /// The size as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `init` found a container already there; it never overwrites one.
    #[error("{image} already exists: verigated never overwrites a container (remove it yourself if it is really unused)")]
    ImageExists {
        /// The container file.
        image: PathBuf,
    },
    /// `init` found a sealed key already there; it never overwrites one.
    #[error("{blob} already exists: verigated never overwrites a sealed key")]
    BlobExists {
        /// The sealed key file.
        blob: PathBuf,
    },
    /// The sealed key cannot be written whole.
    #[error(transparent)]
    Write(durable::Error),
    /// `init` found a header file already there; it never overwrites one.
    #[error(
        "{header} already exists: verigated never overwrites a LUKS header (it holds the keyslots)"
    )]
    HeaderExists {
        /// The detached header file.
        header: PathBuf,
    },
    /// There is no detached header: `init` has not run, or it was removed or moved.
    #[error(
        "{header} does not exist: the container's LUKS header is kept there, not in the \
         image; restore it from a backup, or run `verigated storage init` for a new container"
    )]
    HeaderMissing {
        /// The detached header file.
        header: PathBuf,
    },
    /// The recovery passphrase given is not one `init --recovery` prints.
    #[error("recovery passphrase: {reason}")]
    BadPassphrase {
        /// What is wrong with it.
        reason: String,
    },
    /// The recovery passphrase does not open the recovery keyslot.
    #[error("{header}: the recovery passphrase does not open keyslot 1 (another container's passphrase, or a typo)")]
    WrongPassphrase {
        /// The detached header file.
        header: PathBuf,
    },
    /// `migrate` needs the recovery keyslot, and the layout says there is none.
    #[error(
        "{header}: this container has no recovery passphrase ([storage] recovery is false), \
         so `storage migrate` cannot open it; a container made with `storage init --recovery` can"
    )]
    NoRecovery {
        /// The detached header file.
        header: PathBuf,
    },
    /// There is no container file: `init` has not run.
    #[error("{image} does not exist: run `verigated storage init --size SIZE` first")]
    ImageMissing {
        /// The container file.
        image: PathBuf,
    },
    /// `cryptsetup isLuks --type luks2` says the header file is not a LUKS2 header.
    #[error("{header} is not a LUKS2 header")]
    NotLuks2 {
        /// The detached header file.
        header: PathBuf,
    },
    /// A segment or keyslot uses `cipher_null`, which would leave the data in the clear.
    #[error("{header}: LUKS header uses `{cipher}`, which stores the data unencrypted; refused")]
    CipherNull {
        /// The detached header file.
        header: PathBuf,
        /// The cipher the header names for it.
        cipher: String,
    },
    /// The header is not the one `init` writes: cipher, integrity, key size or
    /// keyslots differ.
    #[error(
        "{header}: LUKS header is not the one `verigated storage init` writes: {reason}; refused"
    )]
    Unpinned {
        /// The detached header file.
        header: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The LUKS2 header cannot be parsed.
    #[error("{header}: LUKS header: {reason}")]
    BadHeader {
        /// The detached header file.
        header: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// The unsealed key is refused by the container.
    #[error("{image}: the key unsealed from {blob} does not open the container (another container's key?)")]
    WrongKey {
        /// The container file.
        image: PathBuf,
        /// The sealed key file the key came from.
        blob: PathBuf,
    },
    /// The open container holds no file system: `open` never makes one.
    #[error(
        "{image}: the container holds no file system; `verigated storage open` never \
         formats (only `storage init` does): restore the container, or remove it and run init"
    )]
    NoFileSystem {
        /// The container file.
        image: PathBuf,
    },
    /// The kernel offers no device-mapper (a container, not a VM), so nothing can open
    /// the container.
    #[error(
        "device-mapper is not available on this machine ({reason}): cannot open the \
         container; run `verigated storage open` on the VM"
    )]
    NoDeviceMapper {
        /// What was checked and not found.
        reason: String,
    },
    /// An external program (cryptsetup, mount, umount) cannot be run.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program's name.
        program: &'static str,
        /// Why it cannot be run.
        #[source]
        source: std::io::Error,
    },
    /// cryptsetup exited with a failure.
    #[error("cryptsetup {op} failed (exit {code}): {stderr}")]
    Cryptsetup {
        /// The cryptsetup action, e.g. `luksFormat`, `luksDump` or `open`.
        op: &'static str,
        /// Its exit status (-1 when a signal ended it).
        code: i32,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Formatting, mounting or unmounting failed.
    #[error("{what} {path}: {stderr}")]
    Mount {
        /// The step: `mkfs.ext4`, `mount`, `tmpfs` or `umount`.
        what: &'static str,
        /// The mount point, or the device `mkfs.ext4` formats.
        path: PathBuf,
        /// What the program printed on stderr.
        stderr: String,
    },
    /// A file operation on a storage path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `reading` or `sizing`.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The key cannot be sealed to, or unsealed from, the TPM.
    #[cfg(feature = "tpm")]
    #[error("sealed key {blob}: {source}")]
    Seal {
        /// The sealed key file.
        blob: PathBuf,
        /// What the TPM or its library answered.
        #[source]
        source: attest::tpm::seal::SealError,
    },
}

#[cfg(feature = "tpm")]
fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}

/// Where the container, its header, its sealed key and the mount point are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePaths {
    /// The LUKS2 container file (outside `data_dir`): encrypted data only.
    pub image: PathBuf,
    /// The detached LUKS2 header: the keyslots and the cipher settings.
    pub header: PathBuf,
    /// The sealed key blob (not secret by itself: only this TPM can load it).
    pub blob: PathBuf,
    /// Where the container is mounted: the data dir.
    pub data_dir: PathBuf,
}

impl StoragePaths {
    /// The defaults: image, header and blob next to `data_dir`, in its parent folder.
    pub fn for_data_dir(data_dir: &Path) -> StoragePaths {
        let parent = data_dir.parent().unwrap_or(Path::new("/"));
        StoragePaths {
            image: parent.join("verigate-data.luks"),
            header: parent.join("verigate-data.header"),
            blob: parent.join("verigate-data.sealed"),
            data_dir: data_dir.to_path_buf(),
        }
    }
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024, optional
/// trailing `B`/`iB`). At least [`MIN_SIZE`].
pub fn parse_size(value: &str) -> Result<u64, StorageError> {
    parse_size_at_least(value, MIN_SIZE, "too small for a LUKS2 header and data")
}

/// Parses the run tmpfs size (`[storage] tmpfs_size`) as [`parse_size`] does, at least
/// 1 MiB.
pub fn parse_tmpfs_size(value: &str) -> Result<u64, StorageError> {
    parse_size_at_least(value, 1 << 20, "too small for a tmpfs (at least 1M)")
}

fn parse_size_at_least(value: &str, min: u64, too_small: &str) -> Result<u64, StorageError> {
    let bad = |reason: &str| StorageError::BadSize {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let s = value.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad("no number"));
    }
    let n: u64 = digits.parse().map_err(|_| bad("number too large"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad("unknown unit")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("number too large"))?;
    if bytes < min {
        return Err(bad(too_small));
    }
    Ok(bytes)
}

#[cfg(feature = "tpm")]
/// Removes the files an unfinished [`init`] created, unless disarmed.
struct Cleanup {
    paths: Vec<PathBuf>,
}

#[cfg(feature = "tpm")]
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(feature = "tpm")]
/// Reads `n` bytes from the kernel's CSPRNG.
fn random_bytes(n: usize) -> Result<attest::tpm::seal::Secret, StorageError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut bytes = vec![0u8; n];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes));
    // Wrapped before any return, so the bytes are cleared whatever happens.
    let bytes = attest::tpm::seal::Secret::new(bytes);
    read.map_err(io("reading", path))?;
    Ok(bytes)
}

#[cfg(feature = "tpm")]
/// Writes the sealed key to `path`, mode 0600, whole or not at all, never replacing an
/// existing file (see [`durable::write_new`]).
fn write_new_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    durable::write_new(path, bytes, 0o600).map_err(|e| match e {
        durable::Error::Exists { path } => StorageError::BlobExists { blob: path },
        e => StorageError::Write(e),
    })
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The image exists.
    pub image: bool,
    /// The detached header, checked against the layout (`None`: the check failed,
    /// `header_error` says why).
    pub header: Option<luks::Header>,
    /// Why the header check failed.
    pub header_error: Option<String>,
    /// The sealed key exists; the PCRs it is bound to when it parses.
    pub blob_pcrs: Option<Vec<u8>>,
    /// `/dev/mapper/verigate-data` exists.
    pub mapped: bool,
    /// The data dir is a mount point.
    pub mounted: bool,
    /// `<data_dir>/run` is a mount point.
    pub run_mounted: bool,
}

/// Looks at the container without the TPM or device-mapper.
pub fn status(paths: &StoragePaths, layout: luks::Layout) -> Status {
    let image = paths.image.exists();
    let (header, header_error) = match luks::check_header(&paths.header, layout) {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e.to_string())),
    };
    #[cfg(feature = "tpm")]
    let blob_pcrs = std::fs::read(&paths.blob)
        .ok()
        .and_then(|b| attest::tpm::seal::SealedBlob::from_bytes(&b).ok())
        .map(|b| b.pcrs);
    #[cfg(not(feature = "tpm"))]
    let blob_pcrs = None;
    Status {
        image,
        header,
        header_error,
        blob_pcrs,
        mapped: Path::new("/dev/mapper").join(MAPPER_NAME).exists(),
        mounted: tmpfs::is_mounted(&paths.data_dir),
        run_mounted: tmpfs::is_mounted(&tmpfs::run_dir(&paths.data_dir)),
    }
}

#[cfg(feature = "tpm")]
pub use with_tpm::{init, migrate, open, unseal_key};

#[cfg(feature = "tpm")]
mod with_tpm {
    use super::*;
    use attest::tpm::seal::{self, SealTpm, SealedBlob, Secret};
    use luks::Layout;
    use std::process::Command;

    /// Creates `path` for `init`, refusing an existing one with `exists`.
    fn create_new(
        path: &Path,
        len: u64,
        exists: impl FnOnce(PathBuf) -> StorageError,
    ) -> Result<(), StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists(path.to_path_buf())
                } else {
                    StorageError::Io {
                        op: "creating",
                        path: path.to_path_buf(),
                        source: e,
                    }
                }
            })?;
        file.set_len(len).map_err(io("sizing", path))
    }

    /// Creates the container at `paths.image` (`size` bytes, sparse) and its detached
    /// header at `paths.header`, shaped as `layout` says, with a fresh random key sealed
    /// to `tpm` (bound to SHA-256 `pcrs`, may be empty) into `paths.blob`. Refuses if any
    /// of the three exists; on failure removes what it made. With `layout.recovery`,
    /// returns the recovery passphrase, which exists nowhere else: the caller shows it
    /// once.
    pub fn init(
        paths: &StoragePaths,
        size: u64,
        layout: Layout,
        pcrs: &[u8],
        tpm: &mut SealTpm,
    ) -> Result<Option<Secret>, StorageError> {
        let StoragePaths {
            image,
            header,
            blob,
            ..
        } = paths;
        if size < MIN_SIZE {
            return Err(StorageError::BadSize {
                value: size.to_string(),
                reason: "too small for a LUKS2 header and data".into(),
            });
        }
        if image.symlink_metadata().is_ok() {
            return Err(StorageError::ImageExists {
                image: image.clone(),
            });
        }
        if header.symlink_metadata().is_ok() {
            return Err(StorageError::HeaderExists {
                header: header.clone(),
            });
        }
        if blob.symlink_metadata().is_ok() {
            return Err(StorageError::BlobExists { blob: blob.clone() });
        }
        create_new(image, size, |image| StorageError::ImageExists { image })?;
        let mut cleanup = Cleanup {
            paths: vec![image.clone()],
        };
        create_new(header, luks::HEADER_SIZE, |header| {
            StorageError::HeaderExists { header }
        })?;
        cleanup.paths.push(header.clone());
        let key = random_bytes(luks::KEY_LEN)?;
        luks::format(image, header, key.expose(), layout.integrity)?;
        let passphrase = if layout.recovery {
            let passphrase = recovery::generate()?;
            luks::add_key(
                image,
                header,
                key.expose(),
                luks::TPM_KEYSLOT,
                passphrase.expose(),
                luks::RECOVERY_KEYSLOT,
            )?;
            Some(passphrase)
        } else {
            None
        };
        luks::check_header(header, layout)?;
        let sealed = seal::seal(tpm, key.expose(), pcrs).map_err(|source| StorageError::Seal {
            blob: blob.clone(),
            source,
        })?;
        cleanup.paths.push(blob.clone());
        write_new_atomically(blob, &sealed.to_bytes()).map_err(|e| match e {
            // Someone created the blob meanwhile: theirs stays, so it is not ours to remove.
            StorageError::BlobExists { .. } => {
                cleanup.paths.pop();
                e
            }
            e => e,
        })?;
        match luks::require_device_mapper() {
            Ok(()) => make_filesystem(image, header, key.expose())?,
            // Here (a container without device-mapper) only the header and the sealed
            // key can be made; the file system is made by `init` on the VM.
            Err(e) => tracing::warn!("{e}: the container has no file system yet"),
        }
        cleanup.paths.clear();
        tracing::info!(
            image = %image.display(),
            header = %header.display(),
            blob = %blob.display(),
            size,
            pcrs = ?sealed.pcrs,
            integrity = layout.integrity.as_str(),
            recovery = layout.recovery,
            "encrypted storage created (LUKS2 {}, key sealed to the TPM)",
            luks::CIPHER
        );
        Ok(passphrase)
    }

    /// Reads `blob` and unseals the container key (for `open`, and for tests that check
    /// the key against the header).
    pub fn unseal_key(blob: &Path, tpm: &mut SealTpm) -> Result<Secret, StorageError> {
        let bytes = std::fs::read(blob).map_err(io("reading the sealed key", blob))?;
        let sealed = SealedBlob::from_bytes(&bytes).map_err(|source| StorageError::Seal {
            blob: blob.to_path_buf(),
            source,
        })?;
        seal::unseal(tpm, &sealed).map_err(|source| StorageError::Seal {
            blob: blob.to_path_buf(),
            source,
        })
    }

    /// Checks the header against `layout`, unseals the key, checks it against the
    /// header, then opens the container, mounts it on `paths.data_dir` and mounts a
    /// tmpfs of `tmpfs_size` bytes at `<data_dir>/run`. Where device-mapper is missing
    /// this ends with [`StorageError::NoDeviceMapper`] after every check that can run
    /// without it.
    pub fn open(
        paths: &StoragePaths,
        layout: Layout,
        tmpfs_size: u64,
        tpm: &mut SealTpm,
    ) -> Result<(), StorageError> {
        let StoragePaths { image, header, .. } = paths;
        if !image.exists() {
            return Err(StorageError::ImageMissing {
                image: image.clone(),
            });
        }
        luks::check_header(header, layout)?;
        let key = unseal_key(&paths.blob, tpm)?;
        if !luks::test_key(image, header, key.expose(), luks::TPM_KEYSLOT)? {
            return Err(StorageError::WrongKey {
                image: image.clone(),
                blob: paths.blob.clone(),
            });
        }
        tracing::info!(image = %image.display(), "storage key unsealed and checked against the header");
        luks::open(image, header, MAPPER_NAME, key.expose())?;
        drop(key);
        let device = Path::new("/dev/mapper").join(MAPPER_NAME);
        let has_fs = has_filesystem(&device).and_then(|has| {
            if has {
                Ok(())
            } else {
                Err(StorageError::NoFileSystem {
                    image: image.clone(),
                })
            }
        });
        let mounted = has_fs.and_then(|()| {
            std::fs::create_dir_all(&paths.data_dir).map_err(io("creating", &paths.data_dir))?;
            mount_device(&device, &paths.data_dir)
        });
        if let Err(e) = mounted {
            let _ = luks::close(MAPPER_NAME);
            return Err(e);
        }
        if let Err(e) = tmpfs::mount(&tmpfs::run_dir(&paths.data_dir), tmpfs_size) {
            let _ = tmpfs::unmount(&paths.data_dir);
            let _ = luks::close(MAPPER_NAME);
            return Err(e);
        }
        tracing::info!(data_dir = %paths.data_dir.display(), tmpfs_size, "encrypted storage mounted");
        Ok(())
    }

    /// Moves the container to this VM's TPM: checks `passphrase` against the recovery
    /// keyslot, puts a fresh key in keyslot 0 (the old one, sealed to a TPM that is
    /// gone, is wiped), seals it to `tpm` bound to `pcrs`, and replaces the sealed key
    /// and the header.
    ///
    /// The keyslots are changed on a copy of the header; the live header and blob are
    /// then each replaced whole ([`durable::write`]). A crash between the two leaves a
    /// header and a blob that do not match, and the recovery keyslot, which is the same
    /// in both headers, still opens the container: running `migrate` again finishes.
    pub fn migrate(
        paths: &StoragePaths,
        layout: Layout,
        passphrase: &Secret,
        pcrs: &[u8],
        tpm: &mut SealTpm,
    ) -> Result<(), StorageError> {
        let StoragePaths {
            image,
            header,
            blob,
            ..
        } = paths;
        if !layout.recovery {
            return Err(StorageError::NoRecovery {
                header: header.clone(),
            });
        }
        if !image.exists() {
            return Err(StorageError::ImageMissing {
                image: image.clone(),
            });
        }
        luks::check_header(header, layout)?;
        if !luks::test_key(image, header, passphrase.expose(), luks::RECOVERY_KEYSLOT)? {
            return Err(StorageError::WrongPassphrase {
                header: header.clone(),
            });
        }
        let copy = migration_copy(header)?;
        let _remove_copy = Cleanup {
            paths: vec![copy.clone()],
        };
        let key = random_bytes(luks::KEY_LEN)?;
        luks::kill_slot(image, &copy, luks::TPM_KEYSLOT, passphrase.expose())?;
        luks::add_key(
            image,
            &copy,
            passphrase.expose(),
            luks::RECOVERY_KEYSLOT,
            key.expose(),
            luks::TPM_KEYSLOT,
        )?;
        luks::check_header(&copy, layout)?;
        if !luks::test_key(image, &copy, key.expose(), luks::TPM_KEYSLOT)? {
            // cryptsetup said it added the key; a header that disagrees is not used.
            return Err(StorageError::WrongKey {
                image: image.clone(),
                blob: blob.clone(),
            });
        }
        let sealed = seal::seal(tpm, key.expose(), pcrs).map_err(|source| StorageError::Seal {
            blob: blob.clone(),
            source,
        })?;
        durable::write(blob, &sealed.to_bytes(), 0o600).map_err(StorageError::Write)?;
        let new_header = std::fs::read(&copy).map_err(io("reading", &copy))?;
        durable::write(header, &new_header, 0o600).map_err(StorageError::Write)?;
        tracing::info!(
            image = %image.display(),
            header = %header.display(),
            blob = %blob.display(),
            pcrs = ?sealed.pcrs,
            "encrypted storage migrated: keyslot 0 now holds a key sealed to this TPM"
        );
        Ok(())
    }

    /// Copies `header` to a new file beside it for `migrate` to edit.
    fn migration_copy(header: &Path) -> Result<PathBuf, StorageError> {
        let name = header
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = header.with_file_name(format!("{}migrate", durable::temp_prefix(&name)));
        // A copy left by a crash is stale: the live header decides.
        let _ = std::fs::remove_file(&copy);
        let bytes = std::fs::read(header).map_err(io("reading", header))?;
        durable::write_new(&copy, &bytes, 0o600).map_err(StorageError::Write)?;
        Ok(copy)
    }

    /// Opens the new container, makes its ext4 file system and closes it again.
    fn make_filesystem(image: &Path, header: &Path, key: &[u8]) -> Result<(), StorageError> {
        luks::open(image, header, MAPPER_NAME, key)?;
        let device = Path::new("/dev/mapper").join(MAPPER_NAME);
        let made = mkfs(&device);
        let closed = luks::close(MAPPER_NAME);
        made.and(closed)
    }
    /// `blkid -p` exits 2 when it finds no signature.
    fn has_filesystem(device: &Path) -> Result<bool, StorageError> {
        let probe = Command::new("blkid")
            .arg("-p")
            .arg(device)
            .output()
            .map_err(|source| StorageError::Spawn {
                program: "blkid",
                source,
            })?;
        Ok(probe.status.code() != Some(2))
    }

    fn mkfs(device: &Path) -> Result<(), StorageError> {
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-L", "verigate-data"])
            .arg(device)
            .output()
            .map_err(|source| StorageError::Spawn {
                program: "mkfs.ext4",
                source,
            })?;
        if out.status.success() {
            tracing::info!(device = %device.display(), "ext4 created");
            Ok(())
        } else {
            Err(StorageError::Mount {
                what: "mkfs.ext4",
                path: device.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn mount_device(device: &Path, dir: &Path) -> Result<(), StorageError> {
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "nosuid,nodev"])
            .arg(device)
            .arg(dir)
            .output()
            .map_err(|source| StorageError::Spawn {
                program: "mount",
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(StorageError::Mount {
                what: "mount",
                path: dir.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// Unmounts the run tmpfs and the data dir (those that are mounted) and closes the
/// container.
pub fn close(paths: &StoragePaths) -> Result<(), StorageError> {
    let run = tmpfs::run_dir(&paths.data_dir);
    if tmpfs::is_mounted(&run) {
        tmpfs::unmount(&run)?;
    }
    if tmpfs::is_mounted(&paths.data_dir) {
        tmpfs::unmount(&paths.data_dir)?;
    }
    if Path::new("/dev/mapper").join(MAPPER_NAME).exists() {
        luks::close(MAPPER_NAME)?;
    }
    tracing::info!(data_dir = %paths.data_dir.display(), "encrypted storage closed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("33554432").unwrap(), 32 << 20);
        for (bad, why) in [
            ("", "no number"),
            ("M", "no number"),
            ("12X", "unknown unit"),
            ("1M", "too small"),
            ("99999999999999999999", "too large"),
            ("99999999999T", "too large"),
        ] {
            match parse_size(bad) {
                Err(StorageError::BadSize { reason, .. }) => {
                    assert!(reason.contains(why), "{bad}: {reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn default_paths_sit_next_to_the_data_dir() {
        let p = StoragePaths::for_data_dir(Path::new("/var/lib/verigate/data"));
        assert_eq!(p.image, Path::new("/var/lib/verigate/verigate-data.luks"));
        assert_eq!(p.blob, Path::new("/var/lib/verigate/verigate-data.sealed"));
        assert_eq!(
            p.header,
            Path::new("/var/lib/verigate/verigate-data.header")
        );
        assert!(!p.image.starts_with(&p.data_dir));
    }
}
