//! What a DNS host name is, for every part of verigate that reads one: the SNI of a
//! ClientHello, a route's `sni` and the names of the attested manifest.
//!
//! A host name here is what a TLS client sends in its `server_name` extension
//! (RFC 6066 §3): labels of ASCII letters, digits, `-` and `_` (seen in real service
//! names), each 1..=63 bytes, not starting or ending with `-`, at most 253 bytes in all,
//! no trailing dot. An all-digit last label is refused: it is an IPv4 literal, which
//! RFC 6066 forbids in SNI, so a route or a manifest entry for one could never match a
//! client. Names compare case-insensitively; [`normalize`] lowercases them.

use std::fmt;

/// Longest host name, in bytes (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;

/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// Why bytes are not a DNS host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsNameError {
    /// No bytes at all.
    Empty,
    /// More than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The name's length.
        len: usize,
    },
    /// A trailing `.` (clients send names without it).
    TrailingDot,
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A label of more than [`MAX_LABEL_LEN`] bytes.
    LabelTooLong,
    /// A byte that no host name holds.
    BadByte {
        /// Offset of the byte in the name.
        offset: usize,
    },
    /// A label that starts or ends with `-`.
    HyphenAtLabelEdge,
    /// The last label is all digits: an IP address literal.
    NumericTopLabel,
}

impl fmt::Display for DnsNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsNameError::Empty => f.write_str("empty"),
            DnsNameError::TooLong { len } => {
                write!(f, "{len} bytes, longer than {MAX_NAME_LEN}")
            }
            DnsNameError::TrailingDot => {
                f.write_str("trailing dot (TLS clients send names without it)")
            }
            DnsNameError::EmptyLabel => f.write_str("empty label"),
            DnsNameError::LabelTooLong => write!(f, "label longer than {MAX_LABEL_LEN} bytes"),
            DnsNameError::BadByte { offset } => write!(
                f,
                "byte at offset {offset} is outside letters, digits, '-', '_' and '.'"
            ),
            DnsNameError::HyphenAtLabelEdge => f.write_str("label starts or ends with '-'"),
            DnsNameError::NumericTopLabel => f.write_str(
                "an IP address literal (RFC 6066 forbids them in SNI) or all-numeric top label",
            ),
        }
    }
}

impl std::error::Error for DnsNameError {}

/// Checks that `name` is a DNS host name (either case).
pub fn validate(name: &[u8]) -> Result<(), DnsNameError> {
    if name.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(DnsNameError::TooLong { len: name.len() });
    }
    if name.last() == Some(&b'.') {
        return Err(DnsNameError::TrailingDot);
    }
    let mut label_start = 0;
    let mut numeric_label = false;
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DnsNameError::LabelTooLong);
        }
        if let Some(i) = label
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(DnsNameError::BadByte {
                offset: label_start + i,
            });
        }
        if label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return Err(DnsNameError::HyphenAtLabelEdge);
        }
        numeric_label = label.iter().all(u8::is_ascii_digit);
        label_start += label.len() + 1;
    }
    if numeric_label {
        return Err(DnsNameError::NumericTopLabel);
    }
    Ok(())
}

/// Checks `name` and returns it lowercased, the form in which names are compared.
pub fn normalize(name: &[u8]) -> Result<String, DnsNameError> {
    validate(name)?;
    Ok(name
        .iter()
        .map(|&b| char::from(b.to_ascii_lowercase()))
        .collect())
}

/// True when `name` is a DNS host name.
pub fn is_dns_name(name: &str) -> bool {
    validate(name.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_names_in_either_case() {
        for name in [
            "a",
            "app.example.com",
            "App.Example.COM",
            "_svc.x-1.example",
            "a.b2",
        ] {
            assert_eq!(validate(name.as_bytes()), Ok(()), "{name}");
        }
        assert_eq!(normalize(b"App.Example.COM").unwrap(), "app.example.com");
        assert!(is_dns_name(&format!("{}.com", "a".repeat(63))));
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), MAX_NAME_LEN);
        assert!(is_dns_name(&longest));
    }

    #[test]
    fn refuses_each_bad_name_with_its_reason() {
        let too_long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        let cases: &[(&[u8], DnsNameError)] = &[
            (b"", DnsNameError::Empty),
            (too_long.as_bytes(), DnsNameError::TooLong { len: 259 }),
            (b"example.com.", DnsNameError::TrailingDot),
            (b"a..b", DnsNameError::EmptyLabel),
            (b".a", DnsNameError::EmptyLabel),
            (&[b'a'; 64], DnsNameError::LabelTooLong),
            (b"a.b c", DnsNameError::BadByte { offset: 3 }),
            (b"*.example.com", DnsNameError::BadByte { offset: 0 }),
            (b"a\0b", DnsNameError::BadByte { offset: 1 }),
            ("é.com".as_bytes(), DnsNameError::BadByte { offset: 0 }),
            (b"-a.com", DnsNameError::HyphenAtLabelEdge),
            (b"a-.com", DnsNameError::HyphenAtLabelEdge),
            (b"10.0.0.1", DnsNameError::NumericTopLabel),
            (b"host.123", DnsNameError::NumericTopLabel),
        ];
        for (name, expected) in cases {
            assert_eq!(validate(name), Err(*expected), "{}", name.escape_ascii());
            assert!(!expected.to_string().is_empty());
        }
    }
}
