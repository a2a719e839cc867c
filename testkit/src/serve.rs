//! A TCP server on a free port of 127.0.0.1 that runs on its own thread (with its own
//! tokio runtime, so a synchronous test can hold it) and hands each accepted connection
//! to a handler; it stops when dropped. The one accept loop behind the TLS backends and
//! the tests' stand-in servers (proxies, replayers, hostile peers).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// A running server; stops (and joins its thread) on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds a free loopback port and serves each connection with `handle`, each on a
    /// task of its own. `name` names the thread (it shows in a panic).
    pub fn start<H, F>(name: &str, handle: H) -> std::io::Result<Server>
    where
        H: Fn(tokio::net::TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let serve = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                // Out of descriptors, say: wait instead of spinning.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            tokio::spawn(handle(tcp));
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the server listens on (loopback, a port the kernel chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
