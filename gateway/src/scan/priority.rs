//! Idle CPU and I/O priority for the threads of a scan.
//!
//! A snapshot hashes every executable under the roots on every core and reads the whole
//! disk. verigated shares the VM with the applications it fronts and forwards their
//! traffic, so a scan must only use what nobody else wants: each scan thread puts itself
//! in the `SCHED_IDLE` CPU class (it runs only when a core would otherwise idle) and the
//! idle I/O class (`IOPRIO_CLASS_IDLE`: its reads are served only when the disk has
//! nothing else to do). Both are per-thread on Linux, so the rest of verigated (the
//! listener, the own endpoint) keeps its priority; that is also why a scan runs on
//! threads of its own, never on the shared blocking pool, whose threads would keep the
//! low priority for the next task. Lowering one's own priority needs no privilege and
//! cannot be undone without one, which suits threads that end with the scan.
//!
//! Neither call has a wrapper in std or rustix, so this is the gateway's one module
//! with `unsafe` (see ARCHITECTURE.md, "Lints").

#![allow(unsafe_code)]

use std::io;

/// `IOPRIO_WHO_PROCESS` of `linux/ioprio.h`: the target is a thread id (0: the caller).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// `IOPRIO_CLASS_IDLE` of `linux/ioprio.h`.
const IOPRIO_CLASS_IDLE: libc::c_int = 3;
/// `IOPRIO_CLASS_SHIFT` of `linux/ioprio.h`: the class sits above 13 bits of level.
const IOPRIO_CLASS_SHIFT: libc::c_int = 13;

/// Which priority could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    /// `sched_setscheduler(SCHED_IDLE)` failed.
    #[error("idle CPU priority (SCHED_IDLE): {0}")]
    Cpu(io::Error),
    /// `ioprio_set(IOPRIO_CLASS_IDLE)` failed.
    #[error("idle I/O priority (IOPRIO_CLASS_IDLE): {0}")]
    Io(io::Error),
}

/// Puts the calling thread in the idle CPU and I/O classes. Both are tried; the first
/// failure is returned (the scan still runs, at normal priority, and says so).
pub fn lower_current_thread() -> Result<(), PriorityError> {
    let cpu = idle_cpu();
    let io = idle_io();
    cpu.map_err(PriorityError::Cpu)?;
    io.map_err(PriorityError::Io)
}

fn idle_cpu() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialized sched_param that outlives the call, which
    // only reads it; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn idle_io() -> io::Result<()> {
    let value = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT;
    // SAFETY: ioprio_set takes three integers and no pointer; who = 0 is the calling
    // thread.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The I/O priority class of thread `tid` (0: the caller), as `ioprio_get` reports it:
/// [`IDLE_IO_CLASS`] after [`lower_current_thread`]. For tests and diagnostics.
pub fn io_class(tid: i32) -> io::Result<i32> {
    // SAFETY: ioprio_get takes two integers and no pointer.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let value = i32::try_from(rc).map_err(|_| io::Error::other("ioprio out of range"))?;
    Ok(value >> IOPRIO_CLASS_SHIFT)
}

/// The scheduling policy of thread `tid` (0: the caller), as `sched_getscheduler`
/// reports it: `libc::SCHED_IDLE` after [`lower_current_thread`]. For tests and
/// diagnostics.
pub fn cpu_policy(tid: i32) -> io::Result<i32> {
    // SAFETY: sched_getscheduler takes an integer and no pointer.
    let rc = unsafe { libc::sched_getscheduler(tid) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The idle I/O class number, as [`io_class`] reports it.
pub const IDLE_IO_CLASS: i32 = IOPRIO_CLASS_IDLE;

/// The idle CPU policy number, as [`cpu_policy`] reports it.
pub const IDLE_CPU_POLICY: i32 = libc::SCHED_IDLE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_itself_and_no_other() {
        let before = cpu_policy(0).expect("policy");
        let lowered = std::thread::spawn(|| {
            lower_current_thread().expect("lowering one's own priority needs no privilege");
            (cpu_policy(0).expect("policy"), io_class(0).expect("ioprio"))
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, (IDLE_CPU_POLICY, IDLE_IO_CLASS));
        // Per thread: the caller is as it was.
        assert_eq!(cpu_policy(0).expect("policy"), before);
        assert_ne!(cpu_policy(0).expect("policy"), IDLE_CPU_POLICY);
        assert_ne!(io_class(0).expect("ioprio"), IDLE_IO_CLASS);
    }
}
