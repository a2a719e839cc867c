//! `verigate report verify`: checks a TEE report offline — an AMD SEV-SNP attestation
//! report or an Intel TDX quote, told apart by content — with `attest::tee`. The parsed
//! fields are printed as facts; each verified property is its own check, so a user sees
//! which one failed (checks after a failing one did not run and are not listed).

use crate::report::Outcome;
use anyhow::{bail, Context as _};
use attest::check::Check;
use attest::tee::snp::{self, SnpCerts, SnpStep};
use attest::tee::tdx::{self, ChainLink, TdxOptions, TdxStep};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(clap::Subcommand, Debug)]
pub enum ReportCmd {
    /// Verify an SEV-SNP report (with its VCEK or VLEK), a TDX quote (with its
    /// collateral) or an Azure HCL report (with the VCEK, or the TD quote for its TD
    /// report). Exit status 0 if every check passes, 1 if one fails, 2 if the files
    /// cannot be read or the arguments do not fit the report.
    #[command(after_help = "Examples:\n  \
        verigate report verify report.bin --vcek vcek.der [--chain ask-ark.pem]\n  \
        verigate report verify quote.bin --collateral collateral.json --at 2025-07-01T00:00:00Z\n  \
        verigate report verify hcl-report.bin --vcek vcek.pem --quote quote.msg --signature quote.sig --nonce $HEX\n  \
        verigate report verify hcl-report.bin --td-quote td-quote.bin --collateral collateral.json")]
    Verify(VerifyArgs),
}

impl ReportCmd {
    /// The `--format`/`--output` given after the subcommand, if any.
    pub fn format(&self) -> Option<crate::report::OutputFormat> {
        match self {
            ReportCmd::Verify(args) => args.format.get(),
        }
    }
}

/// Arguments of `verigate report verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// How to print the checks.
    #[command(flatten)]
    pub format: super::args::FormatArgs,

    /// The report: a raw SEV-SNP attestation report (1184 bytes), a TDX quote, or an
    /// Azure HCL report (starts with `HCLA`, as read from vTPM NV index 0x01400001).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// SEV-SNP: the VCEK certificate (DER or PEM), e.g. from AMD KDS.
    #[arg(long, value_name = "FILE", conflicts_with = "vlek")]
    pub(super) vcek: Option<PathBuf>,

    /// SEV-SNP: the VLEK certificate (DER or PEM), for reports signed by a VLEK.
    #[arg(long, value_name = "FILE")]
    pub(super) vlek: Option<PathBuf>,

    /// SEV-SNP: a PEM bundle that came with the report (ASK/ASVK, maybe the VCEK). It
    /// supplies intermediates only: the AMD root keys are built in.
    #[arg(long, value_name = "FILE")]
    pub(super) chain: Option<PathBuf>,

    /// TDX: the PCS collateral as JSON (dcap-qvl's QuoteCollateralV3 format). Without
    /// it the quote's own signature chain is checked and the TCB check fails.
    #[arg(long, value_name = "FILE")]
    pub(super) collateral: Option<PathBuf>,

    /// Verification time (RFC 3339, e.g. 2025-07-01T00:00:00Z) for certificate and
    /// collateral validity. Default: now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    at: Option<SystemTime>,

    /// TDX: accept this TCB status besides UpToDate (repeatable), e.g. SWHardeningNeeded.
    #[arg(long = "allow-tcb-status", value_name = "NAME")]
    allow_tcb_status: Vec<String>,

    #[command(flatten)]
    pub(super) hcl: super::report_hcl::HclArgs,
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))?;
    Ok(SystemTime::from(t))
}

/// Runs a `verigate report` subcommand.
pub fn run(action: ReportCmd) -> anyhow::Result<Outcome> {
    match action {
        ReportCmd::Verify(args) => verify(&args),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} `{}`", path.display()))
}

fn fact(out: &mut Outcome, name: &str, value: Value) {
    out.facts.push((name.to_string(), value));
}

/// What the file holds, from its content.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Snp,
    Tdx,
}

