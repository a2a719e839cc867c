//! TODO(owner): `verigate quote`.

use crate::report::Outcome;

#[derive(clap::Subcommand, Debug)]
pub enum QuoteCmd {}

pub fn run(action: QuoteCmd) -> anyhow::Result<Outcome> {
    match action {}
}
