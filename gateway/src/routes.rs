//! SNI → destination: the route table (the own name first, then the routes, matched by
//! [`passthrough::sni::SniTable`]).
//!
//! A [`RouteTable`] is immutable. A reload builds a new one and swaps it in whole, so a
//! connection decides with one consistent table and never sees half of an update. Names
//! compare case-insensitively (the ClientHello parser lowercases the SNI, patterns are
//! lowercased when parsed). Order of precedence, for an SNI `s`:
//!
//! 1. `s` is `gateway.domain`, or the client sent no SNI → verigated's own endpoint;
//! 2. a route whose exact name is `s`;
//! 3. the wildcard route with the longest suffix that `s` ends with (`*.example.com`
//!    matches `a.example.com` and `a.b.example.com`, not `example.com`), so
//!    `*.internal.example.com` beats `*.example.com`;
//! 4. the catch-all route `sni = "*"`;
//! 5. nothing: the client gets a TLS `unrecognized_name` alert.
//!
//! One exception reaches the own endpoint through any routed name: a hello whose ALPN
//! list is exactly [`OWN_ENDPOINT_ALPN`] (`verigate/1`) and whose SNI a route takes
//! (2 to 4). No application offers that id, and a list that also offers `h2` or
//! anything else is the application's, so every other hello goes where it went before.
//! A name no route takes is still refused: the exception adds no name to the gateway.

use std::path::PathBuf;
use std::sync::Arc;

use attest::evidence::OWN_ENDPOINT_ALPN;
use passthrough::sni::{SniPattern, SniTable};

use crate::config::RouteConfig;
use crate::metrics::{Metrics, RouteMetrics};

/// A route: where connections for its names go.
#[derive(Debug)]
pub struct Route {
    /// The names this route takes (exact, wildcard, or `*`); also its name in logs.
    pub sni: SniPattern,
    /// `host:port`.
    pub backend: String,
    /// Prepend a PROXY v2 header (client address, SNI as authority) to the backend.
    pub send_proxy_protocol: bool,
    /// Where the manifest reads this route's certificate, when configured.
    pub certificate: Option<PathBuf>,
    /// This route's counters; they outlive reloads (keyed by the pattern).
    pub metrics: Arc<RouteMetrics>,
}

impl Route {
    /// The route's name in logs and metrics: its pattern.
    pub fn name(&self) -> &str {
        self.sni.as_str()
    }
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// verigated's own TLS endpoint.
    Own,
    /// A backend, bytes untouched.
    Route(Arc<Route>),
    /// No route for this SNI and no catch-all: refuse with `unrecognized_name`.
    Unrecognized,
}

/// The immutable SNI → destination table: the own name in front of the data plane's
/// [`SniTable`] of routes.
#[derive(Debug)]
pub struct RouteTable {
    domain: String,
    by_sni: SniTable<Arc<Route>>,
    /// In file order, for listing.
    all: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table for `domain` (lowercase) from validated routes; counters come
    /// from `metrics`, so a route that survives a reload keeps its counts.
    pub fn new(domain: &str, routes: &[RouteConfig], metrics: &Metrics) -> RouteTable {
        let mut table = RouteTable {
            domain: domain.to_ascii_lowercase(),
            by_sni: SniTable::default(),
            all: Vec::new(),
        };
        for r in routes {
            let route = Arc::new(Route {
                sni: r.sni.clone(),
                backend: r.backend.clone(),
                send_proxy_protocol: r.send_proxy_protocol,
                certificate: r.certificate.clone(),
                metrics: metrics.route(r.sni.as_str()),
            });
            // Validation refused duplicates; if one slips through, the first one wins,
            // as in the file.
            table.by_sni.insert(&r.sni, route.clone());
            table.all.push(route);
        }
        table
    }

    /// Decides where a connection with this SNI and ALPN list goes (see the module doc
    /// for the order and the `verigate/1` exception).
    pub fn lookup(&self, sni: Option<&str>, alpn: &[Vec<u8>]) -> Destination {
        let Some(sni) = sni else {
            return Destination::Own;
        };
        let sni = sni.to_ascii_lowercase();
        if sni == self.domain {
            return Destination::Own;
        }
        match self.by_sni.lookup(&sni) {
            Some(_) if asks_for_own_endpoint(alpn) => Destination::Own,
            Some(route) => Destination::Route(route.clone()),
            None => Destination::Unrecognized,
        }
    }

    /// The own endpoint's name.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Every route, in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.all
    }
}

