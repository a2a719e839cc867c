//! TODO(owner): `verigate ima`.

use crate::report::Outcome;

#[derive(clap::Subcommand, Debug)]
pub enum ImaCmd {}

pub fn run(action: ImaCmd) -> anyhow::Result<Outcome> {
    match action {}
}
