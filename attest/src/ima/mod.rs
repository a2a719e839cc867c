//! Linux IMA measurement lists: binary and ASCII parsers, and replay into a PCR bank.
//!
//! The kernel appends one entry per measured file (or buffer) and extends a PCR (10 by
//! default) with it. A verifier gets the list from the VM and must (a) check that each
//! entry's template hash really is the hash of its template data, (b) replay the list
//! and compare the result with the PCR value in a TPM quote, and (c) judge each file
//! digest. This module holds the parsed entry ([`ImaEntry`]) and the hash algorithms
//! ([`HashAlg`]); [`binary`] and [`ascii`] read the two kernel formats, [`replay`]
//! computes PCR values and re-checks template hashes.
//!
//! Everything here takes untrusted bytes: parsers never panic, and every error names
//! where in the log it was found ([`ImaError`]).

pub mod ascii;
pub mod binary;
pub mod replay;

pub use crate::hash::{HashAlg, UnknownHashAlg};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The name the kernel gives the first entry of the log, which measures PCRs 0-7
/// (the boot chain) rather than a file.
pub const BOOT_AGGREGATE: &str = "boot_aggregate";

/// Longest name the `ima` template's `n` field can hold (the kernel's
/// `IMA_EVENT_NAME_LEN_MAX`); the name is zero-padded to one byte more when hashed.
pub const IMA_EVENT_NAME_LEN_MAX: usize = 255;

/// Digest size of the `ima` template's `d` field (always SHA-1).
const IMA_DIGEST_SIZE: usize = 20;

/// The two forms in which the kernel exposes the measurement list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `binary_runtime_measurements*`.
    Binary,
    /// `ascii_runtime_measurements*`.
    Ascii,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Binary => "binary",
            LogFormat::Ascii => "ascii",
        })
    }
}

/// Tells a binary list from an ASCII one by its first entry, or `None` when the bytes
/// are neither (or empty). Reliable because a binary list starts with a little-endian
/// PCR index below 24 (a small byte then three zero bytes), while an ASCII list never
/// contains a NUL and starts with the PCR in decimal, possibly space-padded.
pub fn detect_format(bytes: &[u8]) -> Option<LogFormat> {
    match bytes {
        [pcr, 0, 0, 0, ..] if u32::from(*pcr) <= MAX_PCR => Some(LogFormat::Binary),
        [first, ..] if first.is_ascii_digit() || *first == b' ' => {
            let head = bytes.get(..4).unwrap_or(bytes);
            (!head.contains(&0)).then_some(LogFormat::Ascii)
        }
        _ => None,
    }
}

/// The template-hash algorithm that the kernel uses in a list file of this name:
/// `..._runtime_measurements_sha256` holds SHA-256 template hashes, and so on; the
/// classic `..._runtime_measurements` (and any other name) holds SHA-1.
pub fn template_hash_alg_for_file_name(name: &str) -> HashAlg {
    name.rsplit_once('_')
        .and_then(|(_, suffix)| suffix.parse().ok())
        .unwrap_or(HashAlg::Sha1)
}

/// The kernel's boot aggregate: the first entry of the list when it names itself
/// `boot_aggregate`. Use this, not [`ImaEntry::is_boot_aggregate`] on every entry, to
/// decide which entry to exempt from an allowlist: a later entry with that name is a
/// file logged under its bare name, whose digest must be judged like any other.
pub fn boot_aggregate(entries: &[ImaEntry]) -> Option<&ImaEntry> {
    entries.first().filter(|e| e.is_boot_aggregate())
}

/// One field of an IMA template, parsed. The variants are the kernel's field ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `d`: a SHA-1 file digest without algorithm tag (template `ima`).
    D(Vec<u8>),
    /// `d-ng`: a file digest tagged with its algorithm (`sha256:` NUL digest).
    DNg {
        /// The digest's algorithm, from the field's `<alg>:` prefix.
        alg: HashAlg,
        /// The file digest, `alg.size()` bytes.
        digest: Vec<u8>,
    },
    /// `n`: the file name, at most 255 bytes (template `ima`).
    N(Vec<u8>),
    /// `n-ng`: the file path (or buffer name), stored here without its NUL terminator.
    NNg(Vec<u8>),
    /// `sig`: the file's `security.ima` signature, possibly empty.
    Sig(Vec<u8>),
    /// `buf`: the measured buffer (template `ima-buf`).
    Buf(Vec<u8>),
}

