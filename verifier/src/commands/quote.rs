//! `verigate quote verify`: checks a TPM quote offline from the files tpm2-tools writes
//! (`tpm2_createak -u` / `tpm2_readpublic`, `tpm2_quote -m -s -o`), with the pure-Rust
//! verifier of `attest::tpm::quote`. Each step is its own check, so a user sees which
//! one failed; parsed fields are printed as facts.

use crate::report::Outcome;
use anyhow::Context as _;
use attest::check::Check;
use attest::tpm::quote::{self, AkPublic, PcrValues, QuoteError, QuoteInfo, TpmSignature};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum QuoteCmd {
    /// Verify a TPM 2.0 quote: signature under the attestation key, qualifying data,
    /// PCR values, and (optionally) the reboot counters. Exit status 0 if every check
    /// passes, 1 if one fails, 2 if the files cannot be read.
    #[command(after_help = "Example, with files from tpm2-tools:\n  \
        tpm2_createak -C ek.ctx -c ak.ctx -u ak.pub\n  \
        tpm2_quote -c ak.ctx -l sha256:10 -q $NONCE -m quote.msg -s quote.sig -o pcrs.out\n  \
        verigate quote verify --ak ak.pub --quote quote.msg --signature quote.sig \\\n      \
        --pcrs pcrs.out --nonce $NONCE")]
    Verify(VerifyArgs),
}

impl QuoteCmd {
    /// The `--format`/`--output` given after the subcommand, if any.
    pub fn format(&self) -> Option<crate::report::OutputFormat> {
        match self {
            QuoteCmd::Verify(args) => args.format.get(),
        }
    }
}

/// Arguments of `verigate quote verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// How to print the checks.
    #[command(flatten)]
    pub format: super::args::FormatArgs,

    /// The attestation key's public part: TPM2B_PUBLIC (`tpm2_createak -u`,
    /// `tpm2_readpublic -o`), a bare TPMT_PUBLIC, or PEM (`tpm2_readpublic -f pem`; a
    /// PEM key carries no TPM attributes, so it is not checked to be restricted).
    #[arg(long, value_name = "FILE")]
    ak: PathBuf,

    /// The quote: the TPMS_ATTEST that `tpm2_quote -m` writes.
    #[arg(long, value_name = "FILE")]
    quote: PathBuf,

    /// The signature: the TPMT_SIGNATURE that `tpm2_quote -s` writes (its default
    /// `tss` format), or, for an RSA key, the plain bytes of `tpm2_quote -f plain`.
    #[arg(long, value_name = "FILE")]
    signature: PathBuf,

    /// The quoted PCR values: the file `tpm2_quote -o` writes (its default
    /// `serialized` format, or `-F values`), or JSON `{"sha256": {"10": "<hex>"}}`.
    /// Without it the quote's pcrDigest is printed but not checked.
    #[arg(long, value_name = "FILE")]
    pcrs: Option<PathBuf>,

    /// The qualifying data expected in the quote (extraData), in hex, as passed to
    /// `tpm2_quote -q`. Without it the extraData is printed but not checked.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,

    /// The resetCount the quote must carry (from a snapshot); another value means the
    /// machine rebooted. Not checked by default.
    #[arg(long, value_name = "N")]
    reset_count: Option<u32>,

    /// The restartCount the quote must carry (from a snapshot). Not checked by default.
    #[arg(long, value_name = "N")]
    restart_count: Option<u32>,
}

/// Runs a `verigate quote` subcommand.
pub fn run(action: QuoteCmd) -> anyhow::Result<Outcome> {
    match action {
        QuoteCmd::Verify(args) => verify(&args),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} `{}`", path.display()))
}

fn fact(out: &mut Outcome, name: &str, value: Value) {
    out.facts.push((name.to_string(), value));
}

