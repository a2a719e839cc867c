#![no_main]
//! The TDX quote parser (dcap-qvl's decoder behind verigate's length, padding and PEM
//! chain checks) over untrusted bytes: it may refuse, never panic.
use attest::tee::tdx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = tdx::parse_quote(data) {
        let _ = tdx::check_td_attributes(&quote.td, false);
    }
    let _ = tdx::check_pem_chain("fuzz", data);
    let _ = tdx::parse_collateral(data);
});
