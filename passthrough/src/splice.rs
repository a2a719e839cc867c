//! Zero-copy forwarding on Linux: socket → pipe → socket with splice(2), so the bytes of
//! a passthrough connection never enter user space.
//!
//! A direction of a relay holds a [`SplicePipe`] only while bytes are in flight: when
//! the source has nothing more for now and the pipe is empty, the pipe goes back to a
//! small per-thread pool. So an idle connection — even one that has forwarded bytes —
//! holds its two sockets and no pipe, as HAProxy's pipe pool does. The sockets stay in tokio's
//! reactor: a splice is tried only after tokio reports the socket ready, and a
//! `EAGAIN` clears that readiness through `try_io`, so nothing here blocks a thread. This
//! is the only module of the data plane allowed `unsafe` (the crate denies it everywhere
//! else): the three libc calls below.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::pump::PumpError;

/// The most one splice call asks to move; the pipe's own capacity (64 KiB by default)
/// bounds it anyway.
const SPLICE_CHUNK: usize = 1 << 20;

/// A kernel pipe used as the buffer of one direction. Both ends close on drop.
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SplicePipe {
    /// Creates a non-blocking, close-on-exec pipe (`pipe2(O_NONBLOCK | O_CLOEXEC)`).
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
        match POOL.with(|p| p.borrow_mut().pop()) {
            Some(pipe) => Ok(pipe),
            None => SplicePipe::new(),
        }
    }

    /// Gives an EMPTY pipe back for reuse (a pipe that may hold bytes is dropped
    /// instead, never pooled: its bytes would leak into another connection).
    fn give_back(self) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_PER_THREAD {
                pool.push(self);
            }
        });
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

/// Moves bytes from `src` to `dst` through a pipe until `src` reaches end of stream,
/// starting with `pipe` (made by the caller when the first bytes arrived). `moved` is
/// told every count of bytes written to `dst`. The caller shuts down `dst`.
///
/// A write to a peer that has gone raises SIGPIPE in the kernel; Rust programs ignore
/// that signal from start-up, so it comes back here as `EPIPE`.
pub(crate) async fn splice_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: SplicePipe,
    mut moved: impl FnMut(u64),
) -> Result<(), PumpError> {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut held = Some(pipe);
    loop {
        let pipe = match held.take() {
            Some(pipe) => pipe,
            None => {
                // Idle: wait for bytes (or the FIN) without holding a pipe. A one-byte
                // peek, because readiness alone may be reported before any byte.
                src.peek(&mut [0u8; 1]).await.map_err(PumpError::Read)?;
                SplicePipe::take().map_err(PumpError::Read)?
            }
        };
        let (pipe_r, pipe_w) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
        // The pipe is empty here, so an EAGAIN can only mean the socket has nothing.
        src.readable().await.map_err(PumpError::Read)?;
        let mut in_pipe =
            match src.try_io(Interest::READABLE, || splice(src_fd, pipe_w, SPLICE_CHUNK)) {
                Ok(0) => {
                    pipe.give_back();
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing more for now and the pipe is empty: let it go.
                    pipe.give_back();
                    continue;
                }
                Err(e) => return Err(PumpError::Read(e)),
            };
        while in_pipe > 0 {
            // The pipe holds `in_pipe` bytes, so an EAGAIN can only mean the socket is full.
            dst.writable().await.map_err(PumpError::Write)?;
            match dst.try_io(Interest::WRITABLE, || splice(pipe_r, dst_fd, in_pipe)) {
                Ok(0) => {
                    return Err(PumpError::Write(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "splice into the socket moved 0 bytes",
                    )))
                }
                Ok(n) => {
                    in_pipe = in_pipe.saturating_sub(n);
                    moved(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(PumpError::Write(e)),
            }
        }
        // The pipe is empty again: keep it for the next chunk of this burst.
        held = Some(pipe);
    }
}
