//! One module per subcommand.

pub mod app;
pub mod fleet;
pub mod ima;
pub mod online;
pub mod policy;
pub mod quote;
pub mod report;
pub mod snapshot;
pub mod verify;
pub mod watch;
