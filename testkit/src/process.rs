//! A child process that is killed (by its own PID, never by name) when the guard drops,
//! so a failing test does not leave peers running.

use std::process::{Child, Command};

use rustix::process::{kill_process, Pid, Signal};

/// Owns a child process; kills and reaps it on drop.
pub struct ChildGuard {
    /// The running child; tests read its pipes or wait on it through this.
    pub child: Child,
    name: String,
}

impl ChildGuard {
    /// Starts `cmd` under a guard; `name` labels the child in errors and in [`Self::name`].
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<ChildGuard> {
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(ChildGuard {
            child,
            name: name.to_string(),
        })
    }

    /// The child's process ID (the ID it had, once it has exited).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGHUP`) to this child only. A number that names no
    /// signal is ignored, like a child that has already been reaped.
    pub fn signal(&self, sig: i32) {
        let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) else {
            return;
        };
        let Some(sig) = Signal::from_named_raw(sig) else {
            return;
        };
        let _ = kill_process(pid, sig);
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The label given to [`Self::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
