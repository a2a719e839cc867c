//! Logging: tracing to stderr as `key=value` text or JSON lines, and the one line each
//! connection ends with.
//!
//! The connection line (target `verigated::connection`, message `connection`) carries:
//! `client` (the real client, from the PROXY header behind a load balancer), `local`,
//! `sni`, `route` (`self` for the own endpoint), `backend`, `bytes_in` (client to
//! gateway/backend), `bytes_out`, `duration_ms`, `outcome` (a short word such as
//! `closed`, `unrecognized_name`, `client_hello_timeout`) and `detail` when there is one.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Instant;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-28T00:00:00Z  INFO verigated::connection: connection client=... sni=...`
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi_enabled(
            std::io::stderr().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
        ));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether log lines get colours: on a terminal, unless `NO_COLOR` is set to anything but
/// the empty string (<https://no-color.org>).
fn ansi_enabled(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// What is known about a connection so far; [`ConnectionLog::finish`] writes its line.
#[derive(Debug)]
pub struct ConnectionLog {
    /// The real client: from the PROXY header when one came, else the peer address.
    pub client: SocketAddr,
    /// The address the connection was accepted on, when known.
    pub local: Option<SocketAddr>,
    /// The server name of the ClientHello, once parsed (none when the client sent none).
    pub sni: Option<String>,
    /// The route taken: its SNI pattern, or `self` for the own endpoint.
    pub route: Option<String>,
    /// The route's backend (`host:port`), once chosen.
    pub backend: Option<String>,
    start: Instant,
}

impl ConnectionLog {
    /// Starts the clock for a connection from `client` accepted on `local`.
    pub fn new(client: SocketAddr, local: Option<SocketAddr>) -> Self {
        ConnectionLog {
            client,
            local,
            sni: None,
            route: None,
            backend: None,
            start: Instant::now(),
        }
    }

    /// Writes the connection's line.
    pub fn finish(self, outcome: &str, detail: Option<String>, bytes_in: u64, bytes_out: u64) {
        let dash = || "-".to_string();
        let duration_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            target: "verigated::connection",
            client = %self.client,
            local = %self.local.map(|l| l.to_string()).unwrap_or_else(dash),
            sni = %self.sni.unwrap_or_else(dash),
            route = %self.route.unwrap_or_else(dash),
            backend = %self.backend.unwrap_or_else(dash),
            bytes_in,
            bytes_out,
            duration_ms,
            outcome = %outcome,
            detail = %detail.unwrap_or_else(dash),
            "connection"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ansi_enabled;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(ansi_enabled(true, None));
        assert!(ansi_enabled(true, Some("")));
        assert!(!ansi_enabled(true, Some("1")));
        assert!(!ansi_enabled(false, None));
    }
}
