//! The run-time plaintext area: `<data_dir>/run` mounted as a tmpfs with mode 0700.
//! The mount happens in a private mount namespace (`unshare -m`, the test binary runs
//! itself there), so nothing stays mounted on the machine; where unshare or tmpfs is
//! not allowed the test says so and skips, or fails under CI (`testkit::require`).

use gateway::storage::tmpfs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const DIR_ENV: &str = "VERIGATE_STORAGE_TMPFS_DIR";
const CHILD_OK: &str = "run-tmpfs-check: ok";

#[test]
fn run_dir_is_a_private_tmpfs() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data");
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args([
            "--exact",
            "tmpfs_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, &data)
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
    // The tmpfs lived in the child's namespace only: what it held is gone here.
    let run = tmpfs::run_dir(&data);
    assert!(!tmpfs::is_mounted(&run));
    assert!(
        std::fs::read_dir(&run)
            .map(std::iter::Iterator::count)
            .unwrap_or(0)
            == 0
    );
}

/// Runs inside `unshare -m` (started by `run_dir_is_a_private_tmpfs`).
#[test]
#[ignore = "run by run_dir_is_a_private_tmpfs inside `unshare -m`"]
fn tmpfs_child() {
    let Some(data) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let data = std::path::PathBuf::from(data);
    let run = tmpfs::run_dir(&data);
    assert_eq!(run, data.join("run"));
    assert!(!tmpfs::is_mounted(&run));
    if let Err(e) = tmpfs::mount(&run, 1 << 20) {
        println!("skipped: mount: {e}");
        return;
    }
    assert!(tmpfs::is_mounted(&run));
    let mode = std::fs::metadata(&run).expect("run").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
    let fstype = std::fs::read_to_string("/proc/self/mounts")
        .expect("mounts")
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(run.to_str().expect("utf-8")))
        .map(std::string::ToString::to_string)
        .expect("listed");
    assert!(fstype.starts_with("tmpfs "), "{fstype}");
    assert!(
        fstype.contains("noexec") && fstype.contains("nosuid"),
        "{fstype}"
    );
    std::fs::write(run.join("secret.conf"), b"plaintext").expect("write");
    // The size limit holds: 2 MiB do not fit in the 1 MiB tmpfs.
    assert!(std::fs::write(run.join("big"), vec![0u8; 2 << 20]).is_err());
    tmpfs::unmount(&run).expect("unmount");
    assert!(!tmpfs::is_mounted(&run));
    assert!(
        !run.join("secret.conf").exists(),
        "the plaintext lived in memory only"
    );
    println!("{CHILD_OK}");
}
