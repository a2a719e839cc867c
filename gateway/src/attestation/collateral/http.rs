//! One HTTP GET with a deadline, for the collateral services (AMD KDS, Intel PCS or a
//! PCCS, Azure's instance metadata service), over a [`crate::outbound`] connection that
//! trusts Mozilla's roots for `https://`.
//!
//! The whole exchange (connect, TLS, request, body) is bounded by the caller's deadline,
//! and the body by [`MAX_BODY_BYTES`], so a slow or hostile service can neither stall an
//! attestation nor fill memory.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};

use crate::outbound::{Client, Connection};

/// The largest body accepted (a PCK CRL is the largest collateral part, well under this).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a GET gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`; holds it.
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    /// No answer within the deadline.
    #[error("{url}: no answer within {secs} s")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The deadline, in seconds.
        secs: u64,
    },
    /// Connecting, the TLS handshake, or the HTTP exchange failed.
    #[error("{url}: {why}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What failed.
        why: String,
    },
    /// The service answered with another status than 200.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
}

/// A 200 answer.
#[derive(Debug)]
pub struct Response {
    /// The response headers (the PCS puts issuer chains there).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

struct Target<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path_and_query: &'a str,
}

fn split(url: &str) -> Result<Target<'_>, HttpError> {
    let bad = || HttpError::Url(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse().map_err(|_| bad())?),
            None if after.is_empty() => (h, default_port),
            None => return Err(bad()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Target {
        tls,
        host,
        port,
        path_and_query: path,
    })
}

async fn exchange(
    mut connection: Connection<Empty<Bytes>>,
    url: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let transport = |why: String| HttpError::Transport {
        url: url.to_string(),
        why,
    };
    let mut request = Request::get(path).header(hyper::header::HOST, host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(e.to_string()))?;
    let response = connection
        .sender
        .send_request(request)
        .await
        .map_err(|e| transport(e.to_string()))?;
    let status = response.status();
    let (parts, body) = response.into_parts();
    if status != StatusCode::OK {
        connection.driver.abort();
        return Err(HttpError::Status {
            url: url.to_string(),
            status,
        });
    }
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| transport(format!("reading the body: {e}")))?
        .to_bytes();
    connection.driver.abort();
    Ok(Response {
        headers: parts.headers,
        body,
    })
}

async fn get_unbounded(url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    let target = split(url)?;
    let host_header = if (target.tls && target.port == 443) || (!target.tls && target.port == 80) {
        target.host.to_string()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let transport = |why: String| HttpError::Transport {
        url: url.to_string(),
        why,
    };
    let connection = client()
        .map_err(|e| transport(format!("TLS setup: {e}")))?
        .connect(target.tls, target.host, target.port)
        .await
        .map_err(transport)?;
    exchange(
        connection,
        url,
        &host_header,
        target.path_and_query,
        headers,
    )
    .await
}

/// Trusts Mozilla's roots. Built once: the root store is the same for every request.
fn client() -> Result<&'static Client, &'static rustls::Error> {
    static CLIENT: std::sync::OnceLock<Result<Client, rustls::Error>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| Client::trusting(Client::web_pki_roots()))
        .as_ref()
}

/// `GET url` with extra request `headers`, bounded by `deadline`; a 200 or an error.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    deadline: Duration,
) -> Result<Response, HttpError> {
    match tokio::time::timeout(deadline, get_unbounded(url, headers)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: url.to_string(),
            secs: deadline.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = split("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain").unwrap();
        assert!(t.tls);
        assert_eq!((t.host, t.port), ("kdsintf.amd.com", 443));
        assert_eq!(t.path_and_query, "/vcek/v1/Milan/cert_chain");
        let t = split("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.tls, t.port, t.path_and_query), (false, 8080, "/"));
        let t = split("http://[::1]:9/x?y=1").unwrap();
        assert_eq!((t.host, t.port, t.path_and_query), ("::1", 9, "/x?y=1"));
        for bad in [
            "ftp://x",
            "http://",
            "http://h:x/",
            "http://[::1",
            "http://[::1]x/",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error_and_silence_a_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts (the kernel's backlog) but never answers.
        let e = get(&format!("http://{addr}/"), &[], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
        drop(listener);
        let e = get(&format!("http://{addr}/"), &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Transport { .. }), "{e}");
    }
}
