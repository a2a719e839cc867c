#![no_main]
//! PCS and PCCS responses come from the network: split the input into the parts of a
//! set of responses; assembling them, decoding issuer-chain headers and root CA CRLs, and
//! reading the nextUpdate of whatever assembled must give an answer, never a panic.
use attest::tee::tdx::pcs::{self, PcsResponses};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    let text = |i: usize| String::from_utf8_lossy(part(i)).into_owned();
    let _ = pcs::decode_issuer_chain("SGX-PCK-CRL-Issuer-Chain", part(0));
    let root = pcs::root_ca_crl_der(part(1)).unwrap_or_default();
    let responses = PcsResponses {
        pck_crl: part(2).to_vec(),
        pck_crl_issuer_chain: text(3),
        root_ca_crl: root,
        tcb_info: part(4).to_vec(),
        tcb_info_issuer_chain: text(5),
        qe_identity: part(6).to_vec(),
        qe_identity_issuer_chain: text(7),
    };
    if let Ok(json) = pcs::assemble(&responses) {
        let _ = pcs::next_update(&json);
    }
    let _ = pcs::next_update(data);
});
