//! Fuzzes the ASCII IMA list parser with untrusted text: it must never panic, and what
//! it accepts must survive a trip through the ASCII and the binary writers unchanged.
#![no_main]
use attest::ima::{ascii, binary, replay, HashAlg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = ascii::parse(text) {
        // The ASCII list cannot hold a path with a newline; the parser never produces one.
        assert_eq!(
            ascii::parse(&ascii::serialize(&entries)).as_ref(),
            Ok(&entries)
        );
        if let Some(first) = entries.first() {
            let alg = first.template_hash_alg();
            if entries.iter().all(|e| e.template_hash_alg() == alg) {
                let bin = binary::serialize(&entries);
                assert_eq!(binary::parse(&bin, alg).as_ref(), Ok(&entries));
            }
        }
        let _ = replay::check(&entries);
        let _ = replay::replay(&entries, HashAlg::Sha256);
    }
});
