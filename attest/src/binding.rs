//! The report-data binding: how one TEE report vouches for the freshness of a call,
//! every certificate the VM serves, and the TPM key that signs the IMA quote.
//!
//! ```text
//! entry           = u16_be(len(name)) || name (lowercase ASCII) || sha256(leaf DER)
//!                   || sha256(leaf's SubjectPublicKeyInfo DER)
//! manifest_digest = SHA-256(entries sorted by name bytes, concatenated)
//! ak_digest       = SHA-256(TPMT_PUBLIC of the TPM attestation key), or 32 zero bytes
//! report_data     = SHA-512("verigate attestation v1" || 0x00 || nonce[32]
//!                           || manifest_digest || ak_digest)
//! tpm_qualifying  = SHA-256(report_data)
//! ```
//!
//! Version 2 binds the root of a round's nonces instead of one nonce (ARCHITECTURE.md,
//! "Binding", "Version 2"; the tree is [`crate::batch`]):
//!
//! ```text
//! report_data     = SHA-512("verigate attestation v2" || 0x00 || root[32]
//!                           || manifest_digest || ak_digest)
//! ```
//! Both digests are bound: the certificate's, so a client can check that the leaf it
//! was shown is the attested one, and its key's, so that a snapshot can pin the key and a
//! renewal that keeps the key still verifies (ARCHITECTURE.md, "Verification").
//!
//! The test vectors in `attest/tests/vectors/binding.json` come from
//! `attest/tests/vectors/binding.py`, and those of version 2 from `binding_v2.py`, written
//! from the formulas above with Python's hashlib.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

/// The domain-separation prefix of report_data, NUL-terminated in the hash input.
pub const REPORT_DATA_CONTEXT: &[u8] = b"verigate attestation v1";

/// The domain-separation prefix of version 2 (a batch root in place of the nonce).
pub const REPORT_DATA_CONTEXT_V2: &[u8] = b"verigate attestation v2";

/// The longest name a manifest entry may carry (a DNS name is at most 253 bytes).
pub const MAX_NAME_LEN: usize = 253;

/// Why a name, a manifest or a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The name is the empty string.
    #[error("manifest name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("manifest name `{name}` is {len} bytes long; the most is {max}")]
    NameTooLong {
        /// The name's first 40 characters (the name itself may be very long).
        name: String,
        /// The name's length in bytes.
        len: usize,
        /// The most allowed, [`MAX_NAME_LEN`].
        max: usize,
    },
    /// The name has a byte no DNS name may hold (a space, a `/`, a non-ASCII byte, ...).
    #[error(
        "manifest name `{name}` has a byte outside letters, digits, '-', '_' and '.' at offset {offset}"
    )]
    BadNameByte {
        /// The name as given, with non-printable characters escaped.
        name: String,
        /// Offset of the bad byte in the name.
        offset: usize,
    },
    /// The name's bytes are allowed, but it is not a host name, `*.` and a host name, or `*` (an
    /// empty label, a leading hyphen, ...).
    #[error("manifest name `{name}` is not a host name, `*.` and a host name, or `*`: {reason}")]
    NotAHostName {
        /// The name as given, with non-printable characters escaped.
        name: String,
        /// Which rule of [`wire::dns`] it breaks.
        reason: wire::dns::DnsNameError,
    },
    /// Two manifest entries carry the same name (after lowercasing).
    #[error("manifest lists `{name}` twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// The nonce string is not 64 characters long.
    #[error("nonce must be 64 hex characters (32 bytes), got {len} characters")]
    NonceLength {
        /// How many characters it has.
        len: usize,
    },
    /// The nonce string is 64 characters long but not hex; holds the decoder's error.
    #[error("nonce is not hex: {0}")]
    NonceNotHex(String),
    /// A leaf certificate is not DER X.509, so its public key cannot be found.
    #[error("the certificate of `{name}` is not a DER X.509 certificate: {reason}")]
    BadCertificate {
        /// The name the certificate was served for.
        name: String,
        /// The DER decoder's complaint.
        reason: String,
    },
    /// A manifest entry's `cert_sha256` is not 64 hex characters.
    #[error("cert_sha256 of `{name}` must be 64 hex characters (a SHA-256), got `{got}`")]
    BadCertDigest {
        /// The entry's name.
        name: String,
        /// The `cert_sha256` value as given.
        got: String,
    },
}

