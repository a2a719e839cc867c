//! The kernel's binary measurement list (`binary_runtime_measurements`), read and
//! written.
//!
//! Each entry is: u32 PCR index, the template hash (20 bytes in the classic file, the
//! bank's size in `binary_runtime_measurements_sha256` and friends), u32 template-name
//! length, the name, then the template data: for every template but `ima`, a u32
//! length and the fields, each as u32 length then bytes; for `ima`, the 20-byte SHA-1
//! digest then a u32-length-prefixed name. Integers are little-endian (x86, and every
//! architecture when the kernel runs with `ima_canonical_fmt`).
//!
//! The input is untrusted: every length is checked against a limit and against the
//! bytes left before anything is allocated or sliced.

use wire::Reader;

use super::{
    check_template_name, field_bytes, len_u32, parse_dng, parse_n, parse_nng, EntryProblem, Field,
    FieldKind, HashAlg, ImaEntry, ImaError, IMA_DIGEST_SIZE, IMA_EVENT_NAME_LEN_MAX, MAX_PCR,
};

/// Longest template name accepted. Kernel names are short (`ima-sig`); a custom format
/// string (`d-ng|n-ng|sig|...`) stays well below this.
pub const MAX_TEMPLATE_NAME_LEN: u32 = 255;

/// Largest template data accepted for one entry. The kernel's biggest entries are
/// `ima-buf` buffers (keys, kexec command lines, policy hashes): kilobytes. A length
/// beyond this is a corrupt or hostile log, refused before allocating.
pub const MAX_TEMPLATE_DATA_LEN: u32 = 16 * 1024 * 1024;

/// A failed read: the file offset where the field starts, and what went wrong.
type ReadError = (usize, EntryProblem);

/// The input ended inside a field: the offset is the field's, as `wire` reports it.
fn truncated(e: wire::Truncated) -> ReadError {
    (
        e.offset,
        EntryProblem::Truncated {
            field: e.field,
            needed: u64::try_from(e.needed).unwrap_or(u64::MAX),
            available: e.available,
        },
    )
}

/// Reads a u32 length then that many bytes, refusing a length above `max` before
/// looking at what follows.
fn prefixed<'a>(
    r: &mut Reader<'a>,
    len_field: &'static str,
    field: &'static str,
    max: u32,
) -> Result<&'a [u8], ReadError> {
    let at = r.offset();
    let len = r.u32_le(len_field).map_err(truncated)?;
    if len > max {
        return Err((
            at,
            EntryProblem::TooLong {
                field,
                len: u64::from(len),
                max: u64::from(max),
            },
        ));
    }
    // u32 -> usize cannot fail on the 32- and 64-bit targets Rust supports; if it
    // did, the length could not fit in memory anyway: report it as truncated.
    let n = usize::try_from(len).unwrap_or(usize::MAX);
    r.take(n, field).map_err(truncated)
}

