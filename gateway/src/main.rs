//! `verigated`: argument parsing and printing only; the process (start, signals, reload,
//! drain) is [`gateway::daemon::run`], the logic lives in the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::{Config, DEFAULT_CONFIG_PATH};
use gateway::logging::{self, LogFormat};

/// verigated: routes TLS connections by SNI, untouched, to the services of this
/// confidential VM, and serves its own attested endpoint for `gateway.domain`.
///
/// Signals: SIGHUP reloads the configuration file (routes and certificates; open
/// connections are untouched; an invalid file is refused and the old one stays);
/// SIGTERM or SIGINT stops accepting and waits up to `gateway.drain_grace_period` for
/// open connections to finish; a second one exits at once.
#[derive(Parser, Debug)]
#[command(name = "verigated", version)]
struct Args {
    /// The configuration file (TOML; see configs/verigated.toml).
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH, env = "VERIGATED_CONFIG")]
    config: PathBuf,
    /// Log lines as `key=value` text or JSON; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and exit: 0 when valid, 1 with every problem listed
    /// (field, value, fix) otherwise. Nothing is written or bound.
    CheckConfig {
        /// The file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Encrypted storage for the data dir: LUKS2 container, key sealed to the TPM.
    #[command(subcommand)]
    Storage(gateway::storage::cli::StorageCommand),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    DistFiles {
        /// Where `man/` and `completions/` are created.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::DistFiles { dir }) = &args.command {
        let command = <Args as clap::CommandFactory>::command();
        return match gateway::dist::write(command, "verigated", dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("verigated: writing into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Storage(command)) = args.command {
        logging::init(args.log_format);
        return gateway::storage::cli::run(&args.config, command);
    }
    if let Some(Command::CheckConfig { file }) = args.command {
        return match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} route(s), domain {}, listening on {})",
                    file.display(),
                    config.routes.len(),
                    config.gateway.domain,
                    config
                        .gateway
                        .listen
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("verigated: {e}");
                ExitCode::FAILURE
            }
        };
    }
    logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("verigated")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verigated: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gateway::daemon::run(&args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = causes::line(&e);
            tracing::error!("{line}");
            eprintln!("verigated: {line}");
            ExitCode::FAILURE
        }
    }
}
