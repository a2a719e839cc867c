//! Counters of the gateway and their Prometheus text rendering (`GET /metrics`).
//!
//! Plain atomics updated on the connection path: no locks there. Per-route counters
//! live in a registry keyed by the route's pattern, so a route kept across a reload
//! keeps counting; the own endpoint counts under the route label `self`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use passthrough::forward::TrafficCounters;

/// The route label of verigated's own endpoint.
pub const OWN_ROUTE_LABEL: &str = "self";

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Connections being served now.
    pub open: AtomicU64,
    /// Connections routed here since start.
    pub total: AtomicU64,
    /// Bytes each way (the relay adds to these while bytes move).
    pub traffic: Arc<TrafficCounters>,
    /// Connections whose backend could not be reached.
    pub backend_connect_failures: AtomicU64,
}

impl RouteMetrics {
    /// Counts a connection as open until the returned guard drops.
    pub fn open_guard(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }
}

/// Decrements a route's open-connection gauge when dropped.
#[derive(Debug)]
pub struct OpenGuard(Arc<RouteMetrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every counter of a running gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteMetrics>>>,
    /// Connections accepted (before any limit or check).
    pub accepted: AtomicU64,
    /// ClientHellos that could not be parsed (not TLS, malformed, oversized).
    pub client_hello_errors: AtomicU64,
    /// Clients that did not send a whole ClientHello (and PROXY header) in time.
    pub client_hello_timeouts: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_max_connections: AtomicU64,
    /// Connections closed at once because their source held
    /// `gateway.max_connections_per_source`.
    pub refused_per_source: AtomicU64,
    /// Own-endpoint connections closed because `api.max_connections` were open.
    pub refused_api_max_connections: AtomicU64,
    /// Own-endpoint connections closed because their source held
    /// `api.max_connections_per_source`.
    pub refused_api_per_source: AtomicU64,
    /// Connections refused for a missing or broken PROXY header.
    pub refused_proxy_header: AtomicU64,
    /// Connections refused for a PROXY header from a peer not in
    /// `gateway.accept_proxy_protocol_from`.
    pub refused_untrusted_proxy_header: AtomicU64,
    /// SNIs that matched no route (answered with `unrecognized_name`).
    pub unrecognized_name: AtomicU64,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Reloads refused (invalid file); the old configuration stayed.
    pub reload_failures: AtomicU64,
}

impl Metrics {
    /// The counters of route `name` (created on first use, kept across reloads).
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes.entry(name.to_string()).or_default().clone()
    }

    /// The counters of the own endpoint.
    pub fn own(&self) -> Arc<RouteMetrics> {
        self.route(OWN_ROUTE_LABEL)
    }

    /// Connections open on all routes (the own endpoint included).
    pub fn open_connections(&self) -> u64 {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes
            .values()
            .map(|r| r.open.load(Ordering::Relaxed))
            .sum()
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let routes: Vec<(String, Arc<RouteMetrics>)> = {
            let routes = self
                .routes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_route = |f: &dyn Fn(&RouteMetrics) -> u64| -> Vec<(String, u64)> {
            routes
                .iter()
                .map(|(name, m)| (format!("{{route=\"{}\"}}", escape(name)), f(m)))
                .collect()
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            "verigated_connections_open",
            "gauge",
            "Connections being served now, per route (route=\"self\": the own endpoint).",
            per_route(&|m| load(&m.open)),
        );
        family(
            "verigated_connections_total",
            "counter",
            "Connections routed since start, per route.",
            per_route(&|m| load(&m.total)),
        );
        let mut bytes = Vec::new();
        for (name, m) in &routes {
            let name = escape(name);
            bytes.push((
                format!("{{route=\"{name}\",direction=\"client_to_backend\"}}"),
                load(&m.traffic.client_to_backend),
            ));
            bytes.push((
                format!("{{route=\"{name}\",direction=\"backend_to_client\"}}"),
                load(&m.traffic.backend_to_client),
            ));
        }
        family(
            "verigated_bytes_total",
            "counter",
            "Bytes forwarded per route and direction (for route=\"self\": TLS bytes read and written).",
            bytes,
        );
        family(
            "verigated_backend_connect_failures_total",
            "counter",
            "Connections whose backend could not be reached, per route.",
            per_route(&|m| load(&m.backend_connect_failures)),
        );
        family(
            "verigated_accepted_connections_total",
            "counter",
            "TCP connections accepted, before limits and checks.",
            vec![(String::new(), load(&self.accepted))],
        );
        family(
            "verigated_client_hello_errors_total",
            "counter",
            "Connections whose first bytes were not an acceptable TLS ClientHello.",
            vec![(String::new(), load(&self.client_hello_errors))],
        );
        family(
            "verigated_client_hello_timeouts_total",
            "counter",
            "Connections closed for not sending a whole ClientHello within client_hello_timeout.",
            vec![(String::new(), load(&self.client_hello_timeouts))],
        );
        family(
            "verigated_connections_refused_total",
            "counter",
            "Connections closed before being served, by reason: a budget full (passthrough or own endpoint, in total or for one source) or a PROXY header refused.",
            vec![
                (
                    "{reason=\"max_connections\"}".to_string(),
                    load(&self.refused_max_connections),
                ),
                (
                    "{reason=\"max_connections_per_source\"}".to_string(),
                    load(&self.refused_per_source),
                ),
                (
                    "{reason=\"api_max_connections\"}".to_string(),
                    load(&self.refused_api_max_connections),
                ),
                (
                    "{reason=\"api_max_connections_per_source\"}".to_string(),
                    load(&self.refused_api_per_source),
                ),
                (
                    "{reason=\"proxy_header\"}".to_string(),
                    load(&self.refused_proxy_header),
                ),
                (
                    "{reason=\"untrusted_proxy_header\"}".to_string(),
                    load(&self.refused_untrusted_proxy_header),
                ),
            ],
        );
        family(
            "verigated_unrecognized_name_total",
            "counter",
            "ClientHellos whose SNI matched no route (answered with an unrecognized_name alert).",
            vec![(String::new(), load(&self.unrecognized_name))],
        );
        family(
            "verigated_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result.",
            vec![
                ("{result=\"ok\"}".to_string(), load(&self.reloads)),
                (
                    "{result=\"refused\"}".to_string(),
                    load(&self.reload_failures),
                ),
            ],
        );
        out
    }
}

/// Escapes a label value (backslash, double quote, newline) as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_route_counters_and_survives_lookups() {
        let m = Metrics::default();
        let a = m.route("a.example.com");
        {
            let _open = a.open_guard();
            a.traffic.client_to_backend.fetch_add(10, Ordering::Relaxed);
            assert_eq!(m.open_connections(), 1);
            let text = m.render();
            assert!(text.contains("verigated_connections_open{route=\"a.example.com\"} 1\n"));
        }
        assert_eq!(m.open_connections(), 0);
        // The same name gives the same counters (a reload keeps them).
        assert!(Arc::ptr_eq(&a, &m.route("a.example.com")));
        let text = m.render();
        assert!(text.contains("verigated_connections_total{route=\"a.example.com\"} 1\n"));
        assert!(text.contains(
            "verigated_bytes_total{route=\"a.example.com\",direction=\"client_to_backend\"} 10\n"
        ));
        assert!(
            text.contains("verigated_connections_refused_total{reason=\"max_connections\"} 0\n")
        );
        assert!(text.contains("# TYPE verigated_client_hello_timeouts_total counter\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
