//! `verigate policy from-snapshot`: turns one VM's snapshot into the policy its
//! replicas share (ARCHITECTURE.md, "Policy"): the per-VM identity and the own
//! endpoint are dropped, the rest is kept. Offline.

use crate::report::Outcome;
use anyhow::Context as _;
use attest::check::Check;
use attest::policy::Policy;
use attest::snapshot::Snapshot;
use serde_json::json;
use std::path::PathBuf;

/// `verigate policy ...`.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Write the policy replicas of the snapshot's VM share: TEE measurement and
    /// policy, allowed file digests, the certificates of the names they serve; without
    /// the TPM key and counters, the simulated TEE key, or the own endpoint's name.
    #[command(after_help = "Example:\n  \
        verigate policy from-snapshot vm1.snapshot.json --domain vm1.example.com --out golden.policy.json")]
    FromSnapshot(FromSnapshotArgs),
}

/// Arguments of `verigate policy from-snapshot`.
#[derive(clap::Args, Debug)]
pub struct FromSnapshotArgs {
    /// The snapshot, as `verigate snapshot` wrote it.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: PathBuf,

    /// The own endpoint's name of the snapshotted VM (its `gateway.domain`), which each
    /// replica has its own of: dropped from the policy.
    #[arg(long, value_name = "NAME")]
    domain: String,

    /// Where to write the policy.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `verigate policy`.
pub fn run(cmd: PolicyCmd) -> anyhow::Result<Outcome> {
    let PolicyCmd::FromSnapshot(args) = cmd;
    let bytes = std::fs::read(&args.snapshot)
        .with_context(|| format!("reading snapshot `{}`", args.snapshot.display()))?;
    let snapshot = Snapshot::from_json(&bytes)
        .with_context(|| format!("snapshot `{}`", args.snapshot.display()))?;
    let policy = Policy::from_snapshot(&snapshot, &args.domain)
        .with_context(|| format!("snapshot `{}`", args.snapshot.display()))?;
    let json = policy.to_json_pretty().context("encoding the policy")?;
    durable::write(&args.out, &json, 0o644)
        .with_context(|| format!("writing `{}`", args.out.display()))?;
    let mut out = Outcome::default();
    out.facts
        .push(("policy".into(), json!(args.out.display().to_string())));
    out.facts.push((
        "tee".into(),
        json!(policy.tee_policy.get("kind").cloned().unwrap_or_default()),
    ));
    out.facts.push(("tpm".into(), json!(policy.tpm)));
    out.facts.push((
        "names".into(),
        json!(policy
            .manifest
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>()),
    ));
    out.facts
        .push(("filehashes".into(), json!(policy.filehashes.len())));
    out.checks.push(Check::pass(
        "policy",
        format!(
            "written without `{}` and without the TPM key and counters, the simulated TEE key \
             or the chip id: each VM's are enrolled at first contact",
            args.domain.to_ascii_lowercase()
        ),
    ));
    Ok(out)
}
