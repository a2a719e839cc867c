//! What bounds one own-endpoint connection in time, whatever its client does: requests
//! in flight ([`InFlight`], so that a connection with none is closed after
//! `api.idle_timeout`, or `api.header_read_timeout` before its first request), a
//! response the client stops reading ([`SendBound`], after `api.send_timeout` without
//! progress), and the grace a closing connection gets ([`close_grace`]) before it is
//! dropped. A client that ignores a graceful close (an HTTP/2 client that never answers
//! the GOAWAY's ping) is dropped when that grace runs out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// After the idle limit or the lifetime, how long a connection with no request in
/// flight has to take its GOAWAY (or its `Connection: close`) and go, before it is
/// dropped: the "few seconds" beyond `api.idle_timeout`.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Why an own-endpoint connection was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// No request in flight for the idle limit.
    Idle,
    /// Older than `api.max_connection_lifetime`.
    Lifetime,
    /// verigated is stopping.
    Shutdown,
}

impl Closing {
    /// The outcome word of the connection's log line.
    pub fn outcome(self) -> &'static str {
        match self {
            Closing::Idle => "idle_timeout",
            Closing::Lifetime => "max_lifetime",
            Closing::Shutdown => "shutdown",
        }
    }
}

/// How long a connection asked to close may still take: a few seconds when nothing is
/// in flight, else `request_timeout` (what an answer may take anyway); at shutdown the
/// drain's grace, which already bounds the whole gateway.
pub fn close_grace(
    why: Closing,
    in_flight: &InFlight,
    request_timeout: Duration,
    drain: Duration,
) -> Duration {
    match why {
        Closing::Shutdown => drain,
        _ if in_flight.is_quiet() => CLOSE_GRACE,
        _ => request_timeout,
    }
}

/// The requests of one connection that are not yet fully answered (a response body
/// still being sent counts), and since when there have been none.
#[derive(Debug)]
pub struct InFlight {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    open: usize,
    quiet_since: Instant,
    served: bool,
}

impl InFlight {
    /// No request yet; quiet since now.
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight {
            state: Mutex::new(State {
                open: 0,
                quiet_since: Instant::now(),
                served: false,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request until the returned guard is dropped (with its response body).
    pub fn start(self: &Arc<Self>) -> RequestGuard {
        {
            let mut s = self.state();
            s.open += 1;
            s.served = true;
        }
        self.changed.notify_waiters();
        RequestGuard(self.clone())
    }

    /// Whether no request is in flight.
    pub fn is_quiet(&self) -> bool {
        self.state().open == 0
    }

    /// Completes once no request has been in flight for `before_first` (while the
    /// connection has had none) or `between` (after that).
    pub async fn quiet_for(&self, before_first: Duration, between: Duration) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a change in between still wakes.
            notified.as_mut().enable();
            let deadline = {
                let s = self.state();
                (s.open == 0).then(|| s.quiet_since + if s.served { between } else { before_first })
            };
            match deadline {
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// One request in flight; dropping it (when its response body is sent or dropped) ends it.
#[derive(Debug)]
pub struct RequestGuard(Arc<InFlight>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        {
            let mut s = self.0.state();
            s.open = s.open.saturating_sub(1);
            if s.open == 0 {
                s.quiet_since = Instant::now();
            }
        }
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted in flight until hyper is done with
/// it: sent to the end, or dropped with the connection.
#[derive(Debug)]
pub struct Guarded<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Guarded<B> {
    /// `inner`, counted by `guard`.
    pub fn new(inner: B, guard: RequestGuard) -> Guarded<B> {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream whose writes fail once they make no progress for `limit`: a client that
/// stops reading (its receive window and our send buffer full) is dropped instead of
/// holding the response, and the connection, forever. Reads pass through.
#[derive(Debug)]
pub struct SendBound<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write first waits, cleared by any progress; boxed and made only
    /// then, so a connection whose writes never wait carries no timer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> SendBound<S> {
    /// Wraps `inner`; writes fail after `limit` without progress.
    pub fn new(inner: S, limit: Duration) -> SendBound<S> {
        SendBound {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns a waiting write into an error once it waited `limit`.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no response bytes for {limit:?} (api.send_timeout)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.waiting(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(result, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_its_body_is_dropped() {
        let in_flight = InFlight::new();
        assert!(in_flight.is_quiet());
        let body = Guarded::new(
            http_body_util::Empty::<hyper::body::Bytes>::new(),
            in_flight.start(),
        );
        let second = in_flight.start();
        drop(second);
        assert!(
            !in_flight.is_quiet(),
            "the first response is still being sent"
        );
        assert_eq!(
            close_grace(
                Closing::Idle,
                &in_flight,
                Duration::from_secs(60),
                Duration::ZERO
            ),
            Duration::from_secs(60)
        );
        drop(body);
        assert!(in_flight.is_quiet());
        assert_eq!(
            close_grace(
                Closing::Lifetime,
                &in_flight,
                Duration::from_secs(60),
                Duration::ZERO
            ),
            CLOSE_GRACE
        );
        assert_eq!(
            close_grace(
                Closing::Shutdown,
                &in_flight,
                Duration::from_secs(60),
                Duration::from_secs(30)
            ),
            Duration::from_secs(30)
        );
    }
}
