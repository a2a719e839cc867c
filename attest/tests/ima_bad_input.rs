//! Malformed IMA lists: every one gives an `ImaError` that says where (entry and byte
//! offset for the binary list, line for the ASCII list) and what, never a panic.

use attest::ima::binary::{MAX_TEMPLATE_DATA_LEN, MAX_TEMPLATE_NAME_LEN};
use attest::ima::{ascii, binary, EntryProblem, HashAlg, ImaEntry, ImaError};

fn small_log() -> Vec<ImaEntry> {
    vec![
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha1, &[3; 20]).unwrap(),
        ImaEntry::measure("/usr/bin/env", HashAlg::Sha256, b"env").unwrap(),
        ImaEntry::violation("/etc/passwd", HashAlg::Sha256).unwrap(),
    ]
}

/// Byte offsets where each entry of `small_log()` starts, and the end.
fn boundaries(entries: &[ImaEntry]) -> Vec<usize> {
    let mut b = vec![0];
    for i in 1..=entries.len() {
        b.push(binary::serialize(&entries[..i]).len());
    }
    b
}

fn binary_err(bytes: &[u8]) -> (usize, usize, EntryProblem) {
    match binary::parse(bytes, HashAlg::Sha1) {
        Err(ImaError::Binary {
            entry,
            offset,
            problem,
        }) => (entry, offset, problem),
        other => panic!("expected a binary parse error, got {other:?}"),
    }
}

/// Entry header: PCR 10, a SHA-1 template hash, the template name.
fn header(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&10u32.to_le_bytes());
    v.extend_from_slice(&[0x5a; 20]);
    v.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    v.extend_from_slice(name);
    v
}

fn field(bytes: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(bytes.len()).unwrap().to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// An ima-ng entry with arbitrary d-ng and n-ng field bytes.
fn ima_ng_raw(dng: &[u8], nng: &[u8]) -> Vec<u8> {
    let data = [field(dng), field(nng)].concat();
    [header(b"ima-ng"), field(&data)].concat()
}

fn dng(alg: &str, digest: &[u8]) -> Vec<u8> {
    [alg.as_bytes(), b":\0", digest].concat()
}

#[test]
fn truncated_at_every_offset() {
    let entries = small_log();
    let bytes = binary::serialize(&entries);
    let bounds = boundaries(&entries);
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        match bounds.iter().position(|&b| b == cut) {
            // A cut between entries is a shorter, valid list.
            Some(complete) => {
                assert_eq!(
                    binary::parse(prefix, HashAlg::Sha1).unwrap(),
                    entries[..complete]
                );
            }
            None => {
                let (entry, offset, problem) = binary_err(prefix);
                let start = bounds.iter().rposition(|&b| b < cut).unwrap();
                assert_eq!(entry, start, "cut at {cut}");
                assert!(
                    offset >= bounds[start] && offset <= cut,
                    "cut at {cut}: offset {offset} outside entry {start}"
                );
                assert!(
                    matches!(problem, EntryProblem::Truncated { .. }),
                    "cut at {cut}: {problem:?}"
                );
            }
        }
    }
}

#[test]
fn truncation_error_names_field_and_offset() {
    let bytes = binary::serialize(&small_log()[..1]);
    // Cut in the middle of the template hash (PCR is 4 bytes, then 20 of hash).
    let (entry, offset, problem) = binary_err(&bytes[..10]);
    assert_eq!((entry, offset), (0, 4));
    assert_eq!(
        problem,
        EntryProblem::Truncated {
            field: "template hash",
            needed: 20,
            available: 6
        }
    );
    let msg = binary::parse(&bytes[..10], HashAlg::Sha1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "binary IMA log, entry 0 at byte offset 4: truncated template hash: needs 20 bytes, 6 left"
    );
}

