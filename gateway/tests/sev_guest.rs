//! The `/dev/sev-guest` collection path (`attest::tee::snp::collect`, the `snp` feature)
//! against a stand-in of the kernel's sev-guest driver, since no SEV-SNP guest runs here.
//! The stand-in (`sev_guest/kernel_stand_in.c`) is compiled with the system's C compiler
//! against the kernel's UAPI header `<linux/sev-guest.h>` and preloaded into a child
//! process; it answers `SNP_GET_EXT_REPORT` as the driver does, reading the request and
//! writing the response through the kernel's own structure layouts, with the recorded
//! Milan report and VCEK of `../shared/evidence/snp`. What our side sends (message
//! version, report_data, VMPL, the certificate buffer) and what it reads back (the report,
//! the certificate table) are checked on both sides.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child process; the child test runs only there.
const CHILD_ENV: &str = "VERIGATE_SEV_GUEST_CHILD";

/// The report_data the child asks for: every byte different, so a shifted field shows.
fn report_data() -> [u8; 64] {
    std::array::from_fn(|i| u8::try_from(i * 3 + 1).expect("small"))
}

fn evidence() -> Option<PathBuf> {
    testkit::evidence::dir("snp")
}

/// Compiles the stand-in into `dir`; `None` when there is no C compiler or kernel header.
fn build_stand_in(dir: &Path) -> Option<PathBuf> {
    let header = Path::new("/usr/include/linux/sev-guest.h");
    if !testkit::require_programs(&["cc"], "apt-get install build-essential")
        || !testkit::require_path(header, "apt-get install linux-libc-dev")
    {
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sev_guest/kernel_stand_in.c");
    let library = dir.join("kernel_stand_in.so");
    let out = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "the stand-in does not compile against this kernel header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(library)
}

#[test]
fn an_extended_report_through_the_kernel_stand_in() {
    let Some(snp) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(library) = build_stand_in(dir.path()) else {
        return;
    };
    let log = dir.path().join("requests.log");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_requests_an_extended_report",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("LD_PRELOAD", &library)
        .env("STAND_IN_REPORT", snp.join("milan-report.bin"))
        .env("STAND_IN_VCEK", snp.join("milan-vcek.der"))
        .env("STAND_IN_LOG", &log)
        .output()
        .expect("child runs");
    let requests = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "child failed:\n{}{}\nstand-in log:\n{requests}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child test did not run:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // What the kernel side read, through its own structures: two requests, the first
    // without a certificate buffer (answered with the length the table needs), the
    // second with a buffer of that length; both with message version 1, our
    // report_data, VMPL 0 and zero reserved bytes.
    let lines: Vec<&str> = requests.lines().collect();
    let user_data = hex::encode(report_data());
    let asked: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("SNP_GET_EXT_REPORT"))
        .collect();
    assert_eq!(asked.len(), 2, "{requests}");
    for line in &asked {
        assert!(
            line.contains("msg_version=1 vmpl=0 rsvd_zero=1")
                && line.contains(&format!("user_data={user_data}")),
            "{line}"
        );
    }
    assert!(
        asked[0].contains("certs_len=0 certs_address_set=0"),
        "{}",
        asked[0]
    );
    assert!(
        lines.contains(&"answer INVALID_LEN certs_len=4096"),
        "{requests}"
    );
    assert!(
        asked[1].contains("certs_len=4096 certs_address_set=1"),
        "{}",
        asked[1]
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("answer report=1184 table=")));
}

/// The child half of [`an_extended_report_through_the_kernel_stand_in`]: runs only in
/// the process that test starts, with the stand-in preloaded.
#[test]
#[ignore = "runs in the child process that an_extended_report_through_the_kernel_stand_in starts"]
fn child_requests_an_extended_report() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run by an_extended_report_through_the_kernel_stand_in, with the stand-in preloaded"
    );
    let snp = PathBuf::from(std::env::var_os("STAND_IN_REPORT").expect("report path"));
    let vcek = std::fs::read(std::env::var_os("STAND_IN_VCEK").expect("vcek path")).expect("vcek");
    let report = std::fs::read(&snp).expect("report");

    let r = attest::tee::snp::collect::extended_report(&report_data(), None)
        .expect("extended report from the stand-in");
    // The report, read from where the kernel's snp_report_resp carries it.
    assert_eq!(r.report, report);
    // The certificate table, read from the buffer the kernel filled.
    assert_eq!(r.certificates.len(), 1);
    assert!(matches!(
        r.certificates[0].kind,
        attest::tee::snp::cert_table::CertKind::Vcek
    ));
    assert_eq!(r.certificates[0].data, vcek);
    // And the evidence chain verigated would send holds that VCEK.
    let chain = attest::tee::snp::cert_table::certs_from_table(&r.certificates);
    assert!(chain.chain_pem.is_some());
}
