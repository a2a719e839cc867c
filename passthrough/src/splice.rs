//! Zero-copy forwarding on Linux: socket → pipe → socket with splice(2), so the bytes of
//! a passthrough connection never enter user space.
//!
//! A direction of a relay (`crate::pump`) holds a [`SplicePipe`] only while bytes are in
//! flight: when the source has nothing more for now and the pipe is empty, the pipe goes
//! back to a small per-thread pool. So an idle connection — even one that has forwarded
//! bytes — holds its two sockets and no pipe, as HAProxy's pipe pool does. This is the
//! only module of the data plane allowed `unsafe` (the crate denies it everywhere else):
//! the libc calls below.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a pipe is asked to hold (`F_SETPIPE_SZ`). The default, 64 KiB in 16 slots, is
/// often filled by fewer bytes: a slot takes one socket buffer fragment, full or not. A
/// larger pipe moves a whole burst in one splice in and one out, which halves the calls
/// and the wakeups per MiB (bench/discussion.md has the counts). It costs no memory while
/// idle: the pipe only refers to the socket's pages, and a pooled pipe is empty. Where
/// the system limit (`/proc/sys/fs/pipe-max-size`) is lower, the default stays.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// The most one splice call asks to move; the pipe's capacity bounds it anyway.
const SPLICE_CHUNK: usize = 1 << 20;

/// A kernel pipe used as the buffer of one direction. Both ends close on drop.
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SplicePipe {
    /// Creates a non-blocking, close-on-exec pipe (`pipe2(O_NONBLOCK | O_CLOEXEC)`),
    /// enlarged to [`PIPE_SIZE`] where the system allows.
    pub fn new() -> io::Result<SplicePipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid, writable array of two c_ints, which is what pipe2
        // writes to; it touches no other memory.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody
        // else; each OwnedFd becomes their only owner and closes it once.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int and changes only the pipe's capacity; the
        // descriptor is open (owned above). A refusal (EPERM above the system limit)
        // leaves the default capacity, which works, so the result is not needed.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(SplicePipe { read, write })
    }
}

/// Empty pipes kept per worker thread for the next burst; more are closed.
const POOL_PER_THREAD: usize = 64;

thread_local! {
    static POOL: std::cell::RefCell<Vec<SplicePipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl SplicePipe {
    /// An empty pipe from this thread's pool, or a new one.
    pub fn take() -> io::Result<SplicePipe> {
        match POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten() {
            Some(pipe) => Ok(pipe),
            None => SplicePipe::new(),
        }
    }

    /// Gives an EMPTY pipe back for reuse (a pipe that may hold bytes is dropped
    /// instead, never pooled: its bytes would leak into another connection).
    pub fn give_back(self) {
        // During thread teardown the pool is gone: the pipe just closes.
        let _ = POOL.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_PER_THREAD {
                pool.push(self);
            }
        });
    }

    /// Moves what `src` has (up to the pipe's room) into the pipe. 0 is end of stream.
    pub fn fill(&self, src: RawFd) -> io::Result<usize> {
        splice(src, self.write.as_raw_fd(), SPLICE_CHUNK)
    }

    /// Moves up to `len` bytes of the pipe into `dst`.
    pub fn drain(&self, dst: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), dst, len)
    }
}

/// One splice(2) call between two descriptors that the caller keeps open.
fn splice(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from a
    // TcpStream or a SplicePipe held by the caller); null offsets are what splice
    // expects for sockets and pipes; no memory of ours is read or written.
    let n = unsafe {
        libc::splice(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    // A negative return is the error signal; any other value is a byte count.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
