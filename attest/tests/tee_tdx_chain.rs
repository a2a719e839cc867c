//! The TDX quote's own signature chain, checked without collateral, on the real quote of
//! `../shared/evidence/tdx` (see its README): every link passes, then the verdict is
//! "no collateral"; a flipped byte in each part of the quote breaks the link that part
//! belongs to, and the error names that link.

use attest::tee::tdx::{self, ChainLink, TdxError, TdxOptions, TdxStep};
use std::time::{Duration, SystemTime};

fn quote() -> Option<Vec<u8>> {
    let d = testkit::evidence::dir("tdx")?;
    Some(std::fs::read(d.join("tdx_quote")).expect("evidence file readable"))
}

fn unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2025-07-01T00:00:00Z: inside the PCK certificate's validity (2025-02-06..2032-02-06).
fn at() -> SystemTime {
    unix(1_751_328_000)
}

/// Where the parts of a TDX v4 quote lie (Intel's quote format: a 48-byte header, the
/// 584-byte TD report, a u32 auth data length, then the auth data).
struct Layout {
    qe_auth: std::ops::Range<usize>,
    pck_chain: std::ops::Range<usize>,
}

const HEADER: std::ops::Range<usize> = 0..48;
const TD_REPORT: std::ops::Range<usize> = 48..632;
const QUOTE_SIGNATURE: std::ops::Range<usize> = 636..700;
const ATTESTATION_KEY: std::ops::Range<usize> = 700..764;
/// After the certification data header (type u16 = 6, size u32) at 764.
const QE_REPORT: std::ops::Range<usize> = 770..1154;
const QE_REPORT_SIGNATURE: std::ops::Range<usize> = 1154..1218;

fn layout(q: &[u8]) -> Layout {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([q[o], q[o + 1]]));
    let u32_at =
        |o: usize| usize::try_from(u32::from_le_bytes(q[o..o + 4].try_into().unwrap())).unwrap();
    let auth_len = u16_at(1218);
    let qe_auth = 1220..1220 + auth_len;
    assert_eq!(u16_at(qe_auth.end), 5, "PEM chain certification data");
    let size = u32_at(qe_auth.end + 2);
    let start = qe_auth.end + 6;
    Layout {
        qe_auth,
        pck_chain: start..start + size,
    }
}

fn flipped(q: &[u8], pos: usize) -> Vec<u8> {
    let mut t = q.to_vec();
    t[pos] ^= 0x01;
    t
}

fn no_collateral(q: &[u8]) -> TdxError {
    tdx::verify_without_collateral(q, at(), &TdxOptions::default())
}

fn broken_link(e: &TdxError) -> Option<ChainLink> {
    match e {
        TdxError::Chain { link, .. } => Some(*link),
        _ => None,
    }
}

#[test]
fn the_recorded_quote_passes_every_link_then_lacks_collateral() {
    let Some(q) = quote() else { return };
    tdx::chain::verify(&q, at()).expect("chain intact");
    let parsed = tdx::verify_quote_chain(&q, at(), &TdxOptions::default()).expect("chain");
    assert_eq!(parsed.version, 4);
    let e = no_collateral(&q);
    assert_eq!(e, TdxError::NoCollateral);
    assert_eq!(e.step(), TdxStep::TcbStatus);
    assert!(e.to_string().contains("pass --collateral"), "{e}");
    assert!(
        e.to_string().contains("TCB info, QE identity and CRLs"),
        "{e}"
    );
}

/// Each part of the quote, one byte flipped (first, middle and last byte of the part),
/// fails the link the part belongs to.
#[test]
fn a_flipped_byte_in_each_part_breaks_its_link() {
    let Some(q) = quote() else { return };
    let l = layout(&q);
    let parts: [(&str, std::ops::Range<usize>, ChainLink); 7] = [
        ("QE report", QE_REPORT, ChainLink::QeReport),
        (
            "QE report signature",
            QE_REPORT_SIGNATURE,
            ChainLink::QeReport,
        ),
        ("QE auth data", l.qe_auth.clone(), ChainLink::AttestationKey),
        (
            "attestation key",
            ATTESTATION_KEY,
            ChainLink::AttestationKey,
        ),
        // The user data (QE ID) part of the header; the version and types are named
        // format errors instead (below).
        ("header", 28..48, ChainLink::QuoteSignature),
        ("TD report", TD_REPORT, ChainLink::QuoteSignature),
        (
            "quote signature",
            QUOTE_SIGNATURE,
            ChainLink::QuoteSignature,
        ),
    ];
    for (name, range, link) in parts {
        for pos in [range.start, (range.start + range.end) / 2, range.end - 1] {
            // The TD attributes' DEBUG bit is refused before any signature is checked.
            if pos == 48 + 120 {
                continue;
            }
            let e = no_collateral(&flipped(&q, pos));
            assert_eq!(
                broken_link(&e),
                Some(link),
                "{name}: flip at {pos} gave `{e}`"
            );
            assert!(
                e.to_string().starts_with(&link.to_string()),
                "{name}: `{e}` does not name the link"
            );
        }
    }
    // The header's version, key type and TEE type are checked as the format.
    for pos in HEADER.take(8) {
        let e = no_collateral(&flipped(&q, pos));
        assert_ne!(e, TdxError::NoCollateral, "header flip at {pos} accepted");
    }
    // Any byte of the PEM text fails: as a format error (base64, canonical text) or as
    // the PCK chain link.
    for pos in l.pck_chain.clone().step_by(97) {
        let e = no_collateral(&flipped(&q, pos));
        assert!(
            e.step() <= TdxStep::Chain(ChainLink::PckChain),
            "PCK chain flip at {pos} gave `{e}`"
        );
    }
}

