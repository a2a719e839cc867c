//! Fuzzes the binary IMA list parser with untrusted bytes: it must never panic, and
//! whatever it accepts must serialize back to the very same bytes (the parser keeps
//! nothing it cannot reproduce) and replay without panicking in every bank.
#![no_main]
use attest::ima::{binary, replay, HashAlg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the template-hash algorithm, so all four sizes get explored.
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let alg = HashAlg::ALL[usize::from(selector % 4)];
    if let Ok(entries) = binary::parse(bytes, alg) {
        assert_eq!(binary::serialize(&entries), bytes);
        let _ = replay::check_all(&entries);
        for bank in HashAlg::ALL {
            assert_eq!(replay::replay(&entries, bank).len(), bank.size());
        }
    }
});
