//! The data-plane threads: one per core, each a single-threaded tokio runtime with its
//! own listening socket on every `gateway.listen` address (`SO_REUSEPORT`), so that a
//! connection is accepted, peeked, routed and relayed on one thread from its first byte
//! to its last.
//!
//! Why not the control plane's work-stealing runtime: there, a task that becomes
//! runnable may wake a parked worker on another core to steal it (an eventfd write and a
//! context switch), and a relay may move between cores mid-connection. Here nothing is
//! woken across cores for a connection, and each thread's pipe and buffer pools serve
//! its own connections. On the 2-core bench machine the difference in CPU per
//! connection was within the noise (bench/discussion.md); the design is the one
//! HAProxy and nginx scale with. The kernel spreads new connections over the threads
//! by their address hash (`SO_REUSEPORT`), and no connection is ever handed between
//! threads, except the own endpoint's: those move to the control runtime
//! ([`crate::listener::Listening::control`]), where the API's services run.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::num::NonZeroUsize;

use tokio::net::TcpSocket;
use tokio::sync::{oneshot, watch};

use crate::listener::{self, Listening};

/// The accept queue of each listening socket (the kernel caps it at `somaxconn`).
const BACKLOG: u32 = 4096;

/// The listening sockets of the data plane: `per_thread[i]` holds thread `i`'s socket for
/// every listen address, in `gateway.listen` order.
#[derive(Debug)]
pub struct Sockets {
    per_thread: Vec<Vec<StdListener>>,
}

/// How many data-plane threads run: `configured`, or one per core the process may use
/// when it is 0.
pub fn thread_count(configured: usize) -> NonZeroUsize {
    NonZeroUsize::new(configured)
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
}

/// Binds `threads` sockets on each address of `listen`, all with `SO_REUSEPORT` so that
/// they share the port. A port of 0 is resolved by the first socket, and the others join
/// the port it was given. Must run inside a tokio runtime (the sockets are registered
/// with it, then released for the thread that will own them).
pub async fn bind(
    listen: &[SocketAddr],
    threads: NonZeroUsize,
) -> Result<Sockets, (SocketAddr, std::io::Error)> {
    let mut per_thread: Vec<Vec<StdListener>> = (0..threads.get()).map(|_| Vec::new()).collect();
    for &configured in listen {
        let mut addr = configured;
        for sockets in &mut per_thread {
            let listener = listen_on(addr).map_err(|e| (configured, e))?;
            let bound = listener.local_addr().map_err(|e| (configured, e))?;
            addr.set_port(bound.port());
            sockets.push(listener);
        }
    }
    Ok(Sockets { per_thread })
}

/// One non-blocking listening socket on `addr`, sharing its port with the others.
fn listen_on(addr: SocketAddr) -> std::io::Result<StdListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

impl Sockets {
    /// The addresses the sockets listen on (one per `gateway.listen` entry, with the
    /// port resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.per_thread
            .first()
            .map(|sockets| sockets.iter().filter_map(|s| s.local_addr().ok()).collect())
            .unwrap_or_default()
    }
}

/// The running data-plane threads.
#[derive(Debug)]
pub struct DataPlane {
    /// One per thread: fires when that thread's accept loops have all stopped.
    stopped: Vec<oneshot::Receiver<()>>,
    /// Dropped (or sent) when the gateway is done: the threads then end, and with them
    /// any relay still open.
    _release: watch::Sender<()>,
}

/// Why the data plane cannot start.
#[derive(thiserror::Error, Debug)]
#[error("cannot start data-plane thread {index}: {source}")]
pub struct StartError {
    index: usize,
    source: std::io::Error,
}

/// Starts one thread per socket set: each accepts on its sockets until
/// `ctx.shutdown` turns true, then keeps serving the connections it holds until the
/// returned [`DataPlane`] is dropped.
pub fn start(ctx: &Listening, sockets: Sockets) -> Result<DataPlane, StartError> {
    let (release, released) = watch::channel(());
    let mut stopped = Vec::new();
    for (index, set) in sockets.per_thread.into_iter().enumerate() {
        let (done, stopped_rx) = oneshot::channel();
        let ctx = ctx.clone();
        let mut released = released.clone();
        // Sockets and timers only: signals and child processes are the control
        // runtime's, and a runtime with them enabled checks for exited children on
        // every turn of its loop.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| StartError { index, source })?;
        std::thread::Builder::new()
            .name(format!("verigated-dp{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut loops = tokio::task::JoinSet::new();
                    for socket in set {
                        match tokio::net::TcpListener::from_std(socket) {
                            Ok(listener) => {
                                loops.spawn(listener::accept_loop(ctx.clone(), listener));
                            }
                            Err(e) => tracing::error!(thread = index, error = %e, "cannot register a listening socket"),
                        }
                    }
                    while loops.join_next().await.is_some() {}
                    let _ = done.send(());
                    // The relays this thread holds are tasks of this runtime: it runs on
                    // until the gateway has drained and lets go.
                    let _ = released.changed().await;
                });
            })
            .map_err(|source| StartError { index, source })?;
        stopped.push(stopped_rx);
    }
    Ok(DataPlane {
        stopped,
        _release: release,
    })
}

impl DataPlane {
    /// Waits until every thread stopped accepting (after shutdown began).
    pub async fn stopped_accepting(&mut self) {
        for stopped in self.stopped.drain(..) {
            let _ = stopped.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[tokio::test]
    async fn every_thread_listens_on_the_same_resolved_port() {
        let listen = [
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
        let sockets = bind(&listen, threads(3)).await.unwrap();
        assert_eq!(sockets.per_thread.len(), 3);
        let addrs = sockets.local_addrs();
        assert_eq!(addrs.len(), 2);
        for (i, addr) in addrs.iter().enumerate() {
            assert_eq!(addr.ip(), listen[i].ip());
            assert_ne!(addr.port(), 0);
            for set in &sockets.per_thread {
                assert_eq!(set[i].local_addr().unwrap(), *addr);
            }
        }
        // The kernel hands each connection to one of the sockets of the port.
        let mut accepted = 0;
        let listeners: Vec<_> = sockets
            .per_thread
            .into_iter()
            .map(|mut set| tokio::net::TcpListener::from_std(set.remove(0)).unwrap())
            .collect();
        let mut clients = Vec::new();
        for _ in 0..16 {
            clients.push(std::net::TcpStream::connect(addrs[0]).unwrap());
        }
        for listener in &listeners {
            while let Ok(Ok(_)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 16);
    }

    #[tokio::test]
    async fn a_port_held_by_another_socket_is_named() {
        // Without SO_REUSEPORT, this socket keeps the port to itself.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        let (addr, e) = bind(&[taken], threads(2)).await.unwrap_err();
        assert_eq!(addr, taken);
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    }

    #[test]
    fn zero_threads_is_one_per_core() {
        assert_eq!(thread_count(3).get(), 3);
        assert_eq!(
            thread_count(0),
            std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
        );
    }
}
