//! The run-time plaintext area: `<data_dir>/run`, a tmpfs (mode 0700) mounted over the
//! decrypted data dir. What the application reads at run time (its unpacked
//! configuration, unsealed secrets) lives in memory only and is gone at power-off;
//! it is never written to the container's disk blocks, let alone the host's.

use super::StorageError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tmpfs folder under the data dir.
pub fn run_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("run")
}

/// Mounts a tmpfs of `size_bytes` at `dir` (created if missing), mode 0700, no
/// executables, devices or set-uid programs.
pub fn mount(dir: &Path, size_bytes: u64) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
        op: "creating the tmpfs folder",
        path: dir.to_path_buf(),
        source,
    })?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("mode=0700,size={size_bytes},nosuid,nodev,noexec"))
        .arg("tmpfs")
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
            what: "tmpfs",
            path: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `dir` is a mount point (listed in `/proc/self/mountinfo`).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    // Field 5 is the mount point, with spaces and the like escaped as octal.
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(&unescape(p)) == dir)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts `dir` (what [`mount`] or the container mount put there).
pub fn unmount(dir: &Path) -> Result<(), StorageError> {
    let out = Command::new("umount")
        .arg(dir)
        .output()
        .map_err(|source| StorageError::Spawn {
            program: "umount",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StorageError::Mount {
            what: "umount",
            path: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
