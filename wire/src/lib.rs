//! The syntax that verigate's parsers of untrusted bytes share: a bounds-checked cursor
//! ([`Reader`]) and the one rule for what a DNS host name is ([`dns`]).
//!
//! Both live here, below every other crate, so that the data plane (ClientHello, PROXY
//! protocol, route patterns) and the evidence parsers (IMA logs, TPM structures, the
//! report-data binding) read bytes and judge names the same way.

#![forbid(unsafe_code)]

pub mod dns;
mod reader;

pub use reader::{Reader, Trailing, Truncated};
