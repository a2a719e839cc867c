//! The preamble peek: reads the first bytes of an accepted connection, the PROXY header
//! when a load balancer sends one and then the TLS records up to a whole ClientHello,
//! bounded in bytes (the PROXY v2 maximum, then [`MAX_CLIENT_HELLO_BYTES`]). The caller
//! bounds it in time. Every byte read is kept: after the PROXY header, they are the
//! client's stream, and they go on to wherever the connection is routed.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::client_hello::{ClientHello, ClientHelloError, Reassembler, MAX_CLIENT_HELLO_BYTES};
use crate::proxy_protocol::{self, ProxyError, ProxyHeader, V2_MAX_LEN};

/// Why a connection ended before it could be routed.
#[derive(thiserror::Error, Debug)]
pub enum PeekError {
    /// The client closed its side before a whole ClientHello arrived.
    #[error("client closed after {received} bytes, before a whole ClientHello")]
    ClosedEarly {
        /// Bytes received after the PROXY header, if any.
        received: usize,
    },
    /// Reading the socket failed.
    #[error("reading from the client: {0}")]
    Io(#[from] io::Error),
    /// A PROXY header was expected and these bytes are not one.
    #[error("PROXY header required from this peer (accept_proxy_protocol_from): {0}")]
    Proxy(ProxyError),
    /// A PROXY header came from a peer that may not send one: it could claim any
    /// client address.
    #[error("PROXY header from a peer not in accept_proxy_protocol_from")]
    UntrustedProxy,
    /// The bytes are not a ClientHello the gateway accepts.
    #[error("{0}")]
    ClientHello(ClientHelloError),
    /// The PROXY header or the hello did not end within its byte bound.
    #[error("no whole ClientHello within the first {limit} bytes")]
    TooLarge {
        /// The bound that was reached.
        limit: usize,
    },
}

impl PeekError {
    /// The short outcome word of the connection log line.
    pub fn outcome(&self) -> &'static str {
        match self {
            PeekError::ClosedEarly { .. } => "closed_before_client_hello",
            PeekError::Io(_) => "client_error",
            PeekError::Proxy(_) => "refused_proxy_header",
            PeekError::UntrustedProxy => "refused_untrusted_proxy_header",
            PeekError::ClientHello(ClientHelloError::NotTls { .. }) => "not_tls",
            PeekError::ClientHello(_) => "bad_client_hello",
            PeekError::TooLarge { .. } => "client_hello_too_large",
        }
    }
}

/// What the peek learned before routing.
#[derive(Debug)]
pub struct Preamble {
    /// The load balancer's PROXY header, when one was expected.
    pub proxy: Option<ProxyHeader>,
    /// The parsed ClientHello, whose SNI decides the route.
    pub hello: ClientHello,
    /// Every byte read after the PROXY header: the hello and anything after it.
    pub buf: Vec<u8>,
}

/// Reads the optional PROXY header, then bytes until they hold a whole ClientHello.
pub async fn read_preamble(
    stream: &mut TcpStream,
    expect_proxy: bool,
) -> Result<Preamble, PeekError> {
    read_preamble_into(stream, expect_proxy, &mut None).await
}

/// [`read_preamble`], leaving the PROXY header in `early_proxy` as soon as it is read,
/// so that a caller that gives up on the hello (timeout) still knows the client.
pub async fn read_preamble_into(
    stream: &mut TcpStream,
    expect_proxy: bool,
    early_proxy: &mut Option<ProxyHeader>,
) -> Result<Preamble, PeekError> {
    let mut buf = Vec::with_capacity(2048);
    let mut proxy = None;
    if expect_proxy {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some((header, len))) => {
                    buf = buf.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
                    *early_proxy = Some(header.clone());
                    proxy = Some(header);
                    break;
                }
                Ok(None) => read_some(stream, &mut buf, V2_MAX_LEN).await?,
                Err(e) => return Err(PeekError::Proxy(e)),
            }
        }
    }
    // The reassembler keeps its place between reads, so each read costs work for its
    // new bytes only: a client that sends its hello a byte at a time, or as one-byte
    // records, cannot make the peek quadratic.
    let mut reassembler = Reassembler::new();
    loop {
        match reassembler.feed(&buf) {
            Ok(Some(hello)) => return Ok(Preamble { proxy, hello, buf }),
            Ok(None) => {}
            Err(_) if !expect_proxy && proxy_protocol::looks_like_header(&buf) => {
                return Err(PeekError::UntrustedProxy)
            }
            Err(e) => return Err(PeekError::ClientHello(e)),
        }
        read_some(stream, &mut buf, MAX_CLIENT_HELLO_BYTES).await?;
    }
}

/// Appends what the socket has (at least one byte) to `buf`, never growing it past
/// `limit`.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), PeekError> {
    let room = limit.saturating_sub(buf.len());
    if room == 0 {
        return Err(PeekError::TooLarge { limit });
    }
    // Read straight into the buffer's tail: a stack array here would live in the
    // connection task's state for the connection's whole life.
    let start = buf.len();
    buf.resize(start + room.min(READ_CHUNK), 0);
    let read = match buf.get_mut(start..) {
        Some(tail) => stream.read(tail).await,
        None => Ok(0),
    };
    let n = match read {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e.into());
        }
    };
    buf.truncate(start + n);
    if n == 0 {
        return Err(PeekError::ClosedEarly { received: start });
    }
    Ok(())
}

