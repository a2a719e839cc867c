//! PEM, the one way certificates are turned into text and back.
//!
//! Encoding writes the canonical form (64-column base64 lines, `\n` line ends), which the
//! TDX chain check compares byte for byte. Decoding is our own, block by block, because
//! bundles come from untrusted evidence: x509-cert's `load_pem_chain` underflows on empty
//! input, and der 0.7's PEM reader loops forever on some truncated contents, e.g. the one
//! byte `0x30` (found by the `snp_report` fuzz target), so untrusted text goes through
//! neither.

use base64::Engine as _;
use x509_cert::der::Decode as _;
use x509_cert::Certificate;

const BEGIN_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END_CERTIFICATE: &[u8] = b"-----END CERTIFICATE-----";

/// Why a PEM bundle was refused; `index` counts certificates from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// After whitespace, the text neither ends nor starts a `-----BEGIN CERTIFICATE-----` block.
    #[error("certificate {index}: expected a BEGIN CERTIFICATE line")]
    NoBegin {
        /// Position of the certificate in the bundle, from 0.
        index: usize,
    },
    /// A BEGIN line with no `-----END CERTIFICATE-----` after it (a truncated bundle).
    #[error("certificate {index} has no END line")]
    NoEnd {
        /// Position of the certificate in the bundle, from 0.
        index: usize,
    },
    /// The text between BEGIN and END is not valid base64.
    #[error("certificate {index}: bad base64: {reason}")]
    Base64 {
        /// Position of the certificate in the bundle, from 0.
        index: usize,
        /// The base64 decoder's error.
        reason: String,
    },
    /// The base64 decoded, but the bytes are not a DER X.509 certificate.
    #[error("certificate {index}: {reason}")]
    Der {
        /// Position of the certificate in the bundle, from 0.
        index: usize,
        /// The DER parser's error.
        reason: String,
    },
}

/// The canonical PEM form of one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so each chunk is a whole string.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The DER contents of each `CERTIFICATE` block of `text`, in order; whitespace between
/// blocks is allowed, anything else is an error. The DER itself is not parsed.
pub fn decode_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut ders = Vec::new();
    let mut rest = text.trim_ascii_start();
    while !rest.is_empty() {
        let index = ders.len();
        let body = rest
            .strip_prefix(BEGIN_CERTIFICATE)
            .ok_or(PemError::NoBegin { index })?;
        let end = find(body, END_CERTIFICATE).ok_or(PemError::NoEnd { index })?;
        let b64: Vec<u8> = body
            .get(..end)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|e| PemError::Base64 {
                index,
                reason: e.to_string(),
            })?;
        ders.push(der);
        rest = body
            .get(end + END_CERTIFICATE.len()..)
            .unwrap_or_default()
            .trim_ascii_start();
    }
    Ok(ders)
}

/// Each certificate of a PEM bundle, parsed.
pub fn parse_certificates(text: &[u8]) -> Result<Vec<Certificate>, PemError> {
    decode_certificates(text)?
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Certificate::from_der(der).map_err(|e| PemError::Der {
                index,
                reason: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_gives_the_der_back() {
        let ders = [vec![0x30, 0x03, 1, 2, 3], (0..=255).collect::<Vec<u8>>()];
        let bundle: String = ders.iter().map(|d| der_to_pem(d)).collect();
        assert!(bundle
            .lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(decode_certificates(bundle.as_bytes()).unwrap(), ders);
    }

    #[test]
    fn empty_and_blank_text_hold_no_certificate() {
        assert_eq!(decode_certificates(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            decode_certificates(b" \n\t").unwrap(),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn damaged_bundles_are_errors_naming_the_certificate() {
        let one = der_to_pem(&[0x30, 0x00]);
        assert_eq!(
            decode_certificates(b"junk"),
            Err(PemError::NoBegin { index: 0 })
        );
        let cut = format!("{one}-----BEGIN CERTIFICATE-----\nMAA=\n");
        assert_eq!(
            decode_certificates(cut.as_bytes()),
            Err(PemError::NoEnd { index: 1 })
        );
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            decode_certificates(bad.as_bytes()),
            Err(PemError::Base64 { index: 0, .. })
        ));
    }

    #[test]
    fn the_one_byte_that_hangs_der_is_an_error() {
        let pem = der_to_pem(&[0x30]);
        assert!(matches!(
            parse_certificates(pem.as_bytes()),
            Err(PemError::Der { index: 0, .. })
        ));
    }
}
