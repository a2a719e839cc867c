//! verigated's own TLS endpoint: rustls termination and the HTTP API behind it.
