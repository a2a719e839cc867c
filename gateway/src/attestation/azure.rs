//! The host side of Azure TDX collection (ARCHITECTURE.md, "Azure confidential VMs"):
//! the TD report in the HCL report is MAC'ed for this CPU only, so the TD quote for it
//! comes from Azure's instance metadata service, `POST <base>/acc/tdquote` with
//! `{"report": base64url(TD report)}`, answered `{"quote": base64url(TD quote)}`.
//!
//! IMDS is plain HTTP on a link-local address, so one HTTP/1.1 request over a
//! `TcpStream` does; the whole exchange, name resolution included, runs under one
//! deadline, and an answer larger than [`MAX_ANSWER_BYTES`] is refused, so a broken
//! host can neither hang nor flood an attestation. Blocking: call it from a blocking
//! task.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// The largest answer read (a TD quote with its PCK chain is about 5 KiB).
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// Why no TD quote came back.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// The base URL is not `http://host[:port]`.
    #[error("IMDS URL `{0}` is not http://host[:port]")]
    Url(String),
    /// Connecting, writing or reading failed (timeouts included).
    #[error("IMDS {url}: {source}")]
    Io {
        /// The URL asked.
        url: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The deadline passed before the answer was complete.
    #[error("IMDS {url}: no complete answer within {deadline:?}")]
    Deadline {
        /// The URL asked.
        url: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The answer is not `200` with `{"quote": base64url}`.
    #[error("IMDS {url}: {detail}")]
    Answer {
        /// The URL asked.
        url: String,
        /// What was wrong with the answer.
        detail: String,
    },
}

/// Asks `<base_url>/acc/tdquote` for the quote of `td_report`, within `deadline`.
pub fn fetch_td_quote(
    base_url: &str,
    td_report: &[u8],
    deadline: Duration,
) -> Result<Vec<u8>, ImdsError> {
    let url = format!("{}/acc/tdquote", base_url.trim_end_matches('/'));
    let authority = base_url
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| ImdsError::Url(base_url.to_string()))?;
    let host_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let io = |source| ImdsError::Io {
        url: url.clone(),
        source,
    };
    let start = Instant::now();
    let addr = match resolve_within(host_port, deadline, |hp| {
        hp.to_socket_addrs().map(Iterator::collect)
    }) {
        Some(resolved) => resolved
            .map_err(io)?
            .into_iter()
            .next()
            .ok_or_else(|| ImdsError::Url(base_url.to_string()))?,
        None => return Err(ImdsError::Deadline { url, deadline }),
    };
    let left = || {
        deadline
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or(ImdsError::Deadline {
                url: url.clone(),
                deadline,
            })
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(io)?;
    let body = serde_json::json!({ "report": URL_SAFE_NO_PAD.encode(td_report) }).to_string();
    let request = format!(
        "POST /acc/tdquote HTTP/1.1\r\nHost: {authority}\r\nMetadata: true\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(ImdsError::Deadline { url, deadline })
            }
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        answer.extend_from_slice(buf.get(..n).unwrap_or_default());
        if u64::try_from(answer.len()).unwrap_or(u64::MAX) > MAX_ANSWER_BYTES {
            return Err(ImdsError::Answer {
                url,
                detail: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
    }
    parse_answer(&answer).map_err(|detail| ImdsError::Answer { url, detail })
}

/// The addresses of `host_port`: parsed when it is an address (IMDS's usual
/// 169.254.169.254), else asked of `resolve` on a helper thread, so that a resolver
/// that does not answer cannot hold the attestation past `deadline` (`None`; the thread
/// is left to finish alone).
fn resolve_within(
    host_port: String,
    deadline: Duration,
    resolve: impl FnOnce(&str) -> std::io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Option<std::io::Result<Vec<SocketAddr>>> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Some(Ok(vec![addr]));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("imds-resolve".into())
        .spawn(move || {
            let _ = tx.send(resolve(&host_port));
        });
    if let Err(e) = spawned {
        return Some(Err(e));
    }
    rx.recv_timeout(deadline).ok()
}

/// The quote from a whole HTTP/1.1 answer (status line, headers, JSON body).
fn parse_answer(answer: &[u8]) -> Result<Vec<u8>, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no end of headers")?;
    let (head, body) = answer.split_at(split);
    let body = body.get(4..).unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "status `{status}`: {}",
            String::from_utf8_lossy(body.get(..200).unwrap_or(body))
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let quote = json
        .get("quote")
        .and_then(serde_json::Value::as_str)
        .ok_or("body has no \"quote\" string")?;
    URL_SAFE_NO_PAD
        .decode(quote.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(quote))
        .map_err(|e| format!("\"quote\" is not base64url: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"quote\":\"AQID\"}";
        assert_eq!(parse_answer(ok), Ok(vec![1, 2, 3]));
        assert!(parse_answer(b"HTTP/1.1 500 Oops\r\n\r\nno")
            .unwrap_err()
            .contains("500"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n{}")
            .unwrap_err()
            .contains("quote"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n{\"quote\":\"!!\"}").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK").is_err());
        assert!(matches!(
            fetch_td_quote("https://169.254.169.254", &[0], Duration::from_secs(1)),
            Err(ImdsError::Url(_))
        ));
    }

    #[test]
    fn a_resolver_that_never_answers_ends_at_the_deadline() {
        // An address needs no resolver.
        let direct = resolve_within("169.254.169.254:80".into(), Duration::ZERO, |_| {
            unreachable!("an address is not resolved")
        });
        assert_eq!(
            direct.unwrap().unwrap(),
            vec![SocketAddr::from(([169, 254, 169, 254], 80))]
        );
        // A name whose resolver hangs (held until the test ends) gives up.
        let (hold, wait) = std::sync::mpsc::channel::<()>();
        let hung = resolve_within(
            "imds.example:80".into(),
            Duration::from_millis(50),
            move |_| {
                let _ = wait.recv();
                Ok(Vec::new())
            },
        );
        assert!(hung.is_none());
        drop(hold);
        // A resolver's answer, and its error, are passed on.
        let named = resolve_within("imds.example:80".into(), Duration::from_secs(60), |hp| {
            assert_eq!(hp, "imds.example:80");
            Err(std::io::Error::other("no such host"))
        });
        assert_eq!(named.unwrap().unwrap_err().to_string(), "no such host");
    }
}
