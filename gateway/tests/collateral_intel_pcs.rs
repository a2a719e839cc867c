//! The TDX collateral fetcher on the Intel PCS route, against two stand-ins (Intel's
//! services cannot be reached from a test): one plays Intel's PCS v4 API (`pckcrl`, the
//! TDX `tcb` and `qe/identity`, issuer chains percent-encoded in their headers), which
//! has no root CA CRL resource; the other plays the CRL distribution point of Intel's SGX
//! Root CA (`/IntelSGXRootCA.der`, DER). Both serve the recorded collateral of
//! `../shared/evidence/tdx`. The fetched collateral travels in the evidence and verifies
//! the recorded quote at a time inside its window; without the distribution point the
//! PCS route cannot complete, and nothing fetched is trusted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use attest::evidence::{Base64, TeeEvidence};
use gateway::attestation::collateral::Collateral;
use gateway::config::Config;
use testkit::collateral::{intel_pcs_routes, root_ca_crl_routes, StandIn};

/// 2025-07-01T00:00:00Z, inside the recorded collateral's window.
fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_328_000)
}

struct Recorded {
    quote: Vec<u8>,
    collateral: Vec<u8>,
}

fn recorded() -> Option<Recorded> {
    let dir = testkit::evidence::dir("tdx")?;
    Some(Recorded {
        quote: std::fs::read(dir.join("tdx_quote")).expect("quote"),
        collateral: std::fs::read(dir.join("tdx_quote_collateral.json")).expect("collateral"),
    })
}

fn intel_pcs(collateral: &[u8]) -> StandIn {
    StandIn::start(
        "intel-pcs-stand-in",
        intel_pcs_routes(collateral, "B0C06F000000", "platform").expect("PCS routes"),
    )
    .expect("Intel PCS stand-in")
}

fn distribution_point(collateral: &[u8]) -> StandIn {
    StandIn::start(
        "crl-distribution-point-stand-in",
        root_ca_crl_routes(collateral).expect("CRL routes"),
    )
    .expect("CRL distribution point stand-in")
}

/// verigated's configuration, `[attestation]` lines added.
fn config(attestation: &str, data_dir: &Path) -> Config {
    let text = format!(
        "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\n\
         data_dir = \"{}\"\n\n[attestation]\n{attestation}",
        data_dir.display()
    );
    Config::parse(&text, &data_dir.join("verigated.toml")).expect("config")
}

/// The collateral the fetcher puts into TDX evidence that has none.
fn complete(config: &Config, data_dir: &Path, quote: &[u8]) -> Option<Vec<u8>> {
    let collateral = Arc::new(Collateral::new(&config.attestation.collateral, data_dir));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tee = runtime.block_on(collateral.complete(TeeEvidence::Tdx {
        report: Base64(quote.to_vec()),
        collateral: None,
    }));
    match tee {
        TeeEvidence::Tdx { collateral, .. } => collateral.map(|c| c.0),
        other => panic!("TDX evidence became {other:?}"),
    }
}

#[test]
fn the_intel_pcs_route_assembles_collateral_that_verifies_the_recorded_quote() {
    let Some(r) = recorded() else { return };
    let pcs = intel_pcs(&r.collateral);
    let dp = distribution_point(&r.collateral);
    let dir = tempfile::tempdir().expect("tempdir");
    let root_url = format!("{}/IntelSGXRootCA.der", dp.url());
    let config = config(
        &format!(
            "pccs_url = \"{}\"\nroot_ca_crl_url = \"{root_url}\"\n",
            pcs.url()
        ),
        dir.path(),
    );
    assert_eq!(config.attestation.collateral.root_ca_crl_url, root_url);

    let fetched = complete(&config, dir.path(), &r.quote).expect("collateral fetched");
    let v = attest::tee::tdx::verify(&r.quote, &fetched, at(), &[]).expect("verifies");
    assert_eq!(v.tcb_status, "UpToDate");
    assert_eq!(hex::encode_upper(v.fmspc), "B0C06F000000");
    // The same root CA CRL as recorded, though it came as DER from the distribution
    // point rather than as a PCCS's hex.
    let fetched_json: serde_json::Value = serde_json::from_slice(&fetched).expect("json");
    let recorded_json: serde_json::Value = serde_json::from_slice(&r.collateral).expect("json");
    assert_eq!(fetched_json["root_ca_crl"], recorded_json["root_ca_crl"]);

    // The PCS was asked exactly its three v4 resources, once each; the root CA CRL came
    // from the distribution point.
    let mut asked = pcs.requests();
    asked.sort();
    assert_eq!(
        asked,
        [
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/tdx/certification/v4/qe/identity?update=standard",
            "/tdx/certification/v4/tcb?fmspc=B0C06F000000",
        ]
    );
    assert_eq!(dp.requests(), ["/IntelSGXRootCA.der"]);
    assert!(dir.path().join("collateral/tdx-B0C06F000000.json").exists());
}

#[test]
fn without_the_distribution_point_the_pcs_route_yields_no_collateral() {
    let Some(r) = recorded() else { return };
    let pcs = intel_pcs(&r.collateral);
    let dir = tempfile::tempdir().expect("tempdir");
    // A PCS base URL that is not Intel's is taken for a PCCS, which serves the root CA
    // CRL itself; Intel's PCS does not, so nothing is assembled and the evidence goes
    // without (the verifier then fails closed).
    let config = config(&format!("pccs_url = \"{}\"\n", pcs.url()), dir.path());
    assert_eq!(
        config.attestation.collateral.root_ca_crl_url,
        format!("{}/sgx/certification/v4/rootcacrl", pcs.url())
    );
    assert_eq!(complete(&config, dir.path(), &r.quote), None);
    assert!(pcs
        .requests()
        .contains(&"/sgx/certification/v4/rootcacrl".to_string()));
}

#[test]
fn a_root_ca_crl_changed_on_its_way_is_assembled_but_fails_verification() {
    let Some(r) = recorded() else { return };
    let pcs = intel_pcs(&r.collateral);
    // The distribution point serves the recorded CRL with one byte of its signature
    // flipped (the last byte of the DER).
    let mut routes = root_ca_crl_routes(&r.collateral).expect("routes");
    let crl = routes.get_mut("/IntelSGXRootCA.der").expect("route");
    if let Some(last) = crl.body.last_mut() {
        *last ^= 0x01;
    }
    let dp = StandIn::start("crl-distribution-point-stand-in", routes).expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        &format!(
            "pccs_url = \"{}\"\nroot_ca_crl_url = \"{}/IntelSGXRootCA.der\"\n",
            pcs.url(),
            dp.url()
        ),
        dir.path(),
    );
    let fetched = complete(&config, dir.path(), &r.quote).expect("assembled");
    let e = attest::tee::tdx::verify(&r.quote, &fetched, at(), &[]).expect_err("tampered CRL");
    assert_eq!(e.step(), attest::tee::tdx::TdxStep::Signature, "{e}");
}
