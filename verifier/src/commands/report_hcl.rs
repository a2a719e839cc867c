//! `verigate report verify HCL_REPORT`: an Azure confidential VM's HCL report (told
//! apart by its `HCLA` header), checked link by link (ARCHITECTURE.md, "Azure
//! confidential VMs"): the header, the hardware report (SEV-SNP with `--vcek`; TDX
//! through `--td-quote`, whose REPORTDATA must be the TD report's), the runtime-data
//! hash, HCLAkPub and user-data, then, optionally, the user-data against `--user-data`
//! and a vTPM quote under HCLAkPub (`--quote`, `--signature`, `--nonce`). HCLAkPub is
//! printed as PEM, so other tools can check quotes with it.

use super::report::{verify_snp, verify_tdx, VerifyArgs};
use crate::report::Outcome;
use anyhow::{bail, Context as _};
use attest::check::Check;
use attest::tee::azure::hcl::{self, HardwareKind, HclReport};
use attest::tee::azure::{self, runtime, AzureError, VouchedRuntime};
use attest::tpm::quote::{AkPublic, QuoteInfo, TpmSignature};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The arguments that apply to HCL reports only.
#[derive(clap::Args, Debug)]
pub struct HclArgs {
    /// HCL report, TDX: the TD quote obtained for its TD report (Azure IMDS
    /// `/acc/tdquote`). Its signature chain is always checked; its TCB needs
    /// `--collateral`, without which the TCB check fails.
    #[arg(long, value_name = "FILE")]
    td_quote: Option<PathBuf>,

    /// HCL report: a vTPM quote (TPMS_ATTEST, `tpm2_quote -m`) to check under HCLAkPub.
    #[arg(long, value_name = "FILE", requires = "signature")]
    quote: Option<PathBuf>,

    /// HCL report: the quote's signature, as TPMT_SIGNATURE (`tpm2_quote -s`) or plain
    /// (`tpm2_quote -f plain`).
    #[arg(long, value_name = "FILE", requires = "quote")]
    signature: Option<PathBuf>,

    /// HCL report: the quote's expected extraData (qualifying data), hex. Without it
    /// the extraData is printed but not checked.
    #[arg(long, value_name = "HEX", requires = "quote")]
    nonce: Option<String>,

    /// HCL report: the user-data the runtime data must carry, hex (64 bytes for
    /// verigated's report_data). Without it the user-data is printed but not checked.
    #[arg(long, value_name = "HEX")]
    user_data: Option<String>,
}

impl HclArgs {
    /// Whether any HCL-only argument was given (refused for other reports).
    pub fn any(&self) -> bool {
        self.td_quote.is_some()
            || self.quote.is_some()
            || self.signature.is_some()
            || self.nonce.is_some()
            || self.user_data.is_some()
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} `{}`", path.display()))
}

fn hex_arg(value: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(value.trim().trim_start_matches("0x"))
        .with_context(|| format!("{flag} `{value}` is not hex"))
}

const FORMAT: &str = "hcl report format";
const TD_QUOTE_LINK: &str = "hcl td quote link";
const RUNTIME_HASH: &str = "hcl runtime data hash";
const RUNTIME_DATA: &str = "hcl runtime data";
const USER_DATA: &str = "hcl user-data";
const QUOTE_SIGNATURE: &str = "tpm quote signature";
const QUOTE_EXTRA_DATA: &str = "tpm quote extraData";

