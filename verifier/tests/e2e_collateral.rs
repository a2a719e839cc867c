//! Collateral travels with the evidence, end to end with real processes: verigated with
//! the TDX backend reads the recorded `tdx/tdx_quote` from a stand-in of configfs-tsm
//! (`testkit::tsm`, no configfs here), fetches the quote's collateral from a stand-in of
//! Intel's PCS (`testkit::collateral`, serving the recorded `tdx_quote_collateral.json`
//! split into PCS v4 responses with their issuer-chain headers), caches it and puts it
//! in the evidence; `verigate snapshot` and `verify` then run against it with `--at`
//! inside the collateral's window, with no network but the VM.
//!
//! A recorded quote cannot carry the fresh nonce of a call, so exactly the two checks
//! that hold the nonce fail: `binding`, and `nonce` (its inclusion proof leads to a root
//! the report does not bind); every collateral check passes. Also: a PCS that is down (the cached
//! copy is used, and the log and /metrics say the refresh failed), a cached copy past
//! its nextUpdate is fetched again, tampered collateral fails `tee`, evidence without
//! collateral fails closed naming it, and an SEV-SNP report whose host gave no
//! certificates gets its VCEK chain from a stand-in of AMD's KDS.

use sha2::Digest as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use attest::binding::{Manifest, ManifestEntry};
use attest::snapshot::{Snapshot, TeePolicy};
use serde_json::Value;
use testkit::collateral::{intel_pcs_routes, kds_routes, pccs_routes, root_ca_crl_routes, StandIn};
use testkit::ports::free_port;
use testkit::process::ChildGuard;
use testkit::tsm::{Answer, TsmStandIn};

const DOMAIN: &str = "vm.example.com";
/// Inside the recorded TDX collateral's window (2025-06-19..2025-07-19).
const AT: &str = "2025-07-01T00:00:00Z";
const PATIENCE: Duration = Duration::from_secs(60);

struct Evidence {
    quote: Vec<u8>,
    collateral: Vec<u8>,
}

fn tdx_evidence() -> Option<Evidence> {
    let dir = testkit::evidence::dir("tdx")?;
    Some(Evidence {
        quote: std::fs::read(dir.join("tdx_quote")).expect("quote"),
        collateral: std::fs::read(dir.join("tdx_quote_collateral.json")).expect("collateral"),
    })
}

fn tools() -> bool {
    testkit::require_programs(&["mkfifo", "curl"], "apt-get install coreutils curl")
        && testkit::require_path(&verigated_path(), testkit::require::install::VERIGATED)
}

fn verigated_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_verigate")).with_file_name("verigated")
}

/// A VM: verigated on loopback with a TEE answered by the configfs-tsm stand-in.
struct Vm {
    dir: tempfile::TempDir,
    tsm: TsmStandIn,
    own_entry: ManifestEntry,
    gateway: Option<ChildGuard>,
    addr: SocketAddr,
    starts: u32,
}

