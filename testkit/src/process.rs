//! A child process that is killed (by its own PID, never by name) when the guard drops,
//! so a failing test does not leave peers running.

use std::process::{Child, Command};

/// Owns a child process; kills and reaps it on drop.
pub struct ChildGuard {
    pub child: Child,
    name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<ChildGuard> {
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(ChildGuard {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGHUP`) to this child only.
    pub fn signal(&self, sig: i32) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) reads no memory of ours; the PID is our own child's.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

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
