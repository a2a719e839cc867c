//! verigated: owns port 443 inside the confidential VM. It peeks at each TLS
//! ClientHello, forwards connections for hosted names untouched to their backends, and
//! terminates TLS for its own name to serve the attestation and app-control API.
//!
//! The binary (`src/main.rs`) only parses arguments and wires these modules together.
//!
//! The data plane (ClientHello and PROXY parsing, SNI matching, forwarding and splice)
//! is the `passthrough` crate; this crate is the control plane around it. Its two
//! `unsafe` modules are [`scan::priority`] (idle CPU and I/O priority for scan threads)
//! and [`scan::heap`] (glibc's `mallopt` and `malloc_trim` for a scan), which no safe
//! wrapper offers; every other module is refused `unsafe` by the lint.

#![deny(unsafe_code)]

pub mod acme;
pub mod active;
pub mod app;
pub mod attestation;
pub mod certificate;
pub mod config;
pub mod daemon;
pub mod data_plane;
pub mod dist;
pub mod endpoint;
pub mod listener;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod outbound;
pub mod routes;
pub mod scan;
pub mod shutdown;
pub mod slots;
pub mod snapshot;
pub mod storage;
pub mod tls;
