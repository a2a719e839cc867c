//! verigated on an Azure confidential VM, as far as one can run here: swtpm behind the
//! **paravisor stand-in** of `testkit::paravisor` (no paravisor runs outside Azure), and
//! a **THIM stand-in** for Azure's instance metadata service.
//!
//! What is real: verigated's whole Azure collection path. `tee = "auto"` finds NV index
//! 0x01400001 on the TPM; each round writes its report_data to 0x01400002 (defining it),
//! reads the refreshed HCL report back and checks its user-data, quotes PCR 10 with the
//! persisted HCL AK at 0x81000003 and qualifying data SHA-256(report_data), and fetches
//! the VCEK from the THIM stand-in into the evidence.
//!
//! On TDX the same runs with a stand-in TD report, a quote-service stand-in (IMDS
//! `/acc/tdquote`) and a PCS stand-in for the quote's collateral.
//!
//! What is not: the SEV-SNP report in the HCL report is signed by the stand-in's VCEK,
//! not an AMD chip. So the verifier's chain check must refuse it at AMD's pinned root,
//! and this test asserts exactly that failure; every link after the hardware signature
//! (runtime-data hash, user-data = the binding of the nonce sent, the quote under
//! HCLAkPub) is checked here on the evidence. The chain from AMD's root through real
//! HCL reports is proven on the recorded evidence (`attest/tests/verify_azure.rs`,
//! `tee_azure.rs`).

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use attest::binding::{self, Nonce};
use attest::check::Verdict;
use attest::evidence::{Evidence, TeeEvidence};
use attest::tee::azure::{self, hcl::HardwareKind, hcl::HclReport};
use attest::tee::snp::SnpError;
use attest::tpm::quote::{self, AkPublic};
use attest::verify::{self, names, Expectations, TeeOptions};
use common::*;
use testkit::collateral::{thim_routes, StandIn, IMDS_HEADER, THIM_PATH};
use testkit::paravisor::{self, HclMaker, ParavisorStandIn, TdQuoteStandIn};
use testkit::swtpm::Swtpm;

fn tools() -> bool {
    testkit::require_programs(
        &[
            "swtpm",
            "tpm2_createprimary",
            "tpm2_evictcontrol",
            "tpm2_flushcontext",
        ],
        testkit::require::install::SWTPM,
    )
}

/// A data dir holding an empty IMA log (PCR 10 of a fresh swtpm holds no extends either).
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ima.log"), b"").expect("IMA log");
    dir
}

/// The `[attestation]` lines for `tee` on the TPM `tcti`, then `extra` lines.
fn attestation(tee: &str, tcti: &str, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "tee = \"{tee}\"\ntpm = \"{tcti}\"\nima_log = \"{}\"\n{extra}",
        dir.join("ima.log").display()
    )
}

/// swtpm provisioned by the paravisor stand-in, the stand-in in front of it, and the
/// THIM stand-in serving the stand-in VCEK.
struct AzureVm {
    maker: Arc<HclMaker>,
    paravisor: ParavisorStandIn,
    thim: StandIn,
    dir: tempfile::TempDir,
    _tpm: Swtpm,
}

impl AzureVm {
    fn new() -> AzureVm {
        let tpm = Swtpm::start().expect("swtpm");
        let maker = Arc::new(paravisor::provision(&tpm).expect("paravisor stand-in provisions"));
        let paravisor = ParavisorStandIn::start(&tpm, maker.clone()).expect("paravisor stand-in");
        let thim = StandIn::start_requiring(
            "thim-stand-in",
            thim_routes(&maker.vcek_pem, "", "0300000000000873"),
            Some(IMDS_HEADER),
        )
        .expect("THIM stand-in");
        let dir = data_dir();
        AzureVm {
            maker,
            paravisor,
            thim,
            dir,
            _tpm: tpm,
        }
    }

    fn attestation(&self, tee: &str) -> String {
        attestation(
            tee,
            &self.paravisor.tcti(),
            self.dir.path(),
            &format!("azure_imds_url = \"{}\"\n", self.thim.url()),
        )
    }

