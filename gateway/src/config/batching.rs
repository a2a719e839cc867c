//! The attestation batching keys of `[attestation]` (ARCHITECTURE.md, "Binding", "Version
//! 2"): how many callers one hardware round may answer, and how many may wait for the next
//! round before verigated answers 503. Problems name the field and the fix.
//!
//! ```toml
//! [attestation]
//! batch_max_size = 256      # callers answered by one TEE report and one TPM quote; 1 = no batching
//! batch_max_waiting = 1024  # callers waiting for the next round; more get 503 with Retry-After
//! ```

use attest::batch::MAX_BATCH_SIZE;

/// Default of `attestation.batch_max_size`.
pub const DEFAULT_BATCH_MAX_SIZE: usize = 256;
/// Default of `attestation.batch_max_waiting`.
pub const DEFAULT_BATCH_MAX_WAITING: usize = 1024;

/// The validated batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// The most callers one round answers (1 turns batching off: one round per caller).
    pub max_size: usize,
    /// The most callers queued for the next round; one more is refused with 503.
    pub max_waiting: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_size: DEFAULT_BATCH_MAX_SIZE,
            max_waiting: DEFAULT_BATCH_MAX_WAITING,
        }
    }
}

/// Validates `batch_max_size` and `batch_max_waiting` as written (absent: the defaults).
pub fn validate(
    max_size: Option<i64>,
    max_waiting: Option<i64>,
    problem: &mut impl FnMut(&str, String),
) -> BatchSettings {
    let max = i64::from(MAX_BATCH_SIZE);
    let max_size = match max_size {
        None => DEFAULT_BATCH_MAX_SIZE,
        Some(n) => match usize::try_from(n) {
            Ok(size) if (1..=max).contains(&n) => size,
            _ => {
                problem(
                    "attestation.batch_max_size",
                    format!("expected 1..={max} (1 turns batching off), got {n}"),
                );
                DEFAULT_BATCH_MAX_SIZE
            }
        },
    };
    let max_waiting = match max_waiting {
        None => DEFAULT_BATCH_MAX_WAITING,
        Some(n) => match usize::try_from(n) {
            Ok(w) if w >= 1 => w,
            _ => {
                problem(
                    "attestation.batch_max_waiting",
                    format!("expected at least 1 (callers that may wait for a round), got {n}"),
                );
                DEFAULT_BATCH_MAX_WAITING
            }
        },
    };
    BatchSettings {
        max_size,
        max_waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(size: Option<i64>, waiting: Option<i64>) -> (BatchSettings, Vec<String>) {
        let mut problems = Vec::new();
        let s = validate(size, waiting, &mut |f, m| {
            problems.push(format!("{f}: {m}"));
        });
        (s, problems)
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(check(None, None), (BatchSettings::default(), vec![]));
        assert_eq!(check(Some(1), Some(1)).0.max_size, 1);
        for bad in [0, -1, i64::from(MAX_BATCH_SIZE) + 1] {
            let (_, p) = check(Some(bad), None);
            assert!(p[0].starts_with("attestation.batch_max_size"), "{p:?}");
        }
        let (_, p) = check(None, Some(0));
        assert!(p[0].starts_with("attestation.batch_max_waiting"), "{p:?}");
    }
}
