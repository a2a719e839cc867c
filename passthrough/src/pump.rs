//! One direction of a relay: reads what the source socket has, writes it to the
//! destination, and passes the source's end of stream on as a `shutdown(WR)`.
//!
//! A [`Pump`] is a small state machine polled by the relay's one future, not a future of
//! its own: it waits on the sockets' readiness through tokio's per-socket waker slots
//! (`poll_read_ready`/`poll_write_ready`), so an idle direction holds a few words and
//! no waiter, buffer or pipe. Bytes move through a pooled buffer (a copy) or, once the
//! direction carries bulk, with splice(2) through a pooled pipe (`crate::splice`,
//! Linux); either is taken when the source has bytes and given back as soon as it runs
//! dry with nothing in flight.
//!
//! Copy first, splice for bulk (as HAProxy's `splice-auto`): most bursts of a TLS
//! connection are a few records, and for those a copy costs fewer system calls than a
//! splice, because a short read shows that the socket is drained (below) while a short
//! splice does not. A direction switches to splice for good the first time a read fills
//! the whole buffer.
//!
//! Each read or write is tried directly while tokio still holds the socket ready; the
//! direction waits for the next readiness event after an `EAGAIN`, or after a copy read
//! that returned less than the buffer: TCP returns less than asked only when its receive
//! queue ran empty, so the `EAGAIN` the next read would return is known without making
//! it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// A failure of one direction.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// Reading the source socket failed.
    Read(io::Error),
    /// Writing the destination socket failed.
    Write(io::Error),
}

/// Buffer of one direction on the portable path.
const PORTABLE_BUFFER: usize = 32 * 1024;

/// Empty buffers kept per worker thread for the next burst; more are freed.
const BUFFERS_PER_THREAD: usize = 16;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    BUFFERS
        .try_with(|b| b.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0u8; PORTABLE_BUFFER].into_boxed_slice())
}

/// Keeps `buf` for another burst. A pooled buffer still holds old bytes; a reader only
/// ever writes out what it read into it itself.
fn give_back_buffer(buf: Box<[u8]>) {
    let _ = BUFFERS.try_with(|b| {
        let mut pool = b.borrow_mut();
        if pool.len() < BUFFERS_PER_THREAD {
            pool.push(buf);
        }
    });
}

/// Where a direction's bytes wait between the read and the write.
enum Held {
    /// Nothing: the direction is idle, or between bursts.
    Nothing,
    /// A pipe holding `pending` bytes (possibly none, within a burst).
    #[cfg(target_os = "linux")]
    Pipe(crate::splice::SplicePipe),
    /// A buffer whose bytes `start..start + pending` are still to be written.
    Buffer(Box<[u8]>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Moving,
    /// The source ended and everything read was written: pass the FIN on.
    ShuttingDown,
    Done,
}

/// What one read brought.
enum Read {
    /// The source ended.
    End,
    /// Bytes, and the source may have more.
    Some(usize),
    /// Bytes, and the source had no more (its readiness is cleared).
    Drained(usize),
}

impl Read {
    fn from_count(n: usize) -> Read {
        if n == 0 {
            Read::End
        } else {
            Read::Some(n)
        }
    }
}

/// One direction's state; see the module documentation.
pub(crate) struct Pump {
    held: Held,
    pending: usize,
    start: usize,
    use_splice: bool,
    /// A read filled the whole copy buffer once: this direction carries bulk, and moves
    /// it with splice from now on (when `use_splice`).
    bulk: bool,
    /// The last read drained the source (a short copy read): once its bytes are written,
    /// the buffer goes back and the direction waits for readiness.
    drained: bool,
    stage: Stage,
}

impl Pump {
    /// A direction that moves bytes with splice(2) when `use_splice` (and the platform has
    /// it), else with a buffer.
    pub(crate) fn new(use_splice: bool) -> Pump {
        Pump {
            held: Held::Nothing,
            pending: 0,
            start: 0,
            use_splice: use_splice && cfg!(target_os = "linux"),
            bulk: false,
            drained: false,
            stage: Stage::Moving,
        }
    }

