//! The command line a Cosmian VM user types: short flags `-s -a -w -c -o`, `snapshot
//! -o FILE` as the file, `--format text|json` everywhere with `--output text|json`
//! still accepted where no file is written, and options offered only where they act.

use std::process::{Command, Output};

fn verigate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args(args)
        .output()
        .expect("run verigate")
}

fn help(args: &[&str]) -> String {
    let out = verigate(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn short_flags_are_offered_where_the_guide_uses_them() {
    let verify = help(&["verify", "--help"]);
    for flag in [
        "-s, --snapshot",
        "-a, --application",
        "-w, --whitelist",
        "--format",
    ] {
        assert!(verify.contains(flag), "verify lacks {flag}:\n{verify}");
    }
    let init = help(&["app", "init", "--help"]);
    assert!(init.contains("-c, --conf"), "{init}");
    let snapshot = help(&["snapshot", "--help"]);
    assert!(snapshot.contains("-o, --output <FILE>"), "{snapshot}");
    assert!(snapshot.contains("--format"), "{snapshot}");
}

#[test]
fn offline_commands_do_not_offer_online_options() {
    for args in [
        &["report", "verify", "--help"][..],
        &["quote", "verify", "--help"],
        &["ima", "replay", "--help"],
    ] {
        let text = help(args);
        for online in ["--url", "--allow-insecure-tls"] {
            assert!(!text.contains(online), "{args:?} offers {online}:\n{text}");
        }
    }
}

#[test]
fn output_json_is_still_the_format_before_or_after_the_subcommand() {
    for args in [
        &[
            "--output",
            "json",
            "report",
            "verify",
            "/nonexistent/report.bin",
        ][..],
        &[
            "report",
            "verify",
            "/nonexistent/report.bin",
            "--output",
            "json",
        ],
        &[
            "report",
            "verify",
            "/nonexistent/report.bin",
            "--format",
            "json",
        ],
    ] {
        let out = verigate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out:?}"));
        assert_eq!(v["verdict"], "error", "{args:?}");
    }
    // Both names at once is a usage error, not a silent choice.
    let out = verigate(&[
        "report", "verify", "x", "--format", "json", "--output", "text",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn snapshot_output_is_a_file_name_and_url_works_after_the_subcommand() {
    // `-o FILE` parses (it used to be the format): the command then needs the VM and
    // stops at the unreachable --url, exit 2, having written nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vm.snapshot");
    let out = verigate(&[
        "snapshot",
        "--url",
        "https://127.0.0.1:1",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("invalid value"), "{err}");
    assert!(!file.exists());
}
