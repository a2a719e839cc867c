//! TDX quote verification against real evidence (`../shared/evidence/tdx`, see its
//! README): a v4 quote that is UpToDate inside its collateral window, and a quote whose
//! platform TCB its collateral does not list.

use attest::tee::tdx::{
    self, check_tcb_status, check_td_attributes, parse_quote, TdxError, TdxOptions,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn evidence_dir() -> Option<PathBuf> {
    testkit::evidence::dir("tdx")
}

fn read(name: &str) -> Option<Vec<u8>> {
    let d = evidence_dir()?;
    Some(std::fs::read(d.join(name)).expect("evidence file readable"))
}

fn unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2025-07-01T00:00:00Z, inside 2025-06-19T10:32:27Z..2025-07-19T10:16:03Z.
fn in_window() -> SystemTime {
    unix(1_751_328_000)
}

/// 2026-03-01T00:00:00Z, inside the outdated collateral's 2026-02-18..2026-03-20.
fn outdated_window() -> SystemTime {
    unix(1_772_323_200)
}

#[test]
fn sample_quote_is_valid_and_up_to_date_inside_its_window() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    let v = tdx::verify(&q, &c, in_window(), &[]).expect("valid quote");
    assert_eq!(v.quote_version, 4);
    assert_eq!(v.tcb_status, "UpToDate");
    // Cross-checked against the raw quote bytes: the TD report starts at byte 48;
    // MRTD at +136, report_data at +520 (TDX module ABI, TDREPORT layout).
    assert_eq!(&v.mrtd[..], &q[48 + 136..48 + 184]);
    assert_eq!(&v.report_data[..], &q[48 + 520..48 + 584]);
    assert_eq!(&v.rtmrs[3][..], &q[48 + 472..48 + 520]);
    assert_eq!(&v.td_attributes[..], &q[48 + 120..48 + 128]);
    assert_eq!(v.td_attributes[0] & 1, 0, "not a debug TD");
    assert_ne!(v.fmspc, [0u8; 6]);
}

#[test]
fn outdated_quote_has_no_matching_tcb_level() {
    let (Some(q), Some(c)) = (
        read("tdx_quote_outdated"),
        read("tdx_quote_outdated_collateral.json"),
    ) else {
        return;
    };
    let err = tdx::verify(&q, &c, outdated_window(), &[]).expect_err("must be refused");
    let msg = err.to_string().to_lowercase();
    assert!(msg.contains("no matching tcb level"), "{msg}");
    // Allowing every status does not help: the TCB is not in the collateral at all.
    let all: Vec<String> = tdx::TCB_STATUS_NAMES
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert!(tdx::verify(&q, &c, outdated_window(), &all).is_err());
}

#[test]
fn verification_time_outside_the_collateral_window_fails() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    // 2025-06-19T10:00:00Z: before the QE identity's issue date.
    assert!(matches!(
        tdx::verify(&q, &c, unix(1_750_327_200), &[]),
        Err(TdxError::Verification(_))
    ));
    // 2025-08-01T00:00:00Z: after the TCB info's nextUpdate.
    let err = tdx::verify(&q, &c, unix(1_754_006_400), &[]).expect_err("expired collateral");
    assert!(err.to_string().contains("expired"), "{err}");
    // Before 1970 is a named error, not a wrap-around.
    assert_eq!(
        tdx::verify(&q, &c, SystemTime::UNIX_EPOCH - Duration::from_secs(1), &[]),
        Err(TdxError::TimeBeforeEpoch)
    );
}

/// Positions to flip: every `step`-th byte, the whole header and TD report of the
/// signed part at a finer step, and the last byte.
fn sample(len: usize, step: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len).step_by(step).collect();
    v.extend((0..632).step_by(7));
    v.push(len - 1);
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn flipping_bytes_of_the_quote_fails() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    let positions = sample(q.len(), 53);
    for &pos in &positions {
        let mut t = q.clone();
        t[pos] ^= 0x01;
        assert!(
            tdx::verify(&t, &c, in_window(), &[]).is_err(),
            "flip at {pos} accepted"
        );
    }
    eprintln!("flipped {} of {} quote bytes", positions.len(), q.len());
}

