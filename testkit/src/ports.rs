//! Free loopback ports for peers that cannot bind port 0 themselves, and connections
//! from a chosen loopback address.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};

/// A TCP port on 127.0.0.1 that was free a moment ago. The OS may hand it out again
/// before the caller binds it, so callers that can bind port 0 should do that instead.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Two consecutive free ports (swtpm wants its control port next to its server port).
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

/// Waits until something accepts TCP connections on `addr`, up to `timeout`.
///
/// A port from [`free_port`] lies in the ephemeral range, so while nothing listens on it
/// the kernel may pick that same port as the probe's source and connect the probe to
/// itself (a TCP simultaneous open). Such a connection proves nothing and is not counted:
/// taking it for the listener made a test wait for a probe that never reached it.
pub fn wait_for_listener(addr: SocketAddr, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(probe) =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
        {
            if !is_connected_to_itself(&probe) {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Whether `stream`'s two ends are the same address: a connection to a port nobody
/// listens on that the kernel completed with itself.
fn is_connected_to_itself(stream: &TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(local), Ok(peer)) if local == peer)
}

/// A blocking TCP connection to `addr` from `source` (port chosen by the OS): another
/// loopback address such as 127.0.0.2 stands for a second client machine.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(std::time::Duration::from_secs(10), socket.connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_found_and_a_closed_port_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(wait_for_listener(addr, std::time::Duration::from_secs(5)));
        drop(listener);
        assert!(!wait_for_listener(
            addr,
            std::time::Duration::from_millis(300)
        ));
    }

    /// A connection whose source port is the port it connects to, made on purpose the way
    /// the kernel sometimes makes it by chance: it must not count as a listener.
    #[test]
    fn a_connection_to_itself_is_not_a_listener() {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(addr).unwrap();
            socket.connect(addr).await.unwrap().into_std().unwrap()
        });
        assert_eq!(stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        assert!(is_connected_to_itself(&stream));
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let probe = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!is_connected_to_itself(&probe));
    }
}
