//! One direction of a relay, as both ways of moving bytes (the portable copy in
//! [`crate::forward`] and splice(2) in `crate::splice`) report it: which operation failed,
//! so that the relay can tell whose fault a broken connection is.

use std::io;

/// A failure of one direction.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// Reading the source socket failed.
    Read(io::Error),
    /// Writing the destination socket failed.
    Write(io::Error),
}
