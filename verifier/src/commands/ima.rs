//! `verigate ima`: read an IMA measurement list offline (binary or ASCII), replay it
//! into a PCR bank and, on request, re-check every template hash or compare the
//! result with a PCR value from a TPM quote.

use crate::report::Outcome;
use anyhow::Context as _;
use attest::check::Check;
use attest::ima::{self, ascii, binary, replay, HashAlg, ImaEntry, LogFormat};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum ImaCmd {
    /// Parse a measurement list and replay it into a PCR bank, from zeros.
    ///
    /// Prints the number of entries, the templates seen and the replayed value of each
    /// PCR the list extends. Exit status: 0 when every check passes, 1 when one fails
    /// (a template hash that does not recompute, a PCR other than --expect), 2 when the
    /// list cannot be read or parsed.
    Replay(ReplayArgs),
}

impl ImaCmd {
    /// The `--format`/`--output` given after the subcommand, if any.
    pub fn format(&self) -> Option<crate::report::OutputFormat> {
        match self {
            ImaCmd::Replay(args) => args.format.get(),
        }
    }
}

/// Arguments of `verigate ima replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// How to print the checks.
    #[command(flatten)]
    pub format: super::args::FormatArgs,

    /// The list: a copy of `binary_runtime_measurements` or `ascii_runtime_measurements`
    /// (or of their `_sha256`, `_sha384`, `_sha512` variants).
    file: PathBuf,

    /// Read FILE as the ASCII list [default: detected from the content].
    #[arg(long, conflicts_with = "binary")]
    ascii: bool,

    /// Read FILE as the binary list [default: detected from the content].
    #[arg(long)]
    binary: bool,

    /// PCR bank to replay into: sha1, sha256, sha384 or sha512.
    #[arg(long, value_name = "ALG", default_value = "sha1")]
    bank: HashAlg,

    /// Algorithm of the template hashes in a binary list: sha1 in
    /// `binary_runtime_measurements`, sha256 in `..._sha256`, and so on [default: from
    /// the file name's suffix, else sha1]. An ASCII list shows it by the hash length.
    #[arg(long, value_name = "ALG")]
    template_hash_alg: Option<HashAlg>,

    /// Re-compute every template hash from its template data; each entry that does not
    /// match is a failed check.
    #[arg(long)]
    check: bool,

    /// The PCR value to expect after replay (hex, e.g. from a TPM quote); a different
    /// value is a failed check.
    #[arg(long, value_name = "HEX")]
    expect: Option<String>,

    /// The PCR that --expect refers to.
    #[arg(long, value_name = "INDEX", default_value_t = replay::IMA_PCR)]
    pcr: u32,
}

pub fn run(action: ImaCmd) -> anyhow::Result<Outcome> {
    match action {
        ImaCmd::Replay(args) => run_replay(&args),
    }
}

