//! An idle passthrough connection holds its two sockets and nothing else: a splice pipe
//! (two file descriptors) is held only while bytes are in flight, then pooled. This runs
//! in its own test binary because it counts the process's open pipes.

use std::time::Duration;

use passthrough::forward::{pass_through, Opening, RelayOptions, TrafficCounters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn open_pipes() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}

#[tokio::test]
async fn idle_relays_hold_no_pipes_before_or_after_a_burst() {
    if !cfg!(target_os = "linux") {
        eprintln!("splice exists only on Linux: nothing to check here");
        return;
    }
    let before = open_pipes();
    let opts = RelayOptions {
        idle_timeout: Duration::from_secs(60),
        first_byte_timeout: Duration::ZERO,
        use_splice: true,
    };
    let mut ends = Vec::new();
    let mut relays = Vec::new();
    for _ in 0..20 {
        let (client_peer, client) = pair().await;
        let (backend, backend_peer) = pair().await;
        let opts = opts.clone();
        relays.push(tokio::spawn(async move {
            let counters = TrafficCounters::default();
            let nothing_peeked = Opening {
                proxy_v2: None,
                peeked: Vec::new(),
            };
            pass_through(client, backend, nothing_peeked, &opts, &counters).await
        }));
        ends.push((client_peer, backend_peer));
    }
    // Let every relay task reach its wait for the first bytes.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The first readiness of a new socket may come before any byte: a direction then
    // tries one splice, gets EAGAIN and pools the pipe it took, so a pipe or two may be
    // open here; twenty connections must not hold one each.
    let pooled = open_pipes() - before;
    assert!(
        pooled <= 4,
        "{pooled} pipe descriptors open for 20 idle connections that never sent"
    );

    // Bytes both ways on every connection, as a TLS handshake makes: the pipes they
    // used go back to the pool once each burst is through, so twenty connections that
    // went idle again hold none of their own (a pool of a few pipes stays open).
    for (client_peer, backend_peer) in &mut ends {
        client_peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        backend_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        backend_peer.write_all(b"pong").await.unwrap();
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pooled = open_pipes() - before;
    assert!(
        pooled <= 4,
        "{pooled} pipe descriptors open for 20 idle connections (40 directions)"
    );

    drop(ends);
    for r in relays {
        r.await.unwrap();
    }
    assert!(
        open_pipes() <= before + 4,
        "pipes beyond the pool were closed"
    );
}
