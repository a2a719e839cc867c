//! A verification result as a value: one [`Check`] per thing we verified, so that the
//! human report, the JSON report and the exit status all come from the same list.

use serde::{Deserialize, Serialize};

/// Whether one check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything compared as expected.
    Pass,
    /// Something differed or could not be checked; `detail` says what.
    Fail,
}

/// One named check with its outcome and a human-readable detail (what was compared,
/// what differed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`signature`, `pcr values`, `snapshot`, ...), as both reports show it.
    pub name: String,
    /// Whether it passed.
    pub outcome: Outcome,
    /// What was compared, or on failure what differed, for the human and JSON reports.
    pub detail: String,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
        }
    }

    /// A failing check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
        }
    }

    /// A check from a `Result`: `Ok` carries the pass detail, `Err` the failure.
    pub fn from_result<E: std::fmt::Display>(
        name: impl Into<String>,
        r: Result<String, E>,
    ) -> Self {
        match r {
            Ok(detail) => Check::pass(name, detail),
            Err(e) => Check::fail(name, e.to_string()),
        }
    }

    /// Whether the outcome is [`Outcome::Pass`].
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

/// The names of the checks that did not pass, in order: what a failing verification
/// reports in one line, and what tests compare against.
pub fn failed_names(checks: &[Check]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect()
}

/// The overall verdict: pass only if there is at least one check and every check passed.
/// An empty list fails, so a verification that checked nothing can never pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed, and there was at least one.
    Pass,
    /// At least one check failed, or there were none.
    Fail,
}

impl Verdict {
    /// The verdict of `checks`: [`Verdict::Fail`] for an empty list.
    pub fn of(checks: &[Check]) -> Verdict {
        if !checks.is_empty() && checks.iter().all(Check::passed) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// The JSON report (ARCHITECTURE.md, "Verification"): `{"verdict": ..., "checks": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The verdict of `checks`, computed once by [`Report::new`].
    pub verdict: Verdict,
    /// Every check run, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report whose verdict is computed from `checks`.
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            verdict: Verdict::of(&checks),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_fails() {
        assert_eq!(Verdict::of(&[]), Verdict::Fail);
    }

    #[test]
    fn one_failure_fails_the_verdict() {
        let checks = vec![Check::pass("a", "ok"), Check::fail("b", "bad")];
        assert_eq!(Verdict::of(&checks), Verdict::Fail);
        assert_eq!(Verdict::of(&checks[..1]), Verdict::Pass);
    }

    #[test]
    fn json_shape_matches_design() {
        let r = Report::new(vec![Check::pass("tee", "fine")]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "pass");
        assert_eq!(v["checks"][0]["outcome"], "pass");
        assert_eq!(v["checks"][0]["name"], "tee");
    }
}