/// The kind of a template field, from its kernel id (`d-ng`, `n-ng`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    D,
    DNg,
    N,
    NNg,
    Sig,
    Buf,
}

impl FieldKind {
    fn from_id(id: &str) -> Option<FieldKind> {
        Some(match id {
            "d" => FieldKind::D,
            "d-ng" => FieldKind::DNg,
            "n" => FieldKind::N,
            "n-ng" => FieldKind::NNg,
            "sig" => FieldKind::Sig,
            "buf" => FieldKind::Buf,
            _ => return None,
        })
    }

    /// Whether the ASCII list may print this field with spaces inside (a path), so the
    /// ASCII parser must split around it rather than on every space.
    pub(crate) fn is_text(self) -> bool {
        matches!(self, FieldKind::N | FieldKind::NNg)
    }
}

/// The field layout of a template name: the kernel's built-in templates, or a custom
/// format string such as `d-ng|n-ng|sig` (which the kernel prints in place of a name).
pub(crate) fn template_fields(name: &str) -> Result<Vec<FieldKind>, EntryProblem> {
    let ids: Vec<&str> = match name {
        "ima" => vec!["d", "n"],
        "ima-ng" => vec!["d-ng", "n-ng"],
        "ima-sig" => vec!["d-ng", "n-ng", "sig"],
        "ima-buf" => vec!["d-ng", "n-ng", "buf"],
        custom if custom.contains('|') => custom.split('|').collect(),
        other => return Err(EntryProblem::UnknownTemplate(other.to_owned())),
    };
    let mut kinds = Vec::with_capacity(ids.len());
    for id in ids {
        kinds
            .push(FieldKind::from_id(id).ok_or_else(|| EntryProblem::UnknownField(id.to_owned()))?);
    }
    let digests = kinds
        .iter()
        .filter(|k| matches!(k, FieldKind::D | FieldKind::DNg))
        .count();
    let names = kinds.iter().filter(|k| k.is_text()).count();
    // Exactly one digest and one name: that is what an entry means to a verifier, and
    // one free-text field is what lets the ASCII parser split a line unambiguously.
    if digests != 1 || names != 1 {
        return Err(EntryProblem::UnsupportedLayout(name.to_owned()));
    }
    // The `d` and `n` fields have a special, length-less encoding that only the
    // kernel's `ima` template uses; a custom format with them is not something we
    // can parse or hash the way the kernel does.
    if name != "ima"
        && kinds
            .iter()
            .any(|k| matches!(k, FieldKind::D | FieldKind::N))
    {
        return Err(EntryProblem::UnsupportedLayout(name.to_owned()));
    }
    Ok(kinds)
}

/// One entry of an IMA measurement list.
///
/// Built by the parsers ([`binary::parse`], [`ascii::parse`]) or by [`ImaEntry::ima_ng`];
/// fields are private so that the parsed view (digest, path) can never disagree with
/// the template data that is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaEntry {
    pcr: u32,
    template_hash_alg: HashAlg,
    template_hash: Vec<u8>,
    template_name: String,
    fields: Vec<Field>,
}

impl ImaEntry {
    /// An `ima-ng` entry for PCR 10 that measures `path` with file digest `digest`
    /// (under `alg`), with its SHA-1 template hash computed as the kernel does.
    ///
    /// Fails if `digest` is not `alg.size()` bytes long, or if `path` contains a NUL
    /// byte (the kernel's `n-ng` field is NUL-terminated).
    pub fn ima_ng(path: &str, alg: HashAlg, digest: &[u8]) -> Result<ImaEntry, ImaError> {
        let invalid = |problem| ImaError::Invalid { problem };
        if digest.len() != alg.size() {
            return Err(invalid(EntryProblem::DigestLength {
                alg,
                expected: alg.size(),
                got: digest.len(),
            }));
        }
        if path.as_bytes().contains(&0) {
            return Err(invalid(EntryProblem::NulInName));
        }
        let mut entry = ImaEntry {
            pcr: 10,
            template_hash_alg: HashAlg::Sha1,
            template_hash: Vec::new(),
            template_name: "ima-ng".to_owned(),
            fields: vec![
                Field::DNg {
                    alg,
                    digest: digest.to_vec(),
                },
                Field::NNg(path.as_bytes().to_vec()),
            ],
        };
        entry.template_hash = entry.computed_template_hash(HashAlg::Sha1);
        Ok(entry)
    }

