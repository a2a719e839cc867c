//! What `verigate watch` knows about each VM, as Prometheus text (ARCHITECTURE.md,
//! "Fleets"): the last verdict, when it last passed, the failing checks as labels, how
//! long the evidence took and how many bytes of IMA log it carried. Label values are
//! escaped as the text format requires (VM and check names come from files).

use super::run::VmResult;
use attest::check::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One VM's last round.
#[derive(Debug, Clone, Default)]
pub struct VmMetrics {
    /// Whether the last round passed.
    pub pass: bool,
    /// Unix time of the last round that passed.
    pub last_pass: Option<f64>,
    /// The checks that failed in the last round (`reach` when it was not verified).
    pub failing: Vec<String>,
    /// Seconds to connect and fetch the evidence.
    pub fetch_seconds: f64,
    /// Evidence bytes received.
    pub evidence_bytes: usize,
    /// IMA log bytes in that evidence.
    pub ima_log_bytes: usize,
    /// IMA entries replayed so far (incremental IMA).
    pub ima_entries: u64,
}

/// Every VM's metrics and the watch's own counters.
#[derive(Debug, Default)]
pub struct FleetMetrics {
    /// By VM name.
    pub vms: BTreeMap<String, VmMetrics>,
    /// Rounds completed.
    pub rounds: u64,
    /// Rounds skipped because another run held the state's lock.
    pub rounds_skipped: u64,
}

impl FleetMetrics {
    /// Takes in one VM's result.
    pub fn update(&mut self, r: &VmResult) {
        let m = self.vms.entry(r.name.clone()).or_default();
        m.pass = r.verdict() == Verdict::Pass;
        if m.pass {
            m.last_pass = Some(unix_now());
        }
        m.failing = failing(r);
        m.fetch_seconds = r.fetch.as_secs_f64();
        m.evidence_bytes = r.evidence_bytes;
        m.ima_log_bytes = r.ima_log_bytes;
        m.ima_entries = r.ima_progress.as_ref().map_or(0, |p| p.entries);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_vm = |f: &dyn Fn(&VmMetrics) -> Option<String>| -> Vec<(String, String)> {
            self.vms
                .iter()
                .filter_map(|(vm, m)| f(m).map(|v| (format!("{{vm=\"{}\"}}", escape(vm)), v)))
                .collect()
        };
        family(
            "verigate_vm_verdict",
            "1 if the VM passed every check in the last round, else 0.",
            "gauge",
            per_vm(&|m| Some(u8::from(m.pass).to_string())),
        );
        family(
            "verigate_vm_last_pass_timestamp_seconds",
            "Unix time of the last round the VM passed.",
            "gauge",
            per_vm(&|m| m.last_pass.map(|t| format!("{t:.0}"))),
        );
        let failing: Vec<(String, String)> = self
            .vms
            .iter()
            .flat_map(|(vm, m)| {
                m.failing.iter().map(move |c| {
                    (
                        format!("{{vm=\"{}\",check=\"{}\"}}", escape(vm), escape(c)),
                        "1".to_string(),
                    )
                })
            })
            .collect();
        family(
            "verigate_vm_failing_check",
            "1 for each check the VM failed in the last round.",
            "gauge",
            failing,
        );
        family(
            "verigate_vm_evidence_fetch_seconds",
            "Seconds to connect to the VM and fetch its evidence in the last round.",
            "gauge",
            per_vm(&|m| Some(format!("{:.6}", m.fetch_seconds))),
        );
        family(
            "verigate_vm_evidence_bytes",
            "Bytes of evidence received in the last round.",
            "gauge",
            per_vm(&|m| Some(m.evidence_bytes.to_string())),
        );
        family(
            "verigate_vm_ima_log_bytes",
            "Bytes of IMA log in the last evidence (only new entries once incremental).",
            "gauge",
            per_vm(&|m| Some(m.ima_log_bytes.to_string())),
        );
        family(
            "verigate_vm_ima_entries_replayed",
            "IMA entries replayed and judged so far (the incremental start).",
            "gauge",
            per_vm(&|m| Some(m.ima_entries.to_string())),
        );
        family(
            "verigate_watch_rounds_total",
            "Rounds over the fleet completed.",
            "counter",
            vec![(String::new(), self.rounds.to_string())],
        );
        family(
            "verigate_watch_rounds_skipped_total",
            "Rounds skipped because another run held the fleet state's lock.",
            "counter",
            vec![(String::new(), self.rounds_skipped.to_string())],
        );
        out
    }
}

/// The names of the checks `r` failed (`reach` when it was not verified).
pub fn failing(r: &VmResult) -> Vec<String> {
    match &r.outcome {
        Ok(o) => o
            .checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.name.clone())
            .collect(),
        Err(_) => vec!["reach".into()],
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A label value escaped for the text format: backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::run::Enrolment;
    use crate::report::Outcome;
    use attest::check::Check;
    use std::time::Duration;

    fn result(name: &str, checks: Vec<Check>) -> VmResult {
        VmResult {
            name: name.into(),
            url: "https://h".into(),
            outcome: Ok(Outcome {
                facts: vec![],
                checks,
            }),
            enrolment: Enrolment::Snapshot,
            fetch: Duration::from_millis(12),
            evidence_bytes: 100,
            ima_log_bytes: 10,
            ima_progress: None,
        }
    }

    #[test]
    fn the_text_names_each_vm_and_failing_check() {
        let mut m = FleetMetrics::default();
        m.update(&result("vm1", vec![Check::pass("nonce", "")]));
        m.update(&result(
            "vm\"2",
            vec![Check::pass("nonce", ""), Check::fail("ima entries", "x")],
        ));
        let mut unreachable = result("vm3", vec![]);
        unreachable.outcome = Err("refused".into());
        m.update(&unreachable);
        let text = m.render();
        assert!(text.contains("verigate_vm_verdict{vm=\"vm1\"} 1"), "{text}");
        assert!(
            text.contains("verigate_vm_verdict{vm=\"vm\\\"2\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("verigate_vm_failing_check{vm=\"vm\\\"2\",check=\"ima entries\"} 1"),
            "{text}"
        );
        assert!(text.contains("verigate_vm_failing_check{vm=\"vm3\",check=\"reach\"} 1"));
        assert!(text.contains("verigate_vm_evidence_fetch_seconds{vm=\"vm1\"} 0.012"));
        assert!(text.contains("verigate_vm_last_pass_timestamp_seconds{vm=\"vm1\"}"));
        assert!(!text.contains("verigate_vm_last_pass_timestamp_seconds{vm=\"vm3\"}"));
    }
}