    fn start(&self, tee: &str) -> Gateway {
        Gateway::start_with_attestation(self.dir.path(), "", "", &[], &self.attestation(tee))
    }

    fn evidence(&self, gw: &Gateway, nonce: Nonce) -> Evidence {
        let (status, body) = gw.get(&format!("/v1/attestation?nonce={}", nonce.to_hex()));
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}\n{}", gw.log());
        Evidence::from_json(body.as_bytes()).expect("evidence")
    }
}

/// Every link of the chain after the hardware report's signature, on `evidence` for
/// `nonce` whose HCL report is `report`: its report_data holds SHA-256 of the runtime
/// data; the runtime data's user-data is the binding of the nonce sent; the TPM quote (PCR
/// 10 included) has extraData SHA-256(report_data) and comes from HCLAkPub.
fn links_after_the_hardware_signature(evidence: &Evidence, report: &HclReport, nonce: Nonce) {
    let runtime = azure::check_runtime(report, &report.report_data().expect("report_data"))
        .expect("report_data holds SHA-256 of the runtime data");
    let tpm = evidence.tpm.as_ref().expect("a quote");
    let expected = evidence
        .freshness(&nonce)
        .expect("inclusion proof")
        .report_data(
            &evidence.manifest.digest(),
            &binding::ak_digest(Some(&tpm.ak_public.0)),
        );
    assert_eq!(
        runtime.user_data, expected,
        "the user-data is the binding of the nonce sent"
    );
    quote::verify(
        &tpm.ak_public.0,
        &tpm.quote.0,
        &tpm.signature.0,
        &tpm.pcrs,
        &binding::tpm_qualifying(&expected),
    )
    .expect("the quote's extraData is SHA-256(report_data)");
    assert!(AkPublic::from_tpmt(&tpm.ak_public.0)
        .expect("AK")
        .is_rsa_key(&runtime.ak_pub));
    assert!(tpm.pcrs.get(attest::hash::HashAlg::Sha256, 10).is_some());
}

#[test]
fn auto_finds_azure_and_the_evidence_binds_the_nonce_up_to_the_stand_in_signature() {
    if !tools() {
        return;
    }
    let vm = AzureVm::new();
    let gw = vm.start("auto");
    gw.wait_for_log("tee = auto: the SEV-SNP HCL report in NV index 0x01400001");
    let nonce = Nonce([0x3c; 32]);
    let evidence = vm.evidence(&gw, nonce);

    // The evidence as verigated assembled it: the HCL report, the VCEK from THIM, the
    // quote with the paravisor's AK.
    let TeeEvidence::AzureSevSnp {
        hcl_report,
        cert_chain,
    } = &evidence.tee
    else {
        panic!("not azure-sev-snp: {:?}", evidence.tee.kind());
    };
    let vcek = cert_chain
        .as_ref()
        .expect("the VCEK from the THIM stand-in");
    assert_eq!(
        vcek.0,
        format!("{}\n", vm.maker.vcek_pem.trim_end()).into_bytes()
    );
    assert_eq!(vm.thim.requests(), vec![THIM_PATH.to_string()]);
    let tpm = evidence.tpm.as_ref().expect("a quote");
    assert_eq!(
        tpm.ak_public.0, vm.maker.ak_public,
        "quoted with 0x81000003"
    );

    // Every link after the hardware signature, on the evidence as received.
    let report = azure::parse_expecting(&hcl_report.0, HardwareKind::SevSnp).expect("HCL");
    links_after_the_hardware_signature(&evidence, &report, nonce);

    // The verifier stops exactly at the stand-in's signature: its VCEK does not chain to
    // AMD's pinned root.
    let now = SystemTime::now();
    let e = verify::verify_tee(
        &evidence.tee,
        &TeeOptions {
            snp_certs: None,
            tdx_collateral: None,
            allowed_tdx_tcb_statuses: &[],
            at: now,
        },
    )
    .expect_err("a stand-in VCEK must not verify");
    assert!(
        matches!(
            e,
            verify::TeeError::Azure(azure::AzureError::Snp(SnpError::UntrustedIssuer { .. }))
        ),
        "{e}"
    );
    let checks = verify::verify(&evidence, &Expectations::new(nonce, now));
    assert_eq!(Verdict::of(&checks), Verdict::Fail);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    let detail = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    };
    assert!(failed.contains(&names::TEE), "{failed:?}");
    assert!(
        detail(names::TEE).contains("no pinned AMD ARK issues an intermediate")
            && detail(names::TEE).contains("stand-in paravisor"),
        "{}",
        detail(names::TEE)
    );
    // What depends on the hardware signature fails because of it, and says so.
    assert!(
        detail(names::BINDING).contains("the TEE report did not verify"),
        "{}",
        detail(names::BINDING)
    );
    assert!(
        detail(names::TPM_QUOTE).contains("the HCL report did not verify"),
        "{}",
        detail(names::TPM_QUOTE)
    );

    // A second round gets a fresh report for its own nonce.
    let again = vm.evidence(&gw, Nonce([0x3d; 32]));
    let TeeEvidence::AzureSevSnp { hcl_report: h2, .. } = &again.tee else {
        panic!("not azure-sev-snp");
    };
    assert_ne!(h2.0, hcl_report.0);
}

