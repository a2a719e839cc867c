//! Linux IMA measurement lists: binary and ASCII parsers, and replay into a PCR bank.

pub mod ascii;
pub mod binary;
pub mod replay;
