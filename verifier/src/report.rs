//! Turns the outcome of a command into what the user sees and the exit status of
//! ARCHITECTURE.md ("Verification"): 0 every check passed, 1 a check failed, 2 the checks
//! could not run. Text for people goes through [`crate::terminal::escape`]: facts,
//! check details and errors may quote what the VM sent; verdicts are coloured only on a
//! terminal ([`crate::terminal::paint`]).

use crate::terminal::{escape, paint, Stream, Tone};
use attest::check::{Check, Report, Verdict};
use serde_json::Value;
use std::process::ExitCode;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// What a command produced: parsed facts to show (in order) and the checks it ran.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Facts worth printing (field name, value), e.g. the measurement of a report.
    pub facts: Vec<(String, Value)>,
    pub checks: Vec<Check>,
}

/// Prints the outcome and returns the exit status. An `Err` means the checks could not
/// run at all (bad arguments, unreadable file): exit status 2.
pub fn finish(result: anyhow::Result<Outcome>, format: OutputFormat) -> ExitCode {
    match result {
        Ok(outcome) => {
            let report = Report::new(outcome.checks);
            match format {
                OutputFormat::Text => print_text(&outcome.facts, &report),
                OutputFormat::Json => print_json(&outcome.facts, &report),
            }
            match report.verdict {
                Verdict::Pass => ExitCode::from(0),
                Verdict::Fail => ExitCode::from(1),
            }
        }
        Err(e) => {
            match format {
                OutputFormat::Text => eprintln!(
                    "{} {}",
                    paint("error:", Tone::Bad, Stream::Stderr),
                    escape(&causes::line(e.as_ref()))
                ),
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({"verdict": "error", "error": causes::line(e.as_ref())})
                ),
            }
            ExitCode::from(2)
        }
    }
}

/// Prints `facts` one per line (`name: value`), escaped; the one printer of facts.
pub fn print_facts(facts: &[(String, Value)]) {
    for (name, value) in facts {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{}: {}", escape(name), escape(&value));
    }
}

fn print_text(facts: &[(String, Value)], report: &Report) {
    print_facts(facts);
    if !facts.is_empty() {
        println!();
    }
    for check in &report.checks {
        let mark = if check.passed() {
            paint("PASS", Tone::Good, Stream::Stdout)
        } else {
            paint("FAIL", Tone::Bad, Stream::Stdout)
        };
        println!(
            "[{mark}] {}: {}",
            escape(&check.name),
            escape(&check.detail)
        );
    }
    let verdict = match report.verdict {
        Verdict::Pass => paint("PASS", Tone::Good, Stream::Stdout),
        Verdict::Fail => paint("FAIL", Tone::Bad, Stream::Stdout),
    };
    println!("verdict: {verdict}");
}

fn print_json(facts: &[(String, Value)], report: &Report) {
    let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
    if !facts.is_empty() {
        let map: serde_json::Map<String, Value> = facts.iter().cloned().collect();
        v["facts"] = Value::Object(map);
    }
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}