    /// An `ima-ng` entry for PCR 10 that measures `content` read from `path`: the file
    /// digest is `alg` over `content`. Convenient for tests and demos.
    pub fn measure(path: &str, alg: HashAlg, content: &[u8]) -> Result<ImaEntry, ImaError> {
        ImaEntry::ima_ng(path, alg, &alg.digest(content))
    }

    /// An `ima-ng` violation entry for PCR 10, as the kernel logs a ToMToU or
    /// open-writers violation: a zero file digest under `alg` and a zero template hash.
    pub fn violation(path: &str, alg: HashAlg) -> Result<ImaEntry, ImaError> {
        let mut entry = ImaEntry::ima_ng(path, alg, &vec![0; alg.size()])?;
        entry.template_hash = vec![0; entry.template_hash_alg.size()];
        Ok(entry)
    }

    /// The same entry with its template hash recomputed under `alg`, as it appears in
    /// the kernel's `*_runtime_measurements_<alg>` lists. A violation stays a violation.
    pub fn with_template_hash_alg(mut self, alg: HashAlg) -> ImaEntry {
        self.template_hash = if self.is_violation() {
            vec![0; alg.size()]
        } else {
            self.computed_template_hash(alg)
        };
        self.template_hash_alg = alg;
        self
    }

    /// The same entry, logged for another PCR.
    pub fn with_pcr(mut self, pcr: u32) -> ImaEntry {
        self.pcr = pcr;
        self
    }

    /// The PCR the kernel extended with this entry.
    pub fn pcr(&self) -> u32 {
        self.pcr
    }

    /// The template name as logged (`ima-ng`, `ima-sig`, a custom format, ...).
    pub fn template_name(&self) -> &str {
        &self.template_name
    }

    /// The template hash as logged (not re-checked: see [`replay::check`]).
    pub fn template_hash(&self) -> &[u8] {
        &self.template_hash
    }

    /// The algorithm of [`ImaEntry::template_hash`].
    pub fn template_hash_alg(&self) -> HashAlg {
        self.template_hash_alg
    }

    /// The template fields, in the template's order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The algorithm of the file (or buffer) digest.
    pub fn file_digest_alg(&self) -> HashAlg {
        self.digest_field().0
    }

    /// The file (or buffer) digest. All zeros for a violation.
    pub fn file_digest(&self) -> &[u8] {
        self.digest_field().1
    }

    fn digest_field(&self) -> (HashAlg, &[u8]) {
        for f in &self.fields {
            match f {
                Field::D(d) => return (HashAlg::Sha1, d),
                Field::DNg { alg, digest } => return (*alg, digest),
                _ => {}
            }
        }
        // Unreachable for entries built by this module: template_fields() demands one
        // digest field. An empty SHA-1 digest matches no snapshot, so this fails closed.
        (HashAlg::Sha1, &[])
    }

    /// The path (or, for `ima-buf`, the buffer name) exactly as logged, as bytes.
    pub fn path_bytes(&self) -> &[u8] {
        for f in &self.fields {
            if let Field::N(n) | Field::NNg(n) = f {
                return n;
            }
        }
        &[]
    }

