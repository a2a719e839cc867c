//! Route patterns: which server names (SNI) a route takes, and the table that picks, for
//! one SNI, the pattern that takes it.
//!
//! A pattern is one name (`app.example.com`), a wildcard (`*.example.com`: any name
//! ending with `.example.com`, on a label boundary, not `example.com` itself), or the
//! catch-all `*`. Names in patterns follow the same rule as the SNI the ClientHello
//! parser accepts ([`wire::dns`]), so a pattern that parses is one a client can match:
//! `10.0.0.1` is refused here because no client may send it as SNI (RFC 6066 §3).
//! Patterns are lowercased, as the parser lowercases the SNI.
//!
//! Precedence in an [`SniTable`], for an SNI `s`: the exact pattern `s`; then the
//! wildcard with the longest suffix `s` ends with (so `*.internal.example.com` beats
//! `*.example.com`); then the catch-all `*`; else nothing.

use std::collections::HashMap;
use std::fmt;

use wire::dns::{self, DnsNameError};

/// The `sni` of a route, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPattern {
    /// One name, lowercase.
    Exact(String),
    /// `*.suffix`: any name ending with `.suffix`; holds the pattern, lowercase.
    Wildcard(String),
    /// `*`: every name that nothing else matches.
    CatchAll,
}

/// Why text is not a route pattern; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPatternError {
    /// Spaces around the pattern.
    SurroundingSpaces {
        /// The pattern as written.
        text: String,
    },
    /// A `*` that is not the whole leftmost label, nor the whole pattern.
    MisplacedWildcard {
        /// The pattern as written.
        text: String,
    },
    /// The name (or a wildcard's suffix) is not a DNS host name.
    NotDnsName {
        /// The pattern as written.
        text: String,
        /// Which DNS rule the name breaks.
        reason: DnsNameError,
    },
}

impl fmt::Display for SniPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPatternError::SurroundingSpaces { text } => {
                write!(f, "`{text}` has surrounding spaces: remove them")
            }
            SniPatternError::MisplacedWildcard { text } => write!(
                f,
                "wildcard in the wrong place in `{text}`: write `*.example.com` (the `*` as \
                 the whole leftmost label) or `*` alone for the catch-all route"
            ),
            SniPatternError::NotDnsName { text, reason } => write!(
                f,
                "expected a DNS name such as \"app.example.com\", got `{text}`: {reason} \
                 (no client could send it as SNI, so the route would never match)"
            ),
        }
    }
}

impl std::error::Error for SniPatternError {}

impl SniPattern {
    /// Parses a route's `sni`: a DNS name, `*.` followed by a DNS name (the `*` as the
    /// whole leftmost label), or `*` alone.
    pub fn parse(text: &str) -> Result<SniPattern, SniPatternError> {
        if text.trim() != text {
            return Err(SniPatternError::SurroundingSpaces { text: text.into() });
        }
        let lower = text.to_ascii_lowercase();
        if lower == "*" {
            return Ok(SniPattern::CatchAll);
        }
        let (name, wildcard) = match lower.strip_prefix("*.") {
            Some(suffix) => (suffix, true),
            None => (lower.as_str(), false),
        };
        if name.contains('*') {
            return Err(SniPatternError::MisplacedWildcard { text: text.into() });
        }
        match dns::validate(name.as_bytes()) {
            Ok(()) if wildcard => Ok(SniPattern::Wildcard(lower)),
            Ok(()) => Ok(SniPattern::Exact(lower)),
            Err(reason) => Err(SniPatternError::NotDnsName {
                text: text.into(),
                reason,
            }),
        }
    }

    /// The pattern as written in lowercase (`app.example.com`, `*.example.com`, `*`);
    /// used as the route's name in logs and metrics.
    pub fn as_str(&self) -> &str {
        match self {
            SniPattern::Exact(name) | SniPattern::Wildcard(name) => name,
            SniPattern::CatchAll => "*",
        }
    }

    /// True when a client that sent `sni` (lowercase, as the ClientHello parser returns
    /// it) is taken by this pattern.
    pub fn matches(&self, sni: &str) -> bool {
        match self {
            SniPattern::Exact(name) => sni == name,
            SniPattern::Wildcard(pattern) => ends_with_label(sni, wildcard_suffix(pattern)),
            SniPattern::CatchAll => true,
        }
    }
}

/// "*.example.com" -> ".example.com": what a name the wildcard takes ends with.
fn wildcard_suffix(pattern: &str) -> &str {
    pattern.trim_start_matches('*')
}

/// True when `sni` is at least one label longer than `suffix` (which starts with a dot)
/// and ends with it: `*.example.com` takes `a.example.com`, not `example.com`.
fn ends_with_label(sni: &str, suffix: &str) -> bool {
    sni.len() > suffix.len() && sni.ends_with(suffix)
}