#[test]
fn flipping_bytes_of_the_collateral_fails() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    // Flip inside each signed or certified value (its characters, not the JSON syntax).
    let collateral: serde_json::Value = serde_json::from_slice(&c).expect("json");
    let mut flipped = 0;
    for field in [
        "tcb_info",
        "qe_identity",
        "tcb_info_signature",
        "qe_identity_signature",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
    ] {
        let s = collateral[field]
            .as_str()
            .expect("string field")
            .to_string();
        for pos in (30..s.len().saturating_sub(30)).step_by(s.len() / 6 + 1) {
            let mut bytes = s.clone().into_bytes();
            // Keep hex as hex and base64 as base64, so the change reaches the crypto.
            bytes[pos] = match bytes[pos] {
                b'0' => b'1',
                b'a' => b'b',
                b'A' => b'B',
                b'"' | b'\n' | b'-' | b'{' | b'}' | b':' | b',' => continue,
                _ => b'0',
            };
            let mut v = collateral.clone();
            v[field] = serde_json::Value::String(String::from_utf8(bytes).expect("ascii"));
            let json = serde_json::to_vec(&v).expect("json");
            assert!(
                tdx::verify(&q, &json, in_window(), &[]).is_err(),
                "{field} change at {pos} accepted"
            );
            flipped += 1;
        }
    }
    eprintln!("tampered {flipped} collateral positions");
}

#[test]
fn tcb_status_policy_names_what_is_accepted() {
    assert_eq!(check_tcb_status("UpToDate", &[]), Ok(()));
    assert_eq!(
        check_tcb_status("OutOfDate", &[]),
        Err(TdxError::TcbStatusNotAllowed {
            status: "OutOfDate".into(),
            allowed: "UpToDate".into()
        })
    );
    assert_eq!(
        check_tcb_status("OutOfDate", &["OutOfDate".to_string()]),
        Ok(())
    );
    assert_eq!(
        check_tcb_status("SWHardeningNeeded", &["OutOfDate".to_string()]),
        Err(TdxError::TcbStatusNotAllowed {
            status: "SWHardeningNeeded".into(),
            allowed: "UpToDate, OutOfDate".into()
        })
    );
    assert_eq!(
        check_tcb_status("UpToDate", &["Revoked".to_string()]),
        Err(TdxError::UnknownTcbStatusName("Revoked".into()))
    );
    assert_eq!(
        check_tcb_status("UpToDate", &["uptodate".to_string()]),
        Err(TdxError::UnknownTcbStatusName("uptodate".into()))
    );
}

#[test]
fn debug_td_is_refused_unless_allowed() {
    let Some(q) = read("tdx_quote") else { return };
    let mut td = parse_quote(&q).expect("parses").td;
    assert_eq!(check_td_attributes(&td, false), Ok(()));
    td.td_attributes[0] |= 1;
    assert!(matches!(
        check_td_attributes(&td, false),
        Err(TdxError::DebugTd { .. })
    ));
    assert_eq!(check_td_attributes(&td, true), Ok(()));
    // On the wire, setting the bit is caught before any signature work.
    let mut t = q.clone();
    t[48 + 120] |= 1;
    let c = read("tdx_quote_collateral.json").expect("collateral");
    assert!(matches!(
        tdx::verify(&t, &c, in_window(), &[]),
        Err(TdxError::DebugTd { .. })
    ));
    // Allowing debug lets the policy pass; the quote signature then refuses the edited
    // quote.
    let opts = TdxOptions {
        allowed_tcb_statuses: vec![],
        allow_debug: true,
    };
    assert!(matches!(
        tdx::verify_with_options(&t, &c, in_window(), &opts),
        Err(TdxError::Chain {
            link: tdx::ChainLink::QuoteSignature,
            ..
        })
    ));
}