    /// Whether the source ended and its end was passed on.
    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Moves bytes from `src` to `dst` until both would block (`Pending`, with the task
    /// registered for the readiness it waits on) or the direction ends (`Ready`). Each
    /// count of bytes written is added to `moved` and `route`. `other_done` says the
    /// opposite direction has ended: the connection closes as soon as this one ends, and
    /// the close sends `dst` its FIN, so no `shutdown(WR)` is made for it.
    pub(crate) fn poll_move(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        dst: &mut TcpStream,
        moved: &mut u64,
        route: &AtomicU64,
        other_done: bool,
    ) -> Poll<Result<(), PumpError>> {
        loop {
            match self.stage {
                Stage::Done => return Poll::Ready(Ok(())),
                Stage::ShuttingDown if other_done => {
                    self.stage = Stage::Done;
                    return Poll::Ready(Ok(()));
                }
                Stage::ShuttingDown => {
                    let shut = ready!(Pin::new(&mut *dst).poll_shutdown(cx));
                    self.stage = Stage::Done;
                    return Poll::Ready(match shut {
                        // The peer already reset or closed fully: nothing left to tell it.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                        Err(e) => Err(PumpError::Write(e)),
                        Ok(()) => Ok(()),
                    });
                }
                Stage::Moving => {}
            }
            if self.pending > 0 {
                ready!(dst.poll_write_ready(cx)).map_err(PumpError::Write)?;
                match self.write_out(dst) {
                    Ok(0) => {
                        return Poll::Ready(Err(PumpError::Write(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the socket took 0 bytes",
                        ))))
                    }
                    Ok(n) => {
                        self.pending = self.pending.saturating_sub(n);
                        self.start = self.start.saturating_add(n);
                        let n = n as u64;
                        *moved = moved.saturating_add(n);
                        route.fetch_add(n, Ordering::Relaxed);
                    }
                    // Readiness is cleared: the next poll_write_ready waits for room.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(PumpError::Write(e))),
                }
                continue;
            }
            if self.drained {
                // Everything the last short read took is written: nothing is in flight,
                // and the socket's readiness is already cleared.
                self.drained = false;
                self.release();
            }
            ready!(src.poll_read_ready(cx)).map_err(PumpError::Read)?;
            match self.read_in(src) {
                Ok(Read::End) => {
                    self.release();
                    self.stage = Stage::ShuttingDown;
                }
                Ok(Read::Some(n)) => {
                    self.pending = n;
                    self.start = 0;
                }
                Ok(Read::Drained(n)) => {
                    self.pending = n;
                    self.start = 0;
                    self.drained = true;
                }
                // Nothing more for now and nothing in flight: let the pipe or buffer
                // go, so that an idle direction holds none. Readiness is cleared.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.release(),
                Err(e) => return Poll::Ready(Err(PumpError::Read(e))),
            }
        }
    }

    /// One read of `src` into the pipe or buffer (taken from the pool if not held).
    fn read_in(&mut self, src: &TcpStream) -> io::Result<Read> {
        #[cfg(target_os = "linux")]
        if self.use_splice && self.bulk {
            if !matches!(self.held, Held::Pipe(_)) {
                // Nothing is pending when a read is made, so a held buffer is empty.
                self.release();
                match crate::splice::SplicePipe::take() {
                    Ok(pipe) => self.held = Held::Pipe(pipe),
                    // Out of descriptors for a pipe: this direction still works, by copying.
                    Err(_) => self.use_splice = false,
                }
            }
            if let Held::Pipe(pipe) = &self.held {
                use std::os::fd::AsRawFd;
                let fd = src.as_raw_fd();
                return src
                    .try_io(tokio::io::Interest::READABLE, || pipe.fill(fd))
                    .map(Read::from_count);
            }
        }
        if !matches!(self.held, Held::Buffer(_)) {
            self.held = Held::Buffer(take_buffer());
        }
        let Held::Buffer(buf) = &mut self.held else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let capacity = buf.len();
        let mut short = 0;
        // A short read is reported to tokio as WouldBlock, which clears the socket's
        // readiness, as the EAGAIN of a next read would. That is sound: the read came
        // short because the receive queue was empty; bytes that arrive later raise a new
        // edge-triggered event, and one that arrived meanwhile has already set the
        // readiness again with a newer tick, which this clearing leaves alone. An end of
        // stream or an error is kept by tokio through any clearing (`READ_CLOSED`).
        let result = src.try_io(tokio::io::Interest::READABLE, || {
            let n = src.try_read(buf)?;
            if n > 0 && n < capacity {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => {
                Ok(Read::Drained(short))
            }
            Ok(n) if n == capacity => {
                self.bulk = true;
                Ok(Read::Some(n))
            }
            other => other.map(Read::from_count),
        }
    }

    /// One write of the pending bytes to `dst`.
    fn write_out(&self, dst: &TcpStream) -> io::Result<usize> {
        match &self.held {
            #[cfg(target_os = "linux")]
            Held::Pipe(pipe) => {
                use std::os::fd::AsRawFd;
                let fd = dst.as_raw_fd();
                dst.try_io(tokio::io::Interest::WRITABLE, || {
                    pipe.drain(fd, self.pending)
                })
            }
            Held::Buffer(buf) => {
                let end = self.start.saturating_add(self.pending);
                dst.try_write(buf.get(self.start..end).unwrap_or_default())
            }
            Held::Nothing => Ok(0),
        }
    }

    /// Returns the pipe or buffer to the pool; only called with nothing pending, so a
    /// pooled pipe is always empty.
    fn release(&mut self) {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            #[cfg(target_os = "linux")]
            Held::Pipe(pipe) => pipe.give_back(),
            Held::Buffer(buf) => give_back_buffer(buf),
            Held::Nothing => {}
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // With bytes still in it, a pipe or buffer is dropped, never pooled: its bytes
        // would reach another connection.
        if self.pending == 0 {
            self.release();
        }
    }
}
