//! `verigate`: the CLI on the user's machine. It only parses arguments, runs a command
//! and turns the resulting checks into text or JSON and an exit status.
#![forbid(unsafe_code)]

mod client;
mod commands;
mod fleet;
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

    /// verigated's own endpoint, for `snapshot` and `verify`: https://HOST[:PORT]. An IP
    /// address works too (no SNI is sent, and verigated answers for itself).
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,

    /// Do not check certificates against the Web PKI: verigated's (usually
    /// self-signed) and, in `verify`, each --application's. Handshake signatures are
    /// still checked, and attestation then pins each certificate: `verify` fails if one
    /// is not the one the VM attests. Default: PKI checked.
    #[arg(long, global = true)]
    allow_insecure_tls: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Have verigated snapshot its VM (TEE and TPM policy, certificates, file hashes),
    /// check the result against fresh verified evidence, and write it to a file.
    Snapshot(commands::snapshot::SnapshotArgs),
    /// Verify the VM against a snapshot, and that each --application is served from
    /// inside it: one TEE report for all of them.
    Verify(commands::verify::VerifyArgs),
    /// Control the application inside the VM (init with a new configuration, restart,
    /// status), after verifying the VM as `verify` does, on the same TLS connection.
    App(commands::app::AppArgs),
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
    /// Verify a fleet continuously (--fleet, --interval), serving Prometheus metrics
    /// and logging every change of a VM's verdict.
    Watch(commands::watch::WatchArgs),
    /// Manage a fleet's enrolment state: enroll, accept or forget one VM's identity.
    Fleet(commands::fleet::FleetArgs),
    /// Policies shared by replicas of one VM image.
    Policy {
        #[command(subcommand)]
        action: commands::policy::PolicyCmd,
    },
    /// Parse and replay an IMA measurement list.
    Ima {
        #[command(subcommand)]
        action: commands::ima::ImaCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let online = commands::online::Online {
        url: cli.url.clone(),
        allow_insecure_tls: cli.allow_insecure_tls,
    };
    let result = match cli.command {
        // Prints its checks and then the application's status, so it finishes itself.
        Command::App(args) => return commands::app::run(&online, args, cli.output),
        Command::Snapshot(args) => commands::snapshot::run(&online, args),
        Command::Verify(args) if args.fleet.fleet.is_some() => {
            return commands::fleet::verify(&args, cli.allow_insecure_tls, cli.output)
        }
        Command::Verify(args) => commands::verify::run(&online, args),
        Command::Fleet(args) => commands::fleet::run(args, cli.allow_insecure_tls),
        Command::Watch(args) => commands::watch::run(args, cli.allow_insecure_tls),
        Command::Report { action } => commands::report::run(action),
        Command::Quote { action } => commands::quote::run(action),
        Command::Ima { action } => commands::ima::run(action),
        Command::Policy { action } => commands::policy::run(action),
    };
    report::finish(result, cli.output)
}