impl Vm {
    fn new(tee: &str, answer: Answer) -> Vm {
        let dir = tempfile::tempdir().expect("tempdir");
        let tsm = TsmStandIn::start(&dir.path().join("tsm/report"), answer).expect("tsm stand-in");
        let cert = testkit::tls::self_signed(DOMAIN).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).expect("cert");
        std::fs::write(dir.path().join("key.pem"), &cert.key_pem).expect("key");
        std::fs::create_dir_all(dir.path().join("data")).expect("data");
        std::fs::create_dir_all(dir.path().join("tree")).expect("tree");
        std::fs::write(dir.path().join("tee"), tee).expect("tee");
        Vm {
            own_entry: ManifestEntry::from_cert(DOMAIN, cert.cert.as_ref()).expect("own entry"),
            dir,
            tsm,
            gateway: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_path(&self) -> PathBuf {
        self.path(&format!("verigated-{}.log", self.starts))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts verigated asking collateral of `pccs` and `kds` (base URLs).
    fn start(&mut self, pccs: &str, kds: &str) {
        self.start_with(pccs, kds, "");
    }

    /// [`Vm::start`] with more `[attestation]` lines.
    fn start_with(&mut self, pccs: &str, kds: &str, attestation: &str) {
        assert!(self.gateway.is_none());
        let tee = std::fs::read_to_string(self.path("tee")).expect("tee");
        for _ in 0..5 {
            self.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            self.starts += 1;
            let config = format!(
                "[gateway]\nlisten = [\"{}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\
                 ssl_certificate = \"{}\"\nssl_private_key = \"{}\"\n\n\
                 [attestation]\ntee = \"{tee}\"\ntpm = \"none\"\ntsm_report_root = \"{}\"\n\
                 pccs_url = \"{pccs}\"\namd_kds_url = \"{kds}\"\n{attestation}\n\
                 [snapshot]\nroots = [\"{}\"]\nexclude = []\n\n\
                 [api]\nadmin_token_sha256 = [\"{}\"]\n",
                self.addr,
                self.path("data").display(),
                self.path("cert.pem").display(),
                self.path("key.pem").display(),
                self.tsm.root().display(),
                self.path("tree").display(),
                hex::encode(sha2::Sha256::digest(testkit::vm::TOKEN)),
            );
            let config_path = self.path("verigated.toml");
            std::fs::write(&config_path, config).expect("config");
            let started = testkit::vm::start_verigated(
                &verigated_path(),
                &config_path,
                &self.log_path(),
                self.addr,
            );
            if let Some(child) = started {
                self.gateway = Some(child);
                return;
            }
        }
        panic!("verigated did not start; its log:\n{}", self.log());
    }

    fn stop(&mut self) {
        drop(self.gateway.take());
    }

    fn verigate(&self, args: &[&str]) -> Output {
        let url = format!("https://{}", self.addr);
        let mut all = vec!["--url", url.as_str(), "--allow-insecure-tls"];
        all.extend_from_slice(args);
        testkit::cli::logged(
            Command::new(env!("CARGO_BIN_EXE_verigate"))
                .args(&all)
                .env("VERIGATE_TOKEN", testkit::vm::TOKEN)
                .current_dir(self.dir.path()),
        )
    }

    /// `verify --output json` with `args`: (exit status, report).
    fn verify(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--output", "json", "verify"];
        all.extend_from_slice(args);
        let out = self.verigate(&all);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}); verigated log:\n{}", self.log()));
        (out.status.code().expect("exit status"), report)
    }

    /// verigated's /metrics (the own endpoint answers a client without SNI).
    fn metric(&self, series: &str) -> u64 {
        let out = Command::new("curl")
            .args(["-sk", &format!("https://{}/metrics", self.addr)])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", testkit::vm::TOKEN),
            ])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < PATIENCE,
                "verigated never logged `{needle}`; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The snapshot `verigate snapshot` would write for this VM: `tee_policy` from the
    /// verified recorded report, no TPM, no IMA, the own certificate.
    fn write_snapshot(&self, tee_policy: TeePolicy) -> PathBuf {
        let snapshot = Snapshot {
            version: 1,
            created_at: "2025-07-01T00:00:00Z".into(),
            tee_policy,
            tpm_policy: None,
            ima: None,
            manifest: Manifest::new(vec![self.own_entry.clone()]).expect("manifest"),
            filehashes: Vec::new(),
        };
        let path = self.path("snapshot.json");
        std::fs::write(&path, snapshot.to_json()).expect("snapshot");
        path
    }
}

fn at() -> std::time::SystemTime {
    let t = time::OffsetDateTime::parse(AT, &time::format_description::well_known::Rfc3339)
        .expect("AT");
    t.into()
}

fn tdx_vm(e: &Evidence) -> Vm {
    Vm::new(
        "tdx",
        Answer {
            provider: "tdx_guest".into(),
            outblob: e.quote.clone(),
            auxblob: None,
        },
    )
}

