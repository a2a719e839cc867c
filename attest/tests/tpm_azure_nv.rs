//! Azure's vTPM interface on swtpm: the test plays the paravisor (a stand-in, since no
//! paravisor runs here). It defines NV index 0x01400001 holding the recorded HCL report
//! of `../shared/evidence/azure` and NV index 0x01400002 for the user-data, and creates
//! an AK at 0x81000003; the guest side (the collection code) writes its report_data as
//! user-data, reads the HCL report back whole and quotes PCR 10 with SHA-256(report_data).
//! A real paravisor would refresh the HCL report after the write; the recorded one
//! cannot, so its user-data stays the recorded zeros, and the test says so.
//!
//! swtpm (libtpms) caps an NV index at 2048 bytes (MAX_NV_INDEX_SIZE), below the 2600 of
//! Azure's index and the 2346 the recorded report uses, so the stand-in index holds the
//! report's first 2048 bytes: the guest reads them back whole (in the TPM's chunks), and
//! the parser refuses the cut report, naming where it ends; the whole report's parse
//! and verification are tested on the file itself (`tee_azure`).
#![cfg(feature = "tpm-collect")]

use attest::tee::azure;
use attest::tee::azure::hcl::{self, HardwareKind};
use attest::tpm::collect::Tpm;
use attest::tpm::nv::{AZURE_AK_HANDLE, AZURE_HCL_REPORT_INDEX, AZURE_USER_DATA_INDEX};
use attest::tpm::quote;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use testkit::swtpm::Swtpm;

fn recorded_hcl_report() -> Option<Vec<u8>> {
    Some(testkit::evidence::azure_snp()?.report)
}

/// libtpms's MAX_NV_INDEX_SIZE.
const SWTPM_MAX_NV_INDEX: usize = 2048;

#[test]
fn the_guest_writes_user_data_reads_the_hcl_report_and_quotes_with_the_azure_ak() {
    if !testkit::require_programs(&["swtpm"], testkit::require::install::SWTPM) {
        return;
    }
    let Some(report) = recorded_hcl_report() else {
        return;
    };
    let sw = Swtpm::start().expect("swtpm starts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");

    // The paravisor stand-in: its NV indices and its AK.
    assert!(!tpm.nv_exists(AZURE_HCL_REPORT_INDEX).expect("capability"));
    let stored = &report[..SWTPM_MAX_NV_INDEX];
    tpm.nv_define(AZURE_HCL_REPORT_INDEX, stored.len())
        .expect("define 0x01400001");
    tpm.nv_write(AZURE_HCL_REPORT_INDEX, stored)
        .expect("write the recorded HCL report");
    tpm.nv_define(AZURE_USER_DATA_INDEX, 64)
        .expect("define 0x01400002");
    let ak_public = tpm
        .attestation_key(AZURE_AK_HANDLE)
        .expect("AK at 0x81000003");

    // The guest: what `auto` looks for, then the binding's steps.
    assert!(tpm.nv_exists(AZURE_HCL_REPORT_INDEX).expect("capability"));
    let report_data = [0x5au8; 64];
    tpm.nv_write(AZURE_USER_DATA_INDEX, &report_data)
        .expect("write user-data");
    assert_eq!(
        tpm.nv_read(AZURE_USER_DATA_INDEX).expect("read user-data"),
        report_data
    );
    let read_back = tpm
        .nv_read(AZURE_HCL_REPORT_INDEX)
        .expect("read HCL report");
    assert_eq!(read_back, stored, "the index reads back whole, in chunks");
    match hcl::parse(&read_back) {
        Err(hcl::HclError::Truncated(t)) => assert_eq!(t.field, "runtime data"),
        other => panic!("a cut HCL report must be refused as truncated: {other:?}"),
    }
    // The recorded report cannot carry this user-data: a real paravisor refreshes it.
    let parsed = hcl::parse(&report).expect("the whole recorded report");
    assert_eq!(parsed.kind, HardwareKind::SevSnp);
    let runtime = azure::check_runtime(&parsed, &parsed.report_data().expect("report_data"))
        .expect("runtime data");
    assert_eq!(runtime.user_data, [0u8; 64]);

    let qualifying = Sha256::digest(report_data);
    let q = tpm.quote(&qualifying, &[10]).expect("quote PCR 10");
    assert_eq!(q.ak_public, ak_public);
    quote::verify(&ak_public, &q.attest, &q.signature, &q.pcrs, &qualifying)
        .expect("the quote verifies under the AK at 0x81000003");
}