/// A verifier-chosen 32-byte nonce, sent as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; 32]);

impl Nonce {
    /// A fresh random nonce from the operating system's generator.
    pub fn random() -> Nonce {
        use rand::RngCore;
        let mut n = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut n);
        Nonce(n)
    }

    /// The 64 lowercase hex characters sent on the wire (`?nonce=...`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}

impl FromStr for Nonce {
    type Err = BindingError;

    fn from_str(s: &str) -> Result<Nonce, BindingError> {
        if s.len() != 64 {
            return Err(BindingError::NonceLength {
                len: s.chars().count(),
            });
        }
        let mut n = [0u8; 32];
        hex::decode_to_slice(s, &mut n).map_err(|e| BindingError::NonceNotHex(e.to_string()))?;
        Ok(Nonce(n))
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Nonce, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lowercases and validates a name for the manifest. A name is a route pattern: a DNS
/// host name, `*.` and a DNS host name (a wildcard route), or `*` (the catch-all route);
/// what a host name is comes from [`wire::dns`], the one rule for every parser.
pub fn normalize_name(name: &str) -> Result<String, BindingError> {
    if name.is_empty() {
        return Err(BindingError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(BindingError::NameTooLong {
            name: name.chars().take(40).collect(),
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if name == "*" {
        return Ok(name.to_string());
    }
    let (prefix, host) = match name.strip_prefix("*.") {
        Some(host) => ("*.", host),
        None => ("", name),
    };
    match wire::dns::normalize(host.as_bytes()) {
        Ok(host) => Ok(format!("{prefix}{host}")),
        Err(wire::dns::DnsNameError::BadByte { offset }) => Err(BindingError::BadNameByte {
            name: name.escape_default().to_string(),
            offset: prefix.len() + offset,
        }),
        Err(reason) => Err(BindingError::NotAHostName {
            name: name.escape_default().to_string(),
            reason,
        }),
    }
}

/// The two digests of one leaf certificate: of its DER, and of its SubjectPublicKeyInfo
/// DER (the key, which a renewal with `certbot --reuse-key` keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertDigests {
    /// SHA-256 of the certificate's DER.
    pub cert_sha256: [u8; 32],
    /// SHA-256 of the DER of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
}

impl CertDigests {
    /// The digests of a DER certificate; `name` only labels the error. The key is found
    /// by a strict DER parse and hashed as re-encoded DER, which is the input's own bytes
    /// since DER has one encoding.
    pub fn of(name: &str, leaf_der: &[u8]) -> Result<CertDigests, BindingError> {
        use x509_cert::der::{Decode as _, Encode as _};
        let bad = |e: x509_cert::der::Error| BindingError::BadCertificate {
            name: name.escape_default().to_string(),
            reason: e.to_string(),
        };
        let cert = x509_cert::Certificate::from_der(leaf_der).map_err(bad)?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(bad)?;
        Ok(CertDigests {
            cert_sha256: Sha256::digest(leaf_der).into(),
            spki_sha256: Sha256::digest(&spki).into(),
        })
    }
}

/// One name the VM serves, the SHA-256 of the leaf certificate it presents and the
/// SHA-256 of that certificate's public key (SubjectPublicKeyInfo).
///
/// A wildcard route's entry is keyed by the route's pattern (`*.example.com`): the
/// backend presents one certificate for every name it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The route pattern: a host name, `*.` and a host name, or `*`; lowercase and validated by
    /// [`normalize_name`].
    pub name: String,
    /// SHA-256 of the DER of the leaf certificate served for this name (64 hex characters in JSON).
    #[serde(with = "hex_digest")]
    pub cert_sha256: [u8; 32],
    /// SHA-256 of the DER of that certificate's SubjectPublicKeyInfo: what a snapshot pins,
    /// so a renewal that keeps the key still verifies.
    #[serde(with = "hex_digest")]
    pub spki_sha256: [u8; 32],
}

impl ManifestEntry {
    /// An entry for `name` (normalized) and the DER of its leaf certificate, which must
    /// parse as X.509 (its key is hashed).
    pub fn from_cert(name: &str, leaf_der: &[u8]) -> Result<ManifestEntry, BindingError> {
        let name = normalize_name(name)?;
        let d = CertDigests::of(&name, leaf_der)?;
        Ok(ManifestEntry::new(name, d))
    }

    /// An entry for a name (normalized by [`Manifest::new`]) and its certificate's digests.
    pub fn new(name: impl Into<String>, digests: CertDigests) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            cert_sha256: digests.cert_sha256,
            spki_sha256: digests.spki_sha256,
        }
    }

    /// The entry's two digests.
    pub fn digests(&self) -> CertDigests {
        CertDigests {
            cert_sha256: self.cert_sha256,
            spki_sha256: self.spki_sha256,
        }
    }

    /// `u16_be(len(name)) || name || cert sha256 || spki sha256`, the bytes the manifest
    /// digest covers.
    fn encode(&self, out: &mut Vec<u8>) {
        // normalize_name bounds names to MAX_NAME_LEN, far below u16::MAX.
        let len = u16::try_from(self.name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.cert_sha256);
        out.extend_from_slice(&self.spki_sha256);
    }
}

/// The certificates a VM serves: one entry per name, kept sorted by name bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ManifestEntry>", into = "Vec<ManifestEntry>")]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Builds a manifest: names are normalized, sorted, and must be unique.
    pub fn new(entries: Vec<ManifestEntry>) -> Result<Manifest, BindingError> {
        let mut entries = entries
            .into_iter()
            .map(|e| {
                Ok(ManifestEntry {
                    name: normalize_name(&e.name)?,
                    ..e
                })
            })
            .collect::<Result<Vec<_>, BindingError>>()?;
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(BindingError::DuplicateName {
                name: w[0].name.clone(),
            });
        }
        Ok(Manifest { entries })
    }