#[test]
fn absurd_template_data_length_is_refused_before_allocating() {
    let mut bytes = binary::serialize(&small_log()[..1]);
    let second = bytes.len();
    // Second entry claims 4 GiB - 1 of template data and carries none.
    bytes.extend_from_slice(&header(b"ima-ng"));
    let len_at = bytes.len();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!((entry, offset), (1, len_at));
    assert!(len_at > second);
    assert_eq!(
        problem,
        EntryProblem::TooLong {
            field: "template data",
            len: u64::from(u32::MAX),
            max: u64::from(MAX_TEMPLATE_DATA_LEN),
        }
    );
    // Just under the limit but longer than the file: truncated, not allocated.
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&MAX_TEMPLATE_DATA_LEN.to_le_bytes());
    let (_, _, problem) = binary_err(&bytes);
    assert!(matches!(
        problem,
        EntryProblem::Truncated { field: "template data", needed, available: 0 }
            if needed == u64::from(MAX_TEMPLATE_DATA_LEN)
    ));
}

#[test]
fn absurd_template_name_length() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&10u32.to_le_bytes());
    bytes.extend_from_slice(&[1; 20]);
    bytes.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!((entry, offset), (0, 24));
    assert_eq!(
        problem,
        EntryProblem::TooLong {
            field: "template name",
            len: 0x8000_0000,
            max: u64::from(MAX_TEMPLATE_NAME_LEN),
        }
    );
}

#[test]
fn field_longer_than_its_template_data() {
    // d-ng claims 200 bytes inside 40 bytes of template data.
    let mut data = 200u32.to_le_bytes().to_vec();
    data.extend_from_slice(&[0; 36]);
    let bytes = [header(b"ima-ng"), field(&data)].concat();
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!(entry, 0);
    // header: 4 + 20 + 4 + 6 = 34; template data length at 34, data (and d-ng length) at 38.
    assert_eq!(offset, 38 + 4);
    assert_eq!(
        problem,
        EntryProblem::Truncated {
            field: "d-ng field",
            needed: 200,
            available: 36
        }
    );
}

#[test]
fn trailing_bytes_inside_template_data() {
    let data = [field(&dng("sha1", &[1; 20])), field(b"/x\0"), vec![0xee; 3]].concat();
    let bytes = [header(b"ima-ng"), field(&data)].concat();
    let (_, offset, problem) = binary_err(&bytes);
    assert_eq!(problem, EntryProblem::TrailingData(3));
    assert_eq!(offset, bytes.len() - 3);
}

#[test]
fn big_endian_log_is_named() {
    let mut bytes = binary::serialize(&small_log()[..1]);
    bytes[..4].copy_from_slice(&10u32.to_be_bytes());
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!((entry, offset), (0, 0));
    assert_eq!(problem, EntryProblem::PcrOutOfRange(0x0a00_0000));
    assert!(problem.to_string().contains("big-endian"));
}

#[test]
fn unknown_and_malformed_template_names() {
    let (_, offset, problem) = binary_err(&ima_ng_raw_with_name(b"ima-modsig"));
    assert_eq!(offset, 24);
    assert_eq!(problem, EntryProblem::UnknownTemplate("ima-modsig".into()));
    let (_, _, problem) = binary_err(&ima_ng_raw_with_name(b"ima\xffng"));
    assert_eq!(problem, EntryProblem::BadTemplateName);
    let (_, _, problem) = binary_err(&ima_ng_raw_with_name(b""));
    assert_eq!(problem, EntryProblem::BadTemplateName);
    let (_, _, problem) = binary_err(&ima_ng_raw_with_name(b"d-ng|n-ng|evmsig"));
    assert_eq!(problem, EntryProblem::UnknownField("evmsig".into()));
}

fn ima_ng_raw_with_name(name: &[u8]) -> Vec<u8> {
    let data = [field(&dng("sha1", &[1; 20])), field(b"/x\0")].concat();
    [header(name), field(&data)].concat()
}

#[test]
fn unknown_digest_algorithm_binary() {
    let bytes = ima_ng_raw(&dng("md5", &[1; 16]), b"/x\0");
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!(entry, 0);
    assert_eq!(offset, 38); // the d-ng field, at its length prefix
    assert_eq!(problem, EntryProblem::UnknownDigestAlgorithm("md5".into()));
}

