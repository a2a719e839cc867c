//! One module per subcommand.

pub mod app;
pub mod args;
pub mod dist;
pub mod ima;
pub mod key_change;
pub mod online;
pub mod quote;
pub mod report;
pub mod report_hcl;
pub mod snapshot;
pub mod verify;
