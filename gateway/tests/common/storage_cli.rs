//! What the storage tests share: a container's paths under a temporary folder, and
//! `verigated storage ...` run against them with no configuration file.

use gateway::storage::StoragePaths;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The default paths for a data dir `<dir>/data` (created): image, header and sealed
/// key beside it.
pub fn paths(dir: &Path) -> StoragePaths {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    StoragePaths::for_data_dir(&data)
}

/// Runs `verigated storage ARGS` with `p`'s image, blob and data dir and the TPM
/// `tcti`, JSON logs at trace level, `env` added, and `stdin` (if any) on its stdin.
pub fn run(
    args: &[&str],
    tcti: &str,
    p: &StoragePaths,
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .args([
            "--config",
            "/nonexistent/verigated.toml",
            "--log-format",
            "json",
            "storage",
        ])
        .args(args)
        .arg("--image")
        .arg(&p.image)
        .arg("--blob")
        .arg(&p.blob)
        .arg("--data-dir")
        .arg(&p.data_dir)
        .args(["--tpm", tcti])
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("verigated runs");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("stdin");
    }
    child.wait_with_output().expect("verigated")
}
