//! What `verify --fleet` prints: one line per VM (name, verdict, URL, the failed checks
//! or what enrolment did), then a summary; or, with `--output json`, every check of
//! every VM. The exit status is 0 only if every VM passed.

use super::run::{Enrolment, VmResult};
use crate::report::OutputFormat;
use attest::check::Verdict;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Prints `results` and returns the exit status: 0 every VM passed, 1 otherwise.
pub fn finish(results: &[VmResult], format: OutputFormat) -> ExitCode {
    let passed = results
        .iter()
        .filter(|r| r.verdict() == Verdict::Pass)
        .count();
    let failed = results.len().saturating_sub(passed);
    match format {
        OutputFormat::Text => {
            let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in results {
                println!("{}", line(r, width));
            }
            println!(
                "summary: {} VMs, {passed} passed, {failed} failed; verdict: {}",
                results.len(),
                if failed == 0 { "PASS" } else { "FAIL" }
            );
        }
        OutputFormat::Json => {
            let vms: Vec<Value> = results.iter().map(vm_json).collect();
            let v = json!({
                "verdict": if failed == 0 { "pass" } else { "fail" },
                "summary": {"vms": results.len(), "passed": passed, "failed": failed},
                "vms": vms,
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    ExitCode::from(if failed == 0 { 0 } else { 1 })
}

/// `vm1  PASS  https://…  enrolled now (trust on first use): …`
pub fn line(r: &VmResult, width: usize) -> String {
    let verdict = match r.verdict() {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    let what = match &r.outcome {
        Err(e) => format!("not verified: {e}"),
        Ok(o) => {
            let failed: Vec<String> = o
                .checks
                .iter()
                .filter(|c| !c.passed())
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            if failed.is_empty() {
                format!("{} checks passed", o.checks.len())
            } else {
                failed.join(" | ")
            }
        }
    };
    let enrolment = enrolment_note(&r.enrolment)
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    format!("{:width$}  {verdict}  {}  {what}{enrolment}", r.name, r.url)
}

fn enrolment_note(e: &Enrolment) -> Option<String> {
    match e {
        Enrolment::Snapshot | Enrolment::Enrolled => None,
        Enrolment::EnrolledNow(id) => Some(format!(
            "enrolled now, trust on first use: {}",
            id.describe()
        )),
        Enrolment::PendingRecorded => Some(
            "its identity changed but passes the policy on its own: recorded as pending; \
             review it, then `verigate fleet accept` it"
                .into(),
        ),
        Enrolment::NotEnrolled => Some("not enrolled".into()),
    }
}

fn enrolment_word(e: &Enrolment) -> &'static str {
    match e {
        Enrolment::Snapshot => "snapshot",
        Enrolment::EnrolledNow(_) => "enrolled-now",
        Enrolment::Enrolled => "enrolled",
        Enrolment::PendingRecorded => "pending",
        Enrolment::NotEnrolled => "not-enrolled",
    }
}

/// One VM in the JSON report.
pub fn vm_json(r: &VmResult) -> Value {
    let mut v = json!({
        "name": r.name,
        "url": r.url,
        "verdict": match r.verdict() { Verdict::Pass => "pass", Verdict::Fail => "fail" },
        "enrolment": enrolment_word(&r.enrolment),
        "fetch_ms": u64::try_from(r.fetch.as_millis()).unwrap_or(u64::MAX),
        "evidence_bytes": r.evidence_bytes,
    });
    if let Some(note) = enrolment_note(&r.enrolment) {
        v["enrolment_detail"] = json!(note);
    }
    match &r.outcome {
        Ok(o) => {
            v["checks"] = serde_json::to_value(&o.checks).unwrap_or(Value::Null);
            let facts: serde_json::Map<String, Value> = o.facts.iter().cloned().collect();
            v["facts"] = Value::Object(facts);
        }
        Err(e) => {
            v["error"] = json!(e);
            v["checks"] = json!([]);
        }
    }
    v
}
