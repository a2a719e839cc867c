#![no_main]
//! The TDX quote parser (dcap-qvl's decoder behind verigate's length, padding and PEM
//! chain checks) and the quote's own signature chain over untrusted bytes: they may
//! refuse, never panic.
use attest::tee::tdx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = tdx::parse_quote(data) {
        let _ = tdx::check_td_attributes(&quote.td, false);
        // A time inside the recorded PCK certificates' validity, so every link is reached.
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_751_328_000);
        let _ = tdx::chain::verify(data, at);
    }
    let _ = tdx::check_pem_chain("fuzz", data);
    let _ = tdx::parse_collateral(data);
});
