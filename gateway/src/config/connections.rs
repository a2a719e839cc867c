//! The connection bounds of `verigated.toml`: who may send a PROXY header, the budgets
//! (per source address for passthrough, and a budget of its own for the own endpoint),
//! the time a backend has to send its first byte, and the timeouts that bound every
//! connection to the own endpoint. The keys are listed in the parent module's raw
//! `[gateway]` and `[api]` structs (serde's `deny_unknown_fields` and `flatten` do not
//! combine); [`validate`] checks them and collects every problem, each naming the field
//! and the fix.
//!
//! ```toml
//! [gateway]
//! accept_proxy_protocol_from = ["10.0.0.5/32"]   # load balancers that send PROXY headers
//! max_connections_per_source = 256
//! backend_first_byte_timeout = "10s"
//!
//! [api]
//! max_connections = 256
//! max_connections_per_source = 16
//! idle_timeout = "5m"                 # default: gateway.idle_timeout
//! max_connection_lifetime = "10m"
//! header_read_timeout = "10s"
//! request_timeout = "3m"
//! send_timeout = "30s"
//! http2_keepalive_interval = "30s"
//! http2_keepalive_timeout = "10s"
//! http2_max_concurrent_streams = 16
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::{parse_duration, RawDuration};

/// Default of `gateway.max_connections_per_source`.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 256;
/// Default of `gateway.backend_first_byte_timeout`, as a user would write it.
pub const DEFAULT_BACKEND_FIRST_BYTE_TIMEOUT: &str = "10s";
/// Default of `api.max_connections`.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 256;
/// Default of `api.max_connections_per_source`.
pub const DEFAULT_API_MAX_CONNECTIONS_PER_SOURCE: usize = 16;
/// `api.idle_timeout` when neither it nor `gateway.idle_timeout` is set (or the latter
/// is `"0s"`, which turns off only the passthrough idle timeout).
pub const DEFAULT_API_IDLE_TIMEOUT: &str = "5m";
/// Default of `api.max_connection_lifetime`.
pub const DEFAULT_API_MAX_CONNECTION_LIFETIME: &str = "10m";
/// Default of `api.header_read_timeout`.
pub const DEFAULT_API_HEADER_READ_TIMEOUT: &str = "10s";
/// Default of `api.request_timeout`: longer than app control's command timeout (2 min),
/// so that a restart that takes its full time is still answered.
pub const DEFAULT_API_REQUEST_TIMEOUT: &str = "3m";
/// Default of `api.send_timeout`.
pub const DEFAULT_API_SEND_TIMEOUT: &str = "30s";
/// Default of `api.http2_keepalive_interval`.
pub const DEFAULT_API_HTTP2_KEEPALIVE_INTERVAL: &str = "30s";
/// Default of `api.http2_keepalive_timeout`.
pub const DEFAULT_API_HTTP2_KEEPALIVE_TIMEOUT: &str = "10s";
/// Default of `api.http2_max_concurrent_streams`.
pub const DEFAULT_API_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 16;
/// The most streams `api.http2_max_concurrent_streams` may allow.
pub const MAX_API_HTTP2_CONCURRENT_STREAMS: u32 = 128;

