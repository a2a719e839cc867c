//! TPM 2.0 quotes: pure-Rust parsing and verification, and (feature `tpm-collect`)
//! collection through tss-esapi.

#[cfg(feature = "tpm-collect")]
pub mod collect;
pub mod quote;