/// Whether a ClientHello's ALPN list is exactly `verigate/1`.
fn asks_for_own_endpoint(alpn: &[Vec<u8>]) -> bool {
    matches!(alpn, [only] if only.as_slice() == OWN_ENDPOINT_ALPN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> RouteTable {
        let routes: Vec<RouteConfig> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| RouteConfig {
                sni: SniPattern::parse(p).unwrap(),
                backend: format!("127.0.0.1:{}", 1000 + i),
                send_proxy_protocol: false,
                certificate: None,
            })
            .collect();
        RouteTable::new("vm.example.com", &routes, &Metrics::default())
    }

    fn backend(t: &RouteTable, sni: Option<&str>) -> String {
        backend_with_alpn(t, sni, &[])
    }

    fn backend_with_alpn(t: &RouteTable, sni: Option<&str>, alpn: &[&str]) -> String {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        match t.lookup(sni, &alpn) {
            Destination::Own => "own".into(),
            Destination::Route(r) => r.backend.clone(),
            Destination::Unrecognized => "alert".into(),
        }
    }

    #[test]
    fn precedence() {
        let t = table(&[
            "*.example.com",
            "a.example.com",
            "*.internal.example.com",
            "x.internal.example.com",
        ]);
        assert_eq!(backend(&t, Some("a.example.com")), "127.0.0.1:1001");
        assert_eq!(backend(&t, Some("A.Example.COM")), "127.0.0.1:1001");
        assert_eq!(backend(&t, Some("b.example.com")), "127.0.0.1:1000");
        assert_eq!(backend(&t, Some("b.c.example.com")), "127.0.0.1:1000");
        assert_eq!(
            backend(&t, Some("y.internal.example.com")),
            "127.0.0.1:1002"
        );
        assert_eq!(
            backend(&t, Some("x.internal.example.com")),
            "127.0.0.1:1003"
        );
        assert_eq!(backend(&t, Some("example.com")), "alert");
        assert_eq!(backend(&t, Some("internal.example.com")), "127.0.0.1:1000");
        assert_eq!(backend(&t, Some("other.test")), "alert");
        assert_eq!(backend(&t, Some("vm.example.com")), "own");
        assert_eq!(backend(&t, Some("VM.example.com")), "own");
        assert_eq!(backend(&t, None), "own");
    }

    #[test]
    fn catch_all_only_when_nothing_else() {
        let t = table(&["*", "a.test"]);
        assert_eq!(backend(&t, Some("a.test")), "127.0.0.1:1001");
        assert_eq!(backend(&t, Some("zzz.test")), "127.0.0.1:1000");
        assert_eq!(backend(&t, Some("vm.example.com")), "own");
        assert_eq!(backend(&t, None), "own");
    }

    #[test]
    fn suffix_is_matched_on_a_label_boundary() {
        let t = table(&["*.example.com"]);
        assert_eq!(backend(&t, Some("badexample.com")), "alert");
    }

    #[test]
    fn only_verigate_alpn_alone_reaches_the_own_endpoint_on_a_routed_name() {
        let t = table(&["*.example.com", "a.example.com", "*"]);
        let own = |sni, alpn: &[&str]| backend_with_alpn(&t, Some(sni), alpn);
        assert_eq!(own("a.example.com", &["verigate/1"]), "own");
        assert_eq!(own("A.Example.COM", &["verigate/1"]), "own");
        assert_eq!(own("b.example.com", &["verigate/1"]), "own");
        assert_eq!(own("other.test", &["verigate/1"]), "own");
        assert_eq!(own("vm.example.com", &["verigate/1"]), "own");
        // Any other list is the application's, whatever it contains.
        assert_eq!(
            own("a.example.com", &["h2", "verigate/1"]),
            "127.0.0.1:1001"
        );
        assert_eq!(
            own("a.example.com", &["verigate/1", "http/1.1"]),
            "127.0.0.1:1001"
        );
        assert_eq!(own("a.example.com", &["verigate/2"]), "127.0.0.1:1001");
        assert_eq!(own("a.example.com", &["Verigate/1"]), "127.0.0.1:1001");
        assert_eq!(
            own("a.example.com", &["verigate/1", "verigate/1"]),
            "127.0.0.1:1001"
        );
        assert_eq!(own("a.example.com", &["h2"]), "127.0.0.1:1001");
        assert_eq!(own("a.example.com", &[]), "127.0.0.1:1001");
    }

    #[test]
    fn verigate_alpn_adds_no_name() {
        let t = table(&["a.example.com"]);
        assert_eq!(
            backend_with_alpn(&t, Some("b.example.com"), &["verigate/1"]),
            "alert"
        );
    }
}