fn run_replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let expect = args
        .expect
        .as_deref()
        .map(|h| parse_expected(h, args.bank))
        .transpose()?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let format = if args.ascii {
        LogFormat::Ascii
    } else if args.binary {
        LogFormat::Binary
    } else if bytes.is_empty() {
        // Both parsers read an empty file as an empty list.
        LogFormat::Binary
    } else {
        ima::detect_format(&bytes).with_context(|| {
            format!(
                "{}: neither a binary IMA list (little-endian) nor an ASCII one; pass --binary or --ascii to force",
                args.file.display()
            )
        })?
    };
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (entries, template_hash_alg) = match format {
        LogFormat::Binary => {
            let alg = args
                .template_hash_alg
                .unwrap_or_else(|| ima::template_hash_alg_for_file_name(&file_name));
            let entries =
                binary::parse(&bytes, alg).with_context(|| format!("{}", args.file.display()))?;
            (entries, Some(alg))
        }
        LogFormat::Ascii => {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: ASCII IMA log is not UTF-8 at byte offset {}",
                    args.file.display(),
                    e.valid_up_to()
                )
            })?;
            let entries = ascii::parse(text).with_context(|| format!("{}", args.file.display()))?;
            let alg = entries.first().map(ImaEntry::template_hash_alg);
            if let Some(want) = args.template_hash_alg {
                if let Some(bad) = entries.iter().position(|e| e.template_hash_alg() != want) {
                    anyhow::bail!(
                        "{}: entry {bad} has a {} template hash, not {want} as --template-hash-alg says",
                        args.file.display(),
                        entries[bad].template_hash_alg()
                    );
                }
            }
            (entries, alg)
        }
    };

    let mut outcome = Outcome::default();
    let facts = &mut outcome.facts;
    facts.push(("file".into(), json!(args.file.display().to_string())));
    facts.push(("format".into(), json!(format.to_string())));
    if let Some(alg) = template_hash_alg {
        facts.push(("template hash algorithm".into(), json!(alg.to_string())));
    }
    facts.push(("entries".into(), json!(entries.len())));
    facts.push(("templates".into(), templates_seen(&entries)));
    let violations = entries.iter().filter(|e| e.is_violation()).count();
    facts.push(("violations".into(), json!(violations)));
    facts.push((
        "boot_aggregate first".into(),
        json!(ima::boot_aggregate(&entries).is_some()),
    ));
    let pcrs = replay::replay_all(&entries, args.bank);
    for (pcr, value) in &pcrs {
        facts.push((
            format!("pcr {pcr} ({})", args.bank),
            json!(hex::encode(value)),
        ));
    }
    if !pcrs.contains_key(&args.pcr) {
        facts.push((
            format!("pcr {} ({})", args.pcr, args.bank),
            json!(format!(
                "{} (no entry extends it)",
                hex::encode(replay::replay_pcr(&entries, args.bank, args.pcr))
            )),
        ));
    }

    outcome.checks.push(Check::pass(
        "parse",
        format!("{} entries read as the {format} list", entries.len()),
    ));
    if args.check {
        outcome
            .checks
            .extend(template_hash_checks(&entries, violations));
    }
    if let Some(want) = expect {
        let got = replay::replay_pcr(&entries, args.bank, args.pcr);
        let name = format!("pcr {} ({})", args.pcr, args.bank);
        outcome.checks.push(if got == want {
            Check::pass(
                name,
                format!("replay gives the expected {}", hex::encode(&got)),
            )
        } else {
            Check::fail(
                name,
                format!(
                    "replay gives {}, expected {}",
                    hex::encode(&got),
                    hex::encode(&want)
                ),
            )
        });
    }
    Ok(outcome)
}

/// How many entries use each template, e.g. `{"ima-ng": 826}`.
fn templates_seen(entries: &[ImaEntry]) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        *counts.entry(e.template_name()).or_default() += 1;
    }
    json!(counts)
}

/// One failed check per entry whose template hash does not recompute, or one passing
/// check that says how many were verified.
fn template_hash_checks(entries: &[ImaEntry], violations: usize) -> Vec<Check> {
    let bad: Vec<Check> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| replay::check_entry(i, e).err().map(|err| (i, err)))
        .map(|(i, err)| Check::fail(format!("entry {i} template hash"), err.to_string()))
        .collect();
    if bad.is_empty() {
        vec![Check::pass(
            "template hashes",
            format!(
                "all {} entries recompute from their template data ({violations} violations, which carry no hash)",
                entries.len().saturating_sub(violations)
            ),
        )]
    } else {
        bad
    }
}

fn parse_expected(hex_value: &str, bank: HashAlg) -> anyhow::Result<Vec<u8>> {
    let value = hex::decode(hex_value.trim())
        .with_context(|| format!("--expect: {hex_value:?} is not hex"))?;
    if value.len() != bank.size() {
        anyhow::bail!(
            "--expect: a {bank} PCR is {} bytes, got {}",
            bank.size(),
            value.len()
        );
    }
    Ok(value)
}