fn verify(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    // Everything that stops the checks from running at all is an error (exit 2):
    // unreadable files, a nonce that is not hex.
    let ak_bytes = read(&args.ak, "attestation key")?;
    let attest = read(&args.quote, "quote")?;
    let sig_bytes = read(&args.signature, "signature")?;
    let pcr_bytes = match &args.pcrs {
        Some(p) => Some(read(p, "PCR values")?),
        None => None,
    };
    let nonce = match &args.nonce {
        Some(h) => Some(
            hex::decode(h.trim().trim_start_matches("0x"))
                .with_context(|| format!("--nonce `{h}` is not hex"))?,
        ),
        None => None,
    };

    let mut out = Outcome::default();

    // Attestation key.
    let ak = match AkPublic::from_any(&ak_bytes) {
        Ok(ak) => ak,
        Err(e) => {
            out.checks
                .push(Check::fail("attestation key", e.to_string()));
            return Ok(out);
        }
    };
    fact(&mut out, "ak key", json!(ak.key.describe()));
    if let Some(tpmt) = ak.tpmt_bytes() {
        // The ak_digest of ARCHITECTURE.md ("Binding"), the value a snapshot pins and
        // report_data binds.
        fact(
            &mut out,
            "ak sha256",
            json!(hex::encode(Sha256::digest(tpmt))),
        );
    }
    if let Some(attributes) = ak.attributes {
        fact(
            &mut out,
            "ak attributes",
            json!(format!("{attributes:#010x}")),
        );
    }
    out.checks
        .push(match (ak.check_restricted_signing(), ak.attributes) {
            (Err(e), _) => Check::fail("attestation key", e.to_string()),
            (Ok(()), Some(_)) => Check::pass(
                "attestation key",
                format!(
                    "{}, restricted signing key fixed to its TPM",
                    ak.key.describe()
                ),
            ),
            (Ok(()), None) => Check::pass(
                "attestation key",
                format!(
                    "{} from PEM: TPM attributes unknown, not checked to be a restricted key",
                    ak.key.describe()
                ),
            ),
        });

    // Quote structure.
    let info = match QuoteInfo::parse(&attest) {
        Ok(info) => info,
        Err(e) => {
            out.checks
                .push(Check::fail("quote structure", e.to_string()));
            return Ok(out);
        }
    };
    out.checks.push(Check::pass(
        "quote structure",
        "TPMS_ATTEST, magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE",
    ));
    let ci = &info.clock_info;
    fact(&mut out, "clock", json!(ci.clock));
    fact(&mut out, "reset count", json!(ci.reset_count));
    fact(&mut out, "restart count", json!(ci.restart_count));
    fact(&mut out, "clock safe", json!(ci.safe));
    fact(
        &mut out,
        "firmware version",
        json!(format!("{:#018x}", info.firmware_version)),
    );
    fact(
        &mut out,
        "qualified signer",
        json!(hex::encode(&info.qualified_signer)),
    );
    fact(&mut out, "extra data", json!(hex::encode(&info.extra_data)));
    fact(
        &mut out,
        "pcr selection",
        json!(quote::display_selection(&info.pcr_select)),
    );
    fact(&mut out, "pcr digest", json!(hex::encode(&info.pcr_digest)));

    // Signature.
    let sig = match TpmSignature::parse_for_key(&sig_bytes, &ak) {
        Ok(sig) => {
            fact(&mut out, "signature scheme", json!(sig.describe()));
            out.checks.push(Check::from_result(
                "signature",
                sig.verify(&ak, &attest)
                    .map(|()| format!("{} over the quote verifies under the AK", sig.describe())),
            ));
            Some(sig)
        }
        Err(e) => {
            out.checks.push(Check::fail("signature", e.to_string()));
            None
        }
    };

    // Qualifying data.
    if let Some(nonce) = &nonce {
        out.checks.push(Check::from_result(
            "qualifying data",
            info.check_qualifying(nonce)
                .map(|()| format!("extraData = {}", hex::encode(nonce))),
        ));
    }

    // PCR values. The digest algorithm is the signature scheme's; without a parsable
    // signature there is nothing to compare with.
    if let Some(bytes) = &pcr_bytes {
        let check = match (PcrValues::from_file_bytes(bytes, &info.pcr_select), &sig) {
            (Err(e), _) => Check::fail("pcr values", e.to_string()),
            (Ok(_), None) => Check::fail("pcr values", "no usable signature scheme to hash with"),
            (Ok(pcrs), Some(sig)) => {
                fact(
                    &mut out,
                    "pcr values",
                    serde_json::to_value(&pcrs).unwrap_or(Value::Null),
                );
                Check::from_result(
                    "pcr values",
                    info.check_pcrs(&pcrs, sig.hash()).map(|()| {
                        format!(
                            "{} PCR value(s) hash ({}) to the quoted pcrDigest",
                            pcrs.len(),
                            sig.hash()
                        )
                    }),
                )
            }
        };
        out.checks.push(check);
    }

    // Reboot counters.
    if let Some(expected) = args.reset_count {
        out.checks.push(Check::from_result(
            "reset count",
            if expected == ci.reset_count {
                Ok(format!("{expected}, as expected"))
            } else {
                Err(QuoteError::ResetCountMismatch {
                    expected,
                    got: ci.reset_count,
                })
            },
        ));
    }
    if let Some(expected) = args.restart_count {
        out.checks.push(Check::from_result(
            "restart count",
            if expected == ci.restart_count {
                Ok(format!("{expected}, as expected"))
            } else {
                Err(QuoteError::RestartCountMismatch {
                    expected,
                    got: ci.restart_count,
                })
            },
        ));
    }
    Ok(out)
}
