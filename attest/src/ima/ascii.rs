//! The kernel's ASCII measurement list (`ascii_runtime_measurements`), read and written.
//!
//! One line per entry: `PCR template-hash template-name field...`, single spaces
//! between, the PCR right-aligned in two columns (`%2d`). Digests print as hex
//! (`d-ng` as `sha256:<hex>`), names as raw text, `sig` and `buf` as hex (nothing for
//! an empty one, leaving a trailing space). A path may contain spaces: each supported
//! template has exactly one text field, so the fields before it are split off from the
//! left and the (hex) fields after it from the right.
//!
//! The template data is rebuilt from the fields exactly as the kernel stores it, so
//! template hashes can be re-checked and other banks replayed as from the binary list.
//! The template-hash algorithm follows from the hash's length (40 hex digits: SHA-1,
//! 64: SHA-256 as in `ascii_runtime_measurements_sha256`, ...).

use super::{
    check_digest_len, check_template_name, parse_n, EntryProblem, Field, FieldKind, HashAlg,
    ImaEntry, ImaError, MAX_PCR,
};
use std::fmt::Write as _;

/// Parses an ASCII measurement list (lines end with LF, as the kernel writes them).
/// Blank lines are skipped; an error names its 1-based line number.
pub fn parse(text: &str) -> Result<Vec<ImaEntry>, ImaError> {
    let mut entries = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        // No CR stripping: the kernel ends lines with LF only, and a file name may end
        // in CR, which must stay in the path for its template hash to recompute.
        if line.trim().is_empty() {
            continue;
        }
        let entry = parse_line(line).map_err(|problem| ImaError::Ascii {
            line: index.saturating_add(1),
            problem,
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Parses one line (without its newline) into an entry.
pub fn parse_line(line: &str) -> Result<ImaEntry, EntryProblem> {
    // `%2d`: a PCR below 10 has a leading space.
    let line = line.trim_start_matches(' ');
    let header_count = |got| EntryProblem::FieldCount {
        template: "any".to_owned(),
        expected: 3,
        got,
    };
    let (pcr, rest) = line.split_once(' ').ok_or_else(|| header_count(1))?;
    let (hash, rest) = rest.split_once(' ').ok_or_else(|| header_count(2))?;
    let (name, fields_text) = rest.split_once(' ').unwrap_or((rest, ""));

    let pcr = parse_pcr(pcr)?;
    let template_hash_alg = HashAlg::ALL
        .into_iter()
        .find(|a| a.size().saturating_mul(2) == hash.len())
        .ok_or(EntryProblem::TemplateHashSize(hash.len()))?;
    let template_hash = decode_hex(hash, "template hash")?;
    let (template_name, kinds) = check_template_name(name.as_bytes())?;

    let field_count_error = || EntryProblem::FieldCount {
        template: template_name.clone(),
        expected: kinds.len(),
        got: if fields_text.is_empty() {
            0
        } else {
            fields_text.split(' ').count()
        },
    };
    // template_fields() guarantees exactly one text field.
    let text_at = kinds
        .iter()
        .position(|k| k.is_text())
        .ok_or_else(|| EntryProblem::UnsupportedLayout(template_name.clone()))?;
    let mut middle = fields_text;
    let mut left = Vec::with_capacity(text_at);
    for _ in 0..text_at {
        let (token, more) = middle.split_once(' ').ok_or_else(field_count_error)?;
        left.push(token);
        middle = more;
    }
    let after = kinds.len().saturating_sub(text_at.saturating_add(1));
    let mut right = Vec::with_capacity(after);
    for _ in 0..after {
        let (more, token) = middle.rsplit_once(' ').ok_or_else(field_count_error)?;
        right.push(token);
        middle = more;
    }
    right.reverse();

    let tokens = left.into_iter().chain([middle]).chain(right);
    let mut fields = Vec::with_capacity(kinds.len());
    for (kind, token) in kinds.iter().zip(tokens) {
        fields.push(parse_field(*kind, token)?);
    }
    Ok(ImaEntry {
        pcr,
        template_hash_alg,
        template_hash,
        template_name,
        fields,
    })
}

fn parse_pcr(s: &str) -> Result<u32, EntryProblem> {
    // u32::from_str would also take "+10"; the kernel prints plain digits.
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EntryProblem::BadPcr(s.chars().take(32).collect()));
    }
    let n: u64 = s.parse().map_err(|_| EntryProblem::BadPcr(s.to_owned()))?;
    if n > u64::from(MAX_PCR) {
        return Err(EntryProblem::PcrOutOfRange(n));
    }
    u32::try_from(n).map_err(|_| EntryProblem::PcrOutOfRange(n))
}

fn decode_hex(s: &str, field: &'static str) -> Result<Vec<u8>, EntryProblem> {
    hex::decode(s).map_err(|_| EntryProblem::BadHex {
        field,
        // Enough to recognise the value without echoing a huge line.
        value: s.chars().take(80).collect(),
    })
}

fn parse_field(kind: FieldKind, token: &str) -> Result<Field, EntryProblem> {
    match kind {
        FieldKind::D => {
            let d = decode_hex(token, "d field")?;
            check_digest_len(HashAlg::Sha1, d.len())?;
            Ok(Field::D(d))
        }
        FieldKind::DNg => {
            let (alg, digest) = token
                .split_once(':')
                .ok_or(EntryProblem::MalformedDigestField)?;
            let alg: HashAlg = alg
                .parse()
                .map_err(|_| EntryProblem::UnknownDigestAlgorithm(alg.to_owned()))?;
            let digest = decode_hex(digest, "d-ng digest")?;
            check_digest_len(alg, digest.len())?;
            Ok(Field::DNg { alg, digest })
        }
        FieldKind::N => parse_n(token.as_bytes()),
        FieldKind::NNg => {
            if token.as_bytes().contains(&0) {
                return Err(EntryProblem::NulInName);
            }
            Ok(Field::NNg(token.as_bytes().to_vec()))
        }
        FieldKind::Sig => Ok(Field::Sig(decode_hex(token, "sig field")?)),
        FieldKind::Buf => Ok(Field::Buf(decode_hex(token, "buf field")?)),
    }
}

/// Writes entries as the kernel's ASCII list, one line each, ending with a newline.
/// A path that is not UTF-8 is written with U+FFFD in place of its bad bytes (the
/// ASCII list cannot carry it), so convert from binary only for display.
pub fn serialize(entries: &[ImaEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = write!(
            out,
            "{:2} {} {}",
            e.pcr,
            hex::encode(&e.template_hash),
            e.template_name
        );
        for f in &e.fields {
            out.push(' ');
            match f {
                Field::D(d) => out.push_str(&hex::encode(d)),
                Field::DNg { alg, digest } => {
                    let _ = write!(out, "{alg}:{}", hex::encode(digest));
                }
                Field::N(n) | Field::NNg(n) => out.push_str(&String::from_utf8_lossy(n)),
                Field::Sig(b) | Field::Buf(b) => out.push_str(&hex::encode(b)),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ima::field_bytes;

    const LINE: &str = "10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3 /init";

    #[test]
    fn parses_a_kernel_line() {
        let e = parse_line(LINE).unwrap();
        assert_eq!(e.pcr(), 10);
        assert_eq!(e.template_name(), "ima-ng");
        assert_eq!(e.template_hash_alg(), HashAlg::Sha1);
        assert_eq!(e.path(), "/init");
        assert_eq!(
            hex::encode(e.file_digest()),
            "19f13b42c2745066347e76454788c0fe083643f3"
        );
        assert_eq!(field_bytes(&e.fields()[1]), b"/init\0");
        assert_eq!(serialize(&[e]), format!("{LINE}\n"));
    }

    #[test]
    fn single_digit_pcr_is_right_aligned() {
        let e = ImaEntry::ima_ng("/x", HashAlg::Sha1, &[1; 20])
            .unwrap()
            .with_pcr(9);
        let text = serialize(std::slice::from_ref(&e));
        assert!(text.starts_with(" 9 "), "{text}");
        assert_eq!(parse(&text).unwrap(), vec![e]);
    }
}
