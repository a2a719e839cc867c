//! `app.conf` is replaced whole or not at all, checked against real failures as root
//! (root ignores permission bits, so a chmod would prove nothing):
//! - a read-only folder: `chattr +i` on the folder (ext4 immutable flag), so the
//!   temporary file cannot be created;
//! - an immutable `app.conf`: the rename over it fails after the temporary file was
//!   written, which must then be removed;
//! - a full disk: a 64 KiB tmpfs mounted in a private mount namespace (`unshare -m`), so
//!   the write fails with ENOSPC; the check runs in a child copy of this test binary,
//!   since a multithreaded test process cannot enter a new mount namespace itself.
//!
//! Each case skips with a message where the mechanism is unavailable, or fails under CI
//! (`testkit::require`).

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::app::conf_write::TEMP_PREFIX;
use gateway::app::{write_app_conf, ConfWriteError, APP_CONF_NAME};

const PREVIOUS: &[u8] = b"previous = \"config\"\n";

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `chattr +i` on a path, undone on drop so the temporary directory can be removed.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn read_only_folder_keeps_the_previous_config() {
    let dir = tempfile::tempdir().unwrap();
    write_app_conf(dir.path(), PREVIOUS, 1024).unwrap();
    let Some(_guard) = Immutable::set(dir.path()) else {
        let what = format!("a working `chattr +i` on {}", dir.path().display());
        testkit::require(false, &what, testkit::require::install::E2FSPROGS);
        return;
    };
    let err = write_app_conf(dir.path(), b"new = 1\n", 1024).unwrap_err();
    assert!(matches!(err, ConfWriteError::CreateTemp { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(APP_CONF_NAME)).unwrap(),
        PREVIOUS
    );
    assert_eq!(names_in(dir.path()), vec![APP_CONF_NAME.to_string()]);
}

#[test]
fn failed_rename_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    write_app_conf(dir.path(), PREVIOUS, 1024).unwrap();
    let target = dir.path().join(APP_CONF_NAME);
    let Some(guard) = Immutable::set(&target) else {
        let what = format!("a working `chattr +i` on {}", target.display());
        testkit::require(false, &what, testkit::require::install::E2FSPROGS);
        return;
    };
    let err = write_app_conf(dir.path(), b"new = 1\n", 1024).unwrap_err();
    assert!(matches!(err, ConfWriteError::Rename { .. }), "{err}");
    drop(guard);
    assert_eq!(std::fs::read(&target).unwrap(), PREVIOUS);
    assert_eq!(names_in(dir.path()), vec![APP_CONF_NAME.to_string()]);
    // And once the file is writable again, the same call succeeds.
    write_app_conf(dir.path(), b"new = 1\n", 1024).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new = 1\n");
}

const FULL_DIR_ENV: &str = "VERIGATE_TEST_FULL_TMPFS_DIR";
const CHILD_OK: &str = "full-tmpfs-check: ok";

#[test]
fn full_disk_keeps_the_previous_config() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args([
            "--exact",
            "full_disk_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FULL_DIR_ENV, &mount_point)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            testkit::require(
                false,
                &format!("unshare ({e})"),
                testkit::require::install::UTIL_LINUX,
            );
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unshare failed") || stdout.contains("skipped: mount") {
        let what = format!("a private mount namespace with tmpfs: {stderr}{stdout}");
        testkit::require(
            false,
            &what,
            "run as root (CAP_SYS_ADMIN), outside a locked-down container",
        );
        return;
    }
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "child failed: {stdout}\n{stderr}"
    );
    // The tmpfs lived only in the child's namespace: nothing is left mounted here.
    assert!(names_in(&mount_point).is_empty());
}

/// Runs in a private mount namespace (started by `full_disk_keeps_the_previous_config`):
/// fills a 64 KiB tmpfs, then tries to replace app.conf.
#[test]
#[ignore = "run by full_disk_keeps_the_previous_config inside `unshare -m`"]
fn full_disk_child() {
    let dir = PathBuf::from(std::env::var_os(FULL_DIR_ENV).expect(FULL_DIR_ENV));
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!("skipped: mount -t tmpfs failed");
        return;
    }
    write_app_conf(&dir, PREVIOUS, 1 << 20).unwrap();
    // Fill what is left, 4 KiB at a time, until the kernel says ENOSPC.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
        let page = [0u8; 4096];
        loop {
            match filler.write_all(&page) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
    let new = vec![b'n'; 32 * 1024];
    let err = write_app_conf(&dir, &new, 1 << 20).unwrap_err();
    match &err {
        ConfWriteError::Write { source, .. } | ConfWriteError::Sync { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
        }
        other => panic!("expected a failed write, got: {other}"),
    }
    assert_eq!(std::fs::read(dir.join(APP_CONF_NAME)).unwrap(), PREVIOUS);
    let leftovers: Vec<String> = names_in(&dir)
        .into_iter()
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // Space freed: the same write now succeeds.
    std::fs::remove_file(dir.join("filler")).unwrap();
    write_app_conf(&dir, &new, 1 << 20).unwrap();
    assert_eq!(std::fs::read(dir.join(APP_CONF_NAME)).unwrap(), new);
    println!("{CHILD_OK}");
}