/// Parses a binary measurement list whose template hashes are `template_hash_alg`
/// digests (SHA-1 for `binary_runtime_measurements`, SHA-256 for
/// `binary_runtime_measurements_sha256`, ...). An empty input is an empty list.
pub fn parse(bytes: &[u8], template_hash_alg: HashAlg) -> Result<Vec<ImaEntry>, ImaError> {
    let mut r = Reader::new(bytes);
    let mut entries = Vec::new();
    while r.remaining() > 0 {
        let entry = parse_entry(&mut r, template_hash_alg).map_err(|(offset, problem)| {
            ImaError::Binary {
                entry: entries.len(),
                offset,
                problem,
            }
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// The byte offset at which entry `n` (from 0) of a `binary_runtime_measurements` log
/// (SHA-1 template hashes) starts, or `None` when the log has fewer than `n` whole
/// entries or one of the first `n` does not parse. `n` equal to the number of entries
/// gives the log's length.
pub fn entry_offset(bytes: &[u8], n: u64) -> Option<usize> {
    let mut r = Reader::new(bytes);
    for _ in 0..n {
        if r.remaining() == 0 {
            return None;
        }
        parse_entry(&mut r, HashAlg::Sha1).ok()?;
    }
    Some(r.offset())
}

fn parse_entry(r: &mut Reader<'_>, template_hash_alg: HashAlg) -> Result<ImaEntry, ReadError> {
    let at = r.offset();
    let pcr = r.u32_le("PCR index").map_err(truncated)?;
    if pcr > MAX_PCR {
        return Err((at, EntryProblem::PcrOutOfRange(u64::from(pcr))));
    }
    let template_hash = r
        .take(template_hash_alg.size(), "template hash")
        .map_err(truncated)?
        .to_vec();
    let at = r.offset();
    let name = prefixed(
        r,
        "template name length",
        "template name",
        MAX_TEMPLATE_NAME_LEN,
    )?;
    let (template_name, kinds) = check_template_name(name).map_err(|p| (at, p))?;

    let fields = if template_name == "ima" {
        // The `ima` template has no template-data length and no length on its digest.
        let d = r
            .take(IMA_DIGEST_SIZE, "d (ima template digest)")
            .map_err(truncated)?
            .to_vec();
        let at = r.offset();
        let n = prefixed(
            r,
            "n (ima template name) length",
            "n (ima template name)",
            len_u32(IMA_EVENT_NAME_LEN_MAX),
        )?;
        vec![Field::D(d), parse_n(n).map_err(|p| (at, p))?]
    } else {
        let at = r.offset();
        let data = prefixed(
            r,
            "template data length",
            "template data",
            MAX_TEMPLATE_DATA_LEN,
        )?;
        // `data` starts 4 bytes after `at`, past its length.
        let mut d = Reader::at(data, at.saturating_add(4));
        let mut fields = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let at = d.offset();
            let (len_name, name) = field_names(kind);
            let bytes = prefixed(&mut d, len_name, name, MAX_TEMPLATE_DATA_LEN)?;
            let field = match kind {
                FieldKind::DNg => parse_dng(bytes),
                FieldKind::NNg => parse_nng(bytes),
                FieldKind::Sig => Ok(Field::Sig(bytes.to_vec())),
                FieldKind::Buf => Ok(Field::Buf(bytes.to_vec())),
                // template_fields() allows `d` and `n` only in the `ima` template.
                FieldKind::D | FieldKind::N => {
                    Err(EntryProblem::UnsupportedLayout(template_name.clone()))
                }
            }
            .map_err(|p| (at, p))?;
            fields.push(field);
        }
        if d.remaining() > 0 {
            return Err((d.offset(), EntryProblem::TrailingData(d.remaining())));
        }
        fields
    };
    Ok(ImaEntry {
        pcr,
        template_hash_alg,
        template_hash,
        template_name,
        fields,
    })
}

/// Field names for error messages: (length, value).
fn field_names(kind: FieldKind) -> (&'static str, &'static str) {
    match kind {
        FieldKind::D => ("d field length", "d field"),
        FieldKind::DNg => ("d-ng field length", "d-ng field"),
        FieldKind::N => ("n field length", "n field"),
        FieldKind::NNg => ("n-ng field length", "n-ng field"),
        FieldKind::Sig => ("sig field length", "sig field"),
        FieldKind::Buf => ("buf field length", "buf field"),
    }
}

/// Writes entries in the binary format, as the kernel would (little-endian). Each
/// entry's template hash is written as it is, so a list of entries with SHA-256
/// template hashes makes a `binary_runtime_measurements_sha256`.
pub fn serialize(entries: &[ImaEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.template_hash);
        out.extend_from_slice(&len_u32(e.template_name.len()).to_le_bytes());
        out.extend_from_slice(e.template_name.as_bytes());
        if e.template_name == "ima" {
            for f in &e.fields {
                let bytes = field_bytes(f);
                if let Field::N(_) = f {
                    out.extend_from_slice(&len_u32(bytes.len()).to_le_bytes());
                }
                out.extend_from_slice(&bytes);
            }
        } else {
            let data = e.template_data();
            out.extend_from_slice(&len_u32(data.len()).to_le_bytes());
            out.extend_from_slice(&data);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ImaEntry> {
        vec![
            ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[7; 32]).unwrap(),
            ImaEntry::measure("/usr/bin/bash", HashAlg::Sha256, b"bash").unwrap(),
            ImaEntry::violation("/var/log/x", HashAlg::Sha256).unwrap(),
        ]
    }

    #[test]
    fn round_trip() {
        let entries = sample();
        let bytes = serialize(&entries);
        assert_eq!(parse(&bytes, HashAlg::Sha1).unwrap(), entries);
    }

    #[test]
    fn layout_matches_the_kernel() {
        let e = ImaEntry::ima_ng("/a", HashAlg::Sha1, &[0x11; 20]).unwrap();
        let bytes = serialize(std::slice::from_ref(&e));
        let mut want = Vec::new();
        want.extend_from_slice(&[10, 0, 0, 0]);
        want.extend_from_slice(e.template_hash());
        want.extend_from_slice(&[6, 0, 0, 0]);
        want.extend_from_slice(b"ima-ng");
        // template data: 4 + 26 (d-ng) + 4 + 3 (n-ng "/a\0") = 37
        want.extend_from_slice(&[37, 0, 0, 0]);
        want.extend_from_slice(&[26, 0, 0, 0]);
        want.extend_from_slice(b"sha1:\0");
        want.extend_from_slice(&[0x11; 20]);
        want.extend_from_slice(&[3, 0, 0, 0]);
        want.extend_from_slice(b"/a\0");
        assert_eq!(bytes, want);
    }

    #[test]
    fn empty_input_is_empty_list() {
        assert_eq!(parse(&[], HashAlg::Sha1).unwrap(), vec![]);
    }
}