    /// The path as text. Linux paths are bytes: a path that is not UTF-8 comes back
    /// with U+FFFD in place of the bad bytes, so compare [`ImaEntry::path_bytes`] when
    /// that matters.
    pub fn path(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.path_bytes())
    }

    /// The `sig` field, if the template has one (it may be empty).
    pub fn signature(&self) -> Option<&[u8]> {
        self.fields.iter().find_map(|f| match f {
            Field::Sig(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The `buf` field of an `ima-buf` entry.
    pub fn buffer(&self) -> Option<&[u8]> {
        self.fields.iter().find_map(|f| match f {
            Field::Buf(b) => Some(b.as_slice()),
            _ => None,
        })
    }

    /// Whether the kernel logged a violation (a file measured while open for write, or
    /// changed under a reader): the template hash is all zeros, and the PCR was
    /// extended with all-0xFF instead, so replay still matches but the file is unknown.
    pub fn is_violation(&self) -> bool {
        self.template_hash.iter().all(|&b| b == 0)
    }

    /// Whether the entry calls itself `boot_aggregate`, the kernel's first entry.
    ///
    /// This is the name only: a file whose path the kernel could not resolve is logged
    /// under its bare file name, which could also be `boot_aggregate`. A verifier that
    /// exempts the boot aggregate from its allowlist should exempt only the first entry
    /// of the list: see [`boot_aggregate`].
    pub fn is_boot_aggregate(&self) -> bool {
        self.path_bytes() == BOOT_AGGREGATE.as_bytes()
    }

    /// The template data exactly as the kernel hashes it to get the template hash:
    /// for the `ima` template the SHA-1 digest then the name zero-padded to 256 bytes;
    /// for every other template each field as u32 little-endian length then bytes
    /// (which is also how the binary list stores it).
    pub fn template_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.template_name == "ima" {
            for f in &self.fields {
                match f {
                    Field::N(name) => {
                        let mut padded = [0u8; IMA_EVENT_NAME_LEN_MAX + 1];
                        let n = name.len().min(IMA_EVENT_NAME_LEN_MAX);
                        padded[..n].copy_from_slice(&name[..n]);
                        out.extend_from_slice(&padded);
                    }
                    other => out.extend_from_slice(&field_bytes(other)),
                }
            }
        } else {
            for f in &self.fields {
                let bytes = field_bytes(f);
                out.extend_from_slice(&len_u32(bytes.len()).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        out
    }

    /// The template hash recomputed from the template data under `alg`.
    pub fn computed_template_hash(&self, alg: HashAlg) -> Vec<u8> {
        alg.digest(&self.template_data())
    }

    /// The value the kernel extends into this entry's PCR in the `bank` bank: all-0xFF
    /// for a violation; the logged template hash when it is of the bank's algorithm
    /// (as for the SHA-1 bank with the classic list); else the bank's hash of the
    /// template data.
    pub fn extend_value(&self, bank: HashAlg) -> Vec<u8> {
        if self.is_violation() {
            vec![0xff; bank.size()]
        } else if self.template_hash_alg == bank {
            self.template_hash.clone()
        } else {
            self.computed_template_hash(bank)
        }
    }
}

/// A field's bytes as the kernel stores them (what follows the length prefix in the
/// binary list). For `n` this is the name without padding, as the binary list has it.
pub(crate) fn field_bytes(f: &Field) -> Vec<u8> {
    match f {
        Field::D(d) => d.clone(),
        Field::DNg { alg, digest } => {
            let mut v = Vec::with_capacity(alg.name().len() + 2 + digest.len());
            v.extend_from_slice(alg.name().as_bytes());
            v.extend_from_slice(b":\0");
            v.extend_from_slice(digest);
            v
        }
        Field::N(n) => n.clone(),
        Field::NNg(n) => {
            let mut v = n.clone();
            v.push(0);
            v
        }
        Field::Sig(b) | Field::Buf(b) => b.clone(),
    }
}

/// A length as the u32 the formats carry. Lengths here come from entries this module
/// built or parsed (each below the parsers' limits), so saturating never happens in
/// practice; it avoids a truncating cast.
pub(crate) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What is wrong with one entry (or one field of it). [`ImaError`] adds where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// The entry ends before a field it announces (a cut-off log, or a length that lies).
    #[error("truncated {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// Which part was cut short (`template name length`, `d-ng field`, ...).
        field: &'static str,
        /// Bytes the part needs.
        needed: u64,
        /// Bytes left in the log (or the template data).
        available: usize,
    },
    /// A length prefix exceeds the parser's limit for that part, so the parser refuses it rather
    /// than allocate.
    #[error("{field} length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// Which part (`template data`, `n (ima template name)`, ...).
        field: &'static str,
        /// The length announced, in bytes.
        len: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// A binary entry's PCR index is above 23; holds the index read.
    #[error("PCR index {0} is out of range 0..=23 (a big-endian log, or not an IMA log?)")]
    PcrOutOfRange(u64),
    /// An ASCII line's PCR column is not a decimal number; holds the column.
    #[error("PCR index {0:?} is not a decimal number")]
    BadPcr(String),
    /// The template name is empty or holds a byte that is not printable ASCII.
    #[error("template name is not printable ASCII")]
    BadTemplateName,
    /// The template name is neither a built-in template nor a `|`-separated format string; holds
    /// the name.
    #[error("unknown template {0:?}")]
    UnknownTemplate(String),
    /// A format string names a field id this parser does not know; holds the id.
    #[error("unknown template field {0:?}")]
    UnknownField(String),
    /// A template without exactly one digest and one name field, or a custom format with the `ima`
    /// template's `d` or `n`; holds the template name.
    #[error(
        "template {0:?} is not supported: it needs one digest (d-ng) and one name (n-ng) field"
    )]
    UnsupportedLayout(String),
    /// A `d-ng` field names an algorithm other than sha1, sha256, sha384 or sha512; holds the name.
    #[error("unknown digest algorithm {0:?} (expected sha1, sha256, sha384 or sha512)")]
    UnknownDigestAlgorithm(String),
    /// A file digest is not the size of its algorithm.
    #[error("{alg} digest must be {expected} bytes, got {got}")]
    DigestLength {
        /// The digest's algorithm.
        alg: HashAlg,
        /// Its size in bytes.
        expected: usize,
        /// The size found, in bytes.
        got: usize,
    },
    /// A template hash is not the size of the list's template-hash algorithm.
    #[error("template hash must be {expected} bytes ({alg}), got {got}")]
    TemplateHashLength {
        /// The list's template-hash algorithm.
        alg: HashAlg,
        /// Its size in bytes.
        expected: usize,
        /// The size found, in bytes.
        got: usize,
    },
    /// An ASCII list's template hash has a length (in hex digits, held here) that no supported
    /// algorithm produces.
    #[error("template hash of {0} hex digits matches no supported algorithm")]
    TemplateHashSize(usize),
    /// A `d-ng` field lacks the `<algorithm>:` and NUL before the digest.
    #[error("d-ng field lacks its `<algorithm>:` NUL prefix")]
    MalformedDigestField,
    /// A name field that must end in NUL does not; holds the field id.
    #[error("{0} field is not NUL-terminated")]
    MissingNul(&'static str),
    /// A name holds a NUL byte, which the kernel never logs inside a name.
    #[error("name contains a NUL byte")]
    NulInName,
    /// A hex column of an ASCII line is not hex.
    #[error("{field} is not hex: {value:?}")]
    BadHex {
        /// Which column (`template hash`, `d-ng digest`).
        field: &'static str,
        /// The column as found.
        value: String,
    },
    /// A binary entry's template data has bytes left after its last field; holds how many.
    #[error("template data has {0} bytes after its last field")]
    TrailingData(usize),
    /// An ASCII line has more or fewer columns than its template's fields.
    #[error("{template} entry needs {expected} fields, the line has {got}")]
    FieldCount {
        /// The template name.
        template: String,
        /// Fields the template has.
        expected: usize,
        /// Fields found on the line.
        got: usize,
    },
}

/// An IMA list that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImaError {
    /// The binary list is malformed at entry `entry` (0-based), at byte `offset` of the
    /// file (where the bad field starts).
    #[error("binary IMA log, entry {entry} at byte offset {offset}: {problem}")]
    Binary {
        /// The entry's position in the list, from 0.
        entry: usize,
        /// Byte offset in the file where the bad field starts.
        offset: usize,
        /// What is wrong with the entry.
        problem: EntryProblem,
    },
    /// The ASCII list is malformed on line `line` (1-based).
    #[error("ASCII IMA log, line {line}: {problem}")]
    Ascii {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with the line's entry.
        problem: EntryProblem,
    },
    /// Entry `entry` (0-based) logs a template hash that is not the hash of its
    /// template data: the list was altered after the kernel wrote it.
    #[error("entry {entry} ({path}): logged template hash {logged} but its template data hashes to {computed}")]
    TemplateHashMismatch {
        /// The entry's position in the list, from 0.
        entry: usize,
        /// The entry's path as text (see [`ImaEntry::path`]).
        path: String,
        /// The template hash in the log, hex.
        logged: String,
        /// The hash of the template data, hex.
        computed: String,
    },
    /// An entry cannot be built from the given parts.
    #[error("invalid IMA entry: {problem}")]
    Invalid {
        /// What is wrong with the parts.
        problem: EntryProblem,
    },
}

/// Parses a `d-ng` field's bytes: `<alg>:` NUL digest.
pub(crate) fn parse_dng(bytes: &[u8]) -> Result<Field, EntryProblem> {
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(EntryProblem::MalformedDigestField)?;
    let (prefix, rest) = bytes.split_at(nul);
    let name = prefix
        .strip_suffix(b":")
        .ok_or(EntryProblem::MalformedDigestField)?;
    let name = String::from_utf8_lossy(name);
    let alg: HashAlg = name
        .parse()
        .map_err(|_| EntryProblem::UnknownDigestAlgorithm(name.into_owned()))?;
    let digest = rest.get(1..).unwrap_or_default();
    check_digest_len(alg, digest.len())?;
    Ok(Field::DNg {
        alg,
        digest: digest.to_vec(),
    })
}

/// Parses an `n-ng` field's bytes: a name then exactly one NUL, at the end.
pub(crate) fn parse_nng(bytes: &[u8]) -> Result<Field, EntryProblem> {
    let name = bytes
        .strip_suffix(b"\0")
        .ok_or(EntryProblem::MissingNul("n-ng"))?;
    if name.contains(&0) {
        return Err(EntryProblem::NulInName);
    }
    Ok(Field::NNg(name.to_vec()))
}

/// Parses the `ima` template's `n` field (no terminator, at most 255 bytes).
pub(crate) fn parse_n(bytes: &[u8]) -> Result<Field, EntryProblem> {
    if bytes.len() > IMA_EVENT_NAME_LEN_MAX {
        return Err(EntryProblem::TooLong {
            field: "n (ima template name)",
            len: bytes.len() as u64,
            max: IMA_EVENT_NAME_LEN_MAX as u64,
        });
    }
    if bytes.contains(&0) {
        return Err(EntryProblem::NulInName);
    }
    Ok(Field::N(bytes.to_vec()))
}

pub(crate) fn check_digest_len(alg: HashAlg, got: usize) -> Result<(), EntryProblem> {
    if got == alg.size() {
        Ok(())
    } else {
        Err(EntryProblem::DigestLength {
            alg,
            expected: alg.size(),
            got,
        })
    }
}

/// Checks that a template name is plausible (printable ASCII, as every kernel
/// template name and format string is) and returns its field layout.
pub(crate) fn check_template_name(name: &[u8]) -> Result<(String, Vec<FieldKind>), EntryProblem> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
        return Err(EntryProblem::BadTemplateName);
    }
    let name = String::from_utf8_lossy(name).into_owned();
    let kinds = template_fields(&name)?;
    Ok((name, kinds))
}