fn detect(bytes: &[u8]) -> Option<Kind> {
    // A TDX quote header: u16 version, u16 key type, u32 TEE type 0x81.
    if bytes.get(4..8) == Some(&[0x81, 0, 0, 0][..]) {
        return Some(Kind::Tdx);
    }
    if bytes.len() == snp::REPORT_LEN {
        return Some(Kind::Snp);
    }
    None
}

fn verify(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let bytes = read(&args.file, "report")?;
    let at = args.at.unwrap_or_else(SystemTime::now);
    if attest::tee::azure::hcl::looks_like_hcl(&bytes) {
        return super::report_hcl::verify(args, &bytes, at);
    }
    if args.hcl.any() {
        bail!("--td-quote, --quote, --signature, --nonce and --user-data apply to Azure HCL reports (starting with `HCLA`)");
    }
    match detect(&bytes) {
        Some(Kind::Snp) => verify_snp(args, &bytes, at),
        Some(Kind::Tdx) => verify_tdx(args, &bytes, at),
        None => bail!(
            "`{}` is neither an SEV-SNP report ({} bytes) nor a TDX quote (TEE type 0x81); it has {} bytes",
            args.file.display(),
            snp::REPORT_LEN,
            bytes.len()
        ),
    }
}

fn snp_step_name(step: SnpStep) -> &'static str {
    match step {
        SnpStep::Format => "snp report format",
        SnpStep::EndorsementKey => "snp endorsement key",
        SnpStep::Chain => "snp certificate chain",
        SnpStep::Product => "snp product",
        SnpStep::Signature => "snp report signature",
        SnpStep::Tcb => "snp tcb",
        SnpStep::HwId => "snp chip id",
        SnpStep::Policy => "snp guest policy",
    }
}

