//! Test-only helpers: start real peers (swtpm, TLS backends, HAProxy, a whole simulated
//! VM) on free loopback ports, each in its own temporary directory, and stop them when
//! the test ends, even when it fails; and [`require`], the one rule for a missing part
//! (skip here, fail under CI). Never a dependency of shipped code.

#![forbid(unsafe_code)]

pub mod cli;
pub mod collateral;
pub mod evidence;
pub mod haproxy;
pub mod held_tpm;
pub mod luks;
#[cfg(feature = "paravisor")]
pub mod paravisor;
pub mod pebble;
pub mod ports;
pub mod process;
pub mod require;
pub mod serve;
pub mod supervisord;
pub mod swtpm;
pub mod tls;
pub mod tsm;
pub mod vm;

pub use require::{require, require_path, require_programs};