fn pcs(collateral: &[u8]) -> StandIn {
    StandIn::start(
        "pcs-stand-in",
        pccs_routes(collateral, "B0C06F000000", "platform").expect("PCS routes"),
    )
    .expect("PCS stand-in")
}

fn tdx_policy(e: &Evidence) -> TeePolicy {
    let v = attest::tee::tdx::verify(&e.quote, &e.collateral, at(), &[]).expect("recorded quote");
    TeePolicy::from_tdx(&v)
}

fn failed(report: &Value) -> Vec<String> {
    testkit::vm::failed_checks(report)
}

fn detail<'a>(report: &'a Value, name: &str) -> &'a str {
    testkit::vm::check(report, name)["detail"]
        .as_str()
        .unwrap_or_default()
}

/// The quote and its collateral from the PCS stand-in reach `verify` through verigated:
/// every check passes but `binding`.
#[test]
fn tdx_through_verigated_passes_every_check_but_the_binding() {
    let Some(e) = tdx_evidence() else { return };
    if !tools() {
        return;
    }
    let pcs = pcs(&e.collateral);
    let mut vm = tdx_vm(&e);
    vm.start(&pcs.url(), "http://127.0.0.1:9");

    // snapshot: verigated's job checks its own evidence at its own clock, which the
    // recorded quote cannot pass (its collateral has expired by now, and it binds
    // another nonce), so it refuses and nothing is written.
    let out_path = vm.path("taken.json");
    let out = vm.verigate(&[
        "snapshot",
        "--at",
        AT,
        "--out",
        out_path.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the VM's own evidence does not verify: TEE report: TDX"),
        "{stderr}"
    );
    assert!(!out_path.exists());

    let snapshot = vm.write_snapshot(tdx_policy(&e));
    let snapshot = snapshot.to_str().expect("utf-8");
    let (code, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), vec!["nonce", "binding"], "{report:#}");
    assert!(
        detail(&report, "tee").contains("TCB status UpToDate"),
        "{report:#}"
    );
    // The report data the stand-in received is the binding verigated computed, not the
    // quote's: a recorded quote cannot carry it.
    let sent = vm.tsm.inblobs();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|b| b.len() == 64));

    let asked = pcs.requests();
    for path in [
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
        "/tdx/certification/v4/tcb?fmspc=B0C06F000000",
        "/tdx/certification/v4/qe/identity?update=standard",
        "/sgx/certification/v4/rootcacrl",
    ] {
        assert!(
            asked.iter().any(|a| a == path),
            "{path} not asked: {asked:?}"
        );
    }
    assert!(vm.path("data/collateral/tdx-B0C06F000000.json").exists());

    // Outside the window the same collateral has expired.
    let (code, report) = vm.verify(&["--snapshot", snapshot, "--at", "2026-01-01T00:00:00Z"]);
    assert_eq!(code, 1);
    assert!(failed(&report).contains(&"tee".to_string()), "{report:#}");

    // --collateral overrides the evidence's and is checked the same way.
    let mut tampered: Value = serde_json::from_slice(&e.collateral).expect("json");
    let sig = tampered["tcb_info_signature"]
        .as_str()
        .expect("sig")
        .to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    tampered["tcb_info_signature"] = flipped.into();
    let file = vm.path("tampered.json");
    std::fs::write(&file, serde_json::to_vec(&tampered).expect("json")).expect("write");
    let (code, report) = vm.verify(&[
        "--snapshot",
        snapshot,
        "--at",
        AT,
        "--collateral",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        failed(&report),
        vec!["binding", "tee", "tee measurement"],
        "{report:#}"
    );
}

