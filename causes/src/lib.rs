//! An error and its causes on one line, each cause once: what both binaries print when
//! something stops them.
//!
//! Many errors print their source inside their own message and also name it as their
//! source (`#[error("unseal: {0}")] Unseal(#[source] Inner)`), so walking the chain and
//! joining every message (anyhow's `{:#}` does this) repeats the same text once per
//! layer: a TPM error read five times over, a TLS alert twice. Here a cause whose text
//! the line already holds is left out.
#![forbid(unsafe_code)]

use std::error::Error;

/// `error`'s message, then `: cause` for each cause in order whose text the line does
/// not already hold (and that is not empty).
pub fn line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::line;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("TPM_RC_POLICY_FAIL: the PCRs differ")]
        Policy,
        #[error("")]
        Silent,
    }

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        // Prints its source in its own message and names it as the source too.
        #[error("unseal: {0}")]
        Unseal(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("sealed key /var/lib/k: {0}")]
        Seal(#[source] Middle),
        #[error("opening the storage")]
        Open(#[source] Inner),
    }

    #[test]
    fn each_cause_is_printed_once() {
        assert_eq!(
            line(&Outer::Seal(Middle::Unseal(Inner::Policy))),
            "sealed key /var/lib/k: unseal: TPM_RC_POLICY_FAIL: the PCRs differ"
        );
        // A cause the message does not repeat is appended; an empty one is not.
        assert_eq!(
            line(&Outer::Open(Inner::Policy)),
            "opening the storage: TPM_RC_POLICY_FAIL: the PCRs differ"
        );
        assert_eq!(line(&Outer::Open(Inner::Silent)), "opening the storage");
    }

    #[test]
    fn a_context_chain_that_repeats_its_source_reads_once() {
        // The shape of a failed TLS handshake in the CLI: an I/O error wrapping a rustls
        // error with the same text, inside an error that quotes it, inside a context.
        #[derive(Debug, thiserror::Error)]
        #[error("invalid peer certificate: UnknownIssuer")]
        struct Alert;
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Io(#[source] Alert);
        #[derive(Debug, thiserror::Error)]
        #[error("TLS handshake with vm.example.com at 127.0.0.1:443: {0}")]
        struct Handshake(#[source] Io);
        #[derive(Debug, thiserror::Error)]
        #[error("connecting to https://vm.example.com")]
        struct Context(#[source] Handshake);
        assert_eq!(
            line(&Context(Handshake(Io(Alert)))),
            "connecting to https://vm.example.com: TLS handshake with vm.example.com at \
             127.0.0.1:443: invalid peer certificate: UnknownIssuer"
        );
    }
}
