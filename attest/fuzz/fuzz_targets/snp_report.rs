#![no_main]
//! SEV-SNP parsers over untrusted bytes: the report parser, and the host's certificate
//! table (the extended-report / configfs-tsm auxblob). Neither may panic.
use attest::tee::snp::{self, cert_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = snp::parse_report(data) {
        let _ = report.endorsement_kind();
        let _ = report.cpuid_product();
        let _ = snp::check_guest_policy(&report);
        for product in snp::Product::ALL {
            let _ = snp::TcbVersion::decode(report.reported_tcb, product);
        }
    }
    if let Ok(entries) = cert_table::parse_cert_table(data) {
        let certs = cert_table::certs_from_table(&entries);
        if let Some(pem) = certs.chain_pem {
            let _ = snp::pem_certificates(&pem);
        }
    }
    let _ = snp::pem_certificates(data);
});
