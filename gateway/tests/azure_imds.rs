//! The Azure TD quote request against an IMDS stand-in (Azure's instance metadata
//! service cannot run here): a loopback HTTP server that speaks `/acc/tdquote` as IMDS
//! does and answers with the real recorded TDX quote of `../shared/evidence/tdx`. A
//! server that never answers ends in the deadline's error, and a refusal is named.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gateway::attestation::azure::{fetch_td_quote, ImdsError};

/// The IMDS stand-in: serves one request with `answer(request_json)` and returns what
/// it received (request line, headers, body) through the join handle.
fn stand_in(
    answer: impl FnOnce(&serde_json::Value) -> (u16, String) + Send + 'static,
) -> (
    String,
    std::thread::JoinHandle<(String, Vec<String>, serde_json::Value)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request line");
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            headers.push(h);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        let (status, text) = answer(&json);
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .expect("answer");
        (line.trim_end().to_string(), headers, json)
    });
    (base, handle)
}

#[test]
fn the_td_quote_comes_back_from_the_imds_stand_in() {
    let Some(tdx) = testkit::evidence::dir("tdx") else {
        return;
    };
    let quote = std::fs::read(tdx.join("tdx_quote")).expect("recorded quote");
    let served = quote.clone();
    let (base, server) = stand_in(move |_| {
        (
            200,
            serde_json::json!({ "quote": URL_SAFE_NO_PAD.encode(&served) }).to_string(),
        )
    });
    let td_report = [0x42u8; 1024];
    let got = fetch_td_quote(&base, &td_report, Duration::from_secs(10)).expect("quote");
    assert_eq!(got, quote);
    let (line, headers, json) = server.join().expect("stand-in");
    assert_eq!(line, "POST /acc/tdquote HTTP/1.1");
    assert!(headers.iter().any(|h| h == "Metadata: true"), "{headers:?}");
    let sent = URL_SAFE_NO_PAD
        .decode(json["report"].as_str().expect("report"))
        .expect("base64url");
    assert_eq!(sent, td_report);
    // The answer parses as the TDX quote it is.
    attest::tee::tdx::parse_quote(&got).expect("a TDX quote");
}

#[test]
fn a_refusal_and_a_silent_host_are_errors() {
    let (base, server) = stand_in(|_| (400, "{\"error\":\"bad report\"}".into()));
    let err = fetch_td_quote(&base, &[1; 1024], Duration::from_secs(10)).expect_err("400");
    assert!(matches!(err, ImdsError::Answer { .. }), "{err}");
    assert!(err.to_string().contains("400"), "{err}");
    server.join().expect("stand-in");

    // Accepts, never answers: the deadline ends the request.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let err = fetch_td_quote(&base, &[1; 1024], Duration::from_millis(300)).expect_err("silent");
    assert!(matches!(err, ImdsError::Deadline { .. }), "{err}");
    drop(listener);
}
