//! One run of a command-line binary, kept as text: what the CLI tests assert on.

use std::path::Path;
use std::process::{Command, Output};

/// A finished run: its exit code and its output as (lossy) UTF-8 text.
#[derive(Debug)]
pub struct Run {
    /// The exit code (a run killed by a signal panics in [`run`]: no test expects one).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `program` with `args` to its end (e.g. `env!("CARGO_BIN_EXE_verigate")`, which
/// only the binary's own crate knows).
pub fn run(program: &str, args: &[&str]) -> Run {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
        .into()
}

/// Runs `cmd` to its end and prints the run (`$ NAME ARGS`, the exit code, stdout and
/// stderr) to the test's output, which cargo shows when the test fails.
pub fn logged(cmd: &mut Command) -> Output {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    eprintln!(
        "$ {program} {}\nexit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `VERIGATE --allow-insecure-tls --output json ARGS` in `dir`, [`logged`]: (exit code,
/// the JSON it printed, `null` when none). `verigate` is the CLI's path
/// (`env!("CARGO_BIN_EXE_verigate")`).
pub fn verigate_json(verigate: &str, dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = logged(
        Command::new(verigate)
            .args(["--allow-insecure-tls", "--output", "json"])
            .args(args)
            .current_dir(dir),
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().expect("exit code"), v)
}
