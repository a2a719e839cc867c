//! `verigate`: the CLI on the user's machine. It only parses arguments, runs a command
//! and turns the resulting checks into text or JSON and an exit status.
#![forbid(unsafe_code)]

#[allow(dead_code)] // the online commands (snapshot, verify) use it next
mod client;
mod commands;
mod report;

use clap::{Parser, Subcommand};
use report::OutputFormat;
use std::process::ExitCode;

/// Snapshot and verify confidential VMs fronted by verigated, and check evidence files.
#[derive(Parser, Debug)]
#[command(name = "verigate", version, about, long_about = None)]
struct Cli {
    /// Output format for check results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a TEE report offline: an SEV-SNP report or a TDX quote (detected from its content).
    Report {
        #[command(subcommand)]
        action: commands::report::ReportCmd,
    },
    /// Check a TPM quote offline, as tpm2-tools writes it.
    Quote {
        #[command(subcommand)]
        action: commands::quote::QuoteCmd,
    },
    /// Parse and replay an IMA measurement list.
    Ima {
        #[command(subcommand)]
        action: commands::ima::ImaCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report { action } => commands::report::run(action),
        Command::Quote { action } => commands::quote::run(action),
        Command::Ima { action } => commands::ima::run(action),
    };
    report::finish(result, cli.output)
}