/// Runs verigated with `attestation` in `dir`, expecting it to refuse to start; returns
/// what it printed.
fn refused_start(dir: &std::path::Path, attestation: &str) -> String {
    let config = dir.join("verigated.toml");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::ports::free_port()));
    std::fs::write(
        &config,
        config_text(addr, dir, "", "").replace("tee = \"none\"\ntpm = \"none\"\n", attestation),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run verigated");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "verigated started:\n{text}");
    text
}

#[test]
fn azure_tdx_asked_on_an_snp_paravisor_refuses_to_start_naming_the_kind() {
    if !tools() {
        return;
    }
    let vm = AzureVm::new();
    let text = refused_start(vm.dir.path(), &vm.attestation("azure-tdx"));
    assert!(
        text.contains("holds a SEV-SNP report: set tee = \"azure-sev-snp\""),
        "{text}"
    );
}

#[test]
fn another_key_at_the_hcl_ak_handle_refuses_to_start() {
    if !tools() {
        return;
    }
    let tpm = Swtpm::start().expect("swtpm");
    paravisor::provision(&tpm).expect("provision");
    // Someone replaced the paravisor's key: an RSA signing key of the owner hierarchy,
    // not the one the HCL report names.
    let work = tempfile::tempdir().expect("tempdir");
    for args in [
        &["tpm2_evictcontrol", "-C", "o", "-c", "0x81000003"][..],
        &[
            "tpm2_createprimary",
            "-C",
            "o",
            "-G",
            "rsa2048:rsassa-sha256:null",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
            "-c",
            "other.ctx",
        ][..],
        &[
            "tpm2_evictcontrol",
            "-C",
            "o",
            "-c",
            "other.ctx",
            "0x81000003",
        ][..],
        &["tpm2_flushcontext", "-t"][..],
    ] {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .current_dir(work.path())
            .output()
            .expect("tpm2-tools");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = data_dir();
    let text = refused_start(
        dir.path(),
        &attestation("auto", &tpm.tcti(), dir.path(), ""),
    );
    assert!(
        text.contains("the key at 0x81000003 (RSA 2048) is not the HCLAkPub of the HCL report"),
        "{text}"
    );
}

#[test]
fn a_paravisor_that_does_not_refresh_the_report_fails_the_call_clearly() {
    if !tools() {
        return;
    }
    // The stand-in's provisioning without its run-time proxy: the index keeps the boot
    // report, as a stuck paravisor would.
    let tpm = Swtpm::start().expect("swtpm");
    paravisor::provision(&tpm).expect("provision");
    let dir = data_dir();
    let lines = attestation(
        "azure-sev-snp",
        &tpm.tcti(),
        dir.path(),
        "azure_imds_url = \"http://127.0.0.1:9\"\n",
    );
    let gw = Gateway::start_with_attestation(dir.path(), "", "", &[], &lines);
    let (status, body) = gw.get(&format!("/v1/attestation?nonce={}", "ab".repeat(32)));
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    assert!(body.contains("the TEE gave no report"), "{body}");
    // The log names the cause; the caller is told only which part failed.
    gw.wait_for_log("still carries user-data");
    gw.wait_for_log("the paravisor did not refresh it");
}

/// Azure TDX: the paravisor stand-in holds a stand-in TD report; verigated asks the
/// quote-service stand-in (`TdQuoteStandIn`, IMDS `/acc/tdquote`) for its quote and a PCS
/// stand-in for the quote's collateral. The "quote" is the recorded real one with its
/// REPORTDATA made the TD report's, so the link verigated checks holds and the verifier
/// must refuse the quote's signature, which is what this test asserts after checking
/// every later link.
#[test]
fn azure_tdx_evidence_carries_the_td_quote_from_imds_and_its_collateral() {
    if !tools() {
        return;
    }
    let Some(tdx) = testkit::evidence::dir("tdx") else {
        return;
    };
    let recorded = std::fs::read(tdx.join("tdx_quote")).expect("quote");
    let collateral = std::fs::read(tdx.join("tdx_quote_collateral.json")).expect("collateral");
    let pcs = StandIn::start(
        "pccs-stand-in",
        testkit::collateral::pccs_routes(&collateral, "B0C06F000000", "platform").expect("routes"),
    )
    .expect("PCS stand-in");
    let tdquote = TdQuoteStandIn::start(recorded).expect("quote service stand-in");
    let tpm = Swtpm::start().expect("swtpm");
    let maker =
        Arc::new(paravisor::provision_as(&tpm, HardwareKind::Tdx).expect("paravisor stand-in"));
    let para = ParavisorStandIn::start(&tpm, maker.clone()).expect("paravisor stand-in");
    let dir = data_dir();
    let lines = attestation(
        "azure-tdx",
        &para.tcti(),
        dir.path(),
        &format!(
            "azure_imds_url = \"{}\"\npccs_url = \"{}\"\n",
            tdquote.url(),
            pcs.url()
        ),
    );
    let gw = Gateway::start_with_attestation(dir.path(), "", "", &[], &lines);
    let nonce = Nonce([0x4e; 32]);
    let (status, body) = gw.get(&format!("/v1/attestation?nonce={}", nonce.to_hex()));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}\n{}", gw.log());
    let evidence = Evidence::from_json(body.as_bytes()).expect("evidence");
    let TeeEvidence::AzureTdx {
        hcl_report,
        td_quote,
        collateral: Some(_),
    } = &evidence.tee
    else {
        panic!("not azure-tdx with collateral: {:?}", evidence.tee);
    };
    let report = azure::parse_expecting(&hcl_report.0, HardwareKind::Tdx).expect("HCL");
    assert_eq!(tdquote.asked(), vec![report.hardware_report.clone()]);
    azure::check_td_quote_link(&report, &td_quote.0).expect("the quote is for the TD report");
    links_after_the_hardware_signature(&evidence, &report, nonce);

    // Inside the recorded collateral's window; the stand-in quote's signature fails.
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_751_328_000);
    let e = verify::verify_tee(
        &evidence.tee,
        &TeeOptions {
            snp_certs: None,
            tdx_collateral: None,
            allowed_tdx_tcb_statuses: &[],
            at,
        },
    )
    .expect_err("a quote with a replaced REPORTDATA must not verify");
    assert!(
        matches!(e, verify::TeeError::Azure(azure::AzureError::Tdx(_))),
        "{e}"
    );
    // The quote's own signature chain is checked before the collateral: the first link
    // that fails is the quote signature over the replaced REPORTDATA.
    assert!(e.to_string().contains("quote signature"), "{e}");
}