/// Highest PCR index a TPM 2.0 has (PC Client profile: 24 PCRs).
pub(crate) const MAX_PCR: u32 = 23;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_list_format() {
        let e = ImaEntry::measure("/x", HashAlg::Sha1, b"x").unwrap();
        let bin = binary::serialize(std::slice::from_ref(&e));
        let text = ascii::serialize(std::slice::from_ref(&e));
        assert_eq!(detect_format(&bin), Some(LogFormat::Binary));
        assert_eq!(detect_format(text.as_bytes()), Some(LogFormat::Ascii));
        let e9 = e.with_pcr(9);
        let text9 = ascii::serialize(std::slice::from_ref(&e9));
        assert_eq!(detect_format(text9.as_bytes()), Some(LogFormat::Ascii));
        assert_eq!(detect_format(b""), None);
        assert_eq!(detect_format(b"\x7fELF"), None);
        assert_eq!(detect_format(b"1\0"), None);
        // A big-endian binary list (PCR 10 = 00 00 00 0a) is neither: say so, don't guess.
        assert_eq!(detect_format(&[0, 0, 0, 10, 1]), None);
    }

    #[test]
    fn only_the_first_entry_is_the_boot_aggregate() {
        let ba = ImaEntry::ima_ng(BOOT_AGGREGATE, HashAlg::Sha256, &[1; 32]).unwrap();
        let file = ImaEntry::measure("/bin/x", HashAlg::Sha256, b"x").unwrap();
        assert_eq!(boot_aggregate(&[ba.clone(), file.clone()]), Some(&ba));
        assert_eq!(boot_aggregate(&[file.clone(), ba.clone()]), None);
        assert!(ba.is_boot_aggregate());
        assert_eq!(boot_aggregate(&[]), None);
    }

    #[test]
    fn template_hash_alg_from_file_name() {
        let f = template_hash_alg_for_file_name;
        assert_eq!(f("binary_runtime_measurements"), HashAlg::Sha1);
        assert_eq!(f("binary_runtime_measurements_sha256"), HashAlg::Sha256);
        assert_eq!(f("ascii_runtime_measurements_sha512"), HashAlg::Sha512);
        assert_eq!(f("ascii_runtime_measurements_sha1"), HashAlg::Sha1);
        assert_eq!(f("log_sm3"), HashAlg::Sha1);
    }

    #[test]
    fn digests_match_known_vectors() {
        // FIPS 180 "abc" vectors.
        assert_eq!(
            hex::encode(HashAlg::Sha1.digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(HashAlg::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ima_ng_template_data_is_length_prefixed_fields() {
        let e = ImaEntry::ima_ng("/bin/sh", HashAlg::Sha1, &[0xab; 20]).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&26u32.to_le_bytes()); // "sha1:" NUL + 20
        want.extend_from_slice(b"sha1:\0");
        want.extend_from_slice(&[0xab; 20]);
        want.extend_from_slice(&8u32.to_le_bytes()); // "/bin/sh" NUL
        want.extend_from_slice(b"/bin/sh\0");
        assert_eq!(e.template_data(), want);
        assert_eq!(e.template_hash(), HashAlg::Sha1.digest(&want).as_slice());
        assert_eq!(e.pcr(), 10);
        assert_eq!(e.path(), "/bin/sh");
        assert_eq!(e.file_digest_alg(), HashAlg::Sha1);
        assert!(!e.is_violation() && !e.is_boot_aggregate());
    }

    #[test]
    fn ima_ng_rejects_bad_parts() {
        assert!(matches!(
            ImaEntry::ima_ng("/x", HashAlg::Sha256, &[0; 20]),
            Err(ImaError::Invalid {
                problem: EntryProblem::DigestLength {
                    expected: 32,
                    got: 20,
                    ..
                }
            })
        ));
        assert!(matches!(
            ImaEntry::ima_ng("/a\0b", HashAlg::Sha1, &[0; 20]),
            Err(ImaError::Invalid {
                problem: EntryProblem::NulInName
            })
        ));
    }

    #[test]
    fn extend_values_per_bank() {
        let e = ImaEntry::measure("/usr/bin/true", HashAlg::Sha256, b"content").unwrap();
        assert_eq!(e.extend_value(HashAlg::Sha1), e.template_hash());
        assert_eq!(
            e.extend_value(HashAlg::Sha256),
            HashAlg::Sha256.digest(&e.template_data())
        );
        let v = ImaEntry::violation("/tmp/x", HashAlg::Sha256).unwrap();
        assert!(v.is_violation());
        for bank in HashAlg::ALL {
            assert_eq!(v.extend_value(bank), vec![0xff; bank.size()]);
        }
        // A _sha256 list's entry extends its own logged hash into the SHA-256 bank.
        let e256 = e.clone().with_template_hash_alg(HashAlg::Sha256);
        assert_eq!(
            e256.template_hash(),
            e.extend_value(HashAlg::Sha256).as_slice()
        );
        assert_eq!(e256.extend_value(HashAlg::Sha1), e.template_hash());
    }

    #[test]
    fn template_layouts() {
        assert!(template_fields("ima-ng").is_ok());
        assert!(template_fields("d-ng|n-ng|sig").is_ok());
        assert_eq!(
            template_fields("ima-modsig"),
            Err(EntryProblem::UnknownTemplate("ima-modsig".into()))
        );
        assert_eq!(
            template_fields("d-ng|n-ng|modsig"),
            Err(EntryProblem::UnknownField("modsig".into()))
        );
        assert_eq!(
            template_fields("d-ng|sig"),
            Err(EntryProblem::UnsupportedLayout("d-ng|sig".into()))
        );
        assert_eq!(
            template_fields("d|n-ng"),
            Err(EntryProblem::UnsupportedLayout("d|n-ng".into()))
        );
    }
}