    /// The entries, sorted by name bytes, as the digest covers them.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The entry for exactly this name (compared after lowercasing).
    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        let name = name.to_ascii_lowercase();
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry that covers a TLS server name, matched as verigated routes it: the
    /// exact name first, then the wildcard pattern with the longest suffix
    /// (`*.example.com` covers `a.example.com` and `a.b.example.com`, not
    /// `example.com`), then the catch-all `*`. A wildcard route's entry is keyed by its
    /// pattern, since its backend presents one certificate for every name it matches.
    pub fn entry_for_sni(&self, sni: &str) -> Option<&ManifestEntry> {
        let sni = sni.to_ascii_lowercase();
        if let Some(e) = self.entries.iter().find(|e| e.name == sni) {
            return Some(e);
        }
        self.entries
            .iter()
            .filter_map(|e| {
                let suffix = e.name.strip_prefix('*')?;
                // `suffix` starts with '.', so a match leaves at least one byte before it.
                (suffix.starts_with('.') && sni.len() > suffix.len() && sni.ends_with(suffix))
                    .then_some((suffix.len(), e))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, e)| e)
            .or_else(|| self.entries.iter().find(|e| e.name == "*"))
    }

    /// SHA-256 over the encoded entries in name order.
    pub fn digest(&self) -> [u8; 32] {
        let mut bytes = Vec::new();
        for e in &self.entries {
            e.encode(&mut bytes);
        }
        Sha256::digest(&bytes).into()
    }
}

impl TryFrom<Vec<ManifestEntry>> for Manifest {
    type Error = BindingError;
    fn try_from(v: Vec<ManifestEntry>) -> Result<Manifest, BindingError> {
        Manifest::new(v)
    }
}

impl From<Manifest> for Vec<ManifestEntry> {
    fn from(m: Manifest) -> Vec<ManifestEntry> {
        m.entries
    }
}