/// Most bytes one read of the peek asks for.
const READ_CHUNK: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets: (what the gateway reads, what the client writes).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn hello() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/hellos/rustls_h2_http11.bin");
        std::fs::read(path).unwrap()
    }

    #[tokio::test]
    async fn proxy_header_split_then_hello_with_trailing_bytes() {
        let (mut server, mut client) = pair().await;
        let header = proxy_protocol::encode_v2(
            "192.0.2.1:1000".parse().unwrap(),
            "192.0.2.2:443".parse().unwrap(),
            None,
        );
        let hello = hello();
        let writer = tokio::spawn(async move {
            client.set_nodelay(true).unwrap();
            client.write_all(&header[..5]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut rest = header[5..].to_vec();
            rest.extend_from_slice(&hello);
            rest.extend_from_slice(b"early");
            client.write_all(&rest).await.unwrap();
            client
        });
        let preamble = read_preamble(&mut server, true).await.unwrap();
        let _client = writer.await.unwrap();
        assert_eq!(
            preamble.proxy.unwrap().source,
            Some("192.0.2.1:1000".parse().unwrap())
        );
        assert_eq!(preamble.hello.sni.as_deref(), Some("rustls.example.com"));
        // The bytes after the hello are kept: they go to the backend too.
        assert!(preamble.buf.ends_with(b"early"));
        assert_eq!(preamble.hello.consumed + 5, preamble.buf.len());
    }

    #[tokio::test]
    async fn a_proxy_header_where_none_is_allowed_is_named_as_such() {
        let v2 = proxy_protocol::encode_v2(
            "203.0.113.9:1".parse().unwrap(),
            "192.0.2.2:443".parse().unwrap(),
            None,
        );
        for header in [v2, b"PROXY TCP4 203.0.113.9 192.0.2.2 1 443\r\n".to_vec()] {
            let (mut server, mut client) = pair().await;
            client.write_all(&header).await.unwrap();
            client.write_all(&hello()).await.unwrap();
            let e = read_preamble(&mut server, false).await.unwrap_err();
            assert!(matches!(e, PeekError::UntrustedProxy), "{e:?}");
            assert_eq!(e.outcome(), "refused_untrusted_proxy_header");
        }
        // Other bytes that are not TLS stay "not TLS".
        let (mut server, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let e = read_preamble(&mut server, false).await.unwrap_err();
        assert_eq!(e.outcome(), "not_tls");
    }

    #[tokio::test]
    async fn byte_by_byte_hello() {
        let (mut server, mut client) = pair().await;
        let hello = hello();
        let writer = tokio::spawn(async move {
            client.set_nodelay(true).unwrap();
            for b in &hello {
                client.write_all(std::slice::from_ref(b)).await.unwrap();
            }
            client
        });
        let preamble = read_preamble(&mut server, false).await.unwrap();
        let _client = writer.await.unwrap();
        assert_eq!(preamble.hello.sni.as_deref(), Some("rustls.example.com"));
    }

    /// The reviewer's case through a socket: a 2.7 KB hello in one-byte records, a
    /// record per write. However the reads fall, the peek visits each record a bounded
    /// number of times (it used to walk the whole buffer again after each read).
    #[tokio::test]
    async fn one_byte_records_cost_linear_work() {
        use crate::client_hello::{tests as hellos, work};
        let message = hellos::padded_hello("slow.example.com", 2700);
        let stream = hellos::one_byte_records(&message);
        let (mut server, mut client) = pair().await;
        let records = stream.clone();
        let writer = tokio::spawn(async move {
            client.set_nodelay(true).unwrap();
            for record in records.chunks(6) {
                client.write_all(record).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        // The test runtime runs on this thread, so the thread's count is the peek's.
        let before = work::record_walks();
        let preamble = read_preamble(&mut server, false).await.unwrap();
        let walks = work::record_walks() - before;
        let _client = writer.await.unwrap();
        assert_eq!(preamble.hello.sni.as_deref(), Some("slow.example.com"));
        assert_eq!(preamble.buf.len(), stream.len());
        let bound = stream.len() + 2 * message.len() + 1;
        assert!(walks <= bound, "{walks} record visits (bound {bound})");
    }

    #[tokio::test]
    async fn early_close_and_garbage_are_told_apart() {
        let (mut server, mut client) = pair().await;
        client.write_all(&hello()[..10]).await.unwrap();
        drop(client);
        let e = read_preamble(&mut server, false).await.unwrap_err();
        assert!(matches!(e, PeekError::ClosedEarly { received: 10 }), "{e}");
        assert_eq!(e.outcome(), "closed_before_client_hello");

        let (mut server, mut client) = pair().await;
        client.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
        let e = read_preamble(&mut server, false).await.unwrap_err();
        assert_eq!(e.outcome(), "not_tls");

        let (mut server, mut client) = pair().await;
        client.write_all(&hello()).await.unwrap();
        let e = read_preamble(&mut server, true).await.unwrap_err();
        assert!(
            matches!(e, PeekError::Proxy(ProxyError::NotProxyProtocol)),
            "{e}"
        );
    }
}
