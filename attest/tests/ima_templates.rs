//! Each supported template (`ima`, `ima-ng`, `ima-sig`, `ima-buf`, custom format
//! strings) in both formats: the template data is rebuilt byte for byte as the kernel
//! hashes it (expected bytes written out here, not computed by the library), and
//! binary <-> ASCII conversions keep every entry intact.

use attest::ima::{ascii, binary, replay, Field, HashAlg, ImaEntry};

fn sha1(data: &[u8]) -> Vec<u8> {
    HashAlg::Sha1.digest(data)
}

fn le(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap().to_le_bytes()
}

fn field(bytes: &[u8]) -> Vec<u8> {
    [le(bytes.len()).as_slice(), bytes].concat()
}

/// A binary entry of a length-prefixed template, with a correct SHA-1 template hash.
fn binary_entry(pcr: u32, name: &str, fields: &[&[u8]]) -> Vec<u8> {
    let data: Vec<u8> = fields.iter().flat_map(|f| field(f)).collect();
    [
        pcr.to_le_bytes().as_slice(),
        &sha1(&data),
        &le(name.len()),
        name.as_bytes(),
        &field(&data),
    ]
    .concat()
}

#[test]
fn ima_template_hash_pads_the_name_to_256_bytes() {
    let digest = [0x42u8; 20];
    let name = "/usr/lib/libc.so.6";
    let mut padded = [0u8; 256];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    let template_hash = sha1(&[digest.as_slice(), &padded].concat());
    // Binary `ima`: no template-data length, raw 20-byte digest, u32 name length, name.
    let bytes = [
        10u32.to_le_bytes().as_slice(),
        &template_hash,
        &le(3),
        b"ima",
        &digest,
        &le(name.len()),
        name.as_bytes(),
    ]
    .concat();
    let entries = binary::parse(&bytes, HashAlg::Sha1).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.template_name(), "ima");
    assert_eq!(e.path(), name);
    assert_eq!(e.file_digest(), &digest);
    assert_eq!(e.file_digest_alg(), HashAlg::Sha1);
    assert_eq!(replay::check(&entries), Ok(()));
    assert_eq!(binary::serialize(&entries), bytes);
    // ASCII: "10 <hash> ima <digest hex> <name>".
    let text = ascii::serialize(&entries);
    assert_eq!(
        text,
        format!(
            "10 {} ima {} {name}\n",
            hex::encode(&template_hash),
            hex::encode(digest)
        )
    );
    assert_eq!(&ascii::parse(&text).unwrap(), &entries);
    // The SHA-256 bank hashes the same padded data.
    assert_eq!(
        e.extend_value(HashAlg::Sha256),
        HashAlg::Sha256.digest(&[digest.as_slice(), &padded].concat())
    );
}

#[test]
fn ima_sig_with_and_without_signature() {
    let digest = [0x17u8; 32];
    let dng = [b"sha256:\0".as_slice(), &digest].concat();
    let sig = [0x03, 0x02, 0x04, 0xaa, 0xbb];
    let bytes = [
        binary_entry(10, "ima-sig", &[&dng, b"/usr/bin/signed\0", &sig]),
        binary_entry(10, "ima-sig", &[&dng, b"/usr/bin/unsigned\0", b""]),
    ]
    .concat();
    let entries = binary::parse(&bytes, HashAlg::Sha1).unwrap();
    assert_eq!(replay::check(&entries), Ok(()));
    assert_eq!(entries[0].signature(), Some(sig.as_slice()));
    assert_eq!(entries[1].signature(), Some([].as_slice()));
    assert_eq!(entries[0].file_digest_alg(), HashAlg::Sha256);
    assert_eq!(binary::serialize(&entries), bytes);
    let text = ascii::serialize(&entries);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with(" /usr/bin/signed 030204aabb"),
        "{}",
        lines[0]
    );
    // The kernel prints a space before an empty field: the line ends with one.
    assert!(lines[1].ends_with(" /usr/bin/unsigned "), "{:?}", lines[1]);
    assert_eq!(ascii::parse(&text).unwrap(), entries);
}

#[test]
fn ima_buf_entry() {
    let buf = b"root=/dev/vda1 console=ttyS0";
    let digest = HashAlg::Sha256.digest(buf);
    let dng = [b"sha256:\0".as_slice(), &digest].concat();
    let bytes = binary_entry(10, "ima-buf", &[&dng, b"kexec-cmdline\0", buf]);
    let entries = binary::parse(&bytes, HashAlg::Sha1).unwrap();
    assert_eq!(replay::check(&entries), Ok(()));
    assert_eq!(entries[0].buffer(), Some(buf.as_slice()));
    assert_eq!(entries[0].path(), "kexec-cmdline");
    let text = ascii::serialize(&entries);
    assert!(text.ends_with(&format!(" kexec-cmdline {}\n", hex::encode(buf))));
    assert_eq!(ascii::parse(&text).unwrap(), entries);
}

#[test]
fn custom_template_format_string() {
    // A kernel booted with ima_template_fmt=n-ng|d-ng|sig names entries by the format.
    let dng = [b"sha512:\0".as_slice(), &[9u8; 64]].concat();
    let bytes = binary_entry(11, "n-ng|d-ng|sig", &[b"/opt/x y\0", &dng, &[1, 2]]);
    let entries = binary::parse(&bytes, HashAlg::Sha1).unwrap();
    assert_eq!(replay::check(&entries), Ok(()));
    assert_eq!(entries[0].pcr(), 11);
    assert_eq!(entries[0].path(), "/opt/x y");
    assert_eq!(entries[0].file_digest_alg(), HashAlg::Sha512);
    let text = ascii::serialize(&entries);
    assert!(text.starts_with("11 "));
    assert_eq!(ascii::parse(&text).unwrap(), entries);
    // Replay of PCR 10 does not see a PCR 11 entry.
    assert_eq!(replay::replay(&entries, HashAlg::Sha1), vec![0; 20]);
    assert_ne!(replay::replay_pcr(&entries, HashAlg::Sha1, 11), vec![0; 20]);
}

