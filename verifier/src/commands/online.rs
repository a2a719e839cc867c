//! What the online commands (`snapshot`, `verify`, `app`) share: the global `--url`,
//! `--allow-insecure-tls` and `--ca-cert` options, the async runtime, and fetching evidence with a
//! fresh nonce.

use crate::client::{Connection, Endpoint, TlsOptions, Trust};
use crate::commands::args::OnlineArgs;
use anyhow::Context as _;
use attest::binding::Nonce;
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use std::time::Duration;

/// The global options of the commands that talk to verigated.
#[derive(Debug, Clone)]
pub struct Online {
    /// `--url`, as given.
    pub url: Option<String>,
    /// `--allow-insecure-tls`, or the roots certificates are checked against.
    pub trust: Trust,
}

impl Online {
    /// The options as given: with `allow_insecure_tls`, no chain is checked; else
    /// chains must lead to Mozilla's roots or to one in the `ca_cert` file (which is
    /// read here, so that a bad file is a usage error before any traffic).
    pub fn new(
        url: Option<String>,
        allow_insecure_tls: bool,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Online> {
        let trust = if allow_insecure_tls {
            Trust::SignatureOnly
        } else {
            Trust::Roots(std::sync::Arc::new(crate::pki::roots(ca_cert)?))
        };
        Ok(Online { url, trust })
    }

    /// A command's options: its own (`own`), else those given before the subcommand
    /// (`top`).
    pub fn from_args(own: &OnlineArgs, top: &OnlineArgs) -> anyhow::Result<Online> {
        Online::new(
            own.url.clone().or_else(|| top.url.clone()),
            own.allow_insecure_tls || top.allow_insecure_tls,
            own.ca_cert.as_deref().or(top.ca_cert.as_deref()),
        )
    }

    /// For the commands over a fleet file, which names each VM's URL: how certificates
    /// are checked; a `--url` is refused rather than silently ignored.
    pub fn fleet_trust(own: &OnlineArgs, top: &OnlineArgs) -> anyhow::Result<Trust> {
        let online = Online::from_args(own, top)?;
        if let Some(url) = online.url {
            anyhow::bail!(
                "--url `{url}`: the fleet file names each VM's URL, so --url does not apply here"
            );
        }
        Ok(online.trust)
    }

    /// The parsed `--url`; its absence is a usage error (exit 2).
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let url = self
            .url
            .as_deref()
            .context("this command needs --url https://HOST[:PORT] (verigated's own endpoint)")?;
        Ok(url.parse::<Endpoint>()?)
    }

    /// `--url` for messages.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }

    /// TLS options for a connection, with `connect_to` as the dialed address if given.
    pub fn tls_options(&self, connect_to: Option<String>) -> TlsOptions {
        TlsOptions {
            trust: self.trust.clone(),
            connect_to,
        }
    }
}

/// A runtime for one command: the CLI is a short-lived client, so a current-thread
/// runtime is enough (the handshakes are I/O-bound and run concurrently on it).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The error verigated answered with, for a message: its JSON `error`/`detail`, or
/// the start of the body.
pub fn describe_error(status: StatusCode, body: &Bytes) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = match parsed {
        Some(v) => match (v.get("error"), v.get("detail")) {
            (Some(e), Some(d)) => format!("{}: {}", plain(e), plain(d)),
            (Some(e), None) => plain(e),
            _ => v.to_string(),
        },
        None => String::from_utf8_lossy(body).chars().take(200).collect(),
    };
    format!("HTTP {status}: {text}")
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The longest the CLI waits for one answer of verigated. Evidence takes a TPM quote and
/// a TEE report (seconds at most); a server that accepts the connection but never
/// answers must not hang the CLI.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// `method path` on `conn`, bounded by [`REQUEST_TIMEOUT`].
pub async fn request(
    conn: &mut Connection,
    method: Method,
    path: &str,
) -> anyhow::Result<crate::client::Response> {
    match tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.request(method.clone(), path, None, None),
    )
    .await
    {
        Ok(r) => Ok(r.with_context(|| format!("{method} {path}"))?),
        Err(_) => anyhow::bail!(
            "{method} {path}: no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        ),
    }
}

/// `GET /v1/attestation?nonce=<hex>` on `conn`; the body of a 200, else an error (exit 2).
pub async fn get_attestation(conn: &mut Connection, nonce: &Nonce) -> anyhow::Result<Bytes> {
    get_attestation_from(conn, nonce, 0).await
}

/// [`get_attestation`] asking for the IMA log without its first `ima_from` entries
/// (incremental IMA: the caller has replayed them); 0 asks for the whole log.
pub async fn get_attestation_from(
    conn: &mut Connection,
    nonce: &Nonce,
    ima_from: u64,
) -> anyhow::Result<Bytes> {
    let path = if ima_from == 0 {
        format!("/v1/attestation?nonce={}", nonce.to_hex())
    } else {
        format!(
            "/v1/attestation?nonce={}&ima_from={ima_from}",
            nonce.to_hex()
        )
    };
    let res = request(conn, Method::GET, &path).await?;
    if res.status != StatusCode::OK {
        anyhow::bail!("/v1/attestation: {}", describe_error(res.status, &res.body));
    }
    Ok(res.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_the_api_read_well() {
        let b = Bytes::from_static(br#"{"error":"bad nonce","detail":"must be 64 hex"}"#);
        assert_eq!(
            describe_error(StatusCode::BAD_REQUEST, &b),
            "HTTP 400 Bad Request: bad nonce: must be 64 hex"
        );
        let b = Bytes::from_static(b"plain text");
        assert_eq!(
            describe_error(StatusCode::NOT_FOUND, &b),
            "HTTP 404 Not Found: plain text"
        );
    }

    #[test]
    fn own_options_win_and_fleets_refuse_a_url() {
        let top = OnlineArgs {
            url: Some("https://top.example".into()),
            allow_insecure_tls: true,
            ca_cert: None,
        };
        let own = OnlineArgs {
            url: Some("https://own.example".into()),
            ..OnlineArgs::default()
        };
        let o = Online::from_args(&own, &top).unwrap();
        assert_eq!(o.url(), "https://own.example");
        assert!(matches!(o.trust, Trust::SignatureOnly));
        let e = Online::fleet_trust(&OnlineArgs::default(), &top).unwrap_err();
        assert!(e.to_string().contains("fleet file"), "{e}");
        assert!(Online::fleet_trust(&OnlineArgs::default(), &OnlineArgs::default()).is_ok());
    }

    #[test]
    fn url_is_required() {
        let o = Online::new(None, false, None).unwrap();
        assert!(o.endpoint().unwrap_err().to_string().contains("--url"));
    }
}
