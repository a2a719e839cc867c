//! One module per subcommand.

pub mod app;
pub mod args;
pub mod dist;
pub mod fleet;
pub mod ima;
pub mod key_change;
pub mod online;
pub mod policy;
pub mod quote;
pub mod report;
pub mod report_hcl;
pub mod snapshot;
pub mod verify;
pub mod watch;
