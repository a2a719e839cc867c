//! `verigated storage init|open|close|status`: the paths come from the configuration
//! (`gateway.data_dir`, with the image and sealed key next to it, see
//! [`super::StoragePaths::for_data_dir`]) unless given on the command line, and the TPM
//! from `attestation.tpm` unless `--tpm` names a TCTI.

use super::{StorageError, StoragePaths};
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `storage` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum StorageCommand {
    /// Create the LUKS2 container with a random key sealed to the TPM. Refuses if the
    /// container or the sealed key exists.
    Init {
        /// Container size: 64M, 1G, ... (at least 32M). Default: `[storage] size`.
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Bind the key to these SHA-256 PCRs (comma-separated, e.g. 7 or 0,7). Default:
        /// `[storage] pcrs` of the configuration when it has that section ([0, 7] unless
        /// set), else unbound (any boot of this TPM unseals it).
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        pcrs: Vec<u8>,
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Unseal the key, open the container and mount it on the data dir, with a tmpfs
    /// at `<data_dir>/run` (run at boot, before verigated starts).
    Open {
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Unmount and close the container.
    Close {
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Show the container, its header, the sealed key and what is mounted.
    Status {
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
}

/// Paths and TPM overriding the configuration.
#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// The container file (default `[storage] image`, else `<data_dir>/../verigate-data.luks`).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// The sealed key (default `<data_dir>/../verigate-data.sealed`).
    #[arg(long, value_name = "FILE")]
    blob: Option<PathBuf>,
    /// The mount point (default `gateway.data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The TPM's TCTI (default from `attestation.tpm`), e.g. `device:/dev/tpmrm0`.
    #[arg(long, value_name = "TCTI")]
    tpm: Option<String>,
}

struct Resolved {
    paths: StoragePaths,
    /// `[storage] size`, when set.
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    size: Option<u64>,
    /// `[storage] pcrs`, when the configuration has the section.
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    pcrs: Option<Vec<u8>>,
    // Only init and open use the TPM, and they need the `tpm` feature.
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    tpm: Option<String>,
}

fn resolve(config_path: &Path, args: PathArgs) -> Result<Resolved, String> {
    // The configuration is needed only for what the command line leaves out; a
    // missing file is fine when the command line gives everything.
    let config = if args.data_dir.is_none() || args.tpm.is_none() {
        Some(Config::load(config_path).map_err(|e| e.to_string())?)
    } else {
        Config::load(config_path).ok()
    };
    let storage = config.as_ref().and_then(|c| c.storage.clone());
    let data_dir = match (args.data_dir, &config) {
        (Some(d), _) => d,
        (None, Some(c)) => c.gateway.data_dir.clone(),
        // `config` is loaded above whenever `--data-dir` is absent.
        (None, None) => return Err("no data dir: give --data-dir or a configuration".into()),
    };
    let mut paths = StoragePaths::for_data_dir(&data_dir);
    if let Some(s) = &storage {
        paths.image = s.image.clone();
    }
    if let Some(image) = args.image {
        paths.image = image;
    }
    if let Some(blob) = args.blob {
        paths.blob = blob;
    }
    if paths.image.starts_with(&paths.data_dir) || paths.blob.starts_with(&paths.data_dir) {
        return Err(format!(
            "the container and the sealed key must live outside the folder they mount over ({})",
            paths.data_dir.display()
        ));
    }
    let tpm = match (args.tpm, &config) {
        (Some(t), _) => Some(t),
        (None, Some(c)) => crate::attestation::resolve_tpm(&c.attestation.tpm),
        (None, None) => None,
    };
    Ok(Resolved {
        paths,
        size: storage.as_ref().and_then(|s| s.size),
        pcrs: storage.map(|s| s.pcrs),
        tpm,
    })
}

/// libtss2 at debug level (`TSS2_LOG=esys+debug`) dumps command parameters before it
/// encrypts them, and responses after decrypting them: the storage key would land in
/// the log. Whatever the operator asked for, the ESYS modules stay at `warning`; the
/// TCTI dumps (what actually crosses the TPM interface, encrypted) stay available.
fn quiet_tss_parameter_logs() {
    if let Ok(setting) = std::env::var("TSS2_LOG") {
        // Read by libtss2 when it first logs, after this point; the storage commands
        // run before any other thread starts.
        std::env::set_var(
            "TSS2_LOG",
            format!("{setting},esys+warning,esys_crypto+warning,esys_tr+warning"),
        );
    }
}

/// Runs a storage subcommand; errors go to stderr (and the log) and exit 1.
pub fn run(config_path: &Path, command: StorageCommand) -> ExitCode {
    quiet_tss_parameter_logs();
    match run_inner(config_path, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("storage: {e}");
            eprintln!("verigated: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "tpm")]
fn open_tpm(tpm: Option<String>) -> Result<attest::tpm::seal::SealTpm, String> {
    let tcti = tpm.ok_or(
        "no TPM: attestation.tpm is `none`, or `auto` found no /dev/tpmrm0; give --tpm TCTI",
    )?;
    attest::tpm::seal::SealTpm::open(&tcti).map_err(|e| e.to_string())
}

fn run_inner(config_path: &Path, command: StorageCommand) -> Result<(), String> {
    let s = |e: StorageError| causes::line(&e);
    match command {
        #[cfg(feature = "tpm")]
        StorageCommand::Init { size, pcrs, paths } => {
            let size = size
                .as_deref()
                .map(super::parse_size)
                .transpose()
                .map_err(s)?;
            let r = resolve(config_path, paths)?;
            let size = size.or(r.size).ok_or(
                "no size: give --size SIZE (e.g. 1G) or set `[storage] size` in the configuration",
            )?;
            if let Some(parent) = r.paths.image.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            let pcrs = if pcrs.is_empty() {
                r.pcrs.clone().unwrap_or_default()
            } else {
                pcrs
            };
            let mut tpm = open_tpm(r.tpm)?;
            super::init(size, &r.paths.image, &r.paths.blob, &pcrs, &mut tpm).map_err(s)?;
            println!(
                "created {} ({size} bytes, LUKS2 {}); key sealed to the TPM in {}{}",
                r.paths.image.display(),
                super::luks::CIPHER,
                r.paths.blob.display(),
                if pcrs.is_empty() {
                    String::new()
                } else {
                    format!(", bound to SHA-256 PCR(s) {pcrs:?}")
                }
            );
            Ok(())
        }
        #[cfg(feature = "tpm")]
        StorageCommand::Open { paths } => {
            let r = resolve(config_path, paths)?;
            let mut tpm = open_tpm(r.tpm)?;
            super::open(&r.paths, &mut tpm).map_err(s)?;
            println!(
                "{} mounted on {}",
                r.paths.image.display(),
                r.paths.data_dir.display()
            );
            Ok(())
        }
        #[cfg(not(feature = "tpm"))]
        StorageCommand::Init { .. } | StorageCommand::Open { .. } => {
            Err("this verigated was built without the `tpm` feature: storage needs the TPM".into())
        }
        StorageCommand::Close { paths } => {
            let r = resolve(config_path, paths)?;
            super::close(&r.paths).map_err(s)
        }
        StorageCommand::Status { paths } => {
            let r = resolve(config_path, paths)?;
            let st = super::status(&r.paths);
            println!(
                "image: {} ({})",
                r.paths.image.display(),
                if st.image { "present" } else { "missing" }
            );
            if let Some(h) = &st.header {
                println!(
                    "header: LUKS2, data cipher {}",
                    h.segment_ciphers.join(", ")
                );
            }
            if let Some(e) = &st.header_error {
                println!("header: REFUSED: {e}");
            }
            match &st.blob_pcrs {
                Some(p) if p.is_empty() => {
                    println!("sealed key: {} (not bound to PCRs)", r.paths.blob.display());
                }
                Some(p) => println!(
                    "sealed key: {} (bound to SHA-256 PCR(s) {p:?})",
                    r.paths.blob.display()
                ),
                None => println!(
                    "sealed key: {} (missing or unreadable)",
                    r.paths.blob.display()
                ),
            }
            println!(
                "device-mapper: {}",
                if st.mapped { "open" } else { "closed" }
            );
            println!(
                "{}: {}",
                r.paths.data_dir.display(),
                if st.mounted { "mounted" } else { "not mounted" }
            );
            println!(
                "run tmpfs: {}",
                if st.run_mounted {
                    "mounted"
                } else {
                    "not mounted"
                }
            );
            Ok(())
        }
    }
}