#[test]
fn paths_with_spaces_in_ascii() {
    let entries = vec![
        ImaEntry::measure("/home/a user/my script.sh", HashAlg::Sha256, b"#!/bin/sh").unwrap(),
        ImaEntry::measure(" leading and trailing ", HashAlg::Sha1, b"x").unwrap(),
    ];
    let text = ascii::serialize(&entries);
    let parsed = ascii::parse(&text).unwrap();
    assert_eq!(parsed, entries);
    assert_eq!(parsed[1].path(), " leading and trailing ");
    assert_eq!(replay::check(&parsed), Ok(()));
}

#[test]
fn non_utf8_path_survives_the_binary_format() {
    let dng = [b"sha1:\0".as_slice(), &[5u8; 20]].concat();
    let bytes = binary_entry(10, "ima-ng", &[&dng, b"/tmp/caf\xe9\0"]);
    let entries = binary::parse(&bytes, HashAlg::Sha1).unwrap();
    assert_eq!(entries[0].path_bytes(), b"/tmp/caf\xe9");
    assert_eq!(entries[0].path(), "/tmp/caf\u{fffd}");
    assert_eq!(replay::check(&entries), Ok(()));
    assert_eq!(binary::serialize(&entries), bytes);
}

#[test]
fn blank_lines_in_ascii() {
    let entries = vec![
        ImaEntry::measure("/a", HashAlg::Sha1, b"a").unwrap(),
        ImaEntry::measure("/b", HashAlg::Sha1, b"b").unwrap(),
    ];
    let text = ascii::serialize(&entries).replace('\n', "\n\n");
    assert_eq!(ascii::parse(&text).unwrap(), entries);
    assert_eq!(ascii::parse("").unwrap(), vec![]);
    assert_eq!(ascii::parse("\n\n").unwrap(), vec![]);
}

#[test]
fn carriage_return_is_part_of_the_path() {
    // Found by the ima_ascii fuzz target: a file name may end in CR, and the kernel
    // writes it as is. Stripping it (as for CRLF text) would change the path and break
    // its template hash, so the parser keeps it.
    let entries = vec![ImaEntry::measure("/tmp/x\r", HashAlg::Sha1, b"x").unwrap()];
    let text = ascii::serialize(&entries);
    assert!(text.ends_with("/tmp/x\r\n"));
    let parsed = ascii::parse(&text).unwrap();
    assert_eq!(parsed, entries);
    assert_eq!(replay::check(&parsed), Ok(()));
    // A CRLF copy of a log therefore fails the check rather than parsing as another log.
    let crlf = ascii::serialize(&[ImaEntry::measure("/a", HashAlg::Sha1, b"a").unwrap()])
        .replace('\n', "\r\n");
    assert!(replay::check(&ascii::parse(&crlf).unwrap()).is_err());
}

#[test]
fn violation_entries() {
    let v = ImaEntry::violation("/var/lib/db", HashAlg::Sha256).unwrap();
    assert!(v.is_violation());
    assert_eq!(v.template_hash(), &[0; 20]);
    assert_eq!(v.file_digest(), &[0; 32]);
    let text = ascii::serialize(std::slice::from_ref(&v));
    assert_eq!(
        text,
        format!(
            "10 {} ima-ng sha256:{} /var/lib/db\n",
            "0".repeat(40),
            "0".repeat(64)
        )
    );
    let parsed = ascii::parse(&text).unwrap();
    assert!(parsed[0].is_violation());
    // check() skips violations (nothing to recompute); replay extends all-0xFF.
    assert_eq!(replay::check(&parsed), Ok(()));
    assert_eq!(
        replay::replay(&parsed, HashAlg::Sha1),
        sha1(&[[0u8; 20], [0xff; 20]].concat())
    );
    // In a _sha256 list, a violation's template hash is 32 zero bytes.
    let v256 = v.with_template_hash_alg(HashAlg::Sha256);
    assert_eq!(v256.template_hash(), &[0; 32]);
    assert!(v256.is_violation());
}

#[test]
fn fields_are_exposed_in_template_order() {
    let e = ImaEntry::ima_ng("/x", HashAlg::Sha384, &[8; 48]).unwrap();
    assert_eq!(
        e.fields(),
        &[
            Field::DNg {
                alg: HashAlg::Sha384,
                digest: vec![8; 48]
            },
            Field::NNg(b"/x".to_vec())
        ]
    );
    assert_eq!(e.signature(), None);
    assert_eq!(e.buffer(), None);
}

#[test]
fn extend_values_drive_a_replay() {
    // What a test does to mirror a log into a TPM: extend each value in order.
    let entries: Vec<ImaEntry> = (0..5)
        .map(|i| ImaEntry::measure(&format!("/bin/{i}"), HashAlg::Sha256, &[i]).unwrap())
        .collect();
    for bank in HashAlg::ALL {
        let mut pcr = vec![0; bank.size()];
        for e in &entries {
            pcr = replay::extend(bank, &pcr, &e.extend_value(bank));
        }
        assert_eq!(pcr, replay::replay(&entries, bank));
    }
}
