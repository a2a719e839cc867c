//! verigate's trust core: the evidence formats, how a VM collects them (behind cargo
//! features), and how anyone verifies them offline in pure Rust.
//!
//! Nothing here opens a socket or speaks HTTP: the gateway and the verifier CLI do that,
//! and both depend on this crate. The formats are described in `ARCHITECTURE.md` at the
//! repository root.
#![forbid(unsafe_code)]

pub mod batch;
pub mod binding;
pub mod check;
pub mod evidence;
pub mod hash;
pub mod ima;
pub mod pem;
pub mod policy;
pub mod snapshot;
pub mod tee;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tpm;
pub mod verify;
