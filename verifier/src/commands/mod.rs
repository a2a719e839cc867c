//! One module per subcommand.

pub mod ima;
pub mod quote;
pub mod report;
