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
use sha2::{Digest, Sha256};
use testkit::swtpm::Swtpm;

fn recorded_hcl_report() -> Option<Vec<u8>> {
    let d = testkit::evidence::dir("azure")?;
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("snp-vtpm-evidence.json")).expect("read"))
            .expect("JSON");
    Some(
        j["report"]
            .as_array()
            .expect("list")
            .iter()
            .map(|b| u8::try_from(b.as_u64().expect("number")).expect("byte"))
            .collect(),
    )
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