/// A PCS that is down: the cached copy on disk still goes into the evidence, and the log
/// and /metrics say the refresh failed. Back up, the copy (past its nextUpdate) is fetched
/// again.
#[test]
fn a_pcs_outage_keeps_the_cached_copy_and_a_stale_one_is_refreshed() {
    let Some(e) = tdx_evidence() else { return };
    if !tools() {
        return;
    }
    let pcs_up = pcs(&e.collateral);
    let mut vm = tdx_vm(&e);
    vm.start(&pcs_up.url(), "http://127.0.0.1:9");
    let snapshot = vm.write_snapshot(tdx_policy(&e));
    let snapshot = snapshot.to_str().expect("utf-8");
    let (_, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(failed(&report), vec!["nonce", "binding"], "{report:#}");
    vm.stop();
    let down = pcs_up.url();
    drop(pcs_up);

    // Restarted with the PCS down: the disk copy is served, its refresh fails.
    vm.start(&down, "http://127.0.0.1:9");
    let (_, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(failed(&report), vec!["nonce", "binding"], "{report:#}");
    vm.wait_for_log("collateral refresh failed: keeping the cached copy");
    assert!(vm.metric("verigated_collateral_fetch_failures_total") >= 1);
    assert!(vm.metric("verigated_collateral_stale_served_total") >= 1);
    vm.stop();

    // Back up: the copy, past its nextUpdate, is fetched again.
    let pcs_back = pcs(&e.collateral);
    let before = std::fs::read(vm.path("data/collateral/tdx-B0C06F000000.json")).expect("cache");
    vm.start(&pcs_back.url(), "http://127.0.0.1:9");
    let (_, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(failed(&report), vec!["nonce", "binding"], "{report:#}");
    vm.wait_for_log("collateral refreshed");
    assert!(vm.metric("verigated_collateral_fetches_total") >= 1);
    assert!(pcs_back
        .requests()
        .iter()
        .any(|p| p.starts_with("/tdx/certification/v4/tcb?fmspc=")));
    let after = std::fs::read(vm.path("data/collateral/tdx-B0C06F000000.json")).expect("cache");
    let fetched_at =
        |b: &[u8]| serde_json::from_slice::<Value>(b).expect("entry")["fetched_at"].as_i64();
    assert!(
        fetched_at(&after) >= fetched_at(&before),
        "the entry was not rewritten"
    );
}

/// The Intel PCS route through verigated: the PCS stand-in has no root CA CRL resource,
/// which comes from a stand-in of the root's CRL distribution point
/// (`attestation.root_ca_crl_url`); the collateral verigated assembles passes `tee`.
#[test]
fn tdx_through_verigated_on_the_intel_pcs_route() {
    let Some(e) = tdx_evidence() else { return };
    if !tools() {
        return;
    }
    let pcs = StandIn::start(
        "intel-pcs-stand-in",
        intel_pcs_routes(&e.collateral, "B0C06F000000", "platform").expect("PCS routes"),
    )
    .expect("Intel PCS stand-in");
    let dp = StandIn::start(
        "crl-distribution-point-stand-in",
        root_ca_crl_routes(&e.collateral).expect("CRL routes"),
    )
    .expect("CRL distribution point stand-in");
    let mut vm = tdx_vm(&e);
    vm.start_with(
        &pcs.url(),
        "http://127.0.0.1:9",
        &format!("root_ca_crl_url = \"{}/IntelSGXRootCA.der\"", dp.url()),
    );
    let snapshot = vm.write_snapshot(tdx_policy(&e));
    let (code, report) = vm.verify(&["--snapshot", snapshot.to_str().expect("utf-8"), "--at", AT]);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), vec!["nonce", "binding"], "{report:#}");
    assert!(
        detail(&report, "tee").contains("TCB status UpToDate"),
        "{report:#}"
    );
    assert_eq!(dp.requests(), ["/IntelSGXRootCA.der"]);
    assert!(!pcs.requests().iter().any(|p| p.contains("rootcacrl")));
}

/// Collateral whose signature was tampered with on its way (the PCS stand-in serves it)
/// travels in the evidence and fails `tee`; no collateral at all fails closed, naming it.
#[test]
fn tampered_or_missing_collateral_fails_closed() {
    let Some(e) = tdx_evidence() else { return };
    if !tools() {
        return;
    }
    let mut tampered: Value = serde_json::from_slice(&e.collateral).expect("json");
    let sig = tampered["qe_identity_signature"]
        .as_str()
        .expect("sig")
        .to_string();
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { "1" } else { "0" }
    );
    tampered["qe_identity_signature"] = flipped.into();
    let pcs = pcs(&serde_json::to_vec(&tampered).expect("json"));
    let mut vm = tdx_vm(&e);
    vm.start(&pcs.url(), "http://127.0.0.1:9");
    let snapshot = vm.write_snapshot(tdx_policy(&e));
    let snapshot = snapshot.to_str().expect("utf-8");
    let (code, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(code, 1);
    assert_eq!(
        failed(&report),
        vec!["binding", "tee", "tee measurement"],
        "{report:#}"
    );
    assert!(detail(&report, "tee").starts_with("TDX"), "{report:#}");
    vm.stop();
    drop(pcs);

    // Nothing cached (a fresh data dir) and no PCS: the evidence carries no collateral.
    let mut vm = tdx_vm(&e);
    vm.start("http://127.0.0.1:9", "http://127.0.0.1:9");
    let (code, report) = vm.verify(&["--snapshot", snapshot, "--at", AT]);
    assert_eq!(code, 1);
    assert!(failed(&report).contains(&"tee".to_string()), "{report:#}");
    assert!(
        detail(&report, "tee").contains("no collateral in the evidence"),
        "{report:#}"
    );
    assert!(vm.metric("verigated_collateral_missing_total") >= 1);
    assert!(vm
        .log()
        .contains("collateral fetch failed and nothing is cached"));
}

/// An SEV-SNP report whose host gave no certificate table: verigated asks the KDS
/// stand-in for the chip's VCEK and the Milan chain, and the evidence carries them.
#[test]
fn snp_without_host_certificates_gets_its_vcek_from_kds() {
    let Some(dir) = testkit::evidence::dir("snp") else {
        return;
    };
    if !tools() {
        return;
    }
    let report = std::fs::read(dir.join("milan-report.bin")).expect("report");
    let vcek = std::fs::read(dir.join("milan-vcek.der")).expect("vcek");
    let chain = std::fs::read(dir.join("milan-ask-ark.pem")).expect("chain");
    let parsed = attest::tee::snp::parse_report(&report).expect("parse");
    let id = attest::tee::snp::kds::VcekId::of(&parsed, attest::tee::snp::Product::Milan)
        .expect("vcek id");
    let kds = StandIn::start(
        "kds-stand-in",
        kds_routes(&id.vcek_path(), &vcek, "Milan", &chain),
    )
    .expect("KDS stand-in");
    let mut vm = Vm::new(
        "sev-snp",
        Answer {
            provider: "sev_guest".into(),
            outblob: report.clone(),
            auxblob: None,
        },
    );
    vm.start("http://127.0.0.1:9", &kds.url());
    let now = std::time::SystemTime::now();
    let verified = attest::tee::snp::verify(
        &report,
        &attest::tee::snp::SnpCerts {
            vcek_or_vlek: Some(vcek),
            chain_pem: Some(chain),
        },
        now,
    )
    .expect("recorded report");
    let snapshot = vm.write_snapshot(TeePolicy::from_snp(&verified));
    let (code, out) = vm.verify(&["--snapshot", snapshot.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert_eq!(failed(&out), vec!["nonce", "binding"], "{out:#}");
    assert!(
        kds.requests().contains(&id.vcek_path()),
        "{:?}",
        kds.requests()
    );
    assert!(Path::new(&vm.path("data/collateral")).is_dir());
}