/// SHA-256 of the attestation key's TPMT_PUBLIC, or 32 zero bytes when there is no TPM.
pub fn ak_digest(ak_public_tpmt: Option<&[u8]>) -> [u8; 32] {
    match ak_public_tpmt {
        Some(tpmt) => Sha256::digest(tpmt).into(),
        None => [0u8; 32],
    }
}

/// The 64 bytes the TEE report carries.
pub fn report_data(nonce: &Nonce, manifest_digest: &[u8; 32], ak_digest: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_CONTEXT);
    h.update([0u8]);
    h.update(nonce.0);
    h.update(manifest_digest);
    h.update(ak_digest);
    h.finalize().into()
}

/// The 64 bytes the TEE report carries in version 2: `root` is the Merkle root over the
/// round's nonces ([`crate::batch::Tree::root`]).
pub fn report_data_v2(
    root: &[u8; 32],
    manifest_digest: &[u8; 32],
    ak_digest: &[u8; 32],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_CONTEXT_V2);
    h.update([0u8]);
    h.update(root);
    h.update(manifest_digest);
    h.update(ak_digest);
    h.finalize().into()
}

/// What makes one report fresh: a caller's nonce (version 1) or the root over a round's
/// nonces (version 2). The one input that differs between the two formulas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Version 1: the nonce itself.
    Nonce(Nonce),
    /// Version 2: the Merkle root of the round.
    BatchRoot([u8; 32]),
}

impl Freshness {
    /// report_data of this freshness input under its version's formula.
    pub fn report_data(&self, manifest_digest: &[u8; 32], ak_digest: &[u8; 32]) -> [u8; 64] {
        match self {
            Freshness::Nonce(n) => report_data(n, manifest_digest, ak_digest),
            Freshness::BatchRoot(root) => report_data_v2(root, manifest_digest, ak_digest),
        }
    }
}

/// The TPM quote's extraData: SHA-256 of report_data, so the quote is tied to the
/// same call as the TEE report.
pub fn tpm_qualifying(report_data: &[u8; 64]) -> [u8; 32] {
    Sha256::digest(report_data).into()
}

