//! A test whose real part is missing fails under CI and skips elsewhere: proven by
//! running a test of this very binary as a child, with and without `CI=true`, against a
//! program that cannot exist.

use std::process::{Command, Output};

const MADE_UP: &str = "verigate-no-such-tool-7c1e";
/// Set only in the child, so the child test does nothing when the suite runs it.
const CHILD_ENV: &str = "TESTKIT_REQUIRE_CHILD";

/// The child: requires the made-up program, and says whether it would have run.
#[test]
fn child_requires_a_made_up_program() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // Not a requirement check: this test only does something as a child.
    }
    if testkit::require_programs(&[MADE_UP], "nothing provides it: it is made up") {
        println!("child: ran");
    } else {
        println!("child: returned early");
    }
}

fn run_child(ci: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("own test binary"));
    cmd.args([
        "--exact",
        "child_requires_a_made_up_program",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    match ci {
        Some(v) => cmd.env(testkit::require::CI_ENV, v),
        None => cmd.env_remove(testkit::require::CI_ENV),
    };
    cmd.output().expect("run the child test")
}

#[test]
fn a_missing_program_fails_under_ci_naming_it() {
    let out = run_child(Some("true"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the child passed under CI: {all}");
    assert!(all.contains("missing under CI"), "{all}");
    assert!(all.contains(MADE_UP), "the failure does not name it: {all}");
    assert!(!all.contains("child: returned early"), "{all}");
}

#[test]
fn a_missing_program_skips_without_ci_naming_it() {
    for ci in [None, Some("")] {
        let out = run_child(ci);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "CI={ci:?}: {all}");
        assert!(
            all.contains(&format!("skipped: program(s) {MADE_UP}")),
            "{all}"
        );
        assert!(all.contains("child: returned early"), "{all}");
    }
}

#[test]
fn a_present_requirement_passes_even_under_ci() {
    // In-process: CI is read, not set, so parallel tests are unaffected.
    assert!(testkit::require(true, "nothing", "nothing"));
    assert!(testkit::require_programs(&["sh"], "apt-get install dash"));
}
