//! A real HAProxy (`haproxy -f <file> -db`) in front of a test's verigated, started from a
//! config file of `haproxy-examples/` used unchanged: the file reads its addresses from
//! `${VERIGATE_FRONT}` and `${VERIGATE_BACKEND}`, which HAProxy expands from its own
//! environment, so what the tests run is exactly what users copy.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ports::{free_port, wait_for_listener};
use crate::process::ChildGuard;

/// The committed example configs, `haproxy-examples/` at the workspace root.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("haproxy-examples")
}

/// True when an `haproxy` binary runs here; tests hand it to [`crate::require`].
pub fn available() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running HAProxy, killed (by PID) when dropped.
pub struct Haproxy {
    child: ChildGuard,
    front: SocketAddr,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with `config` (a path, typically under [`examples_dir`]) listening on
    /// a free port of 127.0.0.1 and forwarding to `backend`. Checks the config first and
    /// returns HAProxy's own words when it is refused.
    pub fn start(config: &Path, backend: SocketAddr) -> anyhow::Result<Haproxy> {
        Haproxy::start_env(config, &[("VERIGATE_BACKEND", backend.to_string())])
    }

    /// [`Haproxy::start`] for a config that reads other variables than
    /// `${VERIGATE_BACKEND}` (several backends): `env` is set for HAProxy, besides
    /// `${VERIGATE_FRONT}`.
    pub fn start_env(config: &Path, env: &[(&str, String)]) -> anyhow::Result<Haproxy> {
        let dir = tempfile::tempdir()?;
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(config)
            .env("VERIGATE_FRONT", "127.0.0.1:1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .map_err(|e| anyhow::anyhow!("running haproxy -c: {e}"))?;
        if !check.status.success() {
            anyhow::bail!(
                "haproxy refuses {}: {}{}",
                config.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }

        // The port was free a moment ago; another process may take it first, so retry.
        let mut last_error = String::new();
        for attempt in 0..5 {
            let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log_path = dir.path().join(format!("haproxy-{attempt}.log"));
            let log = File::create(&log_path)?;
            let mut cmd = Command::new("haproxy");
            cmd.arg("-f")
                .arg(config)
                .arg("-db")
                .env("VERIGATE_FRONT", front.to_string())
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            let mut child = ChildGuard::spawn("haproxy", &mut cmd)?;
            if wait_for_listener(front, Duration::from_secs(10)) && child.is_running() {
                return Ok(Haproxy {
                    child,
                    front,
                    log_path,
                    _dir: dir,
                });
            }
            drop(child);
            last_error = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        anyhow::bail!(
            "haproxy with {} did not start listening: {last_error}",
            config.display()
        )
    }

    /// Where clients connect: HAProxy's frontend on 127.0.0.1.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// HAProxy's stdout and stderr so far (its traffic log with `log stdout`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The PID, for tests that signal it.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}
