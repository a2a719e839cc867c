//! The VCEK of an Azure SEV-SNP VM from Azure's certification endpoint (THIM, on the
//! instance metadata service), through `Collateral` with `VcekSource::AzureImds`, the
//! source the Attester takes on Azure.
//!
//! IMDS cannot run here: the service is a stand-in (`testkit::collateral::thim_routes`),
//! a real HTTP server that refuses a request without `Metadata: true` with 400, as IMDS
//! does. No recording of a THIM answer exists in `shared/evidence`, so its JSON uses the
//! field names Azure documents (`vcekCert`, `certificateChain`, `tcbm`, `cacheControl`);
//! the certificates in it are the real recorded ones, and what comes back is verified
//! against the pinned AMD root.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use attest::evidence::{Base64, TeeEvidence};
use attest::tee::snp::SnpCerts;
use gateway::attestation::collateral::{Collateral, VcekSource};
use gateway::config::collateral::CollateralConfig;
use testkit::collateral::{thim_routes, StandIn, IMDS_HEADER, THIM_PATH};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn collateral_from(thim: &StandIn, data_dir: &std::path::Path) -> Arc<Collateral> {
    Arc::new(Collateral::with_vcek_source(
        &CollateralConfig::default(),
        data_dir,
        VcekSource::AzureImds(thim.url()),
    ))
}

/// The recorded Azure evidence: the HCL report and its chip's VCEK (PEM).
fn recorded_azure() -> Option<(Vec<u8>, String)> {
    let r = testkit::evidence::azure_snp()?;
    Some((r.report, String::from_utf8(r.vcek).expect("PEM is text")))
}

#[test]
fn an_azure_hcl_report_gets_its_vcek_chain_from_thim() {
    let (Some((hcl_report, vcek_pem)), Some(snp)) =
        (recorded_azure(), testkit::evidence::dir("snp"))
    else {
        return;
    };
    let chain = std::fs::read_to_string(snp.join("milan-ask-ark.pem")).expect("chain");
    let thim = StandIn::start_requiring(
        "thim-stand-in",
        thim_routes(&vcek_pem, &chain, "DB18000000000004"),
        Some(IMDS_HEADER),
    )
    .expect("THIM stand-in");
    let data = tempfile::tempdir().expect("tempdir");
    let collateral = collateral_from(&thim, data.path());
    let completed = runtime().block_on(collateral.complete(TeeEvidence::AzureSevSnp {
        hcl_report: Base64(hcl_report.clone()),
        cert_chain: None,
    }));
    let TeeEvidence::AzureSevSnp {
        cert_chain: Some(cert_chain),
        ..
    } = completed
    else {
        panic!("no VCEK chain from THIM: {completed:?}");
    };
    assert_eq!(thim.requests(), vec![THIM_PATH.to_string()]);
    // What came back verifies the HCL report to the pinned AMD ARK, as a verifier does.
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000);
    let certs = SnpCerts {
        vcek_or_vlek: None,
        chain_pem: Some(cert_chain.0),
    };
    attest::tee::azure::verify_snp(&hcl_report, &certs, at).expect("the chain verifies");
    // Cached on disk under the chip and TCB, so a restart asks THIM no more.
    let cached = std::fs::read_dir(data.path().join("collateral"))
        .expect("cache folder")
        .count();
    assert_eq!(cached, 1);
}

#[test]
fn a_bare_snp_report_with_the_azure_source_asks_thim_not_kds() {
    let Some(snp) = testkit::evidence::dir("snp") else {
        return;
    };
    let report = std::fs::read(snp.join("milan-report.bin")).expect("report");
    let vcek = std::fs::read(snp.join("milan-vcek.der")).expect("vcek");
    let chain = std::fs::read_to_string(snp.join("milan-ask-ark.pem")).expect("chain");
    let thim = StandIn::start_requiring(
        "thim-stand-in",
        thim_routes(&attest::pem::der_to_pem(&vcek), &chain, "0300000000000873"),
        Some(IMDS_HEADER),
    )
    .expect("THIM stand-in");
    let data = tempfile::tempdir().expect("tempdir");
    let collateral = collateral_from(&thim, data.path());
    let completed = runtime().block_on(collateral.complete(TeeEvidence::SevSnp {
        report: Base64(report.clone()),
        cert_chain: None,
    }));
    let TeeEvidence::SevSnp {
        cert_chain: Some(cert_chain),
        ..
    } = completed
    else {
        panic!("no VCEK chain from THIM: {completed:?}");
    };
    let certs = SnpCerts {
        vcek_or_vlek: None,
        chain_pem: Some(cert_chain.0),
    };
    attest::tee::snp::verify(&report, &certs, SystemTime::now()).expect("the chain verifies");
}

#[test]
fn a_thim_answer_without_vcek_cert_leaves_the_evidence_without_and_is_counted() {
    let Some((hcl_report, _)) = recorded_azure() else {
        return;
    };
    let mut routes = thim_routes("", "", "");
    if let Some(r) = routes.get_mut(THIM_PATH) {
        r.body = br#"{"tcbm":"DB18000000000004","certificateChain":"x"}"#.to_vec();
    }
    let thim = StandIn::start_requiring("thim-stand-in", routes, Some(IMDS_HEADER))
        .expect("THIM stand-in");
    let data = tempfile::tempdir().expect("tempdir");
    let collateral = collateral_from(&thim, data.path());
    let completed = runtime().block_on(collateral.complete(TeeEvidence::AzureSevSnp {
        hcl_report: Base64(hcl_report),
        cert_chain: None,
    }));
    assert!(
        matches!(
            completed,
            TeeEvidence::AzureSevSnp {
                cert_chain: None,
                ..
            }
        ),
        "{completed:?}"
    );
    let metrics = collateral.render_metrics();
    assert!(
        metrics.contains("verigated_collateral_fetch_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verigated_collateral_missing_total 1"),
        "{metrics}"
    );
}

#[test]
fn the_stand_in_refuses_a_request_without_the_metadata_header() {
    // The stand-in's own rule, checked with a plain client, so the tests above prove
    // that verigated sends the header.
    let thim = StandIn::start_requiring(
        "thim-stand-in",
        thim_routes("v", "c", "t"),
        Some(IMDS_HEADER),
    )
    .expect("THIM stand-in");
    let url = format!("{}{THIM_PATH}", thim.url());
    let e = runtime()
        .block_on(gateway::attestation::collateral::http::get(
            &url,
            &[],
            Duration::from_secs(5),
        ))
        .expect_err("400 without Metadata: true");
    assert!(e.to_string().contains("400"), "{e}");
    runtime()
        .block_on(gateway::attestation::collateral::http::get(
            &url,
            &[("Metadata", "true")],
            Duration::from_secs(5),
        ))
        .expect("200 with it");
}
