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

    /// When to colour the text output: auto (on a terminal, unless NO_COLOR is set),
    /// always or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    color: terminal::ColorChoice,

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
    terminal::set_color(cli.color);
    // The options given before the subcommand; a subcommand's own win.
    let top = commands::args::OnlineArgs {
        url: cli.url.clone(),
        allow_insecure_tls: cli.allow_insecure_tls,
        ca_cert: cli.ca_cert.clone(),
    };
    let online = |own: &commands::args::OnlineArgs| commands::online::Online::from_args(own, &top);
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
            return commands::fleet::verify(&args, &top, format);
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
        Command::Fleet(args) => {
            let format = format(args.format());
            (commands::fleet::run(args, &top), format)
        }
        Command::Watch(args) => (commands::watch::run(args, &top), format(None)),
        Command::Policy { action } => (commands::policy::run(action), format(None)),
    };
    report::finish(result, format)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    /// Every subcommand path (`app init`, ...) with the long options its help shows,
    /// after clap propagated the global ones.
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, Vec<String>)>) {
        let longs = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(String::from))
            .collect();
        out.push((path.to_string(), longs));
        for sub in cmd.get_subcommands() {
            let name = if path.is_empty() {
                sub.get_name().to_string()
            } else {
                format!("{path} {}", sub.get_name())
            };
            walk(sub, &name, out);
        }
    }

    #[test]
    fn options_appear_only_on_the_subcommands_that_use_them() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut all = Vec::new();
        walk(&cmd, "", &mut all);
        assert!(all.len() > 15, "the walk found {} commands", all.len());
        // (option, the paths that offer it). The top level ("") keeps the form
        // `verigate --url URL verify`; the fleet commands take each VM's URL from the
        // fleet file, and `watch` prints log lines, not a report.
        let url = ["", "snapshot", "verify", "app"];
        let trust = ["", "snapshot", "verify", "app", "watch", "fleet enroll"];
        let format = [
            "",
            "snapshot",
            "verify",
            "app",
            "report verify",
            "quote verify",
            "ima replay",
            "fleet enroll",
        ];
        let table: [(&str, &[&str]); 5] = [
            ("url", &url),
            ("allow-insecure-tls", &trust),
            ("ca-cert", &trust),
            ("format", &format),
            ("color", &[""]),
        ];
        for (option, users) in table {
            for (path, longs) in &all {
                let offered = longs.iter().any(|l| l == option);
                assert_eq!(
                    offered,
                    users.contains(&path.as_str()),
                    "`verigate {path} --help` {} --{option}",
                    if offered { "offers" } else { "lacks" }
                );
            }
        }
    }
}
