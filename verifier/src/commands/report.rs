//! TODO(owner): `verigate report`.

use crate::report::Outcome;

#[derive(clap::Subcommand, Debug)]
pub enum ReportCmd {}

pub fn run(action: ReportCmd) -> anyhow::Result<Outcome> {
    match action {}
}