/// Serde for a 32-byte digest as 64 hex characters (`#[serde(with = "hex_digest")]`).
pub mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the digest as 64 lowercase hex characters.
    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    /// Reads 64 hex characters into a digest; anything else is an error that quotes the input.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected 64 hex characters (a SHA-256), got `{s}`: {e}"
            ))
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, byte: u8) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            cert_sha256: [byte; 32],
            spki_sha256: [byte ^ 0xff; 32],
        }
    }

    #[test]
    fn names_are_lowercased_sorted_and_unique() {
        let m = Manifest::new(vec![entry("B.example.com", 1), entry("a.example.com", 2)]).unwrap();
        let names: Vec<_> = m.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.example.com", "b.example.com"]);
        assert_eq!(m.get("A.EXAMPLE.COM").unwrap().cert_sha256, [2; 32]);
        let dup = Manifest::new(vec![entry("a.example.com", 1), entry("A.example.com", 2)]);
        assert_eq!(
            dup,
            Err(BindingError::DuplicateName {
                name: "a.example.com".into()
            })
        );
    }

    #[test]
    fn sni_lookup_follows_routing_precedence() {
        let m = Manifest::new(vec![
            entry("*.example.com", 1),
            entry("*.internal.example.com", 2),
            entry("a.example.com", 3),
            entry("*", 4),
        ])
        .unwrap();
        let got = |sni: &str| m.entry_for_sni(sni).map(|e| e.cert_sha256[0]);
        assert_eq!(got("A.example.com"), Some(3));
        assert_eq!(got("b.example.com"), Some(1));
        assert_eq!(got("x.y.example.com"), Some(1));
        assert_eq!(got("db.internal.example.com"), Some(2));
        assert_eq!(got("example.com"), Some(4));
        assert_eq!(got("other.org"), Some(4));
        let no_catch_all = Manifest::new(vec![entry("*.example.com", 1)]).unwrap();
        assert!(no_catch_all.entry_for_sni("example.com").is_none());
        assert!(no_catch_all.entry_for_sni("badexample.com").is_none());
    }

    #[test]
    fn route_patterns_are_names() {
        assert_eq!(normalize_name("VM.Example.COM").unwrap(), "vm.example.com");
        assert_eq!(
            normalize_name("*.Apps.example.com").unwrap(),
            "*.apps.example.com"
        );
        assert_eq!(normalize_name("*").unwrap(), "*");
        assert_eq!(
            normalize_name("_svc.example.com").unwrap(),
            "_svc.example.com"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(normalize_name(""), Err(BindingError::EmptyName));
        assert!(matches!(
            normalize_name("a b"),
            Err(BindingError::BadNameByte { offset: 1, .. })
        ));
        assert!(matches!(
            normalize_name("é.com"),
            Err(BindingError::BadNameByte { offset: 0, .. })
        ));
        assert!(matches!(
            normalize_name("*.a b"),
            Err(BindingError::BadNameByte { offset: 3, .. })
        ));
        for not_a_pattern in ["a..com", "-a.com", "a.com.", "10.0.0.1", "a.*.com", "**"] {
            assert!(
                normalize_name(not_a_pattern).is_err(),
                "{not_a_pattern} was accepted"
            );
        }
        assert!(matches!(
            normalize_name("example.com."),
            Err(BindingError::NotAHostName {
                reason: wire::dns::DnsNameError::TrailingDot,
                ..
            })
        ));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            normalize_name(&long),
            Err(BindingError::NameTooLong { .. })
        ));
    }

    #[test]
    fn a_leaf_that_is_not_x509_is_refused_by_name() {
        let e = ManifestEntry::from_cert("a.example.com", b"not a certificate").unwrap_err();
        assert!(
            matches!(&e, BindingError::BadCertificate { name, .. } if name == "a.example.com"),
            "{e}"
        );
        assert!(CertDigests::of("x", &[]).is_err());
        assert!(CertDigests::of("x", &[0x30, 0x82, 0xff]).is_err());
    }

    #[test]
    fn nonce_parsing_says_why() {
        assert_eq!(
            "ab".parse::<Nonce>(),
            Err(BindingError::NonceLength { len: 2 })
        );
        let not_hex = "zz".repeat(32);
        assert!(matches!(
            not_hex.parse::<Nonce>(),
            Err(BindingError::NonceNotHex(_))
        ));
        // 64 bytes but 32 characters: not hex, and no slicing inside a character.
        assert!(matches!(
            "é".repeat(32).parse::<Nonce>(),
            Err(BindingError::NonceNotHex(_))
        ));
        assert_eq!(
            "é".repeat(10).parse::<Nonce>(),
            Err(BindingError::NonceLength { len: 10 })
        );
        let ok = "0f".repeat(32);
        assert_eq!(ok.parse::<Nonce>().unwrap().0, [0x0f; 32]);
    }

    #[test]
    fn manifest_json_round_trips_and_rejects_bad_digests() {
        let m = Manifest::new(vec![entry("a.example.com", 0xab)]).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            format!(
                r#"[{{"name":"a.example.com","cert_sha256":"{}","spki_sha256":"{}"}}]"#,
                "ab".repeat(32),
                "54".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        let short = format!(
            r#"[{{"name":"a","cert_sha256":"abcd","spki_sha256":"{}"}}]"#,
            "00".repeat(32)
        );
        assert!(serde_json::from_str::<Manifest>(&short).is_err());
        let no_key = format!(r#"[{{"name":"a","cert_sha256":"{}"}}]"#, "00".repeat(32));
        assert!(serde_json::from_str::<Manifest>(&no_key).is_err());
        let dup = format!(
            r#"[{{"name":"a","cert_sha256":"{0}","spki_sha256":"{0}"}},{{"name":"a","cert_sha256":"{0}","spki_sha256":"{0}"}}]"#,
            "00".repeat(32)
        );
        assert!(serde_json::from_str::<Manifest>(&dup).is_err());
    }
}