/// The certificates of the quote's PEM chain, DER.
fn chain_ders(q: &[u8]) -> Vec<Vec<u8>> {
    let l = layout(q);
    let pem = &q[l.pck_chain];
    let end = pem.iter().rposition(|&b| b != 0).unwrap() + 1;
    attest::pem::decode_certificates(&pem[..end]).unwrap()
}

/// The quote with its PEM chain replaced by `ders` (same total length, as a flipped
/// signature byte keeps it).
fn with_chain(q: &[u8], ders: &[Vec<u8>]) -> Vec<u8> {
    let l = layout(q);
    let pem: String = ders.iter().map(|d| attest::pem::der_to_pem(d)).collect();
    let mut t = q.to_vec();
    let old_end = q[l.pck_chain.clone()]
        .iter()
        .rposition(|&b| b != 0)
        .unwrap()
        + 1;
    assert_eq!(pem.len(), old_end, "re-encoded chain keeps its length");
    t[l.pck_chain.start..l.pck_chain.start + pem.len()].copy_from_slice(pem.as_bytes());
    t
}

#[test]
fn a_certificate_signature_changed_in_der_breaks_the_pck_chain() {
    let Some(q) = quote() else { return };
    let ders = chain_ders(&q);
    assert_eq!(ders.len(), 3, "PCK, PCK Platform CA, Intel SGX Root CA");
    // Re-encoding the untouched chain gives the same quote.
    assert_eq!(with_chain(&q, &ders), q);
    for (i, role) in [(0, "PCK certificate"), (1, "certificate 1 (CA)")] {
        let mut d = ders.clone();
        // The last byte of a certificate is the last byte of its signature's s.
        *d[i].last_mut().unwrap() ^= 0x01;
        let e = no_collateral(&with_chain(&q, &d));
        assert_eq!(broken_link(&e), Some(ChainLink::PckChain), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(role) && msg.contains("does not verify"),
            "{msg}"
        );
    }
    // A byte of the leaf's signed part (its serial number) changed: the signature no
    // longer covers it.
    let mut d = ders.clone();
    d[0][15] ^= 0x01;
    let e = no_collateral(&with_chain(&q, &d));
    assert_eq!(broken_link(&e), Some(ChainLink::PckChain), "{e}");
    // Intel's CA signing the PCK certificate directly (the Platform CA left out) is a
    // different issuer: refused by name.
    let short = vec![ders[0].clone(), ders[2].clone()];
    assert!(tdx::chain::verify(&with_padding(&q, &short), at()).is_err());
}

/// The quote with a shorter PEM chain, zero-padded to the old length (the auth data's
/// sizes stay as they are).
fn with_padding(q: &[u8], ders: &[Vec<u8>]) -> Vec<u8> {
    let l = layout(q);
    let pem: String = ders.iter().map(|d| attest::pem::der_to_pem(d)).collect();
    let mut t = q.to_vec();
    let region = &mut t[l.pck_chain.clone()];
    region.fill(0);
    region[..pem.len()].copy_from_slice(pem.as_bytes());
    t
}

#[test]
fn the_pck_certificate_must_be_valid_at_the_verification_time() {
    let Some(q) = quote() else { return };
    // 2025-01-01: before the PCK certificate's notBefore (2025-02-06T23:25:51Z).
    let e = tdx::chain::verify(&q, unix(1_735_689_600)).unwrap_err();
    assert_eq!(broken_link(&e), Some(ChainLink::PckChain));
    assert!(e.to_string().contains("not valid before 2025-02-06"), "{e}");
    // 2033-01-01: after it expired (2032-02-06).
    let e = tdx::chain::verify(&q, unix(1_988_150_400)).unwrap_err();
    assert!(e.to_string().contains("expired at 2032-02-06"), "{e}");
    // Before 1970 is a named error of the options' time.
    let e = tdx::verify_without_collateral(
        &q,
        SystemTime::UNIX_EPOCH - Duration::from_secs(1),
        &TdxOptions::default(),
    );
    assert_eq!(e, TdxError::TimeBeforeEpoch);
}

#[test]
fn short_and_garbled_quotes_are_errors_not_panics() {
    let Some(q) = quote() else { return };
    // The quote's declared end is its PEM chain's end; zero padding may follow it.
    let end = layout(&q).pck_chain.end;
    for len in [0, 1, 47, 48, 631, 632, 636, 700, 770, 1218, 1300, end - 1] {
        let e = no_collateral(&q[..len]);
        assert_ne!(e, TdxError::NoCollateral, "prefix of {len} bytes accepted");
        assert!(tdx::chain::verify(&q[..len], at()).is_err());
    }
    // An attestation key replaced whole (no longer a curve point) fails at the QE's
    // binding, before it is used as a key.
    let mut t = q.clone();
    t[ATTESTATION_KEY].fill(0xff);
    let e = tdx::chain::verify(&t, at()).unwrap_err();
    assert_eq!(broken_link(&e), Some(ChainLink::AttestationKey), "{e}");
}

/// Every byte of the quote, flipped one at a time, fails without collateral too: no
/// byte of it is outside the chain's reach (run with
/// `cargo test -p attest --release --test tee_tdx_chain -- --ignored`).
#[test]
#[ignore = "exhaustive; a minute or more in a debug build"]
fn flipping_every_byte_fails_without_collateral() {
    let Some(q) = quote() else { return };
    for pos in 0..q.len() {
        let e = no_collateral(&flipped(&q, pos));
        assert_ne!(e, TdxError::NoCollateral, "flip at {pos} accepted");
    }
}
