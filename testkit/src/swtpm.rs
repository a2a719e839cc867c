//! A real TPM 2.0 for tests: one `swtpm` process per test, on free loopback ports, with
//! its own state directory, killed when the handle drops. Restarting it on the same
//! state is a power cycle as the TPM sees it: the next `TPM2_Startup(CLEAR)` raises
//! `resetCount`, which is how tests simulate a reboot of the VM.

use crate::ports::{free_port_pair, wait_for_listener};
use crate::process::ChildGuard;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long swtpm may take to listen after it is spawned (it creates its state on the
/// first start, which takes a moment on a busy machine).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A running swtpm (TPM 2.0, TCP server and control channels on 127.0.0.1).
pub struct Swtpm {
    // Dropped after `child` (fields drop in declaration order), so swtpm is dead before
    // its state directory is removed.
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Swtpm {
    /// Starts a fresh swtpm with an empty state in a new temporary directory and waits
    /// until both of its ports accept connections.
    pub fn start() -> anyhow::Result<Swtpm> {
        let mut dir = tempfile::Builder::new()
            .prefix("verigate-swtpm-")
            .tempdir()
            .context("creating swtpm state directory")?;
        let mut last_err = None;
        // The ports were free a moment ago; another process may take them before swtpm
        // binds, so a failed start is retried on new ports.
        for _ in 0..3 {
            let port = free_port_pair();
            let mut tpm = Swtpm {
                child: None,
                dir,
                port,
            };
            match tpm.spawn() {
                Ok(()) => return Ok(tpm),
                Err(e) => {
                    last_err = Some(e);
                    dir = tpm.into_dir();
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("swtpm did not start")))
    }

    /// Kills swtpm (as a power loss would) and starts it again on the same state and the
    /// same ports. The TPM keeps its persistent objects and NV, and its `resetCount`
    /// goes up by one, like after a reboot. Open TCTI connections are broken: callers
    /// open a new context afterwards.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.child.kill();
            let _ = child.child.wait();
        }
        self.spawn()
    }

    /// The TCTI string for tss-esapi and tpm2-tools: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port (the control channel is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The control channel port.
    pub fn ctrl_port(&self) -> u16 {
        self.port + 1
    }

    /// The directory holding the TPM state (and swtpm's log, `swtpm.log`).
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of the running swtpm, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("swtpm.log")
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.child = None;
        self.dir
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let state = self.dir.path();
        let log = self.log_path();
        let mut cmd = Command::new("swtpm");
        cmd.arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                self.port + 1
            ))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--log")
            .arg(format!("file={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn("swtpm", &mut cmd)
            .context("starting swtpm (is the Debian package `swtpm` installed?)")?;
        let server: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let ctrl: SocketAddr = ([127, 0, 0, 1], self.port + 1).into();
        // Each probe is a connect-and-close, which swtpm treats as a client that left.
        let listening =
            wait_for_listener(ctrl, LISTEN_TIMEOUT) && wait_for_listener(server, LISTEN_TIMEOUT);
        if !listening || !child.is_running() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "swtpm on port {} did not start listening; its log:\n{log}",
                self.port
            );
        }
        self.child = Some(child);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_stops() {
        let mut tpm = Swtpm::start().expect("swtpm starts");
        let first = tpm.pid().expect("running");
        assert!(tpm.tcti().starts_with("swtpm:host=127.0.0.1,port="));
        tpm.restart().expect("swtpm restarts");
        let second = tpm.pid().expect("running again");
        assert_ne!(first, second, "restart runs a new process");
        let addr: SocketAddr = ([127, 0, 0, 1], tpm.port()).into();
        assert!(std::net::TcpStream::connect(addr).is_ok());
        let dir = tpm.state_dir().to_path_buf();
        drop(tpm);
        assert!(!dir.exists(), "state directory removed on drop");
    }
}