/// Verifies an HCL report file (its bytes start with `HCLA`).
pub fn verify(args: &VerifyArgs, bytes: &[u8], at: SystemTime) -> anyhow::Result<Outcome> {
    let hcl_args = &args.hcl;
    // Usage errors first, before any check (exit 2).
    let user_data = hcl_args
        .user_data
        .as_deref()
        .map(|v| hex_arg(v, "--user-data"))
        .transpose()?;
    let nonce = hcl_args
        .nonce
        .as_deref()
        .map(|v| hex_arg(v, "--nonce"))
        .transpose()?;
    let quote = match (&hcl_args.quote, &hcl_args.signature) {
        (Some(q), Some(s)) => Some((read(q, "quote")?, read(s, "signature")?)),
        _ => None,
    };

    let mut out = Outcome::default();
    let report = match hcl::parse(bytes) {
        Ok(r) => r,
        Err(e) => {
            out.facts.push(("kind".into(), json!("azure hcl report")));
            out.checks.push(Check::fail(FORMAT, e.to_string()));
            return Ok(out);
        }
    };
    let kind = match report.kind {
        HardwareKind::SevSnp => "azure-sev-snp",
        HardwareKind::Tdx => "azure-tdx",
    };
    let format_detail = format!(
        "HCLA header version {}, {} hardware report, runtime data {} bytes hashed with {}",
        report.version,
        report.kind,
        report.runtime_data.len(),
        report.runtime_hash.name()
    );
    // The hardware report's checks, as `report verify` runs them on a bare report; its
    // facts come first, under the HCL report's kind.
    let hardware = match report.kind {
        HardwareKind::SevSnp => {
            if hcl_args.td_quote.is_some() {
                bail!(
                    "--td-quote applies to TDX HCL reports, and this one holds an SEV-SNP report"
                );
            }
            verify_snp(args, &report.hardware_report, at)?
        }
        HardwareKind::Tdx => {
            if args.vcek.is_some() || args.vlek.is_some() || args.chain.is_some() {
                bail!("--vcek, --vlek and --chain apply to SEV-SNP HCL reports, and this one holds a TD report");
            }
            let Some(path) = &hcl_args.td_quote else {
                bail!("a TDX HCL report holds a TD report, which is MAC'ed, not signed: give the TD quote obtained for it (--td-quote, from Azure IMDS /acc/tdquote)");
            };
            verify_td(args, &report, &read(path, "TD quote")?, at)?
        }
    };
    out.facts.push(("kind".into(), json!(kind)));
    out.facts.extend(
        hardware
            .facts
            .into_iter()
            .filter(|(name, _)| name != "kind"),
    );
    out.checks.push(Check::pass(FORMAT, format_detail));
    let hardware_passed = hardware.checks.iter().all(Check::passed);
    out.checks.extend(hardware.checks);
    if !hardware_passed {
        return Ok(out);
    }

    // The hardware report verified, so its report_data can be trusted.
    let Some(report_data) = report.report_data() else {
        out.checks.push(Check::fail(
            RUNTIME_HASH,
            "the hardware report has no report_data",
        ));
        return Ok(out);
    };
    let runtime = match azure::check_runtime(&report, &report_data) {
        Ok(r) => r,
        Err(e) => {
            let runtime_hash_ok = !matches!(e, AzureError::RuntimeHash { .. });
            if runtime_hash_ok {
                out.checks.push(Check::pass(
                    RUNTIME_HASH,
                    format!(
                        "report_data starts with the {} of the runtime JSON",
                        report.runtime_hash.name()
                    ),
                ));
            }
            out.checks.push(Check::fail(
                if runtime_hash_ok {
                    RUNTIME_DATA
                } else {
                    RUNTIME_HASH
                },
                e.to_string(),
            ));
            return Ok(out);
        }
    };
    out.checks.push(Check::pass(
        RUNTIME_HASH,
        format!(
            "report_data starts with the {} of the runtime JSON",
            report.runtime_hash.name()
        ),
    ));
    print_runtime(&mut out, &runtime);
    out.checks.push(Check::pass(
        RUNTIME_DATA,
        "HCLAkPub (RSA) and a 64-byte user-data",
    ));

    if let Some(expected) = user_data {
        if expected.as_slice() == runtime.user_data.as_slice() {
            out.checks
                .push(Check::pass(USER_DATA, "equals --user-data"));
        } else {
            out.checks.push(Check::fail(
                USER_DATA,
                format!(
                    "the runtime data's user-data is {}, --user-data is {}",
                    hex::encode(runtime.user_data),
                    hex::encode(&expected)
                ),
            ));
            return Ok(out);
        }
    }
    if let Some((message, signature)) = quote {
        check_quote(&mut out, &runtime, &message, &signature, nonce.as_deref());
    }
    Ok(out)
}

fn print_runtime(out: &mut Outcome, runtime: &VouchedRuntime) {
    out.facts.push((
        "hcl_ak_pub".into(),
        json!(runtime::ak_pub_pem(&runtime.ak_pub).trim_end()),
    ));
    out.facts
        .push(("user_data".into(), json!(hex::encode(runtime.user_data))));
    if let Some(c) = &runtime.vm_configuration {
        out.facts.push(("vm_configuration".into(), c.clone()));
    }
}

/// The TD quote's link to the TD report, then the quote's own checks.
fn verify_td(
    args: &VerifyArgs,
    report: &HclReport,
    td_quote: &[u8],
    at: SystemTime,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    if let Err(e) = azure::check_td_quote_link(report, td_quote) {
        out.checks.push(Check::fail(TD_QUOTE_LINK, e.to_string()));
        return Ok(out);
    }
    out.checks.push(Check::pass(
        TD_QUOTE_LINK,
        "the TD quote's REPORTDATA is the TD report's",
    ));
    // Without --collateral the quote's own signature chain is still checked and the TCB
    // check fails naming the missing collateral (exit 1, never 0).
    let quote = verify_tdx(args, td_quote, at)?;
    out.facts = quote.facts;
    out.checks.extend(quote.checks);
    Ok(out)
}

fn check_quote(
    out: &mut Outcome,
    runtime: &VouchedRuntime,
    message: &[u8],
    signature: &[u8],
    nonce: Option<&[u8]>,
) {
    let ak = AkPublic::from_rsa(runtime.ak_pub.clone());
    let verified = TpmSignature::parse_for_key(signature, &ak)
        .and_then(|sig| sig.verify(&ak, message).map(|()| sig));
    match verified {
        Ok(sig) => out.checks.push(Check::pass(
            QUOTE_SIGNATURE,
            format!("{} signature under HCLAkPub", sig.describe()),
        )),
        Err(e) => {
            out.checks.push(Check::fail(QUOTE_SIGNATURE, e.to_string()));
            return;
        }
    }
    let info = match QuoteInfo::parse(message) {
        Ok(i) => i,
        Err(e) => {
            out.checks
                .push(Check::fail(QUOTE_EXTRA_DATA, e.to_string()));
            return;
        }
    };
    out.facts.push((
        "quote_extra_data".into(),
        json!(hex::encode(&info.extra_data)),
    ));
    if let Some(expected) = nonce {
        match info.check_qualifying(expected) {
            Ok(()) => out
                .checks
                .push(Check::pass(QUOTE_EXTRA_DATA, "equals --nonce")),
            Err(e) => out
                .checks
                .push(Check::fail(QUOTE_EXTRA_DATA, e.to_string())),
        }
    }
}