#[test]
fn malformed_quotes_are_named_errors() {
    let Some(q) = read("tdx_quote") else { return };
    assert!(matches!(parse_quote(&[]), Err(TdxError::Parse(_))));
    let mut sgx = q.clone();
    sgx[4] = 0;
    assert_eq!(parse_quote(&sgx), Err(TdxError::NotTdx(0)));
    let mut v3 = q.clone();
    v3[0] = 3;
    assert_eq!(parse_quote(&v3), Err(TdxError::UnsupportedVersion(3)));
    // The sample ends with 70 bytes of zero padding after its auth data: more zeros are
    // accepted, a non-zero byte there is not, and cutting into the auth data is refused.
    let mut long = q.clone();
    long.push(0);
    assert!(parse_quote(&long).is_ok());
    long.push(7);
    assert_eq!(
        parse_quote(&long),
        Err(TdxError::TrailingBytesNotZero {
            offset: q.len() + 1
        })
    );
    assert!(parse_quote(&q[..4900]).is_err());
    // Every prefix short of the declared end (4936) is an error, never a panic.
    for len in (0..4936).step_by(5) {
        assert!(parse_quote(&q[..len]).is_err(), "prefix {len} accepted");
    }
    let outdated = read("tdx_quote_outdated").expect("quote");
    assert_eq!(parse_quote(&outdated).map(|p| p.version), Ok(5));
}

#[test]
fn malformed_collateral_is_a_named_error() {
    let Some(q) = read("tdx_quote") else { return };
    assert!(matches!(
        tdx::verify(&q, b"{}", in_window(), &[]),
        Err(TdxError::Collateral(_))
    ));
    assert!(matches!(
        tdx::verify(&q, b"not json", in_window(), &[]),
        Err(TdxError::Collateral(_))
    ));
    // The v4 quote with the other quote's collateral: different platform.
    let Some(other) = read("tdx_quote_outdated_collateral.json") else {
        return;
    };
    assert!(tdx::verify(&q, &other, in_window(), &[]).is_err());
}

#[test]
fn pem_chains_must_be_canonical_and_end_at_the_pinned_root() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    // A line break turned into a vertical tab decodes to the same certificates, but it
    // is not the quote Intel's QE produced.
    let nl = 1258 + q[1258..].iter().position(|&b| b == b'\n').expect("newline");
    let mut t = q.clone();
    t[nl] = 0x0b;
    assert!(matches!(parse_quote(&t), Err(TdxError::CertChain { .. })));
    let collateral = tdx::parse_collateral(&c).expect("collateral");
    // The TCB signing chain without its root copy.
    let leaf_only = collateral
        .tcb_info_issuer_chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .expect("leaf");
    assert!(matches!(
        tdx::check_pem_chain("test", leaf_only.as_bytes()),
        Err(TdxError::CertChain { ref reason, .. }) if reason.contains("Root CA")
    ));
    assert_eq!(
        tdx::check_pem_chain("test", collateral.tcb_info_issuer_chain.as_bytes()),
        Ok(())
    );
    assert!(tdx::check_pem_chain("test", b"").is_err());
}

/// Every byte of the quote, flipped one at a time (run with
/// `cargo test -p attest --release --test tee_tdx -- --ignored`).
#[test]
#[ignore = "exhaustive; minutes in a debug build"]
fn flipping_every_byte_of_the_quote_fails() {
    let (Some(q), Some(c)) = (read("tdx_quote"), read("tdx_quote_collateral.json")) else {
        return;
    };
    for pos in 0..q.len() {
        let mut t = q.clone();
        t[pos] ^= 0x01;
        assert!(
            tdx::verify(&t, &c, in_window(), &[]).is_err(),
            "flip at {pos} accepted"
        );
    }
}

#[test]
fn auth_data_lengths_must_add_up() {
    let Some(q) = read("tdx_quote") else { return };
    // The auth data length (u32 at 632, after header and TD report) grown by one byte
    // would swallow a padding zero that dcap-qvl then ignores.
    let mut t = q.clone();
    t[632] += 1;
    assert_eq!(
        parse_quote(&t),
        Err(TdxError::AuthDataLength {
            field: "auth data",
            declared: 4301,
            actual: 4300
        })
    );
    // Same for the QE report certification data size (u32 at 632 + 4 + 130).
    let mut t = q.clone();
    t[632 + 4 + 130] += 1;
    assert!(matches!(
        parse_quote(&t),
        Err(TdxError::AuthDataLength { .. } | TdxError::Parse(_))
    ));
}
