#![no_main]
//! Evidence JSON comes from the network, snapshot and whitelist JSON from files a user
//! passes: parsing must never panic, what parses must serialize and parse back to the
//! same value, and verifying whatever parsed (which decodes the TEE report, the quote,
//! its key and signature, and the IMA log) must give one check per name, never a panic.
use attest::binding::Nonce;
use attest::evidence::Evidence;
use attest::snapshot::{FileIndex, Snapshot};
use attest::verify::{names, verify, Expectations};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let snapshot = Snapshot::from_json(data).ok();
    if let Some(s) = &snapshot {
        let again = Snapshot::from_json(&s.to_json()).expect("own snapshot output parses");
        assert_eq!(&again, s);
    }
    let whitelist = FileIndex::from_whitelist_json(data).ok();
    if let Ok(evidence) = Evidence::from_json(data) {
        let again = Evidence::from_json(&evidence.to_json()).expect("own output parses");
        assert_eq!(again, evidence);
        let mut expect = Expectations::new(
            Nonce(evidence.nonce.0),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_328_000),
        );
        expect.snapshot = snapshot.as_ref();
        expect.whitelist = whitelist.as_ref();
        expect.endpoint_cert_sha256 = evidence.manifest.entries().first().map(|e| e.cert_sha256);
        expect.allow_simulated_tee = true;
        let checks = verify(&evidence, &expect);
        let got: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got, names::ALL);
    }
});