/// An address block, `10.0.0.0/8` or `fd00::/8` (a bare address is a block of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ip/prefix` or a bare `ip`; host bits must be zero, so a typo such as
    /// `10.0.0.5/8` is caught instead of silently trusting `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (ip_text, prefix_text) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = ip_text.parse().map_err(|_| {
            format!("expected an address block such as \"10.0.0.0/8\" or \"::1/128\", got `{text}`")
        })?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits => n,
                _ => {
                    return Err(format!(
                        "`{text}`: expected a prefix length of 0..={bits} after the `/`"
                    ))
                }
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != bits_of(network) {
            return Err(format!(
                "`{text}` has bits set after the prefix: write `{}`",
                cidr.normalized()
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` lies in the block. An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports IPv4 peers) matches the IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        self.masked(ip) == self.masked(self.network)
    }

    /// `ip` with the bits after the prefix cleared, as a 128-bit number.
    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let keep = u32::from(width - self.prefix);
        let mask = u128::MAX.checked_shl(keep).unwrap_or(0);
        bits_of(ip) & mask
    }

    fn normalized(&self) -> Cidr {
        let bits = self.masked(self.network);
        let network = match self.network {
            IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits).unwrap_or(0).into()),
            IpAddr::V6(_) => IpAddr::V6(bits.into()),
        };
        Cidr {
            network,
            prefix: self.prefix,
        }
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The validated bounds of `[gateway]`'s connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayBounds {
    /// Peers whose connections must begin with a PROXY header (the load balancers). A
    /// header from any other peer is refused; such a peer without a header is served as
    /// a direct client. Empty: no PROXY header is accepted from anyone.
    pub accept_proxy_protocol_from: Vec<Cidr>,
    /// Connections open at once from one source address, before routing and on
    /// passthrough routes.
    pub max_connections_per_source: usize,
    /// How long a connected backend has to send its first byte.
    pub backend_first_byte_timeout: Duration,
}

impl GatewayBounds {
    /// Whether `peer` is a load balancer whose PROXY header verigated must read.
    pub fn trusts_proxy_from(&self, peer: IpAddr) -> bool {
        self.accept_proxy_protocol_from
            .iter()
            .any(|cidr| cidr.contains(peer))
    }
}

/// The validated bounds of every connection to the own endpoint (`[api]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointBounds {
    /// Own-endpoint connections open at once; apart from `gateway.max_connections`.
    pub max_connections: usize,
    /// Own-endpoint connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A connection this old is closed once its requests are answered.
    pub max_connection_lifetime: Duration,
    /// How long a client has to send a request's headers (HTTP/1), and its first
    /// request after the TLS handshake (both protocols).
    pub header_read_timeout: Duration,
    /// How long one request may take to be answered.
    pub request_timeout: Duration,
    /// A response whose bytes the client does not take for this long drops the
    /// connection.
    pub send_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub http2_keepalive_interval: Duration,
    /// A ping not answered within this drops the connection.
    pub http2_keepalive_timeout: Duration,
    /// Streams an HTTP/2 client may open at once.
    pub http2_max_concurrent_streams: u32,
}

/// The keys of `[gateway]` this module checks, as written.
#[derive(Debug, Default)]
pub(super) struct RawGatewayBounds {
    /// `accept_proxy_protocol`, when written.
    pub(super) accept_proxy_protocol: Option<bool>,
    /// `accept_proxy_protocol_from`.
    pub(super) accept_proxy_protocol_from: Vec<String>,
    /// `max_connections_per_source`.
    pub(super) max_connections_per_source: Option<i64>,
    /// `backend_first_byte_timeout`.
    pub(super) backend_first_byte_timeout: Option<RawDuration>,
}

/// The keys of `[api]` this module checks, as written.
#[derive(Debug, Default)]
pub(super) struct RawEndpointBounds {
    /// `max_connections`.
    pub(super) max_connections: Option<i64>,
    /// `max_connections_per_source`.
    pub(super) max_connections_per_source: Option<i64>,
    /// `idle_timeout`.
    pub(super) idle_timeout: Option<RawDuration>,
    /// `max_connection_lifetime`.
    pub(super) max_connection_lifetime: Option<RawDuration>,
    /// `header_read_timeout`.
    pub(super) header_read_timeout: Option<RawDuration>,
    /// `request_timeout`.
    pub(super) request_timeout: Option<RawDuration>,
    /// `send_timeout`.
    pub(super) send_timeout: Option<RawDuration>,
    /// `http2_keepalive_interval`.
    pub(super) http2_keepalive_interval: Option<RawDuration>,
    /// `http2_keepalive_timeout`.
    pub(super) http2_keepalive_timeout: Option<RawDuration>,
    /// `http2_max_concurrent_streams`.
    pub(super) http2_max_concurrent_streams: Option<i64>,
}

/// Reads a positive duration (zero would leave a connection unbounded), or `default`.
fn positive_duration(
    field: &str,
    value: Option<RawDuration>,
    default: &str,
    problem: &mut impl FnMut(&str, String),
) -> Duration {
    let fallback = parse_duration(default).unwrap_or(Duration::from_secs(1));
    match value {
        None => fallback,
        Some(RawDuration::Number(n)) => {
            problem(
                field,
                format!("expected a string with a unit such as \"{n}s\", got the number {n}"),
            );
            fallback
        }
        Some(RawDuration::Text(t)) => match parse_duration(&t) {
            Ok(d) if d.is_zero() => {
                problem(
                    field,
                    format!("must be more than zero (every connection is bounded), got `{t}`"),
                );
                fallback
            }
            Ok(d) => d,
            Err(e) => {
                problem(field, e);
                fallback
            }
        },
    }
}

/// Reads a count of at least 1 and at most `max`, or `default`.
fn count(
    field: &str,
    value: Option<i64>,
    default: usize,
    max: usize,
    problem: &mut impl FnMut(&str, String),
) -> usize {
    match value.map(usize::try_from) {
        None => default,
        Some(Ok(n)) if (1..=max).contains(&n) => n,
        Some(_) => {
            problem(
                field,
                format!(
                    "expected a number of connections of 1..={max} such as {default}, got {}",
                    value.unwrap_or_default()
                ),
            );
            default
        }
    }
}

/// Checks the keys of both sections; `gateway_idle_timeout` (already validated) is the
/// default of `api.idle_timeout` unless it is zero.
pub(super) fn validate(
    g: RawGatewayBounds,
    api: RawEndpointBounds,
    gateway_idle_timeout: Duration,
    problem: &mut impl FnMut(&str, String),
) -> (GatewayBounds, EndpointBounds) {
    let mut from = Vec::new();
    for (i, text) in g.accept_proxy_protocol_from.iter().enumerate() {
        match Cidr::parse(text) {
            Ok(cidr) => from.push(cidr),
            Err(e) => problem(&format!("gateway.accept_proxy_protocol_from[{i}]"), e),
        }
    }
    match (
        g.accept_proxy_protocol,
        g.accept_proxy_protocol_from.is_empty(),
    ) {
        (Some(true), true) => problem(
            "gateway.accept_proxy_protocol",
            "true would trust a PROXY header from any peer, so anyone could claim any \
             address: list the load balancers instead, e.g. \
             accept_proxy_protocol_from = [\"10.0.0.5/32\"]"
                .into(),
        ),
        (Some(false), false) => problem(
            "gateway.accept_proxy_protocol",
            "false contradicts gateway.accept_proxy_protocol_from: remove one of the two".into(),
        ),
        _ => {}
    }
    let gateway = GatewayBounds {
        accept_proxy_protocol_from: from,
        max_connections_per_source: count(
            "gateway.max_connections_per_source",
            g.max_connections_per_source,
            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            usize::MAX,
            problem,
        ),
        backend_first_byte_timeout: positive_duration(
            "gateway.backend_first_byte_timeout",
            g.backend_first_byte_timeout,
            DEFAULT_BACKEND_FIRST_BYTE_TIMEOUT,
            problem,
        ),
    };

    let idle_default = if gateway_idle_timeout.is_zero() {
        parse_duration(DEFAULT_API_IDLE_TIMEOUT).unwrap_or(Duration::from_secs(300))
    } else {
        gateway_idle_timeout
    };
    let idle_timeout = match api.idle_timeout {
        None => idle_default,
        set => positive_duration("api.idle_timeout", set, DEFAULT_API_IDLE_TIMEOUT, problem),
    };
    let streams = match api.http2_max_concurrent_streams {
        None => DEFAULT_API_HTTP2_MAX_CONCURRENT_STREAMS,
        Some(n) => match u32::try_from(n) {
            Ok(n) if (1..=MAX_API_HTTP2_CONCURRENT_STREAMS).contains(&n) => n,
            _ => {
                problem(
                    "api.http2_max_concurrent_streams",
                    format!(
                        "expected 1..={MAX_API_HTTP2_CONCURRENT_STREAMS} streams such as \
                         {DEFAULT_API_HTTP2_MAX_CONCURRENT_STREAMS}, got {n}"
                    ),
                );
                DEFAULT_API_HTTP2_MAX_CONCURRENT_STREAMS
            }
        },
    };
    let endpoint = EndpointBounds {
        max_connections: count(
            "api.max_connections",
            api.max_connections,
            DEFAULT_API_MAX_CONNECTIONS,
            usize::MAX,
            problem,
        ),
        max_connections_per_source: count(
            "api.max_connections_per_source",
            api.max_connections_per_source,
            DEFAULT_API_MAX_CONNECTIONS_PER_SOURCE,
            usize::MAX,
            problem,
        ),
        idle_timeout,
        max_connection_lifetime: positive_duration(
            "api.max_connection_lifetime",
            api.max_connection_lifetime,
            DEFAULT_API_MAX_CONNECTION_LIFETIME,
            problem,
        ),
        header_read_timeout: positive_duration(
            "api.header_read_timeout",
            api.header_read_timeout,
            DEFAULT_API_HEADER_READ_TIMEOUT,
            problem,
        ),
        request_timeout: positive_duration(
            "api.request_timeout",
            api.request_timeout,
            DEFAULT_API_REQUEST_TIMEOUT,
            problem,
        ),
        send_timeout: positive_duration(
            "api.send_timeout",
            api.send_timeout,
            DEFAULT_API_SEND_TIMEOUT,
            problem,
        ),
        http2_keepalive_interval: positive_duration(
            "api.http2_keepalive_interval",
            api.http2_keepalive_interval,
            DEFAULT_API_HTTP2_KEEPALIVE_INTERVAL,
            problem,
        ),
        http2_keepalive_timeout: positive_duration(
            "api.http2_keepalive_timeout",
            api.http2_keepalive_timeout,
            DEFAULT_API_HTTP2_KEEPALIVE_TIMEOUT,
            problem,
        ),
        http2_max_concurrent_streams: streams,
    };
    (gateway, endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let lan = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(lan.contains("10.1.2.3".parse().unwrap()));
        assert!(lan.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!lan.contains("11.0.0.1".parse().unwrap()));
        assert!(!lan.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert_eq!(Cidr::parse("::/0").unwrap().to_string(), "::/0");
    }

    #[test]
    fn bad_cidr_blocks_name_the_fix() {
        for (text, needle) in [
            ("10.0.0.5/8", "write `10.0.0.0/8`"),
            ("10.0.0.0/33", "prefix length of 0..=32"),
            ("::1/129", "prefix length of 0..=128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/x", "prefix length"),
            ("lb.internal", "expected an address block"),
            ("", "expected an address block"),
        ] {
            let e = Cidr::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