pub(super) fn verify_snp(
    args: &VerifyArgs,
    bytes: &[u8],
    at: SystemTime,
) -> anyhow::Result<Outcome> {
    if args.collateral.is_some() || !args.allow_tcb_status.is_empty() {
        bail!("--collateral and --allow-tcb-status apply to TDX quotes, and this is an SEV-SNP report");
    }
    let key = match (&args.vcek, &args.vlek) {
        (Some(p), _) => Some(read(p, "VCEK")?),
        (None, Some(p)) => Some(read(p, "VLEK")?),
        (None, None) => None,
    };
    let chain = args
        .chain
        .as_deref()
        .map(|p| read(p, "chain"))
        .transpose()?;
    if key.is_none() && chain.is_none() {
        bail!("an SEV-SNP report needs --vcek, --vlek or a --chain holding one");
    }
    let certs = SnpCerts {
        vcek_or_vlek: key,
        chain_pem: chain,
    };

    let mut out = Outcome::default();
    fact(&mut out, "kind", json!("sev-snp"));
    // Facts from the parse alone, shown even when verification fails, so the user sees
    // what the report claims.
    if let Ok(r) = snp::parse_report(bytes) {
        fact(&mut out, "version", json!(r.version));
        fact(&mut out, "measurement", json!(hex::encode(r.measurement)));
        fact(&mut out, "policy", json!(r.policy.0));
        fact(&mut out, "policy_flags", json!(r.policy.flags()));
        fact(&mut out, "report_data", json!(hex::encode(r.report_data)));
        fact(&mut out, "host_data", json!(hex::encode(r.host_data)));
        fact(&mut out, "vmpl", json!(r.vmpl));
        fact(&mut out, "chip_id", json!(hex::encode(r.chip_id)));
        fact(
            &mut out,
            "reported_tcb_raw",
            json!(hex::encode(r.reported_tcb)),
        );
        let signer = match r.signing_key {
            0 => "VCEK".to_string(),
            1 => "VLEK".to_string(),
            other => format!("none ({other})"),
        };
        fact(&mut out, "signing_key", json!(signer));
    }

    // The flag names the key the user believes signed; the report's SIGNING_KEY field
    // says which did. Disagreement means the wrong file or a wrong assumption.
    if let Ok(kind) = snp::parse_report(bytes).and_then(|r| r.endorsement_kind()) {
        let flag = match (&args.vcek, &args.vlek) {
            (Some(_), _) => Some(("--vcek", snp::EndorsementKind::Vcek)),
            (None, Some(_)) => Some(("--vlek", snp::EndorsementKind::Vlek)),
            (None, None) => None,
        };
        if let Some((name, said)) = flag.filter(|(_, said)| *said != kind) {
            out.checks
                .push(Check::pass(snp_step_name(SnpStep::Format), "ok"));
            out.checks.push(Check::fail(
                snp_step_name(SnpStep::EndorsementKey),
                format!("the report is signed by a {kind}, but {name} gave a {said}"),
            ));
            return Ok(out);
        }
    }

    match snp::verify(bytes, &certs, at) {
        Ok(v) => {
            fact(&mut out, "product", json!(v.product.to_string()));
            fact(&mut out, "reported_tcb", json!(v.reported_tcb.to_string()));
            for step in SnpStep::ALL {
                let detail = match step {
                    SnpStep::Format => format!("version {}, {} bytes", v.version, bytes.len()),
                    SnpStep::EndorsementKey => format!("signed by a {}", v.signed_by),
                    SnpStep::Chain => format!(
                        "{} -> {} -> pinned ARK-{}, valid at the verification time",
                        v.signed_by,
                        if v.signed_by == snp::EndorsementKind::Vcek {
                            "ASK"
                        } else {
                            "ASVK"
                        },
                        v.product
                    ),
                    SnpStep::Product => format!("{}", v.product),
                    SnpStep::Signature => "ECDSA P-384 SHA-384 over bytes 0..0x2A0".into(),
                    SnpStep::Tcb => format!("{} certified by the {}", v.reported_tcb, v.signed_by),
                    SnpStep::HwId if v.signed_by == snp::EndorsementKind::Vlek => continue,
                    SnpStep::HwId => "chip_id equals the VCEK hwID".into(),
                    SnpStep::Policy => {
                        let flags = v.guest_policy().flags();
                        format!(
                            "debug not allowed; flags set: {}",
                            if flags.is_empty() {
                                "none".to_string()
                            } else {
                                flags.join(", ")
                            }
                        )
                    }
                };
                out.checks.push(Check::pass(snp_step_name(step), detail));
            }
        }
        Err(e) => {
            let failed = e.step();
            for step in SnpStep::ALL.into_iter().filter(|s| *s < failed) {
                out.checks.push(Check::pass(snp_step_name(step), "ok"));
            }
            out.checks
                .push(Check::fail(snp_step_name(failed), e.to_string()));
        }
    }
    Ok(out)
}

fn tdx_step_name(step: TdxStep) -> &'static str {
    match step {
        TdxStep::Options => "tdx options",
        TdxStep::Format => "tdx quote format",
        TdxStep::TdAttributes => "tdx td attributes",
        TdxStep::Chain(ChainLink::PckChain) => "tdx pck certificate chain",
        TdxStep::Chain(ChainLink::QeReport) => "tdx qe report signature",
        TdxStep::Chain(ChainLink::AttestationKey) => "tdx attestation key",
        TdxStep::Chain(ChainLink::QuoteSignature) => "tdx quote signature",
        TdxStep::Collateral => "tdx collateral",
        TdxStep::Signature => "tdx collateral signatures and crls",
        TdxStep::TcbStatus => "tdx tcb status",
    }
}

/// The checks of a TDX quote, in order: without collateral every step but the
/// collateral's runs, and the TCB status fails naming the missing collateral.
fn tdx_steps(with_collateral: bool) -> Vec<TdxStep> {
    let mut steps = vec![TdxStep::Format, TdxStep::TdAttributes];
    steps.extend(ChainLink::ALL.map(TdxStep::Chain));
    if with_collateral {
        steps.extend([TdxStep::Collateral, TdxStep::Signature]);
    }
    steps.push(TdxStep::TcbStatus);
    steps
}