#[test]
fn digest_length_must_match_algorithm_binary() {
    let (_, _, problem) = binary_err(&ima_ng_raw(&dng("sha256", &[1; 20]), b"/x\0"));
    assert_eq!(
        problem,
        EntryProblem::DigestLength {
            alg: HashAlg::Sha256,
            expected: 32,
            got: 20
        }
    );
}

#[test]
fn malformed_dng_and_nng_fields() {
    // No "alg:" NUL prefix: a bare digest.
    let (_, _, p) = binary_err(&ima_ng_raw(&[1; 20], b"/x\0"));
    assert_eq!(p, EntryProblem::MalformedDigestField);
    // A NUL but no colon before it.
    let (_, _, p) = binary_err(&ima_ng_raw(b"sha1\0xxxxxxxxxxxxxxxxxxxx", b"/x\0"));
    assert_eq!(p, EntryProblem::MalformedDigestField);
    // n-ng not NUL-terminated.
    let (_, offset, p) = binary_err(&ima_ng_raw(&dng("sha1", &[1; 20]), b"/x"));
    assert_eq!(p, EntryProblem::MissingNul("n-ng"));
    assert_eq!(offset, 38 + 4 + 26);
    // n-ng with a NUL inside.
    let (_, _, p) = binary_err(&ima_ng_raw(&dng("sha1", &[1; 20]), b"/x\0y\0"));
    assert_eq!(p, EntryProblem::NulInName);
}

#[test]
fn error_in_a_later_entry_names_it() {
    let good = binary::serialize(&small_log());
    let bad = ima_ng_raw(&dng("sm3", &[1; 32]), b"/x\0");
    let bytes = [good.clone(), bad].concat();
    let (entry, offset, problem) = binary_err(&bytes);
    assert_eq!(entry, 3);
    assert_eq!(offset, good.len() + 38);
    assert_eq!(problem, EntryProblem::UnknownDigestAlgorithm("sm3".into()));
}

#[test]
fn ima_template_name_too_long_binary() {
    let mut bytes = header(b"ima");
    bytes.extend_from_slice(&[1; 20]);
    bytes.extend_from_slice(&field(&[b'a'; 256]));
    let (_, offset, problem) = binary_err(&bytes);
    assert_eq!(offset, 4 + 20 + 4 + 3 + 20);
    assert!(matches!(
        problem,
        EntryProblem::TooLong {
            len: 256,
            max: 255,
            ..
        }
    ));
}

#[test]
fn wrong_template_hash_algorithm_is_an_error_not_garbage() {
    // A SHA-1 list read as SHA-256: field boundaries shift and parsing fails cleanly.
    let bytes = binary::serialize(&small_log());
    assert!(binary::parse(&bytes, HashAlg::Sha256).is_err());
}

// ---------------------------------------------------------------- ASCII

const GOOD: &str = "10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3 /init";

fn ascii_err(text: &str) -> (usize, EntryProblem) {
    match ascii::parse(text) {
        Err(ImaError::Ascii { line, problem }) => (line, problem),
        other => panic!("expected an ASCII parse error for {text:?}, got {other:?}"),
    }
}

/// `GOOD` with `from` replaced by `to`, as the third line of a log whose second line is
/// blank (blank lines count for line numbers).
fn third_line(from: &str, to: &str) -> (usize, EntryProblem) {
    let bad = GOOD.replacen(from, to, 1);
    assert_ne!(bad, GOOD);
    ascii_err(&format!("{GOOD}\n\n{bad}\n{GOOD}\n"))
}