/// The guest side alone, on an swtpm that plays no paravisor: the user-data index is
/// defined by the guest when missing, and a report that never carries the user-data, a
/// garbage index and a missing AK are errors that say so (nothing is created at
/// 0x81000003).
#[test]
fn without_a_paravisor_the_hcl_report_is_refused_naming_why() {
    if !testkit::require_programs(&["swtpm"], testkit::require::install::SWTPM) {
        return;
    }
    let sw = Swtpm::start().expect("swtpm starts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
    assert_eq!(
        tpm.azure_hardware().expect("probe"),
        None,
        "no index: not Azure"
    );
    let e = tpm
        .existing_attestation_key(AZURE_AK_HANDLE, "the paravisor's")
        .expect_err("nothing at 0x81000003");
    assert!(
        e.to_string()
            .contains("no key at persistent handle 0x81000003"),
        "{e}"
    );
    assert!(
        !tpm.nv_exists(AZURE_AK_HANDLE).expect("capability"),
        "not created"
    );

    // An index of garbage: found, and refused as not an HCL report.
    tpm.nv_define(AZURE_HCL_REPORT_INDEX, 64).expect("define");
    tpm.nv_write(AZURE_HCL_REPORT_INDEX, &[0xee; 64])
        .expect("write garbage");
    assert!(matches!(
        tpm.azure_hardware(),
        Err(attest::tpm::nv::HclCollectError::Hcl(
            hcl::HclError::NotHcl { .. }
        ))
    ));
    let e = tpm.azure_hcl_report(&[1; 64]).expect_err("garbage");
    assert!(e.to_string().contains("not an HCL report"), "{e}");
    assert!(
        tpm.nv_exists(AZURE_USER_DATA_INDEX).expect("capability"),
        "the guest defined the user-data index, as Azure's tooling does"
    );
    assert_eq!(tpm.nv_read(AZURE_USER_DATA_INDEX).expect("read"), [1; 64]);
}

/// An HCL report that nobody refreshes keeps its user-data: after the reads, the guest
/// refuses it. (The recorded report does not fit libtpms's index whole, so the stuck
/// report is one made for the test.)
#[test]
fn a_report_that_keeps_its_user_data_is_refused_after_the_reads() {
    if !testkit::require_programs(&["swtpm"], testkit::require::install::SWTPM) {
        return;
    }
    let sw = Swtpm::start().expect("swtpm starts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
    let stuck = minimal_hcl_report(&[0; 64]);
    tpm.nv_define(AZURE_HCL_REPORT_INDEX, stuck.len())
        .expect("define");
    tpm.nv_write(AZURE_HCL_REPORT_INDEX, &stuck).expect("write");
    assert_eq!(
        tpm.azure_hardware().expect("probe"),
        Some(HardwareKind::SevSnp)
    );
    let e = tpm.azure_hcl_report(&[9; 64]).expect_err("stuck");
    match &e {
        attest::tpm::nv::HclCollectError::UserDataNotApplied {
            wrote,
            got,
            attempts,
        } => {
            assert_eq!(wrote, &"09".repeat(64));
            assert_eq!(got, &"00".repeat(64));
            assert_eq!(*attempts, attest::tpm::nv::HCL_READ_ATTEMPTS);
        }
        other => panic!("{other}"),
    }
    assert!(
        e.to_string().contains("the paravisor did not refresh it"),
        "{e}"
    );
}

/// An HCL report (SEV-SNP, unsigned: only its layout and runtime data matter here) whose
/// runtime data names a made-up RSA key and carries `user_data`.
fn minimal_hcl_report(user_data: &[u8; 64]) -> Vec<u8> {
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
    let json = format!(
        r#"{{"keys":[{{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"{n}"}}],"user-data":"{}"}}"#,
        hex::encode_upper(user_data)
    )
    .into_bytes();
    let len = u32::try_from(json.len()).expect("small");
    let mut out = b"HCLA".to_vec();
    for v in [2u32, 1216 + 20 + len, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&[0; 1184]);
    for v in [20 + len, 1, 2, 1, len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&json);
    out
}

/// A user-data index someone else defined, too small or not writable by the owner:
/// the write is refused naming the index's size, or with the TPM's own response code
/// (not a bare "invalid parameter").
#[test]
fn a_user_data_index_that_cannot_take_the_write_is_named() {
    if !testkit::require_programs(
        &["swtpm", "tpm2_nvdefine"],
        testkit::require::install::SWTPM,
    ) {
        return;
    }
    use attest::tpm::collect::CollectError;
    use attest::tpm::nv::HclCollectError;
    let sw = Swtpm::start().expect("swtpm starts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");

    tpm.nv_define(AZURE_USER_DATA_INDEX, 32).expect("define");
    let e = tpm.azure_hcl_report(&[1; 64]).expect_err("32 bytes");
    assert!(
        matches!(
            e,
            HclCollectError::Tpm(CollectError::NvTooSmall {
                handle: AZURE_USER_DATA_INDEX,
                size: 32,
                needed: 64
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("0x01400002 holds 32 bytes"), "{e}");
    // Refused before any write: the index is still unwritten.
    assert!(tpm.nv_read(AZURE_USER_DATA_INDEX).is_err());
    drop(tpm);

    // An index only its own (empty) password may write: the TPM refuses the owner.
    const ELSEWHERE: u32 = 0x0150_0000;
    let out = std::process::Command::new("tpm2_nvdefine")
        .args([
            "0x01500000",
            "-C",
            "o",
            "-s",
            "64",
            "-a",
            "authread|authwrite",
        ])
        .env("TPM2TOOLS_TCTI", sw.tcti())
        .output()
        .expect("run tpm2_nvdefine");
    assert!(out.status.success(), "{out:?}");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens again");
    let e = tpm
        .nv_write(ELSEWHERE, &[1; 64])
        .expect_err("not owner-writable");
    assert!(
        matches!(
            &e,
            CollectError::Tpm {
                source: tss_esapi::Error::Tss2Error(_),
                ..
            }
        ),
        "the TPM's response code is kept: {e:?}"
    );
}
