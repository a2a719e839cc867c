#![no_main]
//! Evidence JSON comes from the network: parsing it must never panic, and what parses
//! must serialize and parse back to the same value.
use attest::evidence::Evidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_json(data) {
        let again = Evidence::from_json(&evidence.to_json()).expect("own output parses");
        assert_eq!(again, evidence);
        let _ = evidence.manifest.digest();
        let _ = attest::snapshot::Snapshot::from_json(data);
    }
});