#[test]
fn ascii_non_hex_template_hash() {
    let (line, p) = third_line("c156eb", "c156eg");
    assert_eq!(line, 3);
    assert!(
        matches!(
            p,
            EntryProblem::BadHex {
                field: "template hash",
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn ascii_non_hex_digest() {
    let (line, p) = third_line("sha1:19f1", "sha1:z9f1");
    assert_eq!(line, 3);
    assert!(
        matches!(
            p,
            EntryProblem::BadHex {
                field: "d-ng digest",
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn ascii_unknown_digest_algorithm() {
    let (_, p) = third_line("sha1:19f13b42c2745066347e7645", "md5:19f13b42c2745066");
    assert_eq!(p, EntryProblem::UnknownDigestAlgorithm("md5".into()));
}

#[test]
fn ascii_digest_length_mismatch() {
    let (_, p) = third_line("sha1:", "sha256:");
    assert_eq!(
        p,
        EntryProblem::DigestLength {
            alg: HashAlg::Sha256,
            expected: 32,
            got: 20
        }
    );
}

#[test]
fn ascii_digest_without_algorithm() {
    let (_, p) = third_line("sha1:", "");
    assert_eq!(p, EntryProblem::MalformedDigestField);
}

#[test]
fn ascii_template_hash_of_no_known_size() {
    let (_, p) = third_line("c156eb", "c156ebab");
    assert_eq!(p, EntryProblem::TemplateHashSize(42));
    let (_, p) = third_line("c156eb", "c156e");
    assert_eq!(p, EntryProblem::TemplateHashSize(39));
}

#[test]
fn ascii_wrong_field_counts() {
    // Path missing.
    let (line, p) = ascii_err("10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3\n");
    assert_eq!(line, 1);
    assert_eq!(
        p,
        EntryProblem::FieldCount {
            template: "ima-ng".into(),
            expected: 2,
            got: 1
        }
    );
    // No fields at all.
    let (_, p) = ascii_err("10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-ng");
    assert!(
        matches!(p, EntryProblem::FieldCount { got: 0, .. }),
        "{p:?}"
    );
    // Header only.
    let (_, p) = ascii_err("10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63");
    assert!(
        matches!(p, EntryProblem::FieldCount { got: 2, .. }),
        "{p:?}"
    );
    let (_, p) = ascii_err("10");
    assert!(
        matches!(p, EntryProblem::FieldCount { got: 1, .. }),
        "{p:?}"
    );
    // ima-sig needs a (possibly empty) sig after the path: "path " at the least.
    let (_, p) = ascii_err("10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-sig sha1:19f13b42c2745066347e76454788c0fe083643f3\n");
    assert!(
        matches!(p, EntryProblem::FieldCount { expected: 3, .. }),
        "{p:?}"
    );
}

#[test]
fn ascii_extra_field_lands_in_the_path_or_fails_hex() {
    // ima-ng has one text field last, so extra words are part of the path (paths may
    // contain spaces); the template hash check then tells whether that is the truth.
    let e = ascii::parse(&format!("{GOOD} extra")).unwrap();
    assert_eq!(e[0].path(), "/init extra");
    assert!(attest::ima::replay::check(&e).is_err());
    // ima-sig: the last word must be hex (the signature).
    let (_, p) = ascii_err("10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-sig sha1:19f13b42c2745066347e76454788c0fe083643f3 /init notahexsig");
    assert!(
        matches!(
            p,
            EntryProblem::BadHex {
                field: "sig field",
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn ascii_bad_pcr() {
    for (pcr, want) in [
        ("x", EntryProblem::BadPcr("x".into())),
        ("+10", EntryProblem::BadPcr("+10".into())),
        ("-1", EntryProblem::BadPcr("-1".into())),
        ("24", EntryProblem::PcrOutOfRange(24)),
        ("4294967296", EntryProblem::PcrOutOfRange(4_294_967_296)),
        (
            "99999999999999999999",
            EntryProblem::BadPcr("99999999999999999999".into()),
        ),
    ] {
        let (line, p) = third_line("10 ", &format!("{pcr} "));
        assert_eq!(line, 3);
        assert_eq!(p, want, "PCR {pcr:?}");
    }
}

#[test]
fn ascii_unknown_template() {
    let (_, p) = third_line("ima-ng", "ima-foo");
    assert_eq!(p, EntryProblem::UnknownTemplate("ima-foo".into()));
}

#[test]
fn ascii_ima_template_name_too_long() {
    let name = "a".repeat(256);
    let line = format!(
        "10 {} ima {} {name}",
        "00".repeat(19) + "01",
        "11".repeat(20)
    );
    let (_, p) = ascii_err(&line);
    assert!(matches!(p, EntryProblem::TooLong { len: 256, .. }), "{p:?}");
}

#[test]
fn ascii_error_message_names_the_line() {
    let err = ascii::parse(&format!("{GOOD}\n{}", GOOD.replace("sha1:", "sm3:")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "ASCII IMA log, line 2: unknown digest algorithm \"sm3\" (expected sha1, sha256, sha384 or sha512)"
    );
}

#[test]
fn every_single_byte_flip_is_caught() {
    // Without violations (whose data the kernel does not hash), changing any byte of a
    // binary list must either break parsing, fail the template-hash check, or change
    // the replayed PCR 10: there is no byte an attacker can alter unnoticed.
    let entries = vec![
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha1, &[3; 20]).unwrap(),
        ImaEntry::measure("/usr/bin/env", HashAlg::Sha256, b"env").unwrap(),
        ImaEntry::measure("/etc/ld.so.cache", HashAlg::Sha512, b"cache").unwrap(),
    ];
    let bytes = binary::serialize(&entries);
    let pcr = attest::ima::replay::replay(&entries, HashAlg::Sha1);
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            if let Ok(parsed) = binary::parse(&b, HashAlg::Sha1) {
                let caught = attest::ima::replay::check(&parsed).is_err()
                    || attest::ima::replay::replay(&parsed, HashAlg::Sha1) != pcr;
                assert!(caught, "byte {i} ^ {mask:#x} went unnoticed");
            }
        }
    }
}

#[test]
fn ascii_ima_template_bad_digest() {
    let hash = "ab".repeat(20);
    let (_, p) = ascii_err(&format!("10 {hash} ima {} /x", "11".repeat(19)));
    assert_eq!(
        p,
        EntryProblem::DigestLength {
            alg: HashAlg::Sha1,
            expected: 20,
            got: 19
        }
    );
    let (_, p) = ascii_err(&format!("10 {hash} ima sha1:{} /x", "11".repeat(20)));
    assert!(
        matches!(
            p,
            EntryProblem::BadHex {
                field: "d field",
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn ascii_bad_buf_and_nul_in_path() {
    let hash = "ab".repeat(20);
    let digest = "22".repeat(32);
    let (_, p) = ascii_err(&format!(
        "10 {hash} ima-buf sha256:{digest} kexec-cmdline 6x"
    ));
    assert!(
        matches!(
            p,
            EntryProblem::BadHex {
                field: "buf field",
                ..
            }
        ),
        "{p:?}"
    );
    let (_, p) = ascii_err(&format!("10 {hash} ima-ng sha256:{digest} /a\0b"));
    assert_eq!(p, EntryProblem::NulInName);
}

#[test]
fn binary_ima_template_truncated_digest() {
    let mut bytes = header(b"ima");
    bytes.extend_from_slice(&[1; 7]);
    let (entry, offset, p) = binary_err(&bytes);
    assert_eq!((entry, offset), (0, 31));
    assert_eq!(
        p,
        EntryProblem::Truncated {
            field: "d (ima template digest)",
            needed: 20,
            available: 7
        }
    );
}

#[test]
fn binary_custom_template_missing_field() {
    // "d-ng|n-ng|sig" but the data holds only two fields.
    let data = [field(&dng("sha1", &[1; 20])), field(b"/x\0")].concat();
    let bytes = [header(b"d-ng|n-ng|sig"), field(&data)].concat();
    let (_, offset, p) = binary_err(&bytes);
    assert_eq!(offset, bytes.len());
    assert_eq!(
        p,
        EntryProblem::Truncated {
            field: "sig field length",
            needed: 4,
            available: 0
        }
    );
}
