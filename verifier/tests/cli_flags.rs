//! The command line a Cosmian VM user types: short flags `-s -a -w -c -o`, `snapshot
//! -o FILE` as the file, `--format text|json` everywhere with `--output text|json`
//! still accepted where no file is written, and options offered only where they act
//! (`main.rs` walks every subcommand for that); colours only on a terminal.

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

/// `ima replay` of an empty log expecting `expect` (hex): checks without any file of
/// evidence, passing for 20 zero bytes and failing otherwise.
fn replay_empty(dir: &std::path::Path, expect: &str, leading: &[&str]) -> Vec<String> {
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let mut args: Vec<String> = leading.iter().map(|s| (*s).to_string()).collect();
    args.extend(["ima", "replay", empty.to_str().unwrap(), "--expect", expect].map(String::from));
    vec!["verigate".to_string()]
        .into_iter()
        .chain(args)
        .collect()
}

fn run(argv: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigate"));
    cmd.args(&argv[1..]).env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run verigate")
}

fn has_escape(out: &Output) -> bool {
    out.stdout.contains(&0x1b) || out.stderr.contains(&0x1b)
}

#[test]
fn piped_output_has_no_colours_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pass = replay_empty(dir.path(), &"00".repeat(20), &[]);
    let fail = replay_empty(dir.path(), &"ff".repeat(20), &[]);
    let error = ["verigate", "report", "verify", "/nonexistent/report.bin"].map(String::from);
    for (argv, code) in [(&pass[..], 0), (&fail[..], 1), (&error[..], 2)] {
        let out = run(argv, &[]);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: {out:?}");
        assert!(!has_escape(&out), "{argv:?} coloured a pipe: {out:?}");
    }
    // The escapes do exist when asked for, so the assertion above is not vacuous.
    let always = replay_empty(dir.path(), &"ff".repeat(20), &["--color", "always"]);
    let out = run(&always, &[("NO_COLOR", "1")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[\x1b[1;31mFAIL\x1b[0m]"), "{text:?}");
    let never = replay_empty(dir.path(), &"ff".repeat(20), &["--color", "never"]);
    assert!(!has_escape(&run(&never, &[])));
}

#[test]
fn a_terminal_gets_colours_unless_no_color() {
    // `script` gives verigate a pseudo-terminal, as a person's shell does.
    if !testkit::require_programs(&["script"], testkit::require::install::BSDUTILS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let argv = replay_empty(dir.path(), &"00".repeat(20), &[]);
    let on_terminal = |env: &[(&str, &str)]| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &argv.join(" "), "/dev/null"])
            .env_remove("NO_COLOR");
        // argv[0] is `verigate`: find it beside the test's binary.
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_verigate"));
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run script");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(on_terminal(&[]).contains("\x1b[1;32mPASS\x1b[0m"));
    let plain = on_terminal(&[("NO_COLOR", "1")]);
    assert!(
        plain.contains("[PASS]") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

#[test]
fn fleet_enroll_neither_offers_nor_takes_options_it_would_ignore() {
    let text = help(&["fleet", "--fleet", "fleet.toml", "enroll", "--help"]);
    let options: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .collect();
    assert!(
        options
            .iter()
            .any(|l| l.starts_with("--allow-simulated-tee")),
        "{text}"
    );
    for ignored in ["--policy", "--parallel", "--url", "--snapshot", "--fleet"] {
        assert!(
            !options.iter().any(|l| l.starts_with(ignored)),
            "enroll offers {ignored}:\n{text}"
        );
    }
    assert!(
        !text.contains("verify --snapshot"),
        "verify's example:\n{text}"
    );
    for (flag, value) in [
        ("--policy", "p.json"),
        ("--fleet", "other.toml"),
        ("--parallel", "4"),
    ] {
        let out = verigate(&[
            "fleet",
            "--fleet",
            "fleet.toml",
            "enroll",
            "vm1",
            flag,
            value,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {out:?}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}
