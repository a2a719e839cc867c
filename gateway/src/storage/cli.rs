//! `verigated storage init|open|migrate|close|status`: the paths come from the
//! configuration (`[storage]`, else `gateway.data_dir` with the image, header and sealed
//! key next to it, see [`super::StoragePaths::for_data_dir`]) unless given on the
//! command line, and the TPM from `attestation.tpm` unless `--tpm` names a TCTI.

use super::luks::{Integrity, Layout};
use super::{StorageError, StoragePaths};
use crate::config::storage::DEFAULT_PCRS;
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `storage` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum StorageCommand {
    /// Create the LUKS2 container and its detached header with a random key sealed to
    /// the TPM. Refuses if the container, the header or the sealed key exists.
    Init {
        /// Container size: 64M, 1G, ... (at least 32M). Default: `[storage] size`.
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Bind the key to these SHA-256 PCRs (comma-separated, e.g. 7 or 0,7), or
        /// `none` for any boot of this TPM. Default: `[storage] pcrs`, else 0,7.
        #[arg(long, value_name = "LIST|none")]
        pcrs: Option<String>,
        /// Integrity and recovery.
        #[command(flatten)]
        layout: LayoutArgs,
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Unseal the key, open the container and mount it on the data dir, with a tmpfs
    /// at `<data_dir>/run` (run at boot, before verigated starts).
    Open {
        /// Integrity and recovery the header must show.
        #[command(flatten)]
        layout: LayoutArgs,
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Move the container to this VM's TPM: open it with the recovery passphrase (read
    /// from stdin, or --passphrase-file), put a fresh key sealed to this TPM in the
    /// header, and replace the sealed key. For a new VM, or after the TPM was lost.
    Migrate {
        /// Read the recovery passphrase from this file instead of stdin (never give it
        /// on the command line: every user can read argv).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Bind the new key to these SHA-256 PCRs (comma-separated), or `none`.
        /// Default: `[storage] pcrs`, else 0,7.
        #[arg(long, value_name = "LIST|none")]
        pcrs: Option<String>,
        /// Integrity and recovery the header must show (recovery is implied).
        #[command(flatten)]
        layout: LayoutArgs,
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
        /// Integrity and recovery the header must show.
        #[command(flatten)]
        layout: LayoutArgs,
        /// Where the container, the sealed key and the data dir are, and which TPM.
        #[command(flatten)]
        paths: PathArgs,
    },
}

/// The container's shape, overriding `[storage] integrity` and `recovery`.
#[derive(clap::Args, Debug)]
pub struct LayoutArgs {
    /// Authenticated encryption: `none` or `hmac-sha256` (a tag per sector, checked by
    /// dm-integrity). init formats with it; the other commands refuse a header that
    /// differs. Default: `[storage] integrity`, else none.
    #[arg(long, value_name = "MODE", value_parser = Integrity::parse)]
    integrity: Option<Integrity>,
    /// A recovery passphrase in a second keyslot. init makes it and prints it once; the
    /// other commands expect the two keyslots. Default: `[storage] recovery`, else off.
    #[arg(long)]
    recovery: bool,
}

/// Paths and TPM overriding the configuration.
#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// The container file (default `[storage] image`, else `<data_dir>/../verigate-data.luks`).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// The detached LUKS2 header (default `[storage] header`, else
    /// `<data_dir>/../verigate-data.header`).
    #[arg(long, value_name = "FILE")]
    header: Option<PathBuf>,
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
    /// `[storage] pcrs`, else [`DEFAULT_PCRS`].
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    pcrs: Vec<u8>,
    /// `[storage] tmpfs_size`, else [`super::RUN_TMPFS_SIZE`].
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    tmpfs_size: u64,
    /// `[storage] integrity` and `recovery` with the command line's overrides.
    layout: Layout,
    // Only init and open use the TPM, and they need the `tpm` feature.
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    tpm: Option<String>,
}

fn resolve(
    config_path: &Path,
    args: PathArgs,
    layout_args: LayoutArgs,
) -> Result<Resolved, String> {
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
        paths.header = s.header.clone();
    }
    if let Some(image) = args.image {
        paths.image = image;
    }
    if let Some(header) = args.header {
        paths.header = header;
    }
    if let Some(blob) = args.blob {
        paths.blob = blob;
    }
    if [&paths.image, &paths.header, &paths.blob]
        .iter()
        .any(|p| p.starts_with(&paths.data_dir))
    {
        return Err(format!(
            "the container, its header and the sealed key must live outside the folder \
             they mount over ({})",
            paths.data_dir.display()
        ));
    }
    // Each file is replaced whole at some point (`migrate` writes the sealed key and
    // the header): two roles on one path would write one over the other, a sealed key
    // over the whole container.
    for (a, pa, b, pb) in [
        ("header", &paths.header, "image", &paths.image),
        ("blob", &paths.blob, "image", &paths.image),
        ("blob", &paths.blob, "header", &paths.header),
    ] {
        if pa == pb {
            return Err(format!(
                "the {a} and the {b} are both {}: each needs a file of its own (--{a}, \
                 --{b}, [storage])",
                pa.display()
            ));
        }
    }
    let tpm = match (args.tpm, &config) {
        (Some(t), _) => Some(t),
        (None, Some(c)) => crate::attestation::resolve_tpm(&c.attestation.tpm),
        (None, None) => None,
    };
    let configured = storage.as_ref().map(|s| s.layout).unwrap_or_default();
    let layout = Layout {
        integrity: layout_args.integrity.unwrap_or(configured.integrity),
        recovery: layout_args.recovery || configured.recovery,
    };
    Ok(Resolved {
        paths,
        size: storage.as_ref().and_then(|s| s.size),
        // Without a [storage] section the same boot-chain PCRs as with one: a key that
        // any boot of this TPM unseals must be asked for (`--pcrs none`).
        pcrs: storage
            .as_ref()
            .map_or_else(|| DEFAULT_PCRS.to_vec(), |s| s.pcrs.clone()),
        tmpfs_size: storage
            .as_ref()
            .map_or(super::RUN_TMPFS_SIZE, |s| s.tmpfs_size),
        layout,
        tpm,
    })
}

