//! Fleets: many VMs verified by one run (ARCHITECTURE.md, "Fleets"). The fleet file
//! lists the VMs ([`file`]); the enrolment state records each VM's identity at first
//! contact, under a lock so that two runs never interleave ([`state`]); [`run`] verifies
//! every VM concurrently with the checks of `verigate verify` and enrols or records what
//! it saw; [`output`] prints one line per VM and a summary, or JSON with every check;
//! [`watch`] runs rounds every interval with [`metrics`] served for Prometheus.

pub mod file;
pub mod metrics;
pub mod output;
pub mod run;
pub mod state;
pub mod watch;

use std::path::PathBuf;

/// The options of `verigate verify --fleet` (flattened into `verify`'s arguments).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// Verify every VM of this fleet file (TOML: `state`, then `[[vm]]` with `name`,
    /// `url`, `policy` or `snapshot`, `applications`, `connect_to`) instead of --url. The
    /// other options of `verify` apply to every VM. Exit status 0 only if every VM
    /// passes; an unreachable VM fails.
    #[arg(long, value_name = "FLEET.toml", conflicts_with = "snapshot")]
    pub fleet: Option<PathBuf>,

    /// With --fleet: how many VMs are verified at once. Default 16.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
}
