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

/// Whether `dir` is a mount point whose source is `/dev/mapper/<mapper>` (or the
/// `dm-N` node the kernel lists for it), per `/proc/self/mountinfo`.
pub fn is_mounted_from(dir: &Path, mapper: &str) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let mapped = Path::new("/dev/mapper").join(mapper).canonicalize().ok();
    mountinfo_has(
        &info,
        &dir,
        &Path::new("/dev/mapper").join(mapper),
        mapped.as_deref(),
    )
}

/// The line of `info` for mount point `dir` names `source` (or `resolved`) as its
/// source. Fields: the 5th is the mount point; after the ` - ` separator come the
/// file system type and the source.
fn mountinfo_has(info: &str, dir: &Path, source: &Path, resolved: Option<&Path>) -> bool {
    info.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(head), Some(tail)) = (halves.next(), halves.next()) else {
            return false;
        };
        let Some(point) = head.split(' ').nth(4) else {
            return false;
        };
        let Some(src) = tail.split(' ').nth(1) else {
            return false;
        };
        let src = unescape(src);
        Path::new(&unescape(point)) == dir
            && (Path::new(&src) == source || resolved.is_some_and(|r| Path::new(&src) == r))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_must_be_mounted_from_the_container() {
        let info = "36 25 0:32 / /var/lib/verigate rw,relatime shared:1 - ext4 /dev/mapper/verigate-data rw\n\
                    37 25 0:33 / /srv rw - ext4 /dev/sda1 rw\n\
                    38 25 0:34 / /opt/my\\040dir rw - ext4 /dev/dm-0 rw\n\
                    garbage\n";
        let mapper = Path::new("/dev/mapper/verigate-data");
        assert!(mountinfo_has(
            info,
            Path::new("/var/lib/verigate"),
            mapper,
            None
        ));
        // Mounted, but from the bare disk.
        assert!(!mountinfo_has(info, Path::new("/srv"), mapper, None));
        // Not a mount point at all.
        assert!(!mountinfo_has(info, Path::new("/var/lib"), mapper, None));
        // The kernel may list the dm-N node the mapper name links to.
        assert!(mountinfo_has(
            info,
            Path::new("/opt/my dir"),
            mapper,
            Some(Path::new("/dev/dm-0"))
        ));
    }
}
