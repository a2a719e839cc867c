//! `verigate`: the CLI on the user's machine. It only parses arguments, runs a command
//! and turns the resulting checks into text or JSON and an exit status.
#![forbid(unsafe_code)]

mod client;
mod commands;
mod fleet;
mod pki;
mod report;
mod terminal;

use clap::{Parser, Subcommand};
use report::OutputFormat;
use std::process::ExitCode;

/// Snapshot and verify confidential VMs fronted by verigated, and check evidence files.
#[derive(Parser, Debug)]
#[command(name = "verigate", version, about, long_about = None)]
struct Cli {
    /// verigated's endpoint, for `snapshot`, `verify` and `app` (also accepted after
    /// the subcommand, which wins): https://HOST[:PORT].
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// For `snapshot`, `verify` and `app`: do not check certificates against the Web
    /// PKI (see `verigate verify --help`).
    #[arg(long)]
    allow_insecure_tls: bool,

    /// For `snapshot`, `verify` and `app`: a root certificate (PEM) to trust besides
    /// Mozilla's (see `verigate verify --help`).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,

    /// Output format for check results, for every subcommand (also accepted after it,
    /// which wins).
    #[command(flatten)]
    format: commands::args::FormatArgs,

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
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    DistFiles {
        /// Where `man/` and `completions/` are created.
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let online = |own: &commands::args::OnlineArgs| {
        commands::online::Online::new(
            own.url.clone().or_else(|| cli.url.clone()),
            own.allow_insecure_tls || cli.allow_insecure_tls,
            own.ca_cert.as_deref().or(cli.ca_cert.as_deref()),
        )
    };
    let format = |own: Option<OutputFormat>| own.or(cli.format.get()).unwrap_or_default();
    let (result, format) = match cli.command {
        // Prints its checks and then the application's status, so it finishes itself.
        Command::App(args) => {
            let format = format(args.format.get());
            return match online(&args.online) {
                Ok(online) => commands::app::run(&online, args, format),
                Err(e) => report::finish(Err(e), format),
            };
        }
        Command::Snapshot(args) => {
            let format = format(args.format.format);
            (
                online(&args.online).and_then(|o| commands::snapshot::run(&o, args)),
                format,
            )
        }
        Command::Verify(args) if args.fleet.fleet.is_some() => {
            let format = format(args.format.get());
            let allow_insecure_tls = args.online.allow_insecure_tls || cli.allow_insecure_tls;
            return commands::fleet::verify(&args, allow_insecure_tls, format);
        }
        Command::Verify(args) => {
            let format = format(args.format.get());
            (
                online(&args.online).and_then(|o| commands::verify::run(&o, args)),
                format,
            )
        }
        Command::Report { action } => {
            let format = format(action.format());
            (commands::report::run(action), format)
        }
        Command::Quote { action } => {
            let format = format(action.format());
            (commands::quote::run(action), format)
        }
        Command::Ima { action } => {
            let format = format(action.format());
            (commands::ima::run(action), format)
        }
        Command::DistFiles { dir } => {
            return match commands::dist::write(<Cli as clap::CommandFactory>::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing into {}: {e}", dir.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Fleet(args) => (
            commands::fleet::run(args, cli.allow_insecure_tls),
            format(None),
        ),
        Command::Watch(args) => (
            commands::watch::run(args, cli.allow_insecure_tls),
            format(None),
        ),
        Command::Policy { action } => (commands::policy::run(action), format(None)),
    };
    report::finish(result, format)
}
