//! verigated: owns port 443 inside the confidential VM. It peeks at each TLS
//! ClientHello, forwards connections for hosted names untouched to their backends, and
//! terminates TLS for its own name to serve the attestation and app-control API.
//!
//! The binary (`src/main.rs`) only parses arguments and wires these modules together.
//!
//! Every module but [`splice`] starts with `#![forbid(unsafe_code)]`: the zero-copy relay
//! needs system calls that no safe API offers, and nothing else here needs any. (A
//! crate-level `forbid` could not be relaxed for that one module.)

pub mod active;
pub mod app;
pub mod attestation;
pub mod client_hello;
pub mod config;
pub mod daemon;
pub mod endpoint;
pub mod forward;
pub mod listener;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod proxy_protocol;
pub mod routes;
pub mod scan;
pub mod shutdown;
pub mod slots;
pub mod snapshot;
pub mod splice;
pub mod storage;
