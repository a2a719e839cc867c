//! The replay agrees with a real TPM: each entry's [`ImaEntry::extend_value`] is sent
//! to PCR 10 of a fresh swtpm (every bank it has, with `tpm2_pcrextend`, as the kernel
//! extends all banks at once), and the PCR read back must equal `replay::replay`.
//! This is the same path other tests use to get a real quote over a known log.

use attest::ima::{ascii, replay, HashAlg, ImaEntry};
use std::path::PathBuf;
use std::process::Command;
use testkit::swtpm::Swtpm;

fn tools_available() -> bool {
    testkit::require_programs(
        &["swtpm", "tpm2_pcrextend", "tpm2_pcrread"],
        testkit::require::install::SWTPM,
    )
}

/// PCR 10 of every bank that swtpm allocated, from `tpm2_pcrread`'s YAML output
/// (`  sha256:\n    10: 0xABCD...`).
fn read_pcr10(tcti: &str) -> Vec<(HashAlg, Vec<u8>)> {
    let out = Command::new("tpm2_pcrread")
        .args(["-T", tcti, "sha1:10+sha256:10+sha384:10+sha512:10"])
        .output()
        .expect("run tpm2_pcrread");
    assert!(
        out.status.success(),
        "tpm2_pcrread: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut banks = Vec::new();
    let mut bank = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_suffix(':') {
            bank = name.parse::<HashAlg>().ok();
        } else if let (Some(alg), Some(value)) = (bank, t.strip_prefix("10: 0x")) {
            banks.push((alg, hex::decode(value).unwrap()));
        }
    }
    banks
}

fn entries() -> Vec<ImaEntry> {
    let mut v = vec![
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x5c; 32]).unwrap(),
        ImaEntry::measure("/usr/bin/verigated", HashAlg::Sha256, b"gateway").unwrap(),
        ImaEntry::violation("/var/log/app.log", HashAlg::Sha256).unwrap(),
        ImaEntry::measure("/usr/lib/libc.so.6", HashAlg::Sha512, b"libc").unwrap(),
        // A _sha256-list entry: its logged hash goes into the SHA-256 bank as is.
        ImaEntry::measure("/etc/verigate/verigated.toml", HashAlg::Sha1, b"cfg")
            .unwrap()
            .with_template_hash_alg(HashAlg::Sha256),
    ];
    // Plus the start of the real log, when present.
    let evidence = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/evidence/ima/keylime-ascii_runtime_measurements");
    if let Ok(text) = std::fs::read_to_string(&evidence) {
        let head: String = text
            .lines()
            .skip(1)
            .take(25)
            .map(|l| format!("{l}\n"))
            .collect();
        v.extend(ascii::parse(&head).unwrap());
    }
    v
}

#[test]
fn swtpm_pcr10_equals_replay() {
    if !tools_available() {
        return;
    }
    let tpm = Swtpm::start().expect("start swtpm");
    let tcti = tpm.tcti();
    let before = read_pcr10(&tcti);
    let banks: Vec<HashAlg> = before.iter().map(|(alg, _)| *alg).collect();
    assert!(!banks.is_empty(), "swtpm has no PCR bank we know");
    eprintln!("swtpm PCR banks: {banks:?}");
    for (alg, value) in &before {
        assert_eq!(value, &vec![0; alg.size()], "PCR 10 starts at zeros");
    }

    let entries = entries();
    for e in &entries {
        let spec: Vec<String> = banks
            .iter()
            .map(|b| format!("{b}={}", hex::encode(e.extend_value(*b))))
            .collect();
        let out = Command::new("tpm2_pcrextend")
            .args(["-T", &tcti, &format!("10:{}", spec.join(","))])
            .output()
            .expect("run tpm2_pcrextend");
        assert!(
            out.status.success(),
            "tpm2_pcrextend: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let after = read_pcr10(&tcti);
    assert_eq!(after.len(), banks.len());
    for (alg, value) in after {
        assert_eq!(
            hex::encode(&value),
            hex::encode(replay::replay(&entries, alg)),
            "{alg} bank after {} extends",
            entries.len()
        );
    }
}