/// SNI -> value, by pattern. Immutable once built, in practice: the gateway builds a new
/// one on reload and swaps it whole. The first value inserted for a pattern wins, as the
/// first route in a file does.
#[derive(Debug)]
pub struct SniTable<R> {
    exact: HashMap<String, R>,
    /// (suffix with its leading dot, value), longest suffix first.
    wildcards: Vec<(String, R)>,
    catch_all: Option<R>,
}

impl<R> Default for SniTable<R> {
    fn default() -> Self {
        SniTable {
            exact: HashMap::new(),
            wildcards: Vec::new(),
            catch_all: None,
        }
    }
}

impl<R> SniTable<R> {
    /// Adds `value` for `pattern`; false (and `value` dropped) when the pattern is
    /// already taken.
    pub fn insert(&mut self, pattern: &SniPattern, value: R) -> bool {
        match pattern {
            SniPattern::Exact(name) => {
                if self.exact.contains_key(name) {
                    return false;
                }
                self.exact.insert(name.clone(), value);
            }
            SniPattern::Wildcard(pattern) => {
                let suffix = wildcard_suffix(pattern);
                if self.wildcards.iter().any(|(s, _)| s == suffix) {
                    return false;
                }
                self.wildcards.push((suffix.to_string(), value));
                // Longest suffix first (then by name, for a stable order), so a lookup
                // stops at the most specific wildcard.
                self.wildcards
                    .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            }
            SniPattern::CatchAll => {
                if self.catch_all.is_some() {
                    return false;
                }
                self.catch_all = Some(value);
            }
        }
        true
    }

    /// The value whose pattern takes `sni` (lowercase, as the ClientHello parser returns
    /// it), by the precedence in the module doc.
    pub fn lookup(&self, sni: &str) -> Option<&R> {
        if let Some(value) = self.exact.get(sni) {
            return Some(value);
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| ends_with_label(sni, suffix))
            .map(|(_, value)| value)
            .or(self.catch_all.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            SniPattern::parse("App.Example.com"),
            Ok(SniPattern::Exact("app.example.com".into()))
        );
        assert_eq!(
            SniPattern::parse("*.Example.com"),
            Ok(SniPattern::Wildcard("*.example.com".into()))
        );
        assert_eq!(SniPattern::parse("*"), Ok(SniPattern::CatchAll));
        for bad in [
            "", " a.test", "a..test", "-a.test", "a.test.", "a:443", "*.*", "**",
        ] {
            assert!(SniPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(SniPattern::parse("a.*.test")
            .unwrap_err()
            .to_string()
            .contains("wildcard in the wrong place"));
    }

    #[test]
    fn an_address_is_not_a_pattern() {
        // The ClientHello parser refuses such an SNI, so such a route could never match.
        for bad in ["10.0.0.1", "*.10.0.0.1", "host.123"] {
            let e = SniPattern::parse(bad).unwrap_err();
            assert_eq!(
                e,
                SniPatternError::NotDnsName {
                    text: bad.into(),
                    reason: DnsNameError::NumericTopLabel
                }
            );
            assert!(e.to_string().contains("IP address literal"), "{e}");
        }
    }

    #[test]
    fn table_precedence_exact_then_longest_wildcard_then_catch_all() {
        let mut t = SniTable::default();
        for (i, p) in [
            "*.example.com",
            "a.example.com",
            "*.internal.example.com",
            "x.internal.example.com",
        ]
        .into_iter()
        .enumerate()
        {
            assert!(t.insert(&SniPattern::parse(p).unwrap(), i));
        }
        assert!(!t.insert(&SniPattern::parse("A.example.com").unwrap(), 9));
        assert_eq!(t.lookup("a.example.com"), Some(&1));
        assert_eq!(t.lookup("b.c.example.com"), Some(&0));
        assert_eq!(t.lookup("y.internal.example.com"), Some(&2));
        assert_eq!(t.lookup("x.internal.example.com"), Some(&3));
        assert_eq!(t.lookup("internal.example.com"), Some(&0));
        assert_eq!(t.lookup("example.com"), None);
        assert_eq!(t.lookup("badexample.com"), None);
        assert!(t.insert(&SniPattern::CatchAll, 4));
        assert!(!t.insert(&SniPattern::CatchAll, 5));
        assert_eq!(t.lookup("other.test"), Some(&4));
    }

    #[test]
    fn wildcards_match_on_a_label_boundary() {
        let p = SniPattern::parse("*.example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
        assert!(SniPattern::parse("a.test").unwrap().matches("a.test"));
        assert!(SniPattern::CatchAll.matches("anything.test"));
    }
}