pub(super) fn verify_tdx(
    args: &VerifyArgs,
    bytes: &[u8],
    at: SystemTime,
) -> anyhow::Result<Outcome> {
    if args.vcek.is_some() || args.vlek.is_some() || args.chain.is_some() {
        bail!("--vcek, --vlek and --chain apply to SEV-SNP reports, and this is a TDX quote");
    }
    let collateral = match &args.collateral {
        Some(path) => Some(read(path, "collateral")?),
        None => None,
    };
    // Refuse a misspelt status name as a usage error, before any check.
    tdx::check_tcb_status("UpToDate", &args.allow_tcb_status)?;

    let mut out = Outcome::default();
    fact(&mut out, "kind", json!("tdx"));
    if let Ok(q) = tdx::parse_quote(bytes) {
        fact(&mut out, "version", json!(q.version));
        fact(&mut out, "mrtd", json!(hex::encode(q.td.mrtd)));
        for (i, r) in q.td.rtmrs.iter().enumerate() {
            fact(&mut out, &format!("rtmr{i}"), json!(hex::encode(r)));
        }
        fact(
            &mut out,
            "mr_config_id",
            json!(hex::encode(q.td.mr_config_id)),
        );
        fact(&mut out, "mr_owner", json!(hex::encode(q.td.mr_owner)));
        fact(
            &mut out,
            "mr_owner_config",
            json!(hex::encode(q.td.mr_owner_config)),
        );
        fact(
            &mut out,
            "td_attributes",
            json!(hex::encode(q.td.td_attributes)),
        );
        fact(&mut out, "xfam", json!(hex::encode(q.td.xfam)));
        fact(
            &mut out,
            "report_data",
            json!(hex::encode(q.td.report_data)),
        );
    }
    let options = TdxOptions {
        allowed_tcb_statuses: args.allow_tcb_status.clone(),
        allow_debug: false,
    };
    let all = tdx_steps(collateral.is_some());
    let result = match &collateral {
        Some(c) => tdx::verify_with_options(bytes, c, at, &options),
        None => Err(tdx::verify_without_collateral(bytes, at, &options)),
    };
    let quote_version = match &result {
        Ok(v) => {
            fact(&mut out, "fmspc", json!(hex::encode(v.fmspc)));
            fact(&mut out, "tcb_status", json!(v.tcb_status));
            fact(&mut out, "advisory_ids", json!(v.advisory_ids));
            v.quote_version
        }
        Err(_) => tdx::parse_quote(bytes).map_or(0, |q| q.version),
    };
    let failed = result.as_ref().err().map(tdx::TdxError::step);
    for step in all {
        if failed.is_some_and(|f| step >= f) {
            break;
        }
        let detail = match step {
            TdxStep::Options => continue,
            TdxStep::Format => format!("quote v{quote_version}, {} bytes", bytes.len()),
            TdxStep::TdAttributes => "not a debug TD".into(),
            TdxStep::Chain(ChainLink::PckChain) if collateral.is_none() => format!(
                "{} (its revocation needs the collateral's CRLs)",
                ChainLink::PckChain.proves()
            ),
            TdxStep::Chain(link) => link.proves().into(),
            TdxStep::Collateral => "parsed; chains end at Intel's SGX Root CA".into(),
            TdxStep::Signature => {
                "TCB info, QE identity and CRLs signed under the pinned Intel root and current at the verification time; PCK certificate not revoked; QE identity and TCB level matched".into()
            }
            TdxStep::TcbStatus => match &result {
                Ok(v) => v.tcb_status.clone(),
                Err(_) => continue,
            },
        };
        out.checks.push(Check::pass(tdx_step_name(step), detail));
    }
    if let (Err(e), Some(step)) = (&result, failed) {
        out.checks
            .push(Check::fail(tdx_step_name(step), e.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_content() {
        let mut tdx = vec![0u8; 700];
        tdx[0] = 4;
        tdx[4] = 0x81;
        assert_eq!(detect(&tdx), Some(Kind::Tdx));
        assert_eq!(detect(&[0u8; snp::REPORT_LEN]), Some(Kind::Snp));
        assert_eq!(detect(&[0u8; 100]), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn times_are_rfc3339() {
        assert!(parse_time("2025-07-01T00:00:00Z").is_ok());
        assert!(parse_time("2025-07-01").is_err());
    }
}
