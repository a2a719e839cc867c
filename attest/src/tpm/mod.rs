//! TPM 2.0 quotes: pure-Rust parsing and verification, and (feature `tpm-collect`)
//! collection through tss-esapi.
//!
//! The two halves meet in three marshalled TPM structures, carried as-is in the evidence
//! JSON (`tpm.ak_public`, `tpm.quote`, `tpm.signature`) and in the files tpm2-tools
//! writes, plus the PCR values the quote covers (`tpm.pcrs`, a [`quote::PcrValues`]):
//!
//! - in the VM, [`collect::Tpm`] (`open`, `attestation_key`, `quote`, `extend_pcr`,
//!   `read_pcrs`) returns a [`collect::Quote`] with `TPMS_ATTEST`, `TPMT_SIGNATURE`,
//!   the AK's `TPMT_PUBLIC` and the PCR values;
//! - anywhere, [`quote::verify`] checks them against the expected qualifying data and
//!   returns a [`quote::VerifiedQuote`] (reset and restart counts, clock, selection),
//!   whose [`quote::VerifiedQuote::check_counts`] compares the counters with a snapshot.
//!
//! The `ak_digest` of ARCHITECTURE.md ("Binding") is SHA-256 of the `TPMT_PUBLIC` bytes
//! (computed by `binding`); `tpm_qualifying` is what the gateway passes as qualifying data.

#[cfg(feature = "tpm-collect")]
pub mod collect;
#[cfg(feature = "tpm-collect")]
pub mod nv;
pub mod quote;
#[cfg(feature = "tpm-collect")]
pub mod seal;
