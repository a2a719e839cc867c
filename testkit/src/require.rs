//! One rule for a test whose real part (a program, a built binary, an evidence file, a
//! kernel feature) may be missing here: on a developer's machine it prints one `skipped:`
//! line naming what is missing and how to get it, and the test returns; under CI (the
//! environment variable `CI` set and non-empty) it panics with the same words, so a
//! test that could not run is a failure there, never a silent pass.
//!
//! Every test's early return for a missing part goes through [`require`] (or one of its
//! shorthands), so this is the only place that decides between skipping and failing.

use std::path::Path;

/// The environment variable that marks a CI run.
pub const CI_ENV: &str = "CI";

/// True when the tests run under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os(CI_ENV).is_some_and(|v| !v.is_empty())
}

/// Returns `available`. When it is false: under CI, panics naming `what` is missing and
/// `how` to provide it; otherwise prints a skip line saying the same, for the caller to
/// return early.
///
/// ```no_run
/// if !testkit::require(testkit::haproxy::available(), "haproxy", "apt-get install haproxy") {
///     return;
/// }
/// ```
#[track_caller]
pub fn require(available: bool, what: &str, how: &str) -> bool {
    if available {
        return true;
    }
    if under_ci() {
        panic!("missing under CI ({CI_ENV} is set, so this test may not skip): {what}; {how}");
    }
    eprintln!("skipped: {what} is missing here; {how}");
    false
}

/// [`require`] for programs looked up on `PATH`; `install` says how to get them
/// (e.g. `apt-get install swtpm swtpm-tools`). Names only the missing ones.
#[track_caller]
pub fn require_programs(programs: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    require(
        missing.is_empty(),
        &format!("program(s) {} on PATH", missing.join(", ")),
        install,
    )
}

/// [`require`] for a file or folder; `how` says how to produce it.
#[track_caller]
pub fn require_path(path: &Path, how: &str) -> bool {
    require(path.exists(), &path.display().to_string(), how)
}

/// True when `program` is an executable file in a folder of `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// How to install the programs the tests use, on Debian/Ubuntu (the packages of
/// `scripts/install-deps.sh`).
pub mod install {
    /// swtpm, its setup tools and tpm2-tools, for the software TPM tests.
    pub const SWTPM: &str = "apt-get install swtpm swtpm-tools tpm2-tools";
    /// HAProxy, for the tests with a load balancer in front of verigated.
    pub const HAPROXY: &str = "apt-get install haproxy";
    /// supervisord, for the tests of applications run under a supervisor.
    pub const SUPERVISOR: &str = "apt-get install supervisor";
    /// The openssl CLI, which some tests use as an independent TLS client.
    pub const OPENSSL: &str = "apt-get install openssl";
    /// curl, an independent HTTP client (HTTP/2 included) for verigated's endpoints.
    pub const CURL: &str = "apt-get install curl";
    /// cryptsetup, for the encrypted storage tests.
    pub const CRYPTSETUP: &str = "apt-get install cryptsetup-bin";
    /// unshare and mount, for the tests that mount a small file system of their own.
    pub const UTIL_LINUX: &str = "apt-get install util-linux (unshare, mount)";
    /// script, for the test that runs verigate on a pseudo-terminal.
    pub const BSDUTILS: &str = "apt-get install bsdutils (script)";
    /// chattr, for the tests that make a file immutable to force a write error.
    pub const E2FSPROGS: &str = "apt-get install e2fsprogs (chattr)";
    /// The real evidence of `../shared/evidence`, beside the repository.
    pub const EVIDENCE: &str = "put the real evidence folder `shared/evidence` beside the \
         repository, or name it in VERIGATE_EVIDENCE";
    /// verigated, which the CLI's end-to-end tests start.
    pub const VERIGATED: &str = "run `cargo build -p gateway` first";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_on_path_is_found_and_a_made_up_one_is_not() {
        assert!(on_path("sh"));
        assert!(!on_path("verigate-no-such-program-ever"));
    }
}
