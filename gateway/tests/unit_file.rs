//! `configs/verigated.service`: systemd's own parser accepts it (`systemd-analyze
//! verify`, offline: no systemd is started), and it keeps verigated to what it needs:
//! a capability bounding set of the listed capabilities only, a read-only file system
//! but the data dir, a memory limit, no new privileges, a descriptor limit, and only
//! the TPM and TEE devices.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/verigated.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key=` lines (comments skipped), in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_accepts_the_unit() {
    if !testkit::require_programs(&["systemd-analyze"], "apt-get install systemd") {
        return;
    }
    // verify checks that ExecStart names an executable: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text().replace("/usr/local/bin/verigated", env!("CARGO_BIN_EXE_verigated"));
    let path = dir.path().join("verigated.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are warnings, not failures: none is allowed.
    assert!(stderr.trim().is_empty(), "systemd-analyze warns:\n{stderr}");
}

#[test]
fn the_unit_keeps_verigated_to_what_it_needs() {
    let unit = unit_text();
    let caps: Vec<String> = values(&unit, "CapabilityBoundingSet")
        .join(" ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut sorted = caps.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "CAP_CHOWN",
            "CAP_DAC_READ_SEARCH",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SETGID",
            "CAP_SETUID"
        ]
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/verigate"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/tpmrm0 rw"),
        ("PrivateTmp", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ] {
        assert!(
            values(&unit, key).iter().any(|v| v == value),
            "{key}={value} missing"
        );
    }
    for key in ["MemoryMax", "LimitNOFILE", "SystemCallFilter"] {
        assert!(!values(&unit, key).is_empty(), "{key}= missing");
    }
}