/// How the key is bound, for the line `init` and `migrate` print.
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
fn bound_to(pcrs: &[u8]) -> String {
    if pcrs.is_empty() {
        ", not bound to PCRs".to_string()
    } else {
        format!(", bound to SHA-256 PCR(s) {pcrs:?}")
    }
}

/// Parses `--pcrs`: `none`, or SHA-256 PCR indices 0..=23 separated by commas.
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
fn parse_pcrs(value: &str) -> Result<Vec<u8>, String> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|p| {
            let p = p.trim();
            p.parse::<u8>().ok().filter(|i| *i <= 23).ok_or_else(|| {
                format!("--pcrs `{value}`: `{p}` is not a PCR index (0..=23), or use `none`")
            })
        })
        .collect()
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
        StorageCommand::Init {
            size,
            pcrs,
            layout,
            paths,
        } => {
            let size = size
                .as_deref()
                .map(super::parse_size)
                .transpose()
                .map_err(s)?;
            let pcrs = pcrs.as_deref().map(parse_pcrs).transpose()?;
            let r = resolve(config_path, paths, layout)?;
            let size = size.or(r.size).ok_or(
                "no size: give --size SIZE (e.g. 1G) or set `[storage] size` in the configuration",
            )?;
            for path in [&r.paths.image, &r.paths.header, &r.paths.blob] {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
            }
            let pcrs = pcrs.unwrap_or(r.pcrs);
            let mut tpm = open_tpm(r.tpm)?;
            let passphrase = super::init(&r.paths, size, r.layout, &pcrs, &mut tpm).map_err(s)?;
            println!(
                "created {} ({size} bytes, LUKS2 {}, integrity {}) with its header in {}; \
                 key sealed to the TPM in {}{}",
                r.paths.image.display(),
                super::luks::CIPHER,
                r.layout.integrity.as_str(),
                r.paths.header.display(),
                r.paths.blob.display(),
                bound_to(&pcrs)
            );
            if let Some(passphrase) = passphrase {
                // Shown here once and kept nowhere else; never logged.
                println!(
                    "recovery passphrase (write it down now, it is not shown again; it opens \
                     the container with `verigated storage migrate`):\n\n    {}\n",
                    String::from_utf8_lossy(passphrase.expose())
                );
            }
            Ok(())
        }
        #[cfg(feature = "tpm")]
        StorageCommand::Open { layout, paths } => {
            let r = resolve(config_path, paths, layout)?;
            let mut tpm = open_tpm(r.tpm)?;
            super::open(&r.paths, r.layout, r.tmpfs_size, &mut tpm).map_err(s)?;
            println!(
                "{} mounted on {}",
                r.paths.image.display(),
                r.paths.data_dir.display()
            );
            Ok(())
        }
        #[cfg(feature = "tpm")]
        StorageCommand::Migrate {
            passphrase_file,
            pcrs,
            mut layout,
            paths,
        } => {
            let pcrs = pcrs.as_deref().map(parse_pcrs).transpose()?;
            // Migrating means there is a recovery keyslot to open.
            layout.recovery = true;
            let r = resolve(config_path, paths, layout)?;
            let pcrs = pcrs.unwrap_or(r.pcrs);
            let passphrase = super::recovery::read(passphrase_file.as_deref()).map_err(s)?;
            let mut tpm = open_tpm(r.tpm)?;
            super::migrate(&r.paths, r.layout, &passphrase, &pcrs, &mut tpm).map_err(s)?;
            println!(
                "{}: keyslot 0 now holds a new key sealed to this TPM in {}{}; the recovery \
                 passphrase is unchanged",
                r.paths.header.display(),
                r.paths.blob.display(),
                bound_to(&pcrs)
            );
            Ok(())
        }
        #[cfg(not(feature = "tpm"))]
        StorageCommand::Init { .. }
        | StorageCommand::Open { .. }
        | StorageCommand::Migrate { .. } => {
            Err("this verigated was built without the `tpm` feature: storage needs the TPM".into())
        }
        StorageCommand::Close { paths } => {
            let none = LayoutArgs {
                integrity: None,
                recovery: false,
            };
            let r = resolve(config_path, paths, none)?;
            super::close(&r.paths).map_err(s)
        }
        StorageCommand::Status { layout, paths } => {
            let r = resolve(config_path, paths, layout)?;
            let st = super::status(&r.paths, r.layout);
            println!(
                "image: {} ({})",
                r.paths.image.display(),
                if st.image { "present" } else { "missing" }
            );
            if let Some(h) = &st.header {
                println!(
                    "header: {} (LUKS2, data cipher {}, integrity {}, keyslots {})",
                    r.paths.header.display(),
                    h.segment_ciphers.join(", "),
                    r.layout.integrity.as_str(),
                    h.keyslot_ids.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_overrides() -> (PathArgs, LayoutArgs) {
        (
            PathArgs {
                image: None,
                header: None,
                blob: None,
                data_dir: None,
                tpm: None,
            },
            LayoutArgs {
                integrity: None,
                recovery: false,
            },
        )
    }

    #[test]
    fn one_path_for_two_of_image_header_and_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing_config = dir.path().join("none.toml");
        let one = dir.path().join("one");
        for (roles, image, header, blob) in [
            ("header and the image", Some(&one), Some(&one), None),
            ("blob and the image", Some(&one), None, Some(&one)),
            ("blob and the header", None, Some(&one), Some(&one)),
        ] {
            let (mut paths, layout) = no_overrides();
            paths.data_dir = Some(dir.path().join("data"));
            paths.tpm = Some("swtpm:port=1".into());
            paths.image = image.cloned();
            paths.header = header.cloned();
            paths.blob = blob.cloned();
            let e = resolve(&missing_config, paths, layout)
                .err()
                .expect("refused");
            assert!(e.contains(roles) && e.contains("each needs a file"), "{e}");
        }
    }

    #[test]
    fn storage_section_sets_header_layout_pcrs_and_tmpfs_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("verigated.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nlisten = [\"127.0.0.1:0\"]\ndomain = \"vm.example.com\"\n\
                 data_dir = \"{}\"\n[attestation]\ntee = \"none\"\ntpm = \"none\"\n\
                 [storage]\nheader = \"/etc/verigate/data.header\"\npcrs = [7]\n\
                 tmpfs_size = \"128M\"\nintegrity = \"hmac-sha256\"\nrecovery = true\n",
                data.display()
            ),
        )
        .unwrap();
        let (paths, layout) = no_overrides();
        let r = resolve(&config, paths, layout).unwrap();
        assert_eq!(r.paths.header, Path::new("/etc/verigate/data.header"));
        assert_eq!(r.pcrs, vec![7]);
        assert_eq!(r.tmpfs_size, 128 << 20);
        assert_eq!(
            r.layout,
            Layout {
                integrity: Integrity::HmacSha256,
                recovery: true
            }
        );

        // Without the section: the boot-chain PCRs, the default tmpfs, no integrity,
        // and the command line's overrides.
        let (mut paths, mut layout) = no_overrides();
        paths.data_dir = Some(data.clone());
        paths.tpm = Some("none".into());
        layout.integrity = Some(Integrity::HmacSha256);
        let r = resolve(Path::new("/nonexistent/verigated.toml"), paths, layout).unwrap();
        assert_eq!(r.pcrs, DEFAULT_PCRS.to_vec());
        assert_eq!(r.tmpfs_size, super::super::RUN_TMPFS_SIZE);
        assert_eq!(r.layout.integrity, Integrity::HmacSha256);
        assert!(!r.layout.recovery);
        assert_eq!(r.paths.header, dir.path().join("verigate-data.header"));

        // A header inside the data dir, or the image itself, is refused.
        for header in [data.join("h"), dir.path().join("verigate-data.luks")] {
            let (mut paths, layout) = no_overrides();
            paths.data_dir = Some(data.clone());
            paths.tpm = Some("none".into());
            paths.header = Some(header);
            assert!(resolve(Path::new("/nonexistent/verigated.toml"), paths, layout).is_err());
        }
    }

    #[test]
    fn pcr_lists_and_none_parse_and_bad_ones_are_named() {
        assert_eq!(parse_pcrs("0,7"), Ok(vec![0, 7]));
        assert_eq!(parse_pcrs("7"), Ok(vec![7]));
        assert_eq!(parse_pcrs("none"), Ok(vec![]));
        for bad in ["", "24", "0,,7", "-1", "seven", "0;7"] {
            let e = parse_pcrs(bad).unwrap_err();
            assert!(e.contains("is not a PCR index"), "{bad}: {e}");
        }
    }
}
