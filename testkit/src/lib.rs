//! Test-only helpers: start real peers (swtpm, TLS backends, HAProxy) on free loopback
//! ports, each in its own temporary directory, and stop them when the test ends, even
//! when it fails. Never a dependency of shipped code.

pub mod haproxy;
pub mod ports;
pub mod process;
pub mod require;
pub mod supervisord;
pub mod swtpm;
pub mod tls;

pub use require::{require, require_path, require_programs};
