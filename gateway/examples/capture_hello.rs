//! Captures the first bytes a real TLS client sends (its ClientHello) into a file, for the
//! parser tests in `passthrough/tests/client_hello_captures.rs` (it lives here, not
//! beside them, because it runs a rustls client, which the data plane does not link). It
//! listens on a free loopback port, accepts one connection, reads until the client has
//! been quiet for a second (a client waits for the ServerHello after its hello, so the
//! quiet marks the hello's end), writes what it read, and closes; the client then fails
//! its handshake, which is expected.
//!
//! ```text
//! capture_hello listen OUT.bin             # prints the port; point any client at it
//! capture_hello rustls OUT.bin SNI ALPN,.. # also runs a rustls client against itself
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A hello is far smaller; this only bounds a misbehaving client.
const MAX_CAPTURE: usize = 64 * 1024;
const QUIET: Duration = Duration::from_secs(1);
const WAIT_FOR_CLIENT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["listen", out] => {
            println!("{port}");
            std::io::stdout().flush()?;
            capture(&listener, out)
        }
        ["rustls", out, sni, alpn] => {
            let client = spawn_rustls_client(port, sni.to_string(), alpn)?;
            capture(&listener, out)?;
            // The client now sees a closed connection and fails: that is the expected end.
            let _ = client.join();
            Ok(())
        }
        _ => bail!("usage: capture_hello listen OUT | capture_hello rustls OUT SNI ALPN[,ALPN..]"),
    }
}

/// Accepts one connection and writes what it sends until it is quiet for [`QUIET`].
fn capture(listener: &TcpListener, out: &str) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + WAIT_FOR_CLIENT;
    let (mut conn, peer) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!("no client connected within {WAIT_FOR_CLIENT:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("accept"),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(QUIET))?;
    let mut captured = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                captured.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                if captured.len() >= MAX_CAPTURE {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !captured.is_empty() {
                    break;
                }
            }
            Err(e) => return Err(e).context("read"),
        }
    }
    std::fs::write(out, &captured).with_context(|| format!("write {out}"))?;
    eprintln!("captured {} bytes from {peer} into {out}", captured.len());
    Ok(())
}

/// A rustls client (ring provider, default protocol versions) that offers `sni` and the
/// comma-separated ALPN list, then waits for a ServerHello that never comes.
fn spawn_rustls_client(
    port: u16,
    sni: String,
    alpn: &str,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.split(',').map(|p| p.as_bytes().to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni)?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(std::thread::spawn(move || {
        if let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = conn.complete_io(&mut sock);
        }
    }))
}
