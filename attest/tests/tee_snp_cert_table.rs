//! The SEV-SNP certificate table (extended report / configfs-tsm auxblob), built from the
//! real Milan certificates, parsed back and verified; and malformed tables.

use attest::tee::snp::cert_table::{
    build_cert_table, certs_from_table, parse_cert_table, CertKind, CertTableEntry, CertTableError,
    ENTRY_LEN, GUID_VCEK,
};
use attest::tee::snp::{self, Product};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn evidence_dir() -> Option<PathBuf> {
    testkit::evidence::dir("snp")
}

/// The host's table for the Milan evidence: VCEK, ASK, ARK (DER), as a host serves it.
fn milan_table() -> Option<(Vec<u8>, Vec<CertTableEntry>, Vec<u8>)> {
    let d = evidence_dir()?;
    let vcek = std::fs::read(d.join("milan-vcek.der")).expect("vcek");
    let chain = std::fs::read(d.join("milan-ask-ark.pem")).expect("chain");
    let report = std::fs::read(d.join("milan-report.bin")).expect("report");
    let ders = snp::pem_certificates(&chain).expect("chain parses");
    let entries = vec![
        CertTableEntry {
            kind: CertKind::Vcek,
            data: vcek,
        },
        CertTableEntry {
            kind: CertKind::Ask,
            data: ders[0].clone(),
        },
        CertTableEntry {
            kind: CertKind::Ark,
            data: ders[1].clone(),
        },
    ];
    Some((build_cert_table(&entries), entries, report))
}

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600) // 2025-01-01
}

#[test]
fn table_from_evidence_parses_back_and_verifies_the_report() {
    let Some((table, entries, report)) = milan_table() else {
        return;
    };
    let parsed = parse_cert_table(&table).expect("valid table");
    assert_eq!(parsed, entries);
    // The table's GUIDs are where the GHCB spec puts them.
    assert_eq!(&table[..16], &GUID_VCEK);
    let certs = certs_from_table(&parsed);
    assert!(
        certs.vcek_or_vlek.is_none(),
        "the report decides which key to use"
    );
    let v = snp::verify(&report, &certs, at()).expect("report verifies from the table");
    assert_eq!(v.product, Product::Milan);
}

#[test]
fn a_table_with_trailing_page_padding_is_fine() {
    let Some((mut table, entries, _)) = milan_table() else {
        return;
    };
    // Hosts hand out whole pages.
    table.resize(4096 * 2, 0);
    assert_eq!(parse_cert_table(&table), Ok(entries));
}

#[test]
fn table_without_terminator_is_refused() {
    let Some((table, _, _)) = milan_table() else {
        return;
    };
    // Cut inside the entry list: no all-zero entry is ever reached.
    for len in [
        1,
        ENTRY_LEN - 1,
        ENTRY_LEN,
        2 * ENTRY_LEN + 5,
        3 * ENTRY_LEN,
    ] {
        assert_eq!(
            parse_cert_table(&table[..len]),
            Err(CertTableError::NoTerminator { len })
        );
    }
}

#[test]
fn truncated_data_is_out_of_bounds() {
    let Some((table, _, _)) = milan_table() else {
        return;
    };
    let short = &table[..table.len() - 1];
    assert!(matches!(
        parse_cert_table(short),
        Err(CertTableError::OutOfBounds { index: 2, .. })
    ));
}

fn set_u32(table: &mut [u8], at: usize, v: u32) {
    table[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hostile_offsets_and_lengths_are_refused() {
    let Some((table, _, _)) = milan_table() else {
        return;
    };
    // Entry 0: offset at bytes 16..20, length at 20..24.
    let mut t = table.clone();
    set_u32(&mut t, 16, u32::MAX);
    assert!(matches!(
        parse_cert_table(&t),
        Err(CertTableError::OutOfBounds { index: 0, .. })
    ));
    let mut t = table.clone();
    set_u32(&mut t, 20, u32::MAX);
    assert!(matches!(
        parse_cert_table(&t),
        Err(CertTableError::OutOfBounds { index: 0, .. })
    ));
    let mut t = table.clone();
    set_u32(&mut t, 16, 0);
    assert_eq!(
        parse_cert_table(&t),
        Err(CertTableError::OverlapsHeader {
            index: 0,
            offset: 0,
            header_end: 4 * ENTRY_LEN
        })
    );
    let mut t = table.clone();
    set_u32(&mut t, 20, 0);
    assert_eq!(
        parse_cert_table(&t),
        Err(CertTableError::EmptyEntry { index: 0 })
    );
    // Two VCEK entries.
    let mut t = table.clone();
    t.copy_within(0..16, ENTRY_LEN);
    assert_eq!(
        parse_cert_table(&t),
        Err(CertTableError::Duplicate {
            index: 1,
            kind: CertKind::Vcek
        })
    );
}

#[test]
fn too_many_entries_are_refused() {
    let entries: Vec<CertTableEntry> = (0..70u8)
        .map(|i| CertTableEntry {
            kind: CertKind::Other([i + 1; 16]),
            data: vec![i],
        })
        .collect();
    assert_eq!(
        parse_cert_table(&build_cert_table(&entries)),
        Err(CertTableError::TooManyEntries)
    );
}

#[test]
fn a_damaged_certificate_in_the_table_fails_verification() {
    let Some((table, _, report)) = milan_table() else {
        return;
    };
    // Flip a byte inside the VCEK's data (it starts right after the 4-entry list).
    let mut t = table.clone();
    t[4 * ENTRY_LEN + 300] ^= 0x01;
    let certs = certs_from_table(&parse_cert_table(&t).expect("layout intact"));
    assert!(snp::verify(&report, &certs, at()).is_err());
}

#[test]
fn a_table_without_vcek_cannot_verify() {
    let Some((_, entries, report)) = milan_table() else {
        return;
    };
    let no_vcek: Vec<_> = entries
        .into_iter()
        .filter(|e| e.kind != CertKind::Vcek)
        .collect();
    let certs = certs_from_table(&parse_cert_table(&build_cert_table(&no_vcek)).expect("ok"));
    assert_eq!(
        snp::verify(&report, &certs, at()),
        Err(snp::SnpError::MissingEndorsementKey(
            snp::EndorsementKind::Vcek
        ))
    );
}

#[test]
fn every_prefix_is_an_error_never_a_panic() {
    let Some((table, _, _)) = milan_table() else {
        return;
    };
    // Empty means "no certificates"; any other cut loses the terminator or the data.
    assert_eq!(parse_cert_table(&[]), Ok(vec![]));
    for len in 1..table.len() {
        assert!(
            parse_cert_table(&table[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
}
