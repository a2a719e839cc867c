//! verigated's data plane: everything that touches a client's bytes before (or instead
//! of) TLS termination. It decides, from the first bytes of a connection, where the
//! connection goes, and moves the bytes of a passthrough connection untouched.
//!
//! - [`client_hello`]: the ClientHello parser (SNI, ALPN), a pure function over bytes.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 parser and v2 writer, pure functions.
//! - [`sni`]: route patterns (`app.example.com`, `*.example.com`, `*`) and how they match.
//! - [`peek`]: reads the optional PROXY header and the ClientHello from a socket, bounded
//!   in bytes.
//! - [`forward`]: connects a backend, sends it the opening bytes, relays both ways, and
//!   counts the traffic.
//! - `pump`: one direction of a relay, a small state machine that the relay's one future
//!   polls for both directions.
//! - `splice` (Linux): zero-copy relaying through a pool of kernel pipes.
//!
//! It depends on no TLS, HTTP or attestation code: the gateway composes it with those.
//! Host names follow the one rule of [`wire::dns`]; bytes are read through
//! [`wire::Reader`].

// `deny`, not `forbid`: the splice module alone is allowed the three libc calls it needs.
#![deny(unsafe_code)]

pub mod client_hello;
pub mod forward;
pub mod peek;
pub mod proxy_protocol;
mod pump;
pub mod sni;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod splice;
