//! Options several subcommands share, each flattened into the subcommands that use it
//! (so `report verify --help` offers no `--url`):
//!
//! - [`OnlineArgs`]: `--url`, `--allow-insecure-tls` and `--ca-cert`, for `snapshot`,
//!   `verify`, `app`;
//! - [`FormatArgs`]: `--format text|json`, and `--output text|json` still accepted (the
//!   name it had) on the commands that write no file: `verify`, `report`, `quote`,
//!   `ima`, `app`. On `snapshot`, `-o/--output` is the file to write, as in the Cosmian
//!   VM CLI, so it takes [`FormatOnly`].
//!
//! The top-level `verigate --url URL snapshot` form (the README's, and Cosmian VM's)
//! stays accepted: the command's own option wins over the top-level one.

use crate::report::OutputFormat;

/// `--url`, `--allow-insecure-tls` and `--ca-cert`, on the commands that talk to verigated.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct OnlineArgs {
    /// verigated's own endpoint: https://HOST[:PORT]. An IP address works too (no SNI is
    /// sent, and verigated answers for itself). Also accepted before the subcommand.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Do not check certificates against the Web PKI: verigated's (usually
    /// self-signed) and, in `verify`, each --application's. Handshake signatures are
    /// still checked, and attestation then pins each certificate: `verify` fails if one
    /// is not the one the VM attests. Default: PKI checked.
    #[arg(long)]
    pub allow_insecure_tls: bool,

    /// A root certificate (PEM, one or more) to trust besides Mozilla's, e.g. a private
    /// CA that issued verigated's own certificate. With --url naming a hosted
    /// application, the own endpoint's certificate must then be valid for the VM's
    /// attested domain. Also accepted before the subcommand.
    #[arg(long, value_name = "FILE", env = "VERIGATE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// `--format text|json` (and its former name `--output`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct FormatArgs {
    /// Output format for check results [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,

    /// The same as --format (its former name, kept for existing scripts).
    #[arg(
        long = "output",
        value_enum,
        value_name = "FORMAT",
        conflicts_with = "format"
    )]
    pub output: Option<OutputFormat>,
}

impl FormatArgs {
    /// The format asked for here, if any.
    pub fn get(&self) -> Option<OutputFormat> {
        self.format.or(self.output)
    }
}

/// `--format text|json` alone, for `snapshot` (whose `--output` names the file).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct FormatOnly {
    /// Output format for check results [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
}
